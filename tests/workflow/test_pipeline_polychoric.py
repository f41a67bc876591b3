"""``[model] measurement = "polychoric"``: the config fields and a small run through the pipeline
(short chains on a small synthetic survey: this checks the wiring, not convergence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _fast_run import SAMPLER_TOML, fast_run

from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.workflow.config import load_config

BASE = """\
[inputs]
prior_only = true
[model]
{model}
"""


def _cfg(tmp_path: Path, model: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(BASE.format(model=model), encoding="utf-8")
    return p


def test_default_is_auto_and_explicit_choices_stay(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, "reliability = 0.8"))
    assert (cfg.model.measurement, cfg.model.unmeasured) == ("auto", None)
    cfg = load_config(_cfg(tmp_path, 'measurement = "continuous"'))
    assert (cfg.model.measurement, cfg.model.unmeasured) == ("continuous", None)
    cfg = load_config(_cfg(tmp_path, 'measurement = "polychoric"\nunmeasured = "joint"'))
    assert (cfg.model.measurement, cfg.model.unmeasured) == ("polychoric", "joint")


@pytest.mark.parametrize("model, line, text", [
    ('measurement = "polycoric"', 4, "polychoric"),
    ('unmeasured = "together"', 4, "joint"),
    ('measurement = "continuous"\nunmeasured = "joint"', 5, "applies to measurement = 'polychoric'"),
    ('measurement = "ordinal"', 4, "continuous"),
])
def test_bad_values_are_located(tmp_path: Path, model: str, line: int, text: str) -> None:
    p = _cfg(tmp_path, model)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    prob = exc.value.problems[0]
    assert prob.line == line and prob.file == str(p) and text in str(exc.value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from veerkracht_bayes.datasets.synthetic import write_synthetic
    d = tmp_path_factory.mktemp("polychoric_run")
    files = write_synthetic(d, n=1500, seed=2)
    (d / "run.toml").write_text(f"""\
[inputs]
survey = "{files['data'].name}"
codebook = "{files['codebook'].name}"
{SAMPLER_TOML}[model]
# measurement left at its default, "auto": the synthetic codebook's Likert and binary items make it
# the polychoric route with unmeasured = "joint"
[query]
policies = ["P01", "P06"]
outcomes = ["wellbeing", "mental_problems"]
horizon = 3
[[query.thresholds]]
name = "psychisch_ongezond"
outcome = "mental_problems"
items = ["mhi1", "mhi2", "mhi3", "mhi4", "mhi5"]
weights = [-4.0, -4.0, -4.0, -4.0, -4.0]
offset = 120.0
cutoff = 60.0
[diagnostics]
ppp_draws = 20
[output]
dir = "out"
formats = ["csv", "netcdf"]
""", encoding="utf-8")
    result = fast_run(d / "run.toml", draws=25, prior_draws=60)
    return d, result


def test_polychoric_run_uses_the_polychoric_posterior(run_dir) -> None:
    d, result = run_dir
    idata = result.fit.idata
    assert idata.attrs["likelihood"] == "polychoric"
    prov = json.loads(idata.attrs["provenance"])
    assert prov["settings"]["unmeasured"] == "joint"
    # the codebook's per-item reliabilities (generator loadings squared) reached the fit
    assert prov["settings"]["item_reliability"] == {"prof_help": pytest.approx(0.4225),
                                                    "household_income": pytest.approx(0.5776)}
    out = d / "out"
    for name in ("effects.csv", "diagnostics.json", "provenance.json"):
        assert (out / name).exists(), name
    effects = __import__("pandas").read_csv(out / "effects.csv")
    assert set(effects["policy"]) >= {"P01", "P06"}


def test_auto_records_the_route_and_its_reason(run_dir) -> None:
    from veerkracht_bayes.report.brief import measurement_text

    d, result = run_dir
    prov = json.loads((d / "out" / "provenance.json").read_text(encoding="utf-8"))
    assert (prov["measurement_requested"], prov["measurement_resolved"], prov["unmeasured_resolved"]) == (
        "auto", "polychoric", "joint")
    assert "binary" in prov["measurement_reason"] and "Likert" in prov["measurement_reason"]
    assert result.fit.idata.attrs["measurement_resolved"] == "polychoric"
    assert result.fit.idata.attrs["measurement_reason"] == prov["measurement_reason"]
    text = measurement_text(result)
    assert "chosen automatically from the codebook: polychoric" in text and "latent-response" in text
    # the fit check of the polychoric route fills the same JSON fields as the continuous one
    diag = json.loads((d / "out" / "diagnostics.json").read_text(encoding="utf-8"))
    assert diag["ppp"]["applicable"] and diag["ppp"]["statistic"] == "stage2_correlations"
    assert 0.0 <= diag["ppp"]["ppp"] <= 1.0 and diag["ppp"]["srmr"] is not None
    # ... and the brief keeps a fit verdict: its check table names the statistic
    from veerkracht_bayes.report.brief import brief_blocks, render_markdown

    md = render_markdown(brief_blocks(result))
    assert "PPP, stage-2 polychoric correlations" in md and "chosen automatically from the codebook" in md


def test_polychoric_run_states_what_it_skips(run_dir) -> None:
    d, result = run_dir
    text = " | ".join(result.warnings)
    assert "no log_likelihood group" in text and "thresholds.csv not written" not in text
    import xarray as xr

    with xr.open_datatree(d / "out" / "posterior.nc") as tree:
        assert "log_likelihood" not in tree.children
        assert tree.attrs["log_likelihood"].startswith("none: the polychoric route")
    prov = json.loads((d / "out" / "provenance.json").read_text(encoding="utf-8"))
    assert any("no log_likelihood group" in w for w in prov["warnings"])


def test_polychoric_run_writes_threshold_outcomes_from_its_posterior(run_dir) -> None:
    """The MHI-5 share comes from the polychoric posterior: the observed baseline, and a change whose
    draws are the calibrated probit shift of :func:`score_shift` with the posterior's loadings and the
    ordinal items' observed margins (recomputed here from the public functions)."""
    import numpy as np
    import pandas as pd

    from veerkracht_bayes.causal.thresholds import calibrated_shares, item_margin, score_shift
    from veerkracht_bayes.workflow.for_whom import observed_scale

    d, result = run_dir
    tab = pd.read_csv(d / "out" / "thresholds.csv")
    pop = tab[(tab["scope"] == "population") & ~tab["suppressed"].astype(bool)]
    assert len(pop) and pop["effect_pp"].notna().all() and (pop["lower"] <= pop["upper"]).all()
    spec = result.config.query.thresholds[0]
    from veerkracht_bayes.workflow.config import validate_inputs

    sv = validate_inputs(result.config, overwrite=True).survey
    p, sd, n = observed_scale(spec, sv)
    assert np.allclose(pop["baseline_share"], 100 * p) and (pop["n_group"] == n).all()
    # P06 targets everyone: recompute its row from the posterior
    row = pop[pop["policy"] == "P06"].iloc[0]
    y, cols = sv.item_matrix(reverse=True)
    x = y[:, [cols.index(it) for it in spec.items]]
    keep = ~np.isnan(x).any(axis=1)
    margins = [item_margin(x[keep, j], sv.weights[keep], values=np.unique(x[np.isfinite(x[:, j]), j]))
               for j in range(len(spec.items))]
    lam = result.fit.idata["posterior"]["lambda"].sel(item=list(spec.items))
    lam = lam.transpose("chain", "draw", "item").values.reshape(-1, len(spec.items))
    i = list(result.do_result.names).index("P06")
    ok = result.do_result.usable()[i]
    shift = score_shift(spec.weights, lam, result.do_result.outcome_effect(spec.outcome)[i], margins)
    pp = calibrated_shares(spec, p, sd, shift[ok]).effect_pp
    assert row["effect_pp"] == pytest.approx(pp.mean(), rel=1e-9, abs=1e-12)
    # the brief says how the polychoric route moves the scale
    from veerkracht_bayes.report.brief import brief_blocks, render_markdown

    md = render_markdown(brief_blocks(result))
    assert "Threshold outcomes" in md and "On the polychoric route each ordinal item moves" in md


