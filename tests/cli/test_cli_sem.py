"""End-to-end tests of `veerkracht-bayes sem` (veerkracht_bayes.cli.sem)."""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from veerkracht_bayes.cli.main import app  # noqa: E402
from veerkracht_bayes.sem.lavaan_model import TABLE_COLUMNS  # noqa: E402

runner = CliRunner()


def _write(tmp_path, n=300, seed=5):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    df = pd.DataFrame({"i1": f + rng.normal(0, 0.5, n), "i2": 0.8 * f + rng.normal(0, 0.5, n),
                       "i3": 1.2 * f + rng.normal(0, 0.5, n), "extra": rng.normal(size=n)})
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    model = tmp_path / "m.lav"
    model.write_text("f =~ i1 + i2 + i3\n")
    return model, data, df


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sem")
    model, data, df = _write(tmp)
    out = tmp / "params.csv"
    res = runner.invoke(app, ["sem", "--model", str(model), "--data", str(data), "--out", str(out),
                              "--draws", "200", "--tune", "200", "--chains", "2", "--seed", "3"])
    return res, out, df


def test_sem_writes_lavaan_table(fitted):
    res, out, df = fitted
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out)
    assert list(t.columns) == list(TABLE_COLUMNS)
    assert [(r.lhs, r.op, r.rhs) for r in t.itertuples()][:3] == [("f", "=~", "i1"), ("f", "=~", "i2"),
                                                                  ("f", "=~", "i3")]
    marker = t.iloc[0]
    assert marker.free == 0 and marker["mean"] == 1.0 and np.isnan(marker["sd"])
    assert (t.lower <= t["mean"]).all() and (t["mean"] <= t.upper).all()
    # loadings relative to the marker: true 0.8 and 1.2; 90% intervals should cover them
    # (each misses with probability 0.1; tolerance: both checked, so a false failure has
    # probability < 0.2 under a calibrated posterior - the seed is fixed).
    lo = t[t.op == "=~"].set_index("rhs")
    assert lo.loc["i2", "lower"] < 0.8 < lo.loc["i2", "upper"]
    assert lo.loc["i3", "lower"] < 1.2 < lo.loc["i3", "upper"]
    assert "extra" not in set(t.lhs) | set(t.rhs)


def _run(args):
    res = runner.invoke(app, args)
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes is not None else "")


def test_missing_column_did_you_mean(tmp_path):
    model, data, _ = _write(tmp_path, n=20)
    model.write_text("f =~ i1 + i2 + i33\n")
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert "'i33' is not a column" in out and "did you mean" in out and "Traceback" not in out


def test_non_numeric_column(tmp_path):
    model, data, df = _write(tmp_path, n=20)
    df = df.astype({"i2": object})
    df.loc[3, "i2"] = "n/a?"
    df.to_csv(data, index=False)
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "'i2' is not numeric" in out and "Traceback" not in out


def test_unidentified_model(tmp_path):
    model, data, _ = _write(tmp_path, n=20)
    model.write_text("f =~ i1\ng =~ i2 + i3 + extra\ng ~ f\n")
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "single indicator 'i1'" in out and "Traceback" not in out


def test_bad_sampler_and_missing_file(tmp_path):
    model, data, _ = _write(tmp_path, n=20)
    code, out = _run(["sem", "--model", str(model), "--data", str(data), "--out", "p.csv",
                      "--sampler", "numpyr"])
    assert code == 2 and "did you mean 'numpyro'" in out
    code, out = _run(["sem", "--model", str(model), "--data", str(tmp_path / "nope.csv"), "--out", "p.csv"])
    assert code == 2 and "data file not found" in out
