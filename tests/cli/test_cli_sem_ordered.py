"""`veerkracht-bayes sem --ordered` (lavaan's ordered=): thresholds + polychoric correlations."""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli.main import app
from veerkracht_bayes.sem.lavaan_model import TABLE_COLUMNS

runner = CliRunner()
TAU = np.array([-0.8, 0.1, 0.9])


def _write(tmp_path, n=800, seed=3):
    """One factor: three 4-category items (codes 1..4, thresholds TAU), a binary item (threshold
    0.3) and a continuous item; standardised loadings 0.8, 0.7, 0.6, 0.7, 0.6."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)

    def ystar(lam):
        return lam * f + rng.normal(0, np.sqrt(1 - lam * lam), n)

    df = pd.DataFrame({"o1": np.digitize(ystar(0.8), TAU) + 1, "o2": np.digitize(ystar(0.7), TAU) + 1,
                       "o3": np.digitize(ystar(0.6), TAU) + 1, "bin": (ystar(0.7) > 0.3).astype(int),
                       "cont": 2.0 * ystar(0.6) + 10})
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    model = tmp_path / "m.lav"
    model.write_text("f =~ o1 + o2 + o3 + bin + cont\n")
    return model, data, df


def _run(args):
    res = runner.invoke(app, args)
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes is not None else "")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("semord")
    model, data, _ = _write(tmp)
    out = tmp / "params.csv"
    code, text = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(out), "--ordered",
                       "o1,o2,o3,bin", "--draws", "250", "--tune", "250", "--chains", "2", "--seed", "4"])
    return code, text, out


def test_ordered_table_has_threshold_rows(fitted):
    code, text, out = fitted
    assert code == 0, text
    t = pd.read_csv(out, keep_default_na=False, na_values=["NaN", "nan", ""])
    assert list(t.columns) == list(TABLE_COLUMNS)
    th = t[t.op == "|"]
    assert [(r.lhs, r.rhs) for r in th.itertuples()] == [
        ("o1", "t1"), ("o1", "t2"), ("o1", "t3"), ("o2", "t1"), ("o2", "t2"), ("o2", "t3"),
        ("o3", "t1"), ("o3", "t2"), ("o3", "t3"), ("bin", "t1")]
    # thresholds come right after the model's own rows (lavaan's order), before the variances
    assert list(t.op[:5]) == ["=~"] * 5 and t.op.iloc[5] == "|"
    # each threshold within 3.5 SE of the truth
    true = np.concatenate([TAU, TAU, TAU, [0.3]])
    assert np.all(np.abs(th["mean"].to_numpy() - true) < 3.5 * th["sd"].to_numpy())
    assert (th.free > 0).all()
    # residual variances of the observed items are derived (free = 0) and positive
    rv = t[(t.op == "~~") & t.lhs.isin(["o1", "o2", "o3", "bin", "cont"])]
    assert len(rv) == 5 and (rv.free == 0).all() and (rv["mean"] > 0).all()
    # the continuous item keeps its raw scale: loading ~ 2 * 0.6 / 0.8 = 1.5 (marker o1)
    lo = t[t.op == "=~"].set_index("rhs")
    assert abs(lo.loc["cont", "mean"] - 1.5) < 3.5 * lo.loc["cont", "sd"]
    assert "wrote" in text and "Traceback" not in text


def test_unknown_ordered_name(tmp_path):
    model, data, _ = _write(tmp_path, n=60)
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                      "--ordered", "o1,o22"])
    assert code == 2 and "'o22' is not a column of the data" in out and "did you mean" in out
    assert "Traceback" not in out


def test_one_category_and_too_many(tmp_path):
    model, data, df = _write(tmp_path, n=60)
    df["o2"] = 2
    df.to_csv(data, index=False)
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                      "--ordered", "o1,o2"])
    assert code == 2 and "'o2' has a single category" in out and str(data) in out
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                      "--ordered", "o1,cont"])
    assert code == 2 and "'cont' has 60 distinct values; expected at most 10" in out
    assert "Traceback" not in out


def test_ordered_with_group(tmp_path):
    """--ordered with --group (configural): per-group thresholds, the group labels as in the data."""
    model, data, df = _write(tmp_path, n=600, seed=8)
    df["g"] = np.where(np.arange(600) % 2 == 0, "east", "west")
    df.to_csv(data, index=False)
    out = tmp_path / "p.csv"
    code, text = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(out), "--ordered",
                       "o1,o2,o3,bin", "--group", "g", "--draws", "60", "--tune", "60", "--chains", "1", "--seed", "2"])
    assert code == 0, text
    t = pd.read_csv(out, keep_default_na=False, na_values=["NaN", "nan", ""])
    assert t.columns[0] == "group" and list(dict.fromkeys(t.group)) == ["east", "west"]
    th = t[t.op == "|"]
    assert th.groupby("group").size().to_dict() == {"east": 10, "west": 10}
    true = np.concatenate([TAU, TAU, TAU, [0.3]])
    for _, part in th.groupby("group"):
        assert np.all(np.abs(part["mean"].to_numpy() - true) < 3.5 * part["sd"].to_numpy())
    assert "n = 600 complete cases" in text


def test_ordered_with_group_equal_thresholds_needs_every_category(tmp_path):
    model, data, df = _write(tmp_path, n=200, seed=9)
    df["g"] = np.where(np.arange(200) < 100, "a", "b")
    df.loc[(df.g == "b") & (df.o3 == 4), "o3"] = 3
    df.to_csv(data, index=False)
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                      "--ordered", "o1,o2,o3,bin", "--group", "g", "--group-equal", "loadings,thresholds"])
    assert code == 2 and "'o3' has no response in category 4 in group 'b'" in out and str(data) in out
    assert "Traceback" not in out