def _survey_and_graph(tmp_path: Path, continuous_only: bool = False):
    import yaml

    import veerkracht_bayes as vb
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path, n=200, seed=3)
    cb = files["codebook"]
    if continuous_only:  # every item of the model declared continuous
        doc = yaml.safe_load(cb.read_text(encoding="utf-8"))
        for cons in doc["constructs"].values():
            for it in cons.get("items") or []:
                it.pop("categories", None)
                it["scale"] = "continuous"
        cb.write_text(yaml.safe_dump(doc), encoding="utf-8")
    graph = vb.load_graph("marvel")
    return vb.read_survey(files["data"], cb, graph=graph), graph


def test_auto_resolution_rules_in_runs(tmp_path: Path) -> None:
    from veerkracht_bayes.workflow.config import RunConfig
    from veerkracht_bayes.workflow.pipeline import resolve_run_measurement

    survey, graph = _survey_and_graph(tmp_path)
    inputs = {"survey": "s.csv", "codebook": "c.yaml"}
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs), survey, graph)
    assert (cfg.model.measurement, cfg.model.unmeasured, ch.requested) == ("polychoric", "joint", "auto")
    # an explicit unmeasured is kept; explicit measurements are kept as given
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs, model={"unmeasured": "cut"}), survey, graph)
    assert (cfg.model.measurement, cfg.model.unmeasured) == ("polychoric", "cut")
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs, model={"measurement": "continuous"}), survey, graph)
    assert (cfg.model.measurement, ch.reason) == ("continuous", "measurement = continuous (given)")
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs, model={"measurement": "polychoric"}), survey, graph)
    assert (cfg.model.measurement, cfg.model.unmeasured) == ("polychoric", "cut")
    # a run the polychoric route cannot take falls back to continuous, saying why
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs, sampler={"sampler": "pymc"}), survey, graph)
    assert cfg.model.measurement == "continuous" and "numpyro" in ch.reason and ch.ordinal_items
    # covariates (single items of exogenous roots) do not count; all-continuous items -> continuous
    survey_c, _ = _survey_and_graph(tmp_path / "c", continuous_only=True)
    cfg, ch = resolve_run_measurement(RunConfig(inputs=inputs), survey_c, graph)
    assert (cfg.model.measurement, ch.ordinal_items) == ("continuous", ())
    assert "none of the model's" in ch.reason


def test_polychoric_rejects_other_samplers_before_sampling(tmp_path: Path) -> None:
    from veerkracht_bayes.workflow.pipeline import check_polychoric_config

    p = tmp_path / "run.toml"
    p.write_text('[inputs]\nsurvey = "s.csv"\ncodebook = "c.yaml"\npriors = "vague"\n'
                 '[model]\nmeasurement = "polychoric"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        check_polychoric_config(load_config(p))
    assert exc.value.problems[0].field == "priors" and exc.value.problems[0].file == str(p)
