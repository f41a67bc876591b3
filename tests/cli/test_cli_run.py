"""Tests for ``veerkracht-bayes run`` and ``demo``: an end-to-end run with data on a small
synthetic survey, exit codes, and that no respondent-level data reach any output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from veerkracht_bayes.cli import run as cli_run
from veerkracht_bayes.inference import sampling
from veerkracht_bayes.cli.main import app
from veerkracht_bayes.datasets.synthetic import write_synthetic

runner = CliRunner()

ID_PREFIX = "RSPNDNT"


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 synthetic respondents with recognisable ids (to scan the outputs for)."""
    d = tmp_path_factory.mktemp("cli_run")
    files = write_synthetic(d, n=2000, seed=1)
    df = pd.read_csv(files["data"])
    df["respondent_id"] = [f"{ID_PREFIX}{i:06d}" for i in df["respondent_id"]]
    df.to_csv(d / "survey.csv", index=False)
    files["data"].unlink()
    (d / "run.toml").write_text(f"""\
[inputs]
survey = "survey.csv"
codebook = "{files['codebook'].name}"
[sampler]
chains = 2
draws = 60
tune = 60
prior_draws = 100
seed = 5
[model]
measurement = "continuous"          # the continuous path's outputs (log_likelihood per pattern)
[query]
outcomes = ["wellbeing", "stress"]
horizon = 5
[diagnostics]
ppp_draws = 20
[output]
dir = "out"
formats = ["csv", "parquet", "netcdf"]
""", encoding="utf-8")
    return d


def _check_outputs(out: Path, prior_only: bool) -> dict:
    prov = json.loads((out / "provenance.json").read_text())
    assert not prov["brief_written"]  # "brief" is not among the formats of this config
    assert prov["inputs"]["survey"]["sha256"] and prov["inputs"]["codebook"]["sha256"]
    assert prov["settings"]["prior_only"] is prior_only
    eff = pd.read_csv(out / "effects.csv")
    assert set(eff["outcome"]) == {"wellbeing", "stress"} and eff["policy"].nunique() == 10
    sub = pd.read_csv(out / "subgroups.csv")
    assert (sub["n"] > 0).all() and sub["prevalence"].between(0, 1).all()
    tree = xr.open_datatree(out / "posterior.nc")
    assert "posterior" in tree.children
    # No respondent-level data: no respondent id in any file (text or binary) and no
    # respondent dimension in the posterior file (its log-likelihood, when written, is summed
    # per missingness pattern: docs/pipeline.md).
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert ID_PREFIX.encode() not in data, p.name
    for g in tree.children:
        assert "respondent" not in tree[g].to_dataset().dims
    if "log_likelihood" in tree.children:
        assert set(tree["log_likelihood"].to_dataset().dims) <= {"chain", "draw", "pattern"}
    return prov


def test_run_prior_only_with_survey(small_survey: Path) -> None:
    """Fast variant: the survey supplies weighted subgroup shares and sizes; no MCMC."""
    cfg = (small_survey / "run.toml").read_text().replace("[inputs]", "[inputs]\nprior_only = true")
    (small_survey / "prior.toml").write_text(cfg, encoding="utf-8")
    res = runner.invoke(app, ["-q", "run", str(small_survey / "prior.toml"), "--out",
                              str(small_survey / "out_prior")])
    assert res.exit_code == 0, res.output
    _check_outputs(small_survey / "out_prior", prior_only=True)
    # Prevalence = weighted share of the subgroup in the survey.
    from veerkracht_bayes.survey.reading import read_survey

    s = read_survey(small_survey / "survey.csv", next(small_survey.glob("codebook*.yaml")))
    sub = pd.read_csv(small_survey / "out_prior" / "subgroups.csv").set_index("subgroup")
    m = s.subgroup_mask("youth")
    assert sub.loc["youth", "prevalence"] == pytest.approx(s.weights[m].sum() / s.weights.sum())
    assert sub.loc["youth", "n"] == m.sum()


@pytest.mark.slow
def test_run_with_data_end_to_end(small_survey: Path) -> None:
    """MCMC on 2,000 respondents with tiny chains (slow on a loaded 2-core machine)."""
    res = runner.invoke(app, ["-q", "run", str(small_survey / "run.toml")])
    out = small_survey / "out"
    assert out.is_dir(), res.output
    prov = _check_outputs(out, prior_only=False)
    # Exit code follows the diagnostics: 0 when they pass, 3 (numbers written) when not.
    assert res.exit_code == (0 if prov["diagnostics_passed"] else 3), res.output


