"""``[neighbourhoods]``: config, validation, the per-draw policy shifts and a small end-to-end run.

The run uses tiny chains (it checks the wiring, the identities between the outputs and the
disclosure rules, not convergence): the two-level fit's diagnostics then fail, which is itself
checked (warning in the run, numbers named in the brief).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fast_run import SAMPLER_TOML, fast_run

from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.workflow.config import fast_settings, parse_config, validate_inputs
from veerkracht_bayes.workflow.neighbourhoods import (
    EFFECT_COLUMNS,
    LINK_COLUMNS,
    policy_between_shifts,
)

BETWEEN = ["neighbourhood_trust", "community_support", "collective_agency"]


@pytest.fixture(scope="module")
def survey_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    d = tmp_path_factory.mktemp("neighbourhoods")
    files = write_synthetic(d, n=600, seed=3)
    (d / "inputs.toml").write_text(f'[inputs]\nsurvey = "{files["data"].name}"\n'
                                   f'codebook = "{files["codebook"].name}"\n', encoding="utf-8")
    return d


def _cfg(d: Path, nb: dict, **extra: dict) -> object:
    data = tomllib.loads((d / "inputs.toml").read_text())
    data["neighbourhoods"] = nb
    data["output"] = {"dir": str(d / f"out-{len(list(d.iterdir()))}")}
    data.update(extra)
    return parse_config(data, base=d)


# ---------------------------------------------------------------- config
def test_table_is_optional_and_fast_halves_the_draws() -> None:
    assert parse_config({"inputs": {"prior_only": True}}).neighbourhoods is None
    cfg = parse_config({"inputs": {"prior_only": True}, "neighbourhoods": {"cluster": "wijk_code", "draws": 300}})
    nb = cfg.neighbourhoods
    assert (nb.draws, nb.tune, nb.chains, nb.min_cluster_size) == (300, 500, 2, 2)
    fast = fast_settings(cfg).neighbourhoods
    assert (fast.draws, fast.tune) == (150, 250)
    big = parse_config({"inputs": {"prior_only": True}, "neighbourhoods": {"cluster": "w", "draws": 2000, "tune": 2000}})
    assert (fast_settings(big).neighbourhoods.draws, fast_settings(big).neighbourhoods.tune) == (250, 250)


def test_schema_errors_are_located() -> None:
    text = '[inputs]\nprior_only = true\n\n[neighbourhoods]\ncluster = "wijk_code"\ndraw = 10\nchains = true\n'
    with pytest.raises(ConfigError) as ei:
        parse_config(tomllib.loads(text), text=text, source="run.toml")
    probs = {p.location: p for p in ei.value.problems}
    assert "did you mean 'draws'" in probs["neighbourhoods.draw"].message
    assert probs["neighbourhoods.draw"].line == 6 and probs["neighbourhoods.draw"].file == "run.toml"
    assert probs["neighbourhoods.chains"].line == 7
    with pytest.raises(ConfigError, match="neighbourhoods.cluster"):
        parse_config({"inputs": {"prior_only": True}, "neighbourhoods": {"draws": 10}})
    with pytest.raises(ConfigError, match="twice"):
        parse_config({"inputs": {"prior_only": True},
                      "neighbourhoods": {"cluster": "w", "policies": ["P05", "P05"]}})


def test_validation_defaults(survey_dir: Path) -> None:
    vi = validate_inputs(_cfg(survey_dir, {"cluster": "wijk_code"}))
    nb = vi.neighbourhoods
    assert nb["constructs"] == BETWEEN + ["social_network"]
    assert nb["between"] == BETWEEN
    assert nb["policies"] == ["P05", "P06"]
    assert "P02" in nb["skipped"] and "subgroup" in nb["skipped"]["P02"]


def test_validation_errors_are_located_and_listed_together(survey_dir: Path) -> None:
    cfg = _cfg(survey_dir, {"cluster": "wijk_cod", "constructs": ["community_support", "collective_agency", "trust"],
                            "between": ["community_support", "neighbourhood_trust"],
                            "policies": ["P5", "P01", "P03"]})
    with pytest.raises(ConfigError) as ei:
        validate_inputs(cfg)
    probs = {p.location: p.message for p in ei.value.problems}
    assert "did you mean 'wijk_code'" in probs["neighbourhoods.cluster"]
    assert "unknown construct 'trust'" in probs["neighbourhoods.constructs[2]"]
    assert "not among the constructs" in probs["neighbourhoods.between[1]"]
    assert "did you mean 'P05'" in probs["neighbourhoods.policies[0]"]
    assert "no lever linked into a between construct" in probs["neighbourhoods.policies[1]"]
    assert "no lever linked into a between construct" in probs["neighbourhoods.policies[2]"]
    # a targeted policy whose lever reaches a between construct is refused with its reason
    cfg = _cfg(survey_dir, {"cluster": "wijk_code", "policies": ["P02"]})
    with pytest.raises(ConfigError, match=r"policies\[0\].*targeted at 'pupils_and_parents'"):
        validate_inputs(cfg)


def test_prior_only_refused(survey_dir: Path) -> None:
    cfg = parse_config({"inputs": {"prior_only": True}, "neighbourhoods": {"cluster": "wijk_code"},
                        "output": {"dir": str(survey_dir / "prior-only-out")}})
    with pytest.raises(ConfigError, match="neighbourhoods: the two-level neighbourhood model needs survey data"):
        validate_inputs(cfg)


# ---------------------------------------------------------------- the dose: same draws as the single-level route
def test_policy_shift_is_the_single_level_dose_times_the_lever_effect() -> None:
    """On a diagram where the lever's target has no other parent, the single-level do-query's
    effect on the target is coverage x per-exposure effect, draw by draw: the neighbourhood
    route's shift must equal it exactly (same doses, same lever-effect draws)."""
    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.draws import StructuralDraws
    from veerkracht_bayes.causal.interventions import Beta, Intervention, Shift
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

    roles = {"lever": "policy_lever"}
    g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "nb", "nodes": [
        {"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": roles.get(n, "construct")}
        for n in ("lever", "support", "agency", "network")],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"}
                  for s, t in (("lever", "support"), ("lever", "network"), ("support", "agency"))]}))
    rng = np.random.default_rng(0)
    S = 40
    beta = np.column_stack([rng.uniform(0.1, 0.4, S), rng.uniform(0.1, 0.4, S), rng.uniform(0.2, 0.5, S)])
    draws = StructuralDraws.from_arrays(g, beta, np.zeros((S, 4)))
    iv = Intervention(name="P", parts=[Shift(node="lever", delta=Beta(a=2, b=8), unit="exposure")])
    res = do_query(draws, [iv], outcomes=["support"], seed=3)
    shifts, used, other = policy_between_shifts(res, "P", ["support", "agency"])
    assert used == ["lever->support"] and other == ["lever->network"]
    np.testing.assert_allclose(shifts["support"], res.outcome_effect("support", scope="population")[0], rtol=1e-12)
    # 20 two-level draws: evenly spaced single-level draws
    s20, _, _ = policy_between_shifts(res, "P", ["support", "agency"], n_draws=20)
    np.testing.assert_allclose(s20["support"], shifts["support"][::2], rtol=1e-12)


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def run_result(survey_dir: Path):
    d = survey_dir
    (d / "run.toml").write_text((d / "inputs.toml").read_text() + SAMPLER_TOML + """\
[model]
measurement = "continuous"          # this test is about the neighbourhood fit beside the continuous main fit
[query]
policies = ["P05", "P06"]
outcomes = ["collective_agency"]
horizon = 2
[neighbourhoods]
cluster = "wijk_code"
draws = 20
tune = 20
chains = 2
min_cluster_size = 5
[diagnostics]
ppp_draws = 10
[output]
dir = "out"
formats = ["csv", "brief"]
""", encoding="utf-8")
    result = fast_run(d / "run.toml", draws=20, prior_draws=50, force=True)
    return result


