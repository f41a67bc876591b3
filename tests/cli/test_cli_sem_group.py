"""`veerkracht-bayes sem --group COLUMN`: a configural multi-group lavaan fit with a `group` column."""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from veerkracht_bayes.cli.main import app

runner = CliRunner()


def _write(tmp_path, n=200, seed=4):
    rng = np.random.default_rng(seed)
    g = np.repeat(["north", "south"], n // 2)
    x = rng.normal(size=n)
    slope = np.where(g == "north", 0.2, 0.9)
    df = pd.DataFrame({"region": g, "x": x, "y": slope * x + rng.normal(0, 0.5, n)})
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    model = tmp_path / "m.lav"
    model.write_text("y ~ x\n")
    return model, data


def test_sem_group_configural(tmp_path):
    model, data = _write(tmp_path)
    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["sem", "--model", str(model), "--data", str(data), "--out", str(out), "--group",
                              "region", "--draws", "200", "--tune", "200", "--seed", "2"])
    assert res.exit_code == 0, res.output
    tab = pd.read_csv(out)
    assert tab.columns[0] == "group" and set(tab.group) == {"north", "south"}
    reg = tab[tab.op == "~"].set_index("group")["mean"]
    assert abs(reg["north"] - 0.2) < 0.2 and abs(reg["south"] - 0.9) < 0.2  # each group its own slope
    assert "n = 200 complete cases" in res.output


def test_sem_group_errors(tmp_path):
    model, data = _write(tmp_path, n=20)
    out = tmp_path / "p.csv"
    base = ["sem", "--model", str(model), "--data", str(data), "--out", str(out)]
    res = runner.invoke(app, base + ["--group-equal", "loadings"])
    assert res.exit_code == 2 and "need --group" in res.output
    res = runner.invoke(app, base + ["--group", "regio"])
    assert res.exit_code == 2 and "did you mean 'region'" in res.output
    res = runner.invoke(app, base + ["--group", "region", "--group-equal", "loadngs"])
    assert res.exit_code == 2 and "unknown parameter type" in res.output


def test_sem_group_equal_regressions(tmp_path):
    model, data = _write(tmp_path)
    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["sem", "--model", str(model), "--data", str(data), "--out", str(out), "--group",
                              "region", "--group-equal", "regressions", "--draws", "150", "--tune", "150",
                              "--chains", "1", "--seed", "2"])
    assert res.exit_code == 0, res.output
    tab = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(tab.columns[:4]) == ["group", "lhs", "op", "rhs"] and tab.columns[-1] == "across_groups"
    reg = tab[tab.op == "~"]
    assert list(reg.group) == ["north", "south"]
    # one parameter shown in each group, with lavaan's shared label
    assert reg["mean"].nunique() == 1 and reg["free"].nunique() == 1
    assert set(reg.label) == {".p1."} and set(reg.across_groups) == {"equal"}
    assert abs(reg["mean"].iloc[0] - 0.55) < 0.15  # between the groups' slopes 0.2 and 0.9
    var = tab[tab.op == "~~"]
    assert var["free"].nunique() == 2 and set(var.across_groups) == {"free"}


def test_sem_group_equal_pool_errors(tmp_path):
    model, data = _write(tmp_path, n=20)
    out = tmp_path / "p.csv"
    base = ["sem", "--model", str(model), "--data", str(data), "--out", str(out), "--group", "region"]
    res = runner.invoke(app, base + ["--group-pool", "residuals"])
    assert res.exit_code == 2 and "not pooled" in res.output and "loadings, intercepts, regressions" in res.output
    res = runner.invoke(app, base + ["--group-equal", "regressions", "--group-pool", "regressions"])
    assert res.exit_code == 2 and "either equal across groups or partially pooled" in res.output
    res = runner.invoke(app, base + ["--group-pool", "regressions", "--pool-tau-sd", "0"])
    assert res.exit_code == 2 and "--pool-tau-sd must be a positive number" in res.output
