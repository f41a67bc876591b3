"""Reading and validating survey data through a codebook.

:func:`read_survey` reads CSV (comma or semicolon separated, sniffed; decimal comma;
UTF-8 with or without BOM, latin-1 on request; ``.csv.gz``), Parquet, SPSS ``.sav``
and Stata ``.dta`` files (via pyreadstat, value labels kept), or an in-memory
DataFrame (never mutated), validates them against a :class:`~veerkracht_bayes.survey.codebook.Codebook`
and returns an immutable :class:`SurveyData` with a :class:`ValidationReport`.

Row convention
--------------
Every message and report names rows as **1-based data rows**: the first respondent
is row 1 and the header is not counted. For CSV files the file line is also given
(data row + 1, exact unless a quoted field spans several lines). For a DataFrame the
row is the 1-based position (the index label is shown too).

Nothing is dropped silently: the only rows ever excluded are those without a
respondent id, and the report lists how many and which.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from veerkracht_bayes.survey.codebook import Codebook, ItemSpec, load_codebook
from veerkracht_bayes.errors import Problem, SurveyError, VeerkrachtError, did_you_mean
from veerkracht_bayes.survey.scales import ordinal_codes as _ordinal_codes
from veerkracht_bayes.survey.scales import reverse_code
from veerkracht_bayes.survey.subgroups import parse_condition

if TYPE_CHECKING:  # pragma: no cover
    from veerkracht_bayes.graph.causal_graph import CausalGraph

__all__ = [
    "ROW_CONVENTION",
    "ItemReport",
    "WeightSummary",
    "Exclusion",
    "SubgroupReport",
    "ValidationReport",
    "SurveyData",
    "read_survey",
    "kish_effective_n",
    "check_csv_structure",
    "CoercedColumn",
    "coerce_numeric",
    "coerce_weights",
    "range_violations",
    "SourceContext",
    "list_bad_values",
    "describe_range",
    "infer_id",
]

ROW_CONVENTION = "rows are 1-based data rows (first respondent = row 1, header not counted)"
_MAX_LISTED = 5
_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz", ".txt.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SAV_SUFFIXES = (".sav", ".zsav")
_DTA_SUFFIXES = (".dta",)


def kish_effective_n(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``.

    Examples
    --------
    >>> import numpy as np
    >>> kish_effective_n(np.ones(100)), round(kish_effective_n(np.r_[np.ones(50), 3 * np.ones(50)]), 1)
    (100.0, 80.0)
    """
    w = np.asarray(weights, dtype=float)
    s2 = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


# ============================================================================ report
@dataclass(frozen=True)
class ItemReport:
    """Missingness and validity counts of one item (over the kept rows).

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> reports = survey.report.items
    >>> isinstance(reports[0], ItemReport)
    True
    """

    column: str
    construct: str
    scale: str
    n_observed: int
    n_missing: int
    missing_fraction: float
    n_missing_codes: int
    n_out_of_range: int
    n_label_decoded: int = 0


@dataclass(frozen=True)
class WeightSummary:
    """Summary of the raw weights and the design effect they imply.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> isinstance(survey.report.weights, WeightSummary)
    True
    """

    column: str | None
    n: int
    sum: float
    min: float
    max: float
    mean: float
    n_zero: int
    kish_n_eff: float
    design_effect: float


