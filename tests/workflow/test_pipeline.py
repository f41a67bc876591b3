"""Tests for the pipeline: outputs, provenance, atomic writes, brief gating, reproducibility.

All runs here are prior-only on the MARVEL diagram (no MCMC); the run with data is in
tests/cli/test_cli_run.py. The brief renderer is replaced by a stub so these tests check the
pipeline's contract with it, not its rendering.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from veerkracht_bayes.workflow.pipeline import POSTERIOR_GROUPS, RunResult, run, write_outputs
from veerkracht_bayes.inference.provenance import file_sha256

CONFIG = """\
[inputs]
prior_only = true
[sampler]
prior_draws = 100
seed = 11
[query]
outcomes = ["wellbeing", "stress"]
composites = {{resilience = {{wellbeing = 0.5, stress = -0.5}}}}
prevalence = {{single_parent = 0.1, pupils_and_parents = 0.2, low_income = 0.15}}
horizon = 5
[output]
dir = "{out}"
"""


class _StubBrief:
    """Stands in for veerkracht_bayes.report.brief: records calls, writes brief.md, can fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[RunResult, Path]] = []
        self.fail = False

    def write_brief(self, result: RunResult, out_dir: Path) -> None:
        self.calls.append((result, Path(out_dir)))
        (Path(out_dir) / "brief.md").write_text(
            "FORCED: diagnostics failed\n" if result.forced else "brief\n", encoding="utf-8")
        if self.fail:
            raise RuntimeError("late step failed")


