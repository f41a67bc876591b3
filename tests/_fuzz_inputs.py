"""Mutations of the shipped input files for the property-based fuzz tests (tests/test_fuzz_inputs.py).

Each ``check_*`` function writes one mutated file, loads it with the package's own loader and
returns normally when the loader either succeeded or raised a :class:`VeerkrachtError` whose every
problem has a location (file, line or a path/column); anything else propagates and fails the test.
"""

from __future__ import annotations

import copy
import gzip
import io
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hypothesis import strategies as st

from veerkracht_bayes.errors import VeerkrachtError

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "src" / "veerkracht_bayes" / "data" / "marvel.yaml"
POLICIES = ROOT / "src" / "veerkracht_bayes" / "data" / "policies.yaml"
DEMO = ROOT / "src" / "veerkracht_bayes" / "data" / "demo.toml"
PRIORS = ROOT / "priors" / "marvel.yaml"
BIB = ROOT / "priors" / "references.bib"
CODEBOOK = ROOT / "data" / "synthetic" / "codebook_synthetic.yaml"
SURVEY = ROOT / "data" / "synthetic" / "veerkracht_synthetic.csv.gz"

#: Values a careless or hostile user might put anywhere.
NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 2, 10**20, -(10**20), 0.5, -0.5, 1e-320, 1e300, -1e300, 1e308,
    float("nan"), float("inf"), float("-inf"), "", " ", "x", "wellbeing", "-", "+", "17 jaar",
    "1,5", "weet niet", "a" * 300, [], {}, [1, 2], ["x"], {"a": 1}, {"dist": "beta"},
    "__import__('os')", "${HOME}", "\u00e9\u00e8", "\x00",
]
TEXT_NASTY = ["", "nan", "inf", "-inf", "1e308", "1e-320", "-1e308", "17 jaar", "true", "[1, 2]",
              "{}", "\"", "'", ",", ";", "-", "9" * 400, "\u00e9", "NA", "-9", "weet niet", " 3 ",
              "3,5", "0x10", "1_000"]


# ------------------------------------------------------------------------- helpers
def assert_located(exc: VeerkrachtError) -> None:
    """Every problem names where: a file, a line, or a YAML path / column."""
    assert exc.problems, exc
    for p in exc.problems:
        assert p.file or p.line or p.location, f"unlocated problem: {p!r}"


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def tree_mutations(draw: Any, tree: Any, n_max: int = 3) -> Any:
    """Up to ``n_max`` structural edits of a parsed YAML tree (replace, delete, add, duplicate)."""
    t = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, n_max))):
        paths = _paths(t)
        path = draw(st.sampled_from(paths[1:] if len(paths) > 1 else paths))
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "dup"]))
        if not path:
            continue
        parent = _get(t, path[:-1])
        key = path[-1]
        if kind == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(NASTY)))
        elif kind == "delete":
            del parent[key]
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "mean", "sd", "where", "nodes", "x"]))] = \
                copy.deepcopy(draw(st.sampled_from(NASTY)))
        elif kind == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return t