@dataclass(frozen=True)
class Exclusion:
    """Rows excluded for one reason (``rows``: the first few, 1-based data rows).

    Examples
    --------
    >>> Exclusion(reason="every item missing", count=2, rows=(12, 40)).count
    2
    """

    reason: str
    count: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class SubgroupReport:
    """Size of one subgroup over the kept rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> all(isinstance(r, SubgroupReport) for r in survey.report.subgroups)
    True
    """

    name: str
    label_en: str
    where: str
    n: int
    weighted_n: float
    n_undetermined: int
    below_min_cell_size: bool


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`read_survey` found; see :meth:`to_text` and :meth:`to_dict`.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> isinstance(survey.report, ValidationReport)
    True
    """

    source: str
    format: str
    sha256: str
    codebook: str
    synthetic: bool
    rows_read: int
    rows_kept: int
    exclusions: tuple[Exclusion, ...]
    items: tuple[ItemReport, ...]
    weights: WeightSummary
    subgroups: tuple[SubgroupReport, ...]
    groups: tuple[tuple[str, str, int, int], ...]  # (kind, column, n_levels, n_missing)
    out_of_range: str
    rows_without_items: int
    observed_constructs: tuple[str, ...]
    unobserved_constructs: tuple[str, ...] | None
    min_cell_size: int
    warnings: tuple[str, ...] = ()
    row_convention: str = ROW_CONVENTION

    @property
    def rows_excluded(self) -> int:
        """Total number of excluded rows."""
        return sum(e.count for e in self.exclusions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (plain Python types only)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (np.floating,)):
                return clean(float(v))
            return v

        def dc(obj: Any) -> dict[str, Any]:
            return {k: clean(list(v) if isinstance(v, tuple) else v) for k, v in obj.__dict__.items()}

        return {
            "valid": True,
            "source": self.source,
            "format": self.format,
            "sha256": self.sha256,
            "codebook": self.codebook,
            "synthetic": self.synthetic,
            "row_convention": self.row_convention,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_excluded": self.rows_excluded,
            "exclusions": [dc(e) for e in self.exclusions],
            "rows_without_items": self.rows_without_items,
            "out_of_range": self.out_of_range,
            "items": [dc(i) for i in self.items],
            "weights": dc(self.weights),
            "subgroups": [dc(s) for s in self.subgroups],
            "min_cell_size": self.min_cell_size,
            "groups": [{"kind": k, "column": c, "n_levels": n, "n_missing": m} for k, c, n, m in self.groups],
            "observed_constructs": list(self.observed_constructs),
            "unobserved_constructs": None if self.unobserved_constructs is None
            else list(self.unobserved_constructs),
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """A human-readable report."""
        L = [f"Survey validation report: {self.source} ({self.format})",
             f"  codebook: {self.codebook}" + ("  [SYNTHETIC DATA]" if self.synthetic else ""),
             f"  sha256: {self.sha256}",
             f"  rows read: {self.rows_read}; kept: {self.rows_kept}; excluded: {self.rows_excluded}"]
        for e in self.exclusions:
            more = "" if e.count <= len(e.rows) else ", ..."
            L.append(f"    excluded {e.count}: {e.reason} (rows {', '.join(map(str, e.rows))}{more})")
        L.append(f"  ({self.row_convention})")
        w = self.weights
        if w.column:
            L.append(f"  weights '{w.column}': min {w.min:.4g}, max {w.max:.4g}, mean {w.mean:.4g}, "
                     f"zero {w.n_zero}; normalised to sum to n = {w.n}")
        else:
            L.append(f"  weights: none (all 1); n = {w.n}")
        L.append(f"  Kish effective n: {w.kish_n_eff:.1f}; design effect n/n_eff: {w.design_effect:.3f}")
        L.append(f"  out-of-range policy: {self.out_of_range}")
        L.append(f"  observed constructs ({len(self.observed_constructs)}): "
                 + ", ".join(self.observed_constructs))
        if self.unobserved_constructs is not None:
            L.append(f"  unobserved constructs, carried on priors alone ({len(self.unobserved_constructs)}): "
                     + (", ".join(self.unobserved_constructs) or "none"))
        L.append(f"  items ({len(self.items)}; missing = NaN after codes/range, codes = missing codes, "
                 "range = out of range, labels = text decoded via value_labels):")
        L.append(f"    {'column':<22} {'construct':<26} {'scale':<10} {'missing':>8} {'%':>6} "
                 f"{'codes':>6} {'range':>6} {'labels':>7}")
        for it in self.items:
            L.append(f"    {it.column:<22} {it.construct:<26} {it.scale:<10} {it.n_missing:>8} "
                     f"{100 * it.missing_fraction:>6.1f} {it.n_missing_codes:>6} {it.n_out_of_range:>6} "
                     f"{it.n_label_decoded:>7}")
        if self.rows_without_items:
            L.append(f"  rows with no observed item: {self.rows_without_items} (kept)")
        if self.groups:
            L.append("  groups:")
            for k, c, n, m in self.groups:
                L.append(f"    {k} ('{c}'): {n} levels, {m} missing")
        if self.subgroups:
            L.append(f"  subgroups (min cell size {self.min_cell_size}):")
            for s in self.subgroups:
                flag = "  [below min cell size]" if s.below_min_cell_size else ""
                und = f", {s.n_undetermined} undetermined (missing values)" if s.n_undetermined else ""
                L.append(f"    {s.name:<22} n={s.n:<7} weighted n={s.weighted_n:.1f}{und}{flag}")
        if self.warnings:
            L.append("  warnings:")
            L += [f"    - {w}" for w in self.warnings]
        L.append("  status: VALID")
        return "\n".join(L)


# ============================================================================ SurveyData
@dataclass(frozen=True)
class SurveyData:
    """An immutable, validated survey. Build it with :func:`read_survey`.

    Attributes
    ----------
    codebook
        The codebook the data were validated against.
    source
        The file path, or ``"<DataFrame>"``.
    sha256
        SHA-256 of the file bytes, or of the frame's canonical CSV.
    report
        The :class:`ValidationReport`.
    metadata
        Format metadata: ``value_labels`` (column -> {value: label}) and
        ``column_labels`` from SPSS/Stata files, the CSV separator/decimal/encoding.
    source_rows
        1-based data row (in the source) of each kept respondent.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> isinstance(survey, SurveyData), survey.n, survey.weights.shape
    (True, 200, (200,))
    """

    _data: pd.DataFrame = field(repr=False)
    codebook: Codebook = field(repr=False)
    source: str
    sha256: str
    report: ValidationReport = field(repr=False)
    _weights: np.ndarray = field(repr=False)
    _masks: dict[str, np.ndarray] = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    source_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    # ------------------------------------------------------------------ basic views
    @property
    def data(self) -> pd.DataFrame:
        """A copy of the data: codebook columns only, missing codes as NaN, not reverse-coded."""
        return self._data.copy()

    @property
    def n(self) -> int:
        """Number of respondents kept."""
        return len(self._data)

    @property
    def weights(self) -> np.ndarray:
        """Weights normalised to sum to :attr:`n` (ones without a weight column); a copy."""
        return self._weights.copy()

    @property
    def constructs(self) -> dict[str, list[str]]:
        """Observed construct -> its item columns."""
        return {k: [it.column for it in c.items] for k, c in self.codebook.constructs.items() if c.items}

    @property
    def item_columns(self) -> list[str]:
        """All item columns in codebook order."""
        return self.codebook.item_columns()

    def unobserved_constructs(self, graph: "CausalGraph | str | Path" = "marvel",
                              roles: Sequence[str] = ("construct",)) -> list[str]:
        """Graph nodes with the given role(s) that no item measures (carried on priors alone)."""
        from veerkracht_bayes.graph.causal_graph import load_graph

        g = load_graph(graph)
        obs = set(self.constructs)
        return [n.id for n in g.spec.nodes if n.role in roles and n.id not in obs]

    # ------------------------------------------------------------------ matrices
    def item_matrix(self, reverse: bool = True) -> tuple[np.ndarray, list[str]]:
        """Float item matrix ``(n, n_items)`` (NaN = missing) and its column names.

        Parameters
        ----------
        reverse
            Apply reverse coding ``(min + max) - x`` to items marked ``reverse`` (the
            item's valid range; for an unbounded continuous item the observed range).
        """
        cols = self.item_columns
        x = self._data[cols].to_numpy(dtype=float, na_value=np.nan).copy()
        if reverse:
            for j, (_, it) in enumerate(self.codebook.item_specs()):
                if it.reverse:
                    lo, hi = it.range
                    lo = np.nanmin(x[:, j]) if lo is None else lo
                    hi = np.nanmax(x[:, j]) if hi is None else hi
                    x[:, j] = reverse_code(x[:, j], lo, hi)
        for j, (_, it) in enumerate(self.codebook.item_specs()):
            if getattr(it, "transform", None) is not None:
                from veerkracht_bayes.survey.codebook import apply_transform

                x[:, j] = apply_transform(x[:, j], it.transform, cols[j], getattr(self, "source", None))
        return x, cols

    def ordinal_codes(self, reverse: bool = True) -> dict[str, np.ndarray]:
        """Integer codes ``0..k-1`` (``-1`` = missing) of every Likert item.

        With ``reverse`` (default) reverse-coded items are reversed first, so a higher
        code always means more of the construct.
        """
        x, cols = self.item_matrix(reverse=reverse)
        out = {}
        for j, (_, it) in enumerate(self.codebook.item_specs()):
            if it.scale == "likert":
                lo, _ = it.range
                out[cols[j]] = _ordinal_codes(x[:, j], lo, int(it.categories))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------ subgroups, groups
    def subgroup_mask(self, name: str) -> np.ndarray:
        """Boolean mask of a codebook subgroup (missing values count as not in it)."""
        if name not in self._masks:
            raise SurveyError(Problem(f"unknown subgroup {name!r} (expected one of "
                                      f"{sorted(self._masks)}){did_you_mean(name, self._masks)}",
                                      field="subgroup", value=name))
        return self._masks[name].copy()

    def subgroup_sizes(self) -> pd.DataFrame:
        """Per subgroup: ``n``, ``weighted_n`` (normalised weights) and ``below_min_cell_size``."""
        rows = []
        for name, m in self._masks.items():
            n = int(m.sum())
            rows.append({"subgroup": name, "n": n, "weighted_n": float(self._weights[m].sum()),
                         "below_min_cell_size": n < self.codebook.min_cell_size})
        return pd.DataFrame(rows, columns=["subgroup", "n", "weighted_n", "below_min_cell_size"]
                            ).set_index("subgroup")

    def group_codes(self, kind: str) -> tuple[np.ndarray, list[Any]]:
        """Integer codes ``0..L-1`` (``-1`` = missing) and the sorted levels of a group column.

        Parameters
        ----------
        kind
            A key of the codebook's ``group_columns`` (e.g. ``"neighbourhood"``).
        """
        gc = self.codebook.group_columns
        if kind not in gc:
            raise SurveyError(Problem(f"unknown group kind {kind!r} (expected one of {sorted(gc)})"
                                      f"{did_you_mean(kind, gc)}", field="group_columns", value=kind))
        s = self._data[gc[kind]]
        levels = sorted(s.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        pos = {v: i for i, v in enumerate(levels)}
        codes = np.array([pos.get(v, -1) if not pd.isna(v) else -1 for v in s.tolist()], dtype=np.int64)
        return codes, levels


# ============================================================================ reading
@dataclass
class SourceContext:
    """Where survey rows come from, for located error messages.

    Attributes
    ----------
    label
        The file name (or ``"<DataFrame>"``).
    fmt
        The format's name in messages (``"CSV"``, ``"Parquet"``, ...).
    csv
        Rows have file lines (a CSV: data row ``r`` is file line ``r + 1``).
    decimal
        Decimal separator of numbers written as text.
    index_labels
        A DataFrame's index labels, named in messages when given.

    Examples
    --------
    >>> ctx = SourceContext("survey.csv", "CSV", csv=True, decimal=".")
    >>> ctx.where(0)
    'data row 1 (file line 2)'
    >>> p = ctx.problem("not a number", "q1", "x", 0)
    >>> (p.file, p.line, p.field)
    ('survey.csv', 2, 'q1')
    """

    label: str
    fmt: str
    csv: bool
    decimal: str
    index_labels: np.ndarray | None = None

    def where(self, pos0: int) -> str:
        r = pos0 + 1
        if self.csv:
            return f"data row {r} (file line {r + 1})"
        if self.index_labels is not None:
            return f"row {r} (index label {self.index_labels[pos0]!r})"
        return f"row {r}"

    def problem(self, msg: str, column: str | None, value: object = None, pos0: int | None = None) -> Problem:
        line = pos0 + 2 if (self.csv and pos0 is not None) else None
        loc = f"column {column!r}" if column else None
        return Problem(msg, file=self.label, line=line, location=loc, field=column, value=value)


def _suffix_kind(path: Path) -> str:
    name = path.name.lower()
    for kind, suf in (("csv", _CSV_SUFFIXES), ("parquet", _PARQUET_SUFFIXES), ("sav", _SAV_SUFFIXES),
                      ("dta", _DTA_SUFFIXES)):
        if name.endswith(suf):
            return kind
    raise SurveyError(Problem(
        f"unsupported file type {path.suffix!r} (expected .csv, .csv.gz, .parquet, .sav or .dta)",
        file=str(path), field="path", value=path.name))


def _sniff_sep(header: str) -> str:
    semis, commas = header.count(";"), header.count(",")
    return ";" if semis > 0 and semis >= commas else ","


def _read_csv(path: Path, raw: bytes, encoding: str | None, sep: str | None,
              decimal: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    label = str(path)
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise SurveyError(Problem(f"not a valid gzip file: {exc} (expected gzip-compressed CSV)",
                                      file=label)) from None
    if encoding is None:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise SurveyError(Problem(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (expected UTF-8; "
                "for a latin-1 file pass encoding='latin-1')", file=label, line=line)) from None
        enc = "utf-8"
    else:
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise SurveyError(Problem(f"cannot decode with encoding {encoding!r}: {exc}", file=label)) from None
        text = text.removeprefix("\ufeff")
        enc = encoding
    if not text.strip():
        raise SurveyError(Problem("empty file (expected a header row and at least one data row)",
                                  file=label, line=1))
    header = next(ln for ln in text.splitlines() if ln.strip())
    if sep is None:
        sep = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else _sniff_sep(header)
    if decimal is None:
        decimal = "," if sep == ";" else "."
    check_csv_structure(text, sep, label)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                         skip_blank_lines=True, engine="c", index_col=False)
    except pd.errors.ParserError as exc:
        raise SurveyError(Problem(f"cannot parse as CSV with separator {sep!r}: {exc} (expected the same "
                                  "number of fields on every line)", file=label)) from None
    except pd.errors.EmptyDataError:
        raise SurveyError(Problem("empty file (expected a header row and at least one data row)",
                                  file=label, line=1)) from None
    return df, {"encoding": enc, "sep": sep, "decimal": decimal, "header": header}


def check_csv_structure(text: str, sep: str, label: str,
                        error_cls: type[VeerkrachtError] = SurveyError) -> None:
    """Refuse duplicate header names and rows with more or fewer fields than the header.

    pandas would silently rename a repeated column (``x.1``), read a short row's missing fields
    as empty and, when every row is one field longer than the header, take the first column as
    the index. Each problem names the file line and, for a header, the column.

    Raises
    ------
    VeerkrachtError
        ``error_cls`` (default :class:`SurveyError`) listing the problems.

    Examples
    --------
    >>> check_csv_structure("a,b\\n1,2\\n", ",", "ok.csv")
    >>> check_csv_structure("a,a\\n1,2\\n", ",", "dup.csv")
    Traceback (most recent call last):
    ...
    veerkracht_bayes.errors.SurveyError: dup.csv:1 column 2: duplicate column name 'a' ...
    """
    if len(sep) != 1:
        return  # a regex separator: leave the structure to pandas
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    header: list[str] | None = None
    probs: list[Problem] = []
    n_ragged = 0
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line (pandas skips these too)
            if header is None:
                header = [h.strip() for h in row]
                seen: dict[str, int] = {}
                for j, h in enumerate(header):
                    if h in seen:
                        probs.append(Problem(
                            f"duplicate column name {h!r} in the header (columns {seen[h] + 1} and "
                            f"{j + 1}); expected each column name once (a second column of the same "
                            "name would be silently renamed or dropped)", file=label,
                            line=reader.line_num, location=f"column {j + 1}", field=h, value=h))
                    else:
                        seen[h] = j
                if probs:
                    raise error_cls(probs)
                continue
            if len(row) != len(header):
                n_ragged += 1
                if n_ragged <= _MAX_LISTED:
                    what = "fewer" if len(row) < len(header) else "more"
                    col = (f"column {len(row) + 1} ({header[len(row)]!r}) onwards missing"
                           if len(row) < len(header) else
                           f"extra field(s) from column {len(header) + 1}: {row[len(header)][:40]!r}")
                    probs.append(Problem(
                        f"cannot parse as CSV: file line {reader.line_num} has {len(row)} fields, "
                        f"{what} than the header's {len(header)} ({col}); "
                        "expected every row to have one field per header column (write an empty "
                        "field for a missing value; quote values that contain the separator "
                        f"{sep!r})", file=label, line=reader.line_num, field="fields",
                        value=len(row)))
    except csv.Error as exc:
        raise error_cls(Problem(f"cannot parse as CSV with separator {sep!r}: {exc} (expected "
                                "well-formed CSV; check quotes)", file=label,
                                line=reader.line_num)) from None
    if n_ragged > _MAX_LISTED:
        probs.append(Problem(f"and {n_ragged - _MAX_LISTED} more row(s) with the wrong number of "
                             "fields", file=label))
    if probs:
        raise error_cls(probs)


_SCALAR_TYPES = (str, bytes, int, float, bool, np.generic, pd.Timestamp, pd.Timedelta)


def _check_cell_types(df: pd.DataFrame, columns: Sequence[str], ctx: "SourceContext") -> None:
    """Refuse nested values (lists, arrays, mappings: e.g. Parquet list columns) in used columns."""
    probs = []
    for col in columns:
        s = df[col]
        if not pd.api.types.is_object_dtype(s):
            continue
        bad = s.map(lambda v: not (v is None or v is pd.NA or isinstance(v, _SCALAR_TYPES)
                                   or _is_date(v))).to_numpy(dtype=bool)
        if bad.any():
            pos = np.flatnonzero(bad)
            v = s.iloc[int(pos[0])]
            shown = repr(v.tolist() if isinstance(v, np.ndarray) else v)[:60]
            probs.append(ctx.problem(
                f"column {col!r} holds {type(v).__name__} values (e.g. {shown} at "
                f"{ctx.where(int(pos[0]))}; {len(pos)} row(s) in all); expected one number or text "
                "per cell (a Parquet list or struct column cannot be used here)", col, shown,
                int(pos[0])))
    if probs:
        raise SurveyError(probs)


def _is_date(v: object) -> bool:
    import datetime as _dt
    import decimal as _dec

    return isinstance(v, (_dt.date, _dt.time, _dec.Decimal))


def _read_source(
    source: str | Path | pd.DataFrame, encoding: str | None, sep: str | None, decimal: str | None
) -> tuple[pd.DataFrame, SourceContext, str, dict[str, Any]]:
    if isinstance(source, pd.DataFrame):
        df = source.copy(deep=True)
        canon = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
        ctx = SourceContext("<DataFrame>", "DataFrame", False, decimal or ".",
                   index_labels=np.asarray(source.index.tolist(), dtype=object))
        return df.reset_index(drop=True), ctx, hashlib.sha256(canon).hexdigest(), {}
    path = Path(source)
    label = str(path)
    if not path.exists():
        raise SurveyError(Problem("file not found (expected an existing survey file)", file=label))
    if path.is_dir():
        raise SurveyError(Problem("is a directory (expected a survey file)", file=label))
    kind = _suffix_kind(path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        raise SurveyError(Problem("empty file (expected a header row and at least one data row)",
                                  file=label, line=1))
    meta: dict[str, Any] = {}
    if kind == "csv":
        df, meta = _read_csv(path, raw, encoding, sep, decimal)
        ctx = SourceContext(label, "CSV", True, meta["decimal"])
    elif kind == "parquet":
        try:
            df = pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several types
            raise SurveyError(Problem(f"cannot read as Parquet: {exc} (expected a Parquet file)",
                                      file=label)) from None
        ctx = SourceContext(label, "Parquet", False, decimal or ".")
    else:
        import pyreadstat

        reader = pyreadstat.read_sav if kind == "sav" else pyreadstat.read_dta
        try:
            df, m = reader(str(path), encoding=encoding) if encoding else reader(str(path))
        except Exception as exc:  # pyreadstat.ReadstatError and friends
            what = "SPSS .sav" if kind == "sav" else "Stata .dta"
            raise SurveyError(Problem(f"cannot read as {what}: {exc} (expected a valid {what} file)",
                                      file=label)) from None
        meta = {"value_labels": dict(m.variable_value_labels or {}),
                "column_labels": dict(m.column_names_to_labels or {}),
                "file_label": m.file_label, "file_encoding": m.file_encoding,
                "missing_ranges": dict(getattr(m, "missing_ranges", None) or {})}
        ctx = SourceContext(label, "SPSS" if kind == "sav" else "Stata", False, decimal or ".")
    return df, ctx, digest, meta


# ---------------------------------------------------------------------------- coercion
def list_bad_values(ctx: SourceContext, positions: Sequence[int], values: Sequence[Any]) -> str:
    """The first few offending values with their rows, for a message (``"... and N more"``).

    Examples
    --------
    >>> ctx = SourceContext("survey.csv", "CSV", csv=True, decimal=".")
    >>> list_bad_values(ctx, [0, 4], ["x", 9])
    "'x' at data row 1 (file line 2); 9 at data row 5 (file line 6)"
    """
    parts = [f"{_py(v)!r} at {ctx.where(p)}" for p, v in zip(positions[:_MAX_LISTED], values[:_MAX_LISTED])]
    more = f" and {len(positions) - _MAX_LISTED} more" if len(positions) > _MAX_LISTED else ""
    return "; ".join(parts) + more


def _split_codes(codes: Sequence[Any]) -> tuple[set[float], set[str]]:
    nums, strs = set(), set()
    for c in codes:
        if isinstance(c, str):
            strs.add(c.strip().casefold())
            try:
                nums.add(float(c.replace(",", ".")))
            except ValueError:
                pass
        elif not isinstance(c, bool):
            nums.add(float(c))
    return nums, strs


@dataclass
class CoercedColumn:
    """A column converted to numbers by :func:`coerce_numeric`.

    ``values`` floats (NaN where missing or a missing code), ``code_mask`` True where a missing
    code was found, ``bad_pos``/``bad_vals`` the positions and text of unparseable entries and
    ``n_decoded`` how many value labels were turned into their codes.

    Examples
    --------
    >>> import pandas as pd
    >>> coerce_numeric(pd.Series(["1", "x"]), ".").bad_vals
    ['x']
    """

    values: np.ndarray
    code_mask: np.ndarray
    bad_pos: np.ndarray
    bad_vals: list[Any]
    n_decoded: int = 0


def coerce_numeric(s: pd.Series, decimal: str, codes: Sequence[Any] = (),
                    labels: dict[int, str] | None = None) -> CoercedColumn:
    """Convert a column to float; missing codes -> NaN; return bad (unparseable) entries.

    Parameters
    ----------
    s
        The column (numbers, booleans or text).
    decimal
        The decimal mark of text entries (``"."`` or ``","``).
    codes
        Missing-value codes (numbers or text), read as missing.
    labels
        Value labels ``{code: text}``: an entry equal to a label becomes its code.

    Returns
    -------
    CoercedColumn

    Examples
    --------
    >>> import pandas as pd
    >>> c = coerce_numeric(pd.Series(["1", "2,5", "99", "Eens", "oops"]), ",", codes=[99], labels={4: "Eens"})
    >>> c.values
    array([1. , 2.5, nan, 4. , nan])
    >>> c.code_mask.tolist(), c.bad_vals
    ([False, False, True, False, False], ['oops'])
    """
    num_codes, str_codes = _split_codes(codes)
    n = len(s)
    if pd.api.types.is_bool_dtype(s):
        x = s.astype(float).to_numpy()
        return CoercedColumn(x, np.zeros(n, bool), np.zeros(0, np.int64), [])
    if pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=float, na_value=np.nan).copy()
        cm = np.isin(x, np.array(sorted(num_codes), dtype=float)) if num_codes else np.zeros(n, bool)
        x[cm] = np.nan
        return CoercedColumn(x, cm, np.zeros(0, np.int64), [])
    obj = s.astype(object)
    # fast path: entries that parse as numbers as they stand (most of a CSV read as text) need
    # none of the string handling below; only the rest (blanks, codes, labels, decimal commas,
    # bad values) goes through it, with the same outcome as if every entry had
    text = n > 0 and pd.api.types.infer_dtype(obj, skipna=True) == "string"
    fast = _plain_numbers(obj) if text else None
    slow = np.flatnonzero(np.isnan(fast)) if text else np.arange(n)
    if len(slow) < n:
        x = fast.copy()
        cm = np.isin(x, np.array(sorted(num_codes), dtype=float)) if num_codes else np.zeros(n, bool)
        x[cm] = np.nan
        if len(slow) == 0:
            return CoercedColumn(x, cm, np.zeros(0, np.int64), [])
        rest = coerce_numeric(obj.iloc[slow].reset_index(drop=True), decimal, codes, labels)
        x[slow] = rest.values
        cm[slow] = rest.code_mask
        return CoercedColumn(x, cm, slow[rest.bad_pos], rest.bad_vals, rest.n_decoded)
    isna = pd.isna(obj).to_numpy()
    st = pd.Series(np.where(isna, "", obj.to_numpy()), dtype=object).map(str).str.strip()
    empty = (st == "").to_numpy()
    folded = st.str.casefold()
    strcode = folded.isin(str_codes).to_numpy() & ~empty
    decoded = np.full(n, np.nan)
    if labels:
        lab = {str(v).strip().casefold(): float(k) for k, v in labels.items()}
        decoded = folded.map(lab).to_numpy(dtype=float, na_value=np.nan)
    nums_src = st.str.replace(",", ".", regex=False) if decimal == "," else st
    num = pd.to_numeric(nums_src.where(~(empty | strcode), None), errors="coerce").to_numpy(dtype=float)
    use_label = np.isnan(num) & ~np.isnan(decoded)
    num = np.where(use_label, decoded, num)
    numcode = np.isin(num, np.array(sorted(num_codes), dtype=float)) if num_codes else np.zeros(n, bool)
    code_mask = strcode | numcode
    bad = ~empty & ~code_mask & np.isnan(num)
    x = np.where(code_mask, np.nan, num)
    pos = np.flatnonzero(bad)
    return CoercedColumn(x, code_mask, pos, [obj.iloc[p] for p in pos[:_MAX_LISTED]], int(use_label.sum()))


def _plain_numbers(obj: pd.Series) -> np.ndarray:
    """Each text entry as a number where it is one as it stands, else NaN (what
    ``pd.to_numeric(obj, errors="coerce")`` gives).

    A column whose every non-empty entry is a plain number (most of a CSV read as text) is parsed
    by Arrow in one pass, about 50 times faster than ``pd.to_numeric`` on Python strings; Arrow
    refuses the whole column at the first entry it does not take as it stands (a blank padded
    with spaces, a decimal comma, a label), and then ``pd.to_numeric`` parses it as before.
    Whatever Arrow accepts, ``pd.to_numeric`` reads as the same number.

    Examples
    --------
    >>> _plain_numbers(pd.Series(["1", "", "2.5"], dtype=object)).tolist()
    [1.0, nan, 2.5]
    >>> _plain_numbers(pd.Series([" 3", "x"], dtype=object)).tolist()
    [3.0, nan]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(obj.to_numpy(), type=pa.string(), from_pandas=True)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(float)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.to_numeric(obj, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _infer_column(s: pd.Series, decimal: str) -> pd.Series:
    """Text columns whose every non-empty value is a number become float; else text (""->NaN)."""
    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
        return s
    # a text entry among the first ones decides it without parsing the whole column (codes such
    # as "GM0363" would each go through the slow path of coerce_numeric)
    c = coerce_numeric(s.iloc[:64], decimal)
    if len(c.bad_pos) == 0:
        c = coerce_numeric(s, decimal)
    obj = s.astype(object)
    stripped = obj.map(lambda v: v.strip() if isinstance(v, str) else v)
    empty = stripped.map(lambda v: v is None or (isinstance(v, float) and math.isnan(v)) or v == "" or
                         v is pd.NA)
    if len(c.bad_pos) == 0 and (~empty).any():
        return pd.Series(c.values, index=s.index, name=s.name)
    return stripped.where(~empty.astype(bool), np.nan).astype(object)


def describe_range(it: ItemSpec) -> str:
    """What a valid value of an item is, in words (the "expected ..." part of a message).

    Examples
    --------
    >>> from veerkracht_bayes.survey.codebook import ItemSpec
    >>> describe_range(ItemSpec(column="q1", scale="likert", categories=5, missing_codes=[99]))
    'an integer in 1..5 (likert item with 5 categories) or a declared missing code [99]'
    """
    lo, hi = it.range
    integral = it.scale in ("likert", "binary", "count")
    kind = {"likert": f"likert item with {it.categories} categories", "binary": "binary item",
            "count": "count", "continuous": "continuous item"}[it.scale]
    if lo is not None and hi is not None:
        rng = f"{'an integer' if integral else 'a number'} in {lo:g}..{hi:g}"
    elif lo is not None:
        rng = f"{'an integer' if integral else 'a number'} >= {lo:g}"
    elif hi is not None:
        rng = f"a number <= {hi:g}"
    else:
        rng = "a number"
    codes = f" or a declared missing code {list(it.missing_codes)}" if it.missing_codes else \
        " or a declared missing code (none declared)"
    return f"{rng} ({kind}){codes}"


# ---------------------------------------------------------------------------- main entry
def read_survey(
    path_or_dataframe: str | Path | pd.DataFrame,
    codebook: Codebook | str | Path,
    *,
    graph: "CausalGraph | str | Path | None" = None,
    out_of_range: Literal["error", "missing"] = "error",
    encoding: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
) -> SurveyData:
    """Read and validate a survey through its codebook.

    Parameters
    ----------
    path_or_dataframe
        A ``.csv``/``.csv.gz`` (comma or semicolon separated, sniffed from the header;
        ``.tsv`` tab), ``.parquet``, SPSS ``.sav`` or Stata ``.dta`` file, or a
        DataFrame (copied, never mutated).
    codebook
        A :class:`Codebook` or the path of a codebook YAML file.
    graph
        Optional graph (or ``"marvel"``/path): construct keys must be its nodes, and
        the report lists the graph's unobserved constructs.
    out_of_range
        ``"error"`` (default): a value outside an item's valid range is an error;
        ``"missing"``: it becomes NaN and is counted in the report.
    encoding
        Text encoding for CSV (default UTF-8, a BOM allowed; e.g. ``"latin-1"``) or
        the SPSS/Stata file encoding override.
    sep
        CSV separator; default sniffed (``;`` when the header has at least as many
        semicolons as commas, else ``,``).
    decimal
        Decimal mark for text numbers; default ``","`` for semicolon CSV, else ``"."``.

    Returns
    -------
    SurveyData
        Immutable validated data with its :class:`ValidationReport`.

    Raises
    ------
    SurveyError
        Listing every problem found; each names the file, the row (1-based data row;
        for CSV also the file line), the column, the offending value and what was
        expected. See :data:`ROW_CONVENTION`.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph="marvel")
    >>> survey.n
    200
    """
    if out_of_range not in ("error", "missing"):
        raise SurveyError(Problem(f"out_of_range must be 'error' or 'missing', got {out_of_range!r}",
                                  field="out_of_range", value=out_of_range))
    if not isinstance(codebook, Codebook):
        codebook = load_codebook(codebook, graph)
    else:
        from veerkracht_bayes.survey.codebook import check_codebook

        probs = check_codebook(codebook, graph)
        if probs:
            raise SurveyError(probs)
    cb = codebook
    df, ctx, digest, meta = _read_source(path_or_dataframe, encoding, sep, decimal)
    label = ctx.label

    # ---- columns present --------------------------------------------------------------
    df.columns = [str(c).strip() for c in df.columns]
    dupcols = [c for c in dict.fromkeys(df.columns) if list(df.columns).count(c) > 1]
    if dupcols:
        raise SurveyError([Problem(
            f"duplicate column name {c!r} (columns "
            f"{', '.join(str(j + 1) for j, x in enumerate(df.columns) if x == c)}); expected each "
            "column name once", file=label, line=1 if ctx.csv else None, location=f"column {c!r}",
            field=c, value=c) for c in dupcols])
    needed = list(dict.fromkeys([cb.id_column] + ([cb.weight_column] if cb.weight_column else [])
                                + list(cb.group_columns.values()) + cb.known_columns()))
    absent = [c for c in needed if c not in df.columns]
    if absent:
        if df.shape[1] == 1 and len(needed) > 1:
            only = str(df.columns[0])
            found = [name for ch, name in (("\t", "tabs"), ("|", "pipes"), (";", "semicolons"),
                                           (",", "commas"), (" ", "spaces")) if ch in only]
            hint = f" (the header contains {', '.join(found)}: pass sep=...)" if found else ""
            used = meta.get("sep", "?")
            raise SurveyError(Problem(
                f"the delimiter does not parse: the header split into a single column {only[:80]!r} "
                f"with separator {used!r}; expected comma- or semicolon-separated columns "
                f"{needed[:4]}...{hint}", file=label, line=1 if ctx.csv else None,
                field="header", value=only[:80]))
        probs = []
        for c in absent:
            role = ("id_column" if c == cb.id_column else "weight_column" if c == cb.weight_column
                    else "item" if c in cb.item_columns() else
                    "group column" if c in cb.group_columns.values() else "extra column")
            probs.append(Problem(
                f"codebook {role} {c!r} is missing from the data (expected a column with this name; "
                f"the data has {df.shape[1]} columns){did_you_mean(c, [str(x) for x in df.columns])}",
                file=label, line=1 if ctx.csv else None, location=f"column {c!r}", field=c, value=c))
        raise SurveyError(probs)
    if len(df) == 0:
        raise SurveyError(Problem("no data rows (expected a header followed by at least one respondent)",
                                  file=label, line=2 if ctx.csv else None))
    rows_read = len(df)
    _check_cell_types(df, needed, ctx)
    data = df[needed].copy()
    problems: list[Problem] = []
    warnings: list[str] = []

    # ---- respondent ids: missing -> excluded (reported); duplicates -> error --------------
    idc = cb.id_column
    ids_raw = data[idc]
    id_obj = ids_raw.astype(object)
    id_missing = pd.isna(id_obj).to_numpy() | id_obj.map(lambda v: isinstance(v, str) and v.strip() == ""
                                                         ).to_numpy(dtype=bool)
    exclusions: list[Exclusion] = []
    if id_missing.any():
        pos = np.flatnonzero(id_missing)
        exclusions.append(Exclusion(f"missing respondent id (column {idc!r})", int(len(pos)),
                                    tuple(int(p) + 1 for p in pos[:20])))
    keep = ~id_missing
    if not keep.any():
        raise SurveyError(ctx.problem(f"every row ({rows_read}) lacks a respondent id (expected an id "
                                      "for every respondent)", idc))
    src_pos = np.flatnonzero(keep)
    data = data.iloc[src_pos].reset_index(drop=True)
    if ctx.index_labels is not None:
        ctx.index_labels = ctx.index_labels[src_pos]
    data[idc] = infer_id(data[idc])
    dup = data[idc].duplicated(keep=False).to_numpy()
    if dup.any():
        groups: dict[Any, list[int]] = {}
        for p in np.flatnonzero(dup):
            groups.setdefault(data[idc].iloc[p], []).append(int(src_pos[p]))
        shown = []
        for v, ps in list(groups.items())[:_MAX_LISTED]:
            shown.append(f"{_py(v)!r} at " + ", ".join(ctx.where(p) for p in ps))
        more = f"; and {len(groups) - _MAX_LISTED} more duplicated ids" if len(groups) > _MAX_LISTED else ""
        first = next(iter(groups.values()))[1]
        problems.append(ctx.problem(
            f"duplicate respondent ids in column {idc!r}: {'; '.join(shown)}{more} "
            f"(expected each id exactly once)", idc, next(iter(groups)), first))

    # ---- weights --------------------------------------------------------------------
    n = len(data)
    wcol = cb.weight_column
    if wcol:
        w, wprobs = coerce_weights(data[wcol], wcol, ctx, src_pos)
        problems.extend(wprobs)
        finite = w[np.isfinite(w)]
        if len(finite) == n and np.all(finite == 0):
            problems.append(ctx.problem(
                f"all {n} weights in column {wcol!r} are zero (expected at least one positive weight)",
                wcol, 0.0))
        ok = np.isfinite(w) & (w >= 0)
        if ok.all() and not problems:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                total, total2 = float(np.sum(w)), float(np.sum(w * w))
                wn_try = w * (n / total) if total > 0 else np.zeros(n)
            top = int(np.argmax(w))
            if not (math.isfinite(total) and math.isfinite(total2)):
                problems.append(ctx.problem(
                    f"weights in column {wcol!r} are too large: their sum (or sum of squares) "
                    f"overflows (largest {w[top]:.6g} at {ctx.where(int(src_pos[top]))}); expected "
                    "weights whose sum of squares is finite (rescale them, e.g. divide by their mean)",
                    wcol, float(w[top]), int(src_pos[top])))
            elif total > 0 and (not np.all(np.isfinite(wn_try))
                                or np.any((w > 0) & (wn_try < np.finfo(float).tiny))):
                pos = np.flatnonzero((w > 0) & ~(wn_try >= np.finfo(float).tiny))
                p0 = int(pos[0]) if len(pos) else top
                problems.append(ctx.problem(
                    f"weights in column {wcol!r} span too many orders of magnitude (min positive "
                    f"{w[w > 0].min():.6g}, max {w[top]:.6g}): normalised to sum to n, "
                    f"weight {w[p0]:.6g} at {ctx.where(int(src_pos[p0]))} underflows to 0; "
                    "expected weights within about 1e300 of each other (set negligible weights to 0)",
                    wcol, float(w[p0]), int(src_pos[p0])))
        data[wcol] = w
    else:
        w = np.ones(n)

    # ---- items ----------------------------------------------------------------------
    item_reports: list[ItemReport] = []
    for cons, it in cb.item_specs():
        col = it.column
        c = coerce_numeric(data[col], ctx.decimal, it.missing_codes, it.value_labels or None)
        x = c.values
        if len(c.bad_pos):
            hint = " (a decimal comma? pass decimal=',')" if any(
                isinstance(v, str) and "," in v for v in c.bad_vals) and ctx.decimal != "," else ""
            problems.append(ctx.problem(
                f"text in numeric item {col!r} (construct {cons!r}) that is not a declared missing code: "
                f"{list_bad_values(ctx, src_pos[c.bad_pos].tolist(), c.bad_vals)}; expected {describe_range(it)}"
                f"{hint}", col, c.bad_vals[0], int(src_pos[c.bad_pos[0]])))
        oor = range_violations(x, it)
        n_oor = int(oor.sum())
        if n_oor:
            pos = np.flatnonzero(oor)
            if out_of_range == "error":
                problems.append(ctx.problem(
                    f"value out of range in item {col!r} (construct {cons!r}): "
                    f"{list_bad_values(ctx, src_pos[pos].tolist(), [_num(v) for v in x[pos]])}"
                    f"{'' if n_oor <= _MAX_LISTED else ''}; expected {describe_range(it)} "
                    "(or pass out_of_range='missing' to treat these as missing)",
                    col, _num(x[pos[0]]), int(src_pos[pos[0]])))
            else:
                x = np.where(oor, np.nan, x)
                warnings.append(f"item {col!r}: {n_oor} out-of-range value(s) set to missing")
        data[col] = x
        n_miss = int(np.isnan(x).sum())
        if n_miss == n and not len(c.bad_pos):
            problems.append(ctx.problem(
                f"every value of item {col!r} (construct {cons!r}) is missing ({n} rows; "
                f"{int(c.code_mask.sum())} missing codes, {n_oor if out_of_range == 'missing' else 0} "
                "set missing as out of range); expected at least one observed value "
                "(remove the item from the codebook if it was not asked)", col, None))
        elif n_miss > 0.5 * n:
            warnings.append(f"item {col!r}: {100 * n_miss / n:.1f}% missing")
        item_reports.append(ItemReport(col, cons, it.scale, n - n_miss, n_miss, n_miss / n,
                                       int(c.code_mask.sum()), n_oor, c.n_decoded))

    if problems:
        raise SurveyError(problems)

    # ---- group and extra columns ---------------------------------------------------
    groups_rep = []
    for kind, col in cb.group_columns.items():
        s = data[col]
        if ctx.csv:
            s = _infer_column(s, ctx.decimal)
        if pd.api.types.is_float_dtype(s) and s.notna().all() and np.all(s == np.round(s)):
            s = s.astype(np.int64)  # integer codes (e.g. CBS wijk codes) stay integers
        data[col] = s
        nm = int(pd.isna(s).sum())
        if nm:
            warnings.append(f"group column {col!r} ({kind}): {nm} missing value(s) (kept; code -1)")
        groups_rep.append((kind, col, int(s.nunique(dropna=True)), nm))
    special = {idc, wcol, *cb.group_columns.values(), *cb.item_columns()}
    for col in cb.extra_columns:
        if col not in special:
            data[col] = _infer_column(data[col], ctx.decimal)

    # ---- weights normalised, Kish ------------------------------------------------------
    wn = w * (n / w.sum())
    n_eff = kish_effective_n(w)
    wsum = WeightSummary(wcol, n, float(w.sum()), float(w.min()), float(w.max()), float(w.mean()),
                         int((w == 0).sum()), n_eff, n / n_eff if n_eff > 0 else float("inf"))
    if wsum.n_zero:
        warnings.append(f"{wsum.n_zero} respondent(s) have weight 0 (kept; they do not contribute)")

    # ---- subgroups ---------------------------------------------------------------------
    masks: dict[str, np.ndarray] = {}
    sg_rep = []
    _check_condition_columns(cb, data, df, src_pos, ctx)
    for name, sg in cb.subgroups.items():
        res = parse_condition(sg.where, name).evaluate(data)
        m = res.mask.copy()
        m.setflags(write=False)
        masks[name] = m
        small = res.n < cb.min_cell_size
        sg_rep.append(SubgroupReport(name, sg.label_en, sg.where, res.n, float(wn[m].sum()),
                                     res.n_undetermined, small))
        if small:
            warnings.append(f"subgroup {name!r}: n = {res.n} is below min_cell_size {cb.min_cell_size}")
        if res.n_undetermined:
            warnings.append(f"subgroup {name!r}: {res.n_undetermined} row(s) undetermined because of "
                            "missing values (counted as not in the subgroup)")

    items_only = data[cb.item_columns()]
    rows_without = int(items_only.isna().all(axis=1).sum()) if cb.item_columns() else n
    unobs = None
    if graph is not None:
        from veerkracht_bayes.graph.causal_graph import load_graph

        g = load_graph(graph)
        observed = set(cb.observed_constructs())
        unobs = tuple(nd.id for nd in g.spec.nodes if nd.role == "construct" and nd.id not in observed)

    report = ValidationReport(
        source=label, format=ctx.fmt, sha256=digest, codebook=cb.name, synthetic=cb.synthetic,
        rows_read=rows_read, rows_kept=n, exclusions=tuple(exclusions), items=tuple(item_reports),
        weights=wsum, subgroups=tuple(sg_rep), groups=tuple(groups_rep), out_of_range=out_of_range,
        rows_without_items=rows_without, observed_constructs=tuple(cb.observed_constructs()),
        unobserved_constructs=unobs, min_cell_size=cb.min_cell_size, warnings=tuple(warnings))
    wn.setflags(write=False)
    rows1 = (src_pos + 1).astype(np.int64)
    rows1.setflags(write=False)
    return SurveyData(_data=data, codebook=cb, source=label, sha256=digest, report=report,
                      _weights=wn, _masks=masks, metadata=meta, source_rows=rows1)


def _check_condition_columns(cb: Codebook, data: pd.DataFrame, raw: pd.DataFrame,
                             src_pos: np.ndarray, ctx: SourceContext) -> None:
    """A column a subgroup compares with numbers must hold numbers: blame the data, not the condition.

    When such a column holds text but most of its values are numbers (e.g. ``17 jaar`` among
    ages), the problem is in the data file: each offending value is named with its row.
    """
    probs = []
    for name, sg in cb.subgroups.items():
        try:
            cond = parse_condition(sg.where, name)
        except SurveyError:
            continue  # the codebook check reports malformed conditions
        for leaf in cond._leaves():
            vals = [getattr(leaf, "value", None)] if hasattr(leaf, "value") else list(leaf.values)
            if any(isinstance(v, str) for v in vals) or leaf.column not in data.columns:
                continue
            s = data[leaf.column]
            if pd.api.types.is_numeric_dtype(s) or leaf.column in {p.field for p in probs}:
                continue
            c = coerce_numeric(raw[leaf.column].iloc[src_pos].reset_index(drop=True), ctx.decimal)
            n_num = int(np.isfinite(c.values).sum())
            if n_num == 0 or not len(c.bad_pos):
                continue  # a genuine text column: the condition is at fault (reported on evaluation)
            probs.append(ctx.problem(
                f"non-numeric value in column {leaf.column!r}, which subgroup {name!r} compares with a "
                f"number ({sg.where!r}): {list_bad_values(ctx, src_pos[c.bad_pos].tolist(), c.bad_vals)} "
                f"({len(c.bad_pos)} row(s); {n_num} others are numbers); expected a number or an "
                "empty cell", leaf.column, _py(c.bad_vals[0]), int(src_pos[c.bad_pos[0]])))
    if probs:
        raise SurveyError(probs)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def coerce_weights(s: pd.Series, column: str, ctx: SourceContext, src_pos: np.ndarray
                   ) -> tuple[np.ndarray, list[Problem]]:
    """Survey weights as floats, and the problems of each bad value (located rows).

    Reports non-numeric, missing (NaN), negative and infinite weights, each with the rows named
    as ``read_survey`` names them. Checks that need the whole column (all weights zero, a sum
    that overflows) are the caller's. Shared by :func:`read_survey` and the out-of-core reader.

    Parameters
    ----------
    s
        The weight column.
    column
        Its name (for the messages).
    ctx
        The reading context (file label, format, decimal mark, row naming).
    src_pos
        0-based position in the source file of each entry of ``s``.

    Returns
    -------
    (numpy.ndarray, list of Problem)
        The weights (NaN where missing or not a number) and the problems, empty when all are valid.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> ctx = SourceContext("survey.csv", "csv", csv=True, decimal=".")
    >>> w, probs = coerce_weights(pd.Series(["1.5", "x", "-2"]), "w", ctx, np.arange(3))
    >>> w.tolist()[0], [p.message.split(":")[0] for p in probs]
    (1.5, ["non-numeric weight in column 'w'", "negative weight in column 'w'"])
    """
    problems: list[Problem] = []
    c = coerce_numeric(s, ctx.decimal)
    w = c.values
    if len(c.bad_pos):
        problems.append(ctx.problem(
            f"non-numeric weight in column {column!r}: "
            f"{list_bad_values(ctx, src_pos[c.bad_pos].tolist(), c.bad_vals)} (expected a non-negative number)",
            column, c.bad_vals[0], int(src_pos[c.bad_pos[0]])))
    bad_nan = np.flatnonzero(np.isnan(w) & ~np.isin(np.arange(len(w)), c.bad_pos))
    if len(bad_nan):
        problems.append(ctx.problem(
            f"missing (NaN) weight in column {column!r} at {len(bad_nan)} row(s): "
            + ", ".join(ctx.where(int(src_pos[p])) for p in bad_nan[:_MAX_LISTED])
            + (" ..." if len(bad_nan) > _MAX_LISTED else "")
            + " (expected a non-negative number for every respondent)", column, None,
            int(src_pos[bad_nan[0]])))
    neg = np.flatnonzero(w < 0)
    if len(neg):
        problems.append(ctx.problem(
            f"negative weight in column {column!r}: "
            f"{list_bad_values(ctx, src_pos[neg].tolist(), w[neg].tolist())} (expected weights >= 0)",
            column, float(w[neg[0]]), int(src_pos[neg[0]])))
    inf = np.flatnonzero(np.isinf(w))
    if len(inf):
        problems.append(ctx.problem(
            f"infinite weight in column {column!r}: {list_bad_values(ctx, src_pos[inf].tolist(), w[inf].tolist())}"
            " (expected a finite number)", column, float(w[inf[0]]), int(src_pos[inf[0]])))
    return w, problems


def range_violations(x: np.ndarray, item: Any) -> np.ndarray:
    """Where observed item values break the item's declared range: below ``lo``, above ``hi``,
    or not a whole number on a likert, binary or count scale (NaN is never a violation).

    Parameters
    ----------
    x
        The item's values (NaN where missing).
    item
        Its codebook spec (``range`` and ``scale``).

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> it = SimpleNamespace(range=(1, 5), scale="likert")
    >>> range_violations(np.array([1.0, 6.0, 2.5, np.nan]), it).tolist()
    [False, True, True, False]
    """
    lo, hi = item.range
    obs = ~np.isnan(x)
    oor = np.zeros(len(x), bool)
    if lo is not None:
        oor |= obs & (x < lo)
    if hi is not None:
        oor |= obs & (x > hi)
    if item.scale in ("likert", "binary", "count"):
        oor |= obs & (x != np.round(x))
    return oor


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def infer_id(s: pd.Series) -> pd.Series:
    """Respondent ids as integers when every id is a whole number (given as numbers or as text),
    else as stripped strings.

    Examples
    --------
    >>> import pandas as pd
    >>> infer_id(pd.Series([" 7", "12"])).tolist(), infer_id(pd.Series(["a1 ", "b2"])).tolist()
    ([7, 12], ['a1', 'b2'])
    """
    if pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=float)
        if np.all(x == np.round(x)):
            return pd.Series(x.astype(np.int64), index=s.index, name=s.name)
        return s
    st = s.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    num = pd.to_numeric(st, errors="coerce")
    if num.notna().all() and np.all(num.to_numpy() == np.round(num.to_numpy())):
        return pd.Series(num.to_numpy().astype(np.int64), index=s.index, name=s.name)
    return st.astype(str)
