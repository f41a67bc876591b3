"""The value cleaning shared by the in-memory reader and the out-of-core statistics
(``reading.coerce_weights``, ``reading.range_violations``): both paths report the same weight
and range problems, with the same wording and the same rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.survey.codebook import load_codebook
from veerkracht_bayes.survey.out_of_core import stats_from_parquet
from veerkracht_bayes.survey.reading import range_violations, read_survey

SYN = "data/synthetic"


@pytest.fixture(scope="module")
def base():
    g = load_graph("marvel")
    cb = load_codebook(f"{SYN}/codebook_synthetic.yaml", graph=g)
    df = pd.read_csv(f"{SYN}/veerkracht_synthetic.csv.gz", nrows=200)
    return g, cb, df


def _messages(err: SurveyError) -> list[str]:
    return sorted(p.message for p in err.problems)


def _both(g, cb, frame, tmp_path) -> tuple[list[str], list[str]]:
    path = tmp_path / "s.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(SurveyError) as mem:
        read_survey(path, cb, graph=g)
    with pytest.raises(SurveyError) as ooc:
        stats_from_parquet(path, cb, g, chunk_rows=10_000)
    return _messages(mem.value), _messages(ooc.value)


@pytest.mark.parametrize(("rows", "value", "expected"), [
    ([3], -0.5, "negative weight in column 'weight': -0.5 at row 4 (expected weights >= 0)"),
    ([0, 7], np.inf, "infinite weight in column 'weight': inf at row 1; inf at row 8 (expected a finite number)"),
    ([5], np.nan, "missing (NaN) weight in column 'weight' at 1 row(s): row 6 (expected a non-negative "
                  "number for every respondent)"),
])
def test_weight_problems_are_the_same_in_memory_and_out_of_core(base, tmp_path, rows, value, expected):
    g, cb, df = base
    bad = df.copy()
    bad[cb.weight_column] = bad[cb.weight_column].astype(float)
    bad.loc[rows, cb.weight_column] = value
    mem, ooc = _both(g, cb, bad, tmp_path)
    assert expected in mem
    assert [m for m in mem if "weight" in m] == [m for m in ooc if "weight" in m]


def test_range_problems_are_the_same_in_memory_and_out_of_core(base, tmp_path):
    g, cb, df = base
    col = next(c for c in cb.item_columns() if cb.item(c).scale == "likert")
    bad = df.copy()
    bad[col] = bad[col].astype(float)
    bad.loc[[2, 9], col] = [999.0, 2.5]
    mem, ooc = _both(g, cb, bad, tmp_path)
    assert any(m.startswith(f"value out of range in item {col!r}") and "row 3" in m and "row 10" in m for m in mem)
    # the two paths list the values in their own number format; the rows and the item agree
    assert [m.split(":")[0] for m in mem if "out of range" in m] == [m.split(":")[0] for m in ooc
                                                                     if "out of range" in m]


@pytest.mark.parametrize(("rng_", "scale", "x", "expected"), [
    ((1, 5), "likert", [1.0, 5.0, 0.0, 6.0, 2.5, np.nan], [False, False, True, True, True, False]),
    ((None, 10), "continuous", [-50.0, 10.0, 10.5, 2.5], [False, False, True, False]),
    ((0, None), "count", [0.0, 1e9, -1.0, 1.5], [False, False, True, True]),
    ((None, None), "continuous", [-1e300, np.nan, 1e300], [False, False, False]),
])
def test_range_violations(rng_, scale, x, expected):
    item = SimpleNamespace(range=rng_, scale=scale)
    assert range_violations(np.array(x), item).tolist() == expected