@st.composite
def text_mutations(draw: Any, text: str) -> str:
    """Line-level edits of a text file: replace a value, drop/duplicate/swap a line, truncate."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "value", "drop", "dup", "swap", "truncate", "bytes"]))
        if kind == "value" and ("=" in lines[i] or ":" in lines[i]):
            sep = "=" if "=" in lines[i] else ":"
            head = lines[i].split(sep, 1)[0]
            lines[i] = f"{head}{sep} {draw(st.sampled_from(TEXT_NASTY))}"
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
            del lines[i + 1:]
        elif kind == "bytes":
            lines[i] = lines[i] + draw(st.sampled_from(["\t", "\x00", "\ufeff", "\\", "&a *a", "!!python/object:os.system"]))
    return "\n".join(lines) + "\n"


def dump_yaml(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


def _run(load: Any) -> None:
    try:
        load()
    except VeerkrachtError as exc:
        assert_located(exc)


# ------------------------------------------------------------------------- loaders
def check_graph(text: str) -> None:
    from veerkracht_bayes.graph.causal_graph import load_graph

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "graph.yaml"
        p.write_text(text, encoding="utf-8")
        _run(lambda: load_graph(p))


def check_priors(text: str) -> None:
    from veerkracht_bayes.priors.spec import load_priors

    with tempfile.TemporaryDirectory() as d:
        shutil.copy(BIB, Path(d) / "references.bib")
        p = Path(d) / "priors.yaml"
        p.write_text(text, encoding="utf-8")

        def load() -> None:
            ps = load_priors(p, "marvel")
            for k in ps.keys():  # a prior that loads can be evaluated
                ps.dist(k).mean()

        _run(load)


def check_codebook(text: str) -> None:
    from veerkracht_bayes.survey.codebook import load_codebook

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "codebook.yaml"
        p.write_text(text, encoding="utf-8")
        _run(lambda: load_codebook(p, "marvel"))


def check_policies(text: str) -> None:
    from veerkracht_bayes.causal.policies import load_policies

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "policies.yaml"
        p.write_text(text, encoding="utf-8")

        def load() -> None:
            ps = load_policies(p)
            ps.to_interventions()

        _run(load)


def check_config(text: str, validate: bool = False) -> None:
    from veerkracht_bayes.workflow.config import load_config, validate_inputs

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "run.toml"
        p.write_text(text, encoding="utf-8")

        def load() -> None:
            cfg = load_config(p)
            if validate:
                validate_inputs(cfg)

        _run(load)


_SMALL: dict[str, Any] = {}


def small_survey() -> tuple[pd.DataFrame, str]:
    """The first 60 rows of the shipped synthetic survey (as text) and the codebook text."""
    if not _SMALL:
        with gzip.open(SURVEY, "rt", encoding="utf-8") as fh:
            head = "".join(next(fh) for _ in range(61))
        _SMALL["csv"] = head
        _SMALL["df"] = pd.read_csv(io.StringIO(head))
        _SMALL["codebook"] = CODEBOOK.read_text(encoding="utf-8")
    return _SMALL["df"], _SMALL["csv"]


@st.composite
def csv_mutations(draw: Any) -> str:
    """Cell, row and header edits of the small survey CSV."""
    _, text = small_survey()
    rows = [ln.split(",") for ln in text.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "header", "short", "long", "droprow",
                                     "dupcol", "blank"]))
        i = draw(st.integers(1, len(rows) - 1))
        j = draw(st.integers(0, len(rows[0]) - 1))
        if kind == "cell" and j < len(rows[i]):
            rows[i][j] = draw(st.sampled_from(TEXT_NASTY))
        elif kind == "header":
            rows[0][j] = draw(st.sampled_from(["", "wb1", "weight", "respondent_id", "x", " age "]))
        elif kind == "short":
            rows[i] = rows[i][: draw(st.integers(0, len(rows[i]) - 1))]
        elif kind == "long":
            rows[i] = rows[i] + ["1"] * draw(st.integers(1, 3))
        elif kind == "droprow" and len(rows) > 2:
            del rows[i]
        elif kind == "dupcol":
            rows = [r + [r[j] if j < len(r) else ""] for r in rows]
        elif kind == "blank":
            rows.insert(i, [""])
    text = "\n".join(",".join(r) for r in rows) + "\n"
    extra = draw(st.sampled_from(["", "", "", "quote", "newline_in_quote", "bom", "semicolons"]))
    if extra == "quote":  # an unterminated quote
        text = text.replace(",", ',"', 1)
    elif extra == "newline_in_quote":
        k = text.index("\n") + 1
        text = text[:k] + '"a\nb",' + text[k:]
    elif extra == "bom":
        text = "\ufeff" + text
    elif extra == "semicolons":
        text = text.replace(",", ";")
    return text


def check_survey_csv(text: str) -> None:
    from veerkracht_bayes.survey.reading import read_survey

    small_survey()
    with tempfile.TemporaryDirectory() as d:
        p, cb = Path(d) / "survey.csv", Path(d) / "codebook.yaml"
        p.write_text(text, encoding="utf-8")
        cb.write_text(_SMALL["codebook"], encoding="utf-8")
        _run(lambda: read_survey(p, cb))


COLUMN_KINDS = ["list", "dict", "bool", "datetime", "bytes", "category", "null", "bigint", "text",
                "inf", "neg", "mixed", "float16"]


@st.composite
def frame_mutations(draw: Any) -> pd.DataFrame:
    """Column-type edits of the small survey for Parquet (lists, structs, dates, bytes, ...)."""
    df, _ = small_survey()
    df = df.copy()
    for _ in range(draw(st.integers(1, 3))):
        col = draw(st.sampled_from(list(df.columns)))
        kind = draw(st.sampled_from(COLUMN_KINDS))
        n = len(df)
        if kind == "list":
            df[col] = [[v] for v in df[col]]
        elif kind == "dict":
            df[col] = [{"v": int(i)} for i in range(n)]
        elif kind == "bool":
            df[col] = np.arange(n) % 2 == 0
        elif kind == "datetime":
            df[col] = pd.date_range("2020-01-01", periods=n)
        elif kind == "bytes":
            df[col] = [b"x" for _ in range(n)]
        elif kind == "category":
            df[col] = df[col].astype(str).astype("category")
        elif kind == "null":
            df[col] = pd.Series([None] * n, dtype=object)
        elif kind == "bigint":
            df[col] = np.full(n, 2**62, dtype=np.int64)
        elif kind == "text":
            df[col] = df[col].astype(str)
        elif kind == "inf":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
            df.loc[df.index[draw(st.integers(0, n - 1))], col] = draw(
                st.sampled_from([math.inf, -math.inf, math.nan, 1e308]))
        elif kind == "neg":
            df[col] = -np.arange(n, dtype=float)
        elif kind == "mixed":
            df[col] = [1 if i % 2 else "a" for i in range(n)]
        elif kind == "float16":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float16)
    return df


def check_survey_parquet(df: pd.DataFrame) -> None:
    from veerkracht_bayes.survey.reading import read_survey

    small_survey()
    with tempfile.TemporaryDirectory() as d:
        p, cb = Path(d) / "survey.parquet", Path(d) / "codebook.yaml"
        try:
            df.to_parquet(p, index=False)
        except Exception:  # noqa: BLE001 - pyarrow cannot store this frame: nothing to read
            return
        cb.write_text(_SMALL["codebook"], encoding="utf-8")
        _run(lambda: read_survey(p, cb))
