"""End-to-end tests of `veerkracht-bayes effects` on a generic lavaan model (cli_effects)."""

from __future__ import annotations

import json
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from veerkracht_bayes.cli.main import app  # noqa: E402
from veerkracht_bayes.cli.effects import parse_assignments  # noqa: E402
from veerkracht_bayes.errors import InterventionError  # noqa: E402

runner = CliRunner()
MODEL = "m ~ x\ny ~ m + x\n"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One fit (sem --save-posterior) shared by the tests; effects then reads the posterior."""
    tmp = tmp_path_factory.mktemp("eff")
    rng = np.random.default_rng(17)
    n = 400
    x = rng.normal(10, 2, n)
    m = 0.5 * x + rng.normal(0, 1, n)
    y = 0.8 * m - 0.2 * x + rng.normal(0, 1, n)
    data = tmp / "d.csv"
    pd.DataFrame({"x": x, "m": m, "y": y, "noise": rng.normal(size=n)}).to_csv(data, index=False)
    model = tmp / "m.lav"
    model.write_text(MODEL)
    post, params = tmp / "post.nc", tmp / "params.csv"
    res = runner.invoke(app, ["sem", "--model", str(model), "--data", str(data), "--out", str(params),
                              "--draws", "200", "--tune", "200", "--chains", "2", "--seed", "4",
                              "--save-posterior", str(post)])
    assert res.exit_code == 0, res.output
    return model, data, post, params, x


def _effects(fitted, *args):
    model, data, post, *_ = fitted
    res = runner.invoke(app, ["effects", "--model", str(model), "--data", str(data), "--posterior",
                              str(post), "--json", "--seed", "1", *args])
    return res


def _draws(post, key):
    pv = xr.open_datatree(post)["posterior"]["param_value"]
    return pv.sel(param=key).transpose("chain", "draw").values.ravel()


def test_native_shift_matches_closed_form(fitted):
    """Shift m by 1 native unit: the effect on y is b_ym in every draw (closed form), so the
    mean over draws equals the posterior mean of 'y ~ m' in the parameter table up to float
    rounding (same draws; no Monte Carlo difference)."""
    res = _effects(fitted, "--shift", "m=1", "--outcome", "y", "--units", "native")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output.strip().splitlines()[-1])
    for k in ("mean", "lower", "upper", "p_positive", "p_stable", "median", "n_draws", "outcome",
              "interventions"):
        assert k in rec
    params = pd.read_csv(fitted[3])
    b = params[(params.lhs == "y") & (params.op == "~") & (params.rhs == "m")].iloc[0]
    assert rec["mean"] == pytest.approx(b["mean"], rel=1e-9)
    assert rec["lower"] == pytest.approx(b["lower"], rel=1e-9)
    assert rec["p_stable"] == 1.0 and rec["n_draws"] == 400


def test_sd_shift_matches_closed_form_per_draw(fitted):
    """Shift x by 1 SD of x: effect on y in SDs of y = (b_mx b_ym + b_yx) sd_x / sd_y(draw), with
    sd_y from the implied variance; computed here independently from the saved draws."""
    post, x = fitted[2], fitted[4]
    res = _effects(fitted, "--shift", "x=1", "--outcome", "y")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output.strip().splitlines()[-1])
    bmx, bym, byx = (_draws(post, k) for k in ("m ~ x", "y ~ m", "y ~ x"))
    pm_, py = _draws(post, "m ~~ m"), _draws(post, "y ~~ y")
    vx = x.var()  # fixed.x: the sample variance (divisor n)
    tot = bmx * bym + byx
    var_y = tot**2 * vx + bym**2 * pm_ + py
    closed = tot * np.sqrt(vx) / np.sqrt(var_y)
    assert rec["mean"] == pytest.approx(closed.mean(), rel=1e-8)
    assert rec["p_positive"] == pytest.approx(np.mean(closed > 0))


def test_set_cuts_incoming_links(fitted):
    """do(m = 1 native unit above its mean): effect on y is b_ym; x's path through m is cut."""
    res = _effects(fitted, "--set", "m=1", "--outcome", "y", "--units", "native")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output.strip().splitlines()[-1])
    params = pd.read_csv(fitted[3])
    b = params[(params.lhs == "y") & (params.rhs == "m")].iloc[0]
    mean_m = pd.read_csv(fitted[1])["m"].mean()
    # set m to its native value 1, i.e. 1 - mean(m) relative to the mean
    res2 = _effects(fitted, "--set", f"m={mean_m + 1}", "--outcome", "y", "--units", "native")
    rec2 = json.loads(res2.output.strip().splitlines()[-1])
    assert rec2["mean"] == pytest.approx(b["mean"], rel=1e-8)
    assert rec["mean"] == pytest.approx(b["mean"] * (1 - mean_m), rel=1e-8)


def test_unknown_node_and_bad_input(fitted):
    res = _effects(fitted, "--shift", "mm=1", "--outcome", "y")
    assert res.exit_code == 2 and "did you mean 'm'" in res.output + res.stderr
    res = _effects(fitted, "--shift", "m=1", "--outcome", "yy")
    assert res.exit_code == 2 and "did you mean 'y'" in res.output + res.stderr
    res = _effects(fitted, "--shift", "m=abc", "--outcome", "y")
    assert res.exit_code == 2 and "NODE=VALUE" in res.output + res.stderr
    res = _effects(fitted, "--outcome", "y")
    assert res.exit_code == 2 and "no intervention" in res.output + res.stderr
    res = _effects(fitted, "--shift", "m=1", "--outcome", "y", "--units", "percent")
    assert res.exit_code == 2 and "unknown units" in res.output + res.stderr
    res = runner.invoke(app, ["effects", "--run", "somewhere", "--shift", "m=1", "--outcome", "y"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_parse_assignments():
    assert parse_assignments(["a=1.5", " b = -2"], "--shift") == [("a", 1.5), ("b", -2.0)]
    with pytest.raises(InterventionError, match="--set 'a'"):
        parse_assignments(["a"], "--set")


def test_json_stdout_is_only_json(fitted):
    """With --json, stdout parses as one JSON object; the human summary is on stderr."""
    res = _effects(fitted, "--shift", "m=1", "--outcome", "y")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["outcome"] == "y" and "effect of [shift m" in res.stderr
    plain = runner.invoke(app, ["effects", "--model", str(fitted[0]), "--data", str(fitted[1]),
                                "--posterior", str(fitted[2]), "--shift", "m=1", "--outcome", "y"])
    assert plain.exit_code == 0 and "effect of [shift m" in plain.stdout