def test_run_with_data_end_to_end_fast_twin(small_survey: Path, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """Fast twin of the slow end-to-end run: the same command and code path (MCMC with data,
    diagnostics, queries, outputs, no respondent-level data) with --fast shortened to 15 draws
    and one chain's worth of tuning; checks the outputs and the exit code, not the numbers."""
    from veerkracht_bayes.workflow import config as run_config

    monkeypatch.setattr(run_config, "FAST_DRAWS", 15)
    monkeypatch.setattr(run_config, "FAST_PRIOR_DRAWS", 60)
    out = tmp_path / "out_fast"
    res = runner.invoke(app, ["-q", "run", str(small_survey / "run.toml"), "--fast", "--out", str(out)])
    assert out.is_dir(), res.output
    prov = _check_outputs(out, prior_only=False)
    assert prov["settings"]["fast"] is True
    assert res.exit_code == (0 if prov["diagnostics_passed"] else 3), res.output


def test_demo_fast_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast twin of test_demo_fast_full: ``demo --fast --force`` on the shipped 20,000
    respondents (shipped config, data, brief), with --fast shortened to 15 draws (the draws of
    the notebook-04 fast twin in tests/test_notebooks.py, so the two share compiled programs)."""
    from veerkracht_bayes.workflow import config as run_config

    monkeypatch.setattr(run_config, "FAST_DRAWS", 15)
    monkeypatch.setattr(run_config, "FAST_GROUP_DRAWS", 15)
    monkeypatch.setattr(run_config, "FAST_PRIOR_DRAWS", 60)
    monkeypatch.setattr(run_config, "FAST_NEIGHBOURHOOD_DRAWS", 15)  # the two-level fit (else 250 + 250)
    res = runner.invoke(app, ["demo", "--fast", "--force", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "demo"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["settings"]["fast"] is True and (out / "effects.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    try:
        import veerkracht_bayes.report.brief  # noqa: F401
    except ModuleNotFoundError:
        return
    assert (out / "brief.html").is_file() and (out / "brief.md").is_file()


def test_nonempty_out_refused_before_sampling(small_survey: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setattr(sampling, "fit", lambda *a, **k: pytest.fail("fit was called"))
    (tmp_path / "x.txt").write_text("x")
    res = runner.invoke(app, ["run", str(small_survey / "run.toml"), "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "not empty" in res.output and "--overwrite" in res.output


def test_demo_without_source_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sampling, "fit", lambda *a, **k: pytest.fail("fit was called"))
    import veerkracht_bayes.resources as resources

    monkeypatch.setattr(resources, "__file__", str(tmp_path / "a" / "b" / "c" / "resources.py"))
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 2
    assert "synthetic data were not found" in res.output


@pytest.mark.slow
def test_demo_fast_full(tmp_path: Path) -> None:
    """The README's command on the shipped 20,000-respondent data (slow: minutes)."""
    res = runner.invoke(app, ["demo", "--fast", "--force", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "demo"
    assert (out / "effects.csv").is_file() and (out / "provenance.json").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["settings"]["fast"] is True
    try:
        import veerkracht_bayes.report.brief  # noqa: F401
    except ModuleNotFoundError:
        return
    assert (out / "brief.html").is_file() and (out / "brief.md").is_file()


def test_effects_run_dir_matches_closed_form(tmp_path):
    """`effects --run DIR` on a (prior-only) MARVEL posterior equals delta * (I - B)^-1 per draw."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.cli.main import app
    from veerkracht_bayes.inference.sampling import fit

    g = load_graph("marvel")
    res = fit(g, None, prior_only=True, prior_draws=300, random_seed=5)
    res.idata.to_netcdf(tmp_path / "posterior.nc")
    (tmp_path / "config.toml").write_text('[inputs]\ngraph = "marvel"\n')
    out = CliRunner().invoke(app, ["effects", "--run", str(tmp_path), "--shift", "social_network=0.5",
                                   "--outcome", "wellbeing", "--json"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.output.strip().splitlines()[-1])
    beta = res.idata["posterior"]["beta"].values.reshape(-1, len(g.edges))
    idx = g.node_index
    want = []
    for b in beta:
        B = np.zeros((len(g.nodes), len(g.nodes)))
        for e, v in zip(g.edges, b):
            B[idx[e.target], idx[e.source]] = v
        A = np.linalg.inv(np.eye(len(g.nodes)) - B)
        want.append(0.5 * A[idx["wellbeing"], idx["social_network"]])
    want = np.array(want)
    assert rec["mean"] == pytest.approx(want.mean(), rel=1e-8)
    assert rec["lower"] == pytest.approx(np.quantile(want, 0.05), rel=1e-8)
    assert rec["p_stable"] == 1.0 and rec["n_draws"] == 300
    bad = CliRunner().invoke(app, ["effects", "--run", str(tmp_path), "--shift", "social_netwrk=1",
                                   "--outcome", "wellbeing"])
    assert bad.exit_code == 2 and "did you mean 'social_network'" in bad.output