def test_run_writes_the_three_files(run_result, survey_dir: Path) -> None:
    out = survey_dir / "out"
    for f in ("neighbourhoods.json", "neighbourhood_effects.csv", "neighbourhood_links.csv"):
        assert (out / f).is_file(), f
    eff = pd.read_csv(out / "neighbourhood_effects.csv")
    assert list(eff.columns) == list(EFFECT_COLUMNS)
    assert set(eff.policy) == {"P05", "P06"} and set(eff.outcome) == set(BETWEEN)
    assert (eff.level == "between").all() and eff.single_level_mean.notna().all()
    assert eff.rests_on.str.contains("assumption: coverage").all()
    assert eff.rests_on.str.contains("from the neighbourhood means").all()
    p05 = eff[eff.policy == "P05"].set_index("outcome")
    assert p05.loc["collective_agency", "not_in_route"] == "meeting_places->social_network"
    assert not bool(p05.loc["neighbourhood_trust", "reachable"])  # no between link into trust
    links = pd.read_csv(out / "neighbourhood_links.csv")
    assert list(links.columns) == list(LINK_COLUMNS)
    assert {"share", "beta_between", "beta_within"} <= set(links.parameter)
    js = json.loads((out / "neighbourhoods.json").read_text())
    assert js["cluster"]["deff_weights"] >= 1.0 and len(js["cluster"]["items"]) > 0
    assert {"divergences", "rhat_max", "ess_min", "worst_quantity", "seconds", "passed"} <= set(js["fit"])
    assert js["meta"]["policies"] == ["P05", "P06"]
    prov = json.loads((out / "provenance.json").read_text())
    assert "neighbourhood_effects.csv" in prov["outputs"]