@pytest.fixture(scope="module")
def stub_brief() -> _StubBrief:
    stub = _StubBrief()
    mod = types.ModuleType("veerkracht_bayes.report.brief")
    mod.write_brief = stub.write_brief  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "veerkracht_bayes.report.brief", mod)
        yield stub


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pipeline")
    (d / "run.toml").write_text(CONFIG.format(out="out"), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def result(base: Path, stub_brief: _StubBrief) -> RunResult:
    return run(base / "run.toml", progress=False)


def test_outputs_written(result: RunResult, base: Path, stub_brief: _StubBrief) -> None:
    out = base / "out"
    assert result.out_dir == out.resolve()
    names = {p.name for p in out.iterdir()}
    assert {"posterior.nc", "effects.csv", "effects.parquet", "pairwise.csv", "loops.csv",
            "trajectories.csv", "diagnostics.json", "provenance.json", "brief.md"} <= names
    assert not [p for p in base.iterdir() if p.name.startswith(".out.")]  # no temp folders left
    eff = pd.read_csv(out / "effects.csv")
    assert "policy" in eff.columns and set(eff["policy"]) == set(result.do_result.names)
    assert set(eff["outcome"]) == {"wellbeing", "stress", "resilience"}
    pq = pd.read_parquet(out / "effects.parquet")
    pd.testing.assert_frame_equal(pq[["policy", "outcome", "scope"]], eff[["policy", "outcome", "scope"]])
    # The brief got the finished result and the temporary folder (renamed afterwards).
    assert stub_brief.calls and stub_brief.calls[0][0] is result
    assert result.brief_written and not result.forced and result.prior_only
    traj = pd.read_csv(out / "trajectories.csv")
    assert list(traj.columns) == ["policy", "outcome", "t", "mean", "lower", "upper"]
    assert traj["t"].max() == 5
    assert set(result.pairwise) == {"wellbeing", "stress", "resilience"}
    assert list(result.p_best.columns) == ["wellbeing", "stress", "resilience"]


def test_posterior_groups_no_loglik(result: RunResult, base: Path) -> None:
    tree = xr.open_datatree(base / "out" / "posterior.nc")
    groups = set(tree.children)
    assert groups <= set(POSTERIOR_GROUPS) and {"posterior", "prior"} <= groups
    assert "log_likelihood" not in groups
    for g in groups:
        assert "respondent" not in tree[g].to_dataset().dims


def test_provenance(result: RunResult, base: Path) -> None:
    prov = json.loads((base / "out" / "provenance.json").read_text())
    assert prov["seed"] == 11 and prov["dose_seed"] == 0
    assert {"numpy", "pymc", "jax", "python"} <= set(prov["versions"])
    assert isinstance(prov["command_line"], list)
    inputs = prov["inputs"]
    assert inputs["config"]["sha256"] == file_sha256(base / "run.toml")
    assert prov["config_sha256"] == inputs["config"]["sha256"]
    files = result.provenance["inputs"]
    for key in ("graph", "priors", "policies"):
        assert len(files[key]["sha256"]) == 64
    from veerkracht_bayes.graph.causal_graph import marvel_path
    from veerkracht_bayes.causal.policies import policies_path
    from veerkracht_bayes.priors.spec import marvel_priors_path

    assert inputs["graph"]["sha256"] == file_sha256(marvel_path())
    assert inputs["priors"]["sha256"] == file_sha256(marvel_priors_path())
    assert inputs["policies"]["sha256"] == file_sha256(policies_path())
    assert prov["settings"]["prior_only"] is True and prov["diagnostics_passed"] is True
    assert "provenance.json" in prov["outputs"] and "effects.csv" in prov["outputs"]
    assert "created_utc" not in prov  # no timestamps: identical runs, identical records


def test_subgroups_and_warnings(result: RunResult) -> None:
    sz = result.subgroup_sizes.set_index("subgroup")
    assert sz.loc["pupils_and_parents", "prevalence"] == 0.2
    # Targeted policies without a configured share fall back to 1, with a warning.
    assert any("mental_health_problems" in w for w in result.warnings)
    eff = result.effects
    row_w = eff[(eff.policy == "P02") & (eff.outcome == "wellbeing") & (eff.scope == "within")]
    row_p = eff[(eff.policy == "P02") & (eff.outcome == "wellbeing") & (eff.scope == "population")]
    # population = within x prevalence (pupils_and_parents: 0.2), draw by draw, hence also in the mean
    assert row_p["mean"].iloc[0] == pytest.approx(0.2 * row_w["mean"].iloc[0], rel=1e-9)


def test_atomic_write_failure_leaves_nothing(result: RunResult, base: Path,
                                             stub_brief: _StubBrief) -> None:
    stub_brief.fail = True
    try:
        target = base / "atomic_new"
        with pytest.raises(RuntimeError, match="late step failed"):
            write_outputs(result, target)
        assert not target.exists()
        # Overwriting an existing folder: a failure leaves the old contents untouched.
        target.mkdir()
        (target / "keep.txt").write_text("old")
        with pytest.raises(RuntimeError, match="late step failed"):
            write_outputs(result, target, overwrite=True)
        assert [p.name for p in target.iterdir()] == ["keep.txt"]
        leftovers = [p.name for p in base.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
        assert leftovers == []
    finally:
        stub_brief.fail = False
    # Without overwrite a non-empty folder is refused; with it the folder is replaced.
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="not empty"):
        write_outputs(result, target)
    write_outputs(result, target, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "effects.csv").is_file()


def test_failed_diagnostics_gate_the_brief(result: RunResult, base: Path,
                                           stub_brief: _StubBrief) -> None:
    failing = types.SimpleNamespace(passed=False, problems=["R-hat 1.2 > 1.01"],
                                    to_dict=lambda: {"passed": False, "problems": ["R-hat"]})
    bad = dataclasses.replace(result, diagnostics=failing, warnings=[], provenance=dict(result.provenance))
    n_calls = len(stub_brief.calls)
    write_outputs(bad, base / "diag_fail")
    names = {p.name for p in (base / "diag_fail").iterdir()}
    assert "brief.md" not in names and "effects.csv" in names  # numbers written, no brief
    assert len(stub_brief.calls) == n_calls and not bad.brief_written
    assert json.loads((base / "diag_fail" / "diagnostics.json").read_text())["passed"] is False
    forced = dataclasses.replace(bad, forced=True, warnings=[])
    write_outputs(forced, base / "diag_forced")
    assert (base / "diag_forced" / "brief.md").read_text().startswith("FORCED")
    assert json.loads((base / "diag_forced" / "provenance.json").read_text())["forced"] is True


def test_same_config_same_seed_identical_effects(result: RunResult, base: Path,
                                                 stub_brief: _StubBrief) -> None:
    second = run(base / "run.toml", progress=False, out_dir=base / "out_again")
    first_dir, second_dir = base / "out", base / "out_again"
    # every CSV, byte for byte
    csvs = sorted(p.name for p in first_dir.glob("*.csv"))
    assert {"effects.csv", "trajectories.csv", "pairwise.csv", "loops.csv", "p_best.csv",
            "subgroups.csv", "loop_amplification.csv"} <= set(csvs)
    assert csvs == sorted(p.name for p in second_dir.glob("*.csv"))
    for name in csvs:
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes(), name
    assert (first_dir / "diagnostics.json").read_bytes() == (second_dir / "diagnostics.json").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(first_dir / "effects.parquet"),
                                  pd.read_parquet(second_dir / "effects.parquet"))
    # every variable of every group of posterior.nc, value for value
    t1, t2 = xr.open_datatree(first_dir / "posterior.nc"), xr.open_datatree(second_dir / "posterior.nc")
    assert set(t1.children) == set(t2.children)
    n_vars = 0
    for g in t1.children:
        d1, d2 = t1[g].to_dataset(), t2[g].to_dataset()
        assert set(d1.data_vars) == set(d2.data_vars), g
        for v in d1.data_vars:
            a, b = d1[v].values, d2[v].values
            assert a.dtype == b.dtype and a.shape == b.shape, (g, v)
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), (g, v)
            n_vars += 1
    assert n_vars > 0
    assert second.effects.equals(result.effects)
    # the brief's numbers: the real renderer (not the stub) gives the same text for both runs
    import importlib

    with pytest.MonkeyPatch.context() as mp:
        mp.delitem(sys.modules, "veerkracht_bayes.report.brief")
        real = importlib.import_module("veerkracht_bayes.report.brief")
        md1, _ = real.render_brief(result)
        md2, _ = real.render_brief(second)
    assert md1 == md2 and any(ch.isdigit() for ch in md1)