def test_effects_follow_between_do_on_the_fit(run_result) -> None:
    """The written rows are between_do on the fit's draws with the run's doses: on MARVEL no
    between link enters community support, so its effect is the shift itself; collective agency
    gets shift * b * sqrt(v_agency / v_support) per draw (the chain's closed form)."""
    nb = run_result.neighbourhoods
    arr = nb.fit.between_arrays()
    nodes = list(arr["nodes"])
    s, a = nodes.index("community_support"), nodes.index("collective_agency")
    B, v = arr["B"], arr["share"]
    assert np.all(B[:, s, :] == 0)
    for pid in ("P05", "P06"):
        shifts, _, _ = policy_between_shifts(run_result.do_result, pid, nodes, B.shape[0])
        x = shifts["community_support"]
        agency = x * B[:, a, s] * np.sqrt(v[:, a] / v[:, s])
        rows = nb.effects[nb.effects.policy == pid].set_index("outcome")
        assert rows.loc["community_support", "mean"] == pytest.approx(float(x.mean()), rel=1e-10)
        assert rows.loc["collective_agency", "mean"] == pytest.approx(float(agency.mean()), rel=1e-8, abs=1e-12)
        lo, hi = np.quantile(agency, [0.05, 0.95])
        assert rows.loc["collective_agency", "lower"] == pytest.approx(lo, abs=1e-12)
        assert rows.loc["collective_agency", "upper"] == pytest.approx(hi, abs=1e-12)
        assert rows.loc["collective_agency", "p_relevant"] == pytest.approx(float(np.mean(np.abs(agency) >= 0.05)))


def test_no_microdata_and_small_clusters_not_named(run_result, survey_dir: Path) -> None:
    out = survey_dir / "out"
    data = pd.read_csv(next(survey_dir.glob("*.csv.gz")))
    labels = set(data["wijk_code"].astype(str))
    js = json.loads((out / "neighbourhoods.json").read_text())
    assert "small_clusters" not in js["cluster"] and js["cluster"]["n_small_clusters"] > 0
    for f in ("neighbourhoods.json", "neighbourhood_effects.csv", "neighbourhood_links.csv", "brief.md"):
        text = (out / f).read_text(encoding="utf-8")
        found = {t for t in re.findall(r"[A-Z]{2}\d{6}", text)} & labels
        assert not found, (f, sorted(found)[:3])
    # aggregates only: no respondent ids, no item scores
    text = (out / "neighbourhoods.json").read_text()
    assert "respondent_id" not in text and "class_means" not in text
    assert str(survey_dir) not in text and js["cluster"]["source"].endswith(".csv.gz")


def test_brief_section(run_result, survey_dir: Path) -> None:
    md = (survey_dir / "out" / "brief.md").read_text(encoding="utf-8")
    assert "Neighbourhoods: policies that act on the neighbourhood" in md
    sec = md.split("Neighbourhoods: policies that act on the neighbourhood", 1)[1]
    assert "Design effect of the survey weights (Kish)" in sec
    assert "Design effect of the clustering" in sec and "Most clustered items" in sec
    assert "P05" in sec and "P06" in sec and "Single-level estimate" in sec
    assert "Kish design effect" in md.split("Appendix: diagnostics details", 1)[1]
    diag = run_result.neighbourhoods.diagnostics
    if not diag["passed"]:  # 2 x 10 draws: expected to fail, and then said plainly with its numbers
        assert "NEIGHBOURHOOD MODEL: DIAGNOSTICS FAILED" in sec
        assert f"{diag['divergences']} divergent" in sec
        assert any("neighbourhoods: the two-level fit's diagnostics failed" in w for w in run_result.warnings)


def test_brief_section_from_a_hand_made_result() -> None:
    """Fast twin of the end-to-end brief check: the section's design effects, table and failure banner."""
    from types import SimpleNamespace

    import xarray as xr

    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.report.brief import brief_blocks, render_markdown
    from veerkracht_bayes.workflow.neighbourhoods import NeighbourhoodResult

    g = load_graph("marvel")
    eff = pd.DataFrame({"policy": ["P05"], "outcome": ["wellbeing"], "subgroup": ["all"], "scope": ["population"],
                        "direction": [1], "reachable": [True], "mean": [0.1], "lower": [-0.05], "upper": [0.25],
                        "ci_prob": [0.9], "p_meaningful": [0.6], "suppressed": [False], "reason": [None]})
    post = xr.Dataset({"beta": (("chain", "draw", "edge"), np.full((1, 2, len(g.edge_keys)), 0.1))},
                      coords={"edge": list(g.edge_keys)})
    rows = pd.DataFrame([{c: None for c in EFFECT_COLUMNS} | {
        "policy": "P05", "advice": "5", "outcome": o, "level": "between", "mean": m, "lower": m - 0.01,
        "upper": m + 0.01, "ci_prob": 0.9, "p_relevant": 0.3, "p_positive": 1.0, "reachable": True,
        "single_level_mean": m, "single_level_lower": m - 0.02, "single_level_upper": m + 0.02,
        "not_in_route": "meeting_places->social_network", "rests_on": "assumption: coverage of meeting_places"}
        for o, m in (("community_support", 0.04), ("collective_agency", 0.01))])
    summary = {"cluster_column": "wijk_code", "n_respondents": 1000, "n_clusters": 50, "mean_cluster_size": 20.0,
               "weighted_mean_cluster_size": 22.5, "deff_weights": 1.25, "n_excluded": 7,
               "exclusion_reasons": {"missing item": 7}, "n_small_clusters": 2, "small_cluster_respondents": 3,
               "min_cluster_size": 2,
               "items": [{"item": "coh1", "icc": 0.05, "deff_cluster": 2.08, "deff": 2.6},
                         {"item": "ce1", "icc": 0.01, "deff_cluster": 1.2, "deff": 1.5}]}
    diag = {"passed": False, "problems": ["12 divergent transitions of 1000"], "divergences": 12, "n_chains": 2,
            "n_draws": 500, "rhat_max": 1.004, "ess_min": 350.0, "worst_quantity": "share[2]", "seconds": 61.0}
    nb = NeighbourhoodResult(summary=summary, diagnostics=diag, effects=rows, meta={"between": BETWEEN})
    result = SimpleNamespace(graph=g, effects=eff, prior_only=False, policies=None, neighbourhoods=nb,
                             fit=SimpleNamespace(idata={"posterior": post}))
    md = render_markdown(brief_blocks(result))
    sec = md.split("## Neighbourhoods: policies that act on the neighbourhood", 1)[1].split("\n## ", 1)[0]
    assert "Design effect of the survey weights (Kish): 1.25" in sec and "80% of its size" in sec
    assert "2.08" in sec and "2.60" in sec and "coh1 (ICC 0.050, design effect 2.60)" in sec
    assert "NEIGHBOURHOOD MODEL: DIAGNOSTICS FAILED" in sec and "12 divergent transitions" in sec
    assert "2 neighbourhoods have fewer than 2 respondents" in sec
    assert "+0.040 [+0.030, +0.050]" in sec and "meeting_places->social_network" in sec
    nb.diagnostics = dict(diag, passed=True, problems=[], divergences=0)
    sec_ok = render_markdown(brief_blocks(result)).split("## Neighbourhoods", 1)[1].split("\n## ", 1)[0]
    assert "DIAGNOSTICS FAILED" not in sec_ok and "diagnostics passed" in sec_ok
