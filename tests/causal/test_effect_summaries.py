"""Tests for veerkracht_bayes.causal.summaries: interval maths, decision quantities, P(best), rank
intervals, pairwise, usable draws only, reachability and the evidence columns."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import DoResult, Outcome, do_query
from veerkracht_bayes.causal.summaries import (desirable_direction, p_best, pairwise_beats,
                                               summarise_effects)
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.draws import StructuralDraws

NODES = ("wellbeing", "stress")


def _result(effect, valid=None, suppressed=None, prevalence=None):
    I, S, P = effect.shape
    valid = np.ones((I, S), bool) if valid is None else valid
    return DoResult(
        names=tuple(f"P{i}" for i in range(I)), nodes=NODES, effect=effect,
        solvable=valid, stable=np.ones((I, S), bool), abs_det=np.ones((I, S)), cond=np.ones((I, S)),
        rho=np.zeros((I, S)), baseline_stable=np.ones(S, bool), subgroups=(None,) * I,
        prevalence=np.ones(I) if prevalence is None else prevalence,
        suppressed=(None,) * I if suppressed is None else suppressed,
        outcomes=(Outcome.node("wellbeing"), Outcome.node("stress")), doses=np.zeros((I, S, P)))


def _effects(seed=0, I=4, S=3000):
    rng = np.random.default_rng(seed)
    means = np.linspace(-0.1, 0.2, I)[:, None, None]
    return means + rng.normal(0, 0.1, (I, S, 2))


def test_p_best_matches_argmax_and_direction():
    eff = _effects()
    r = _result(eff)
    pb = p_best(r, "wellbeing")
    ref = np.bincount(np.argmax(eff[:, :, 0], axis=0), minlength=4) / eff.shape[1]
    np.testing.assert_allclose(pb.values, ref)
    assert pb.sum() == pytest.approx(1.0)
    # stress: lower is better, so the best is the argmin
    pbs = p_best(r, "stress")
    ref_s = np.bincount(np.argmin(eff[:, :, 1], axis=0), minlength=4) / eff.shape[1]
    np.testing.assert_allclose(pbs.values, ref_s)
    assert desirable_direction("stress") == -1 and desirable_direction("wellbeing") == 1
    assert desirable_direction(Outcome(name="idx", weights={"stress": 1.0}, direction=-1)) == -1


def test_pairwise_consistency_and_invalid_draws():
    eff = _effects(1)
    valid = np.ones(eff.shape[:2], bool)
    valid[0, :100] = False  # policy P0 unstable in the first 100 draws
    r = _result(eff, valid=valid)
    M = pairwise_beats(r, "wellbeing").values
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose((M + M.T)[off], 1.0)  # continuous effects: no ties
    assert np.isnan(np.diag(M)).all()
    both = valid[0] & valid[1]
    assert M[0, 1] == pytest.approx(np.mean(eff[0, both, 0] > eff[1, both, 0]))
    assert p_best(r, "wellbeing").attrs["n_draws"] == eff.shape[1] - 100


def test_summary_statistics_and_ci_prob():
    eff = _effects(2)
    r = _result(eff, prevalence=np.array([1.0, 0.5, 1.0, 0.25]))
    df = summarise_effects(r, ci_prob=0.8, min_relevant_change=0.1)
    assert len(df) == 4 * 2 * 2
    row = df[(df.policy == "P3") & (df.outcome == "stress") & (df["scope"] == "within")].iloc[0]
    x = eff[3, :, 1]
    assert row["mean"] == pytest.approx(x.mean())
    assert row["lower"] == pytest.approx(np.quantile(x, 0.1))
    assert row["upper"] == pytest.approx(np.quantile(x, 0.9))
    # stress: lower is better, so both decision quantities use -x
    assert row["p_positive"] == pytest.approx(np.mean(-x > 0))
    assert row["p_meaningful"] == pytest.approx(np.mean(-x > 0.1))
    assert row["mrc"] == 0.1 and row["reachable"]
    for col in ("p_improve", "p_above_mrc", "prior_share"):
        assert col not in df.columns
    pop = df[(df.policy == "P3") & (df.outcome == "stress") & (df["scope"] == "population")].iloc[0]
    assert pop["mean"] == pytest.approx(0.25 * x.mean())
    for (o, s), grp in df.groupby(["outcome", "scope"]):
        assert grp["p_best"].sum() == pytest.approx(1.0)
    assert (df["ci_prob"] == 0.8).all()


def test_rank_interval_known_answer():
    """Three policies with fixed, well-separated effects and one that swaps places with the
    runner-up in 30% of the draws: ranks and their 90% interval follow exactly."""
    S = 1000
    eff = np.zeros((3, S, 2))
    eff[0, :, 0] = 0.5
    eff[1, :, 0] = 0.3
    eff[2, :, 0] = np.where(np.arange(S) < 300, 0.6, 0.1)
    df = summarise_effects(_result(eff), ["wellbeing"], scopes=("within",)).set_index("policy")
    assert df.loc["P0", "rank_mean"] == pytest.approx(1 * 0.7 + 2 * 0.3)
    assert (df.loc["P0", "rank_lower"], df.loc["P0", "rank_upper"]) == (1.0, 2.0)
    assert df.loc["P1", "rank_mean"] == pytest.approx(2 * 0.7 + 3 * 0.3)
    assert df.loc["P2", "rank_mean"] == pytest.approx(1 * 0.3 + 3 * 0.7)
    assert (df.loc["P2", "rank_lower"], df.loc["P2", "rank_upper"]) == (1.0, 3.0)
    assert df.loc["P2", "p_best"] == pytest.approx(0.3)
    assert df.loc["P0", "p_meaningful"] == 1.0 and df.loc["P1", "p_meaningful"] == 1.0


def test_toy_two_cycle_mean_over_stable_draws_only():
    """The audit's toy case: a 2-cycle, 5 stable draws (effect +0.667) and 5 unstable draws
    (effect -1.2). The summary uses the stable draws only: mean 0.667, p_stable 0.5."""
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

    g = CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "two",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "construct"} for n in ("a", "b")],
        "edges": [{"source": "a", "target": "b", "sign": "+", "evidence": "t"},
                  {"source": "b", "target": "a", "sign": "+", "evidence": "t"}]}))
    hi = np.sqrt(1 + 1 / 1.2)  # gain 1.8333: effect 1 / (1 - gain) = -1.2, spectral radius 1.35
    beta = np.array([[0.5, -1.0]] * 5 + [[hi, hi]] * 5)  # a->b, b->a; stable gain -0.5
    d = StructuralDraws.from_arrays(g, beta, np.zeros(2))
    r = do_query(d, [Intervention(name="x", parts=[Shift(node="a", delta=1.0)])], outcomes=["a"])
    np.testing.assert_allclose(r.effect[0, :, 0], [2 / 3] * 5 + [-1.2] * 5, atol=1e-12)
    row = summarise_effects(r, scopes=("within",)).iloc[0]
    assert row["mean"] == pytest.approx(2 / 3, abs=1e-12)
    assert row["lower"] == pytest.approx(2 / 3) and row["upper"] == pytest.approx(2 / 3)
    assert row["p_stable"] == 0.5 and row["n_used"] == 5 and row["n_draws"] == 10


def test_singular_baseline_is_not_usable():
    """A draw whose baseline I - B is singular (gain exactly 1) but whose intervened system is
    fine (a set cuts the cycle) is flagged and left out of the summaries."""
    from veerkracht_bayes.causal.interventions import Set
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

    g = CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "two",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "construct"} for n in ("a", "b")],
        "edges": [{"source": "a", "target": "b", "sign": "+", "evidence": "t"},
                  {"source": "b", "target": "a", "sign": "+", "evidence": "t"}]}))
    beta = np.array([[0.5, 0.5], [1.0, 1.0], [0.2, 0.3]])
    d = StructuralDraws.from_arrays(g, beta, np.full(2, 0.1))
    r = do_query(d, [Intervention(name="cut", parts=[Set(node="a", value=1.0)])], outcomes=["b"])
    assert r.solvable[0].all() and r.stable[0].all()
    assert r.baseline_solvable.tolist() == [True, False, True]
    assert r.usable()[0].tolist() == [True, False, True]
    row = summarise_effects(r, scopes=("within",)).iloc[0]
    assert row["n_used"] == 2 and row["p_stable"] == pytest.approx(2 / 3)
    assert np.isfinite(row["mean"])


def test_no_path_rows(marvel):
    """An outcome that the policy cannot reach is 'no path': NaN mean and interval (never
    +0.00), p_meaningful = p_positive = 0, reachable False."""
    from _structural_fixtures import random_draws, small_graph

    g = small_graph()  # d is a sink: nothing flows from d to a; e is exogenous
    d = random_draws(g, 200, seed=1)
    ivs = [Intervention(name="on_d", parts=[Shift(node="d", delta=0.3)]),
           Intervention(name="on_e", parts=[Shift(node="e", delta=0.3)])]
    df = summarise_effects(do_query(d, ivs, outcomes=["a", "d"]), scopes=("within",))
    row = df[(df.policy == "on_d") & (df.outcome == "a")].iloc[0]
    assert not row["reachable"] and row["evidence"] == "no path"
    assert np.isnan([row["mean"], row["lower"], row["upper"], row["median"]]).all()
    assert row["p_meaningful"] == 0.0 and row["p_positive"] == 0.0
    for pol, out in (("on_d", "d"), ("on_e", "a"), ("on_e", "d")):
        r = df[(df.policy == pol) & (df.outcome == out)].iloc[0]
        assert r["reachable"] and np.isfinite(r["mean"]) and r["evidence"] != "no path"


def test_suppressed_rows_and_end_to_end_edge_classes(marvel):
    eff = _effects(4, I=3)
    eff[2] = np.nan
    r = _result(eff, suppressed=(None, None, "subgroup 'x' has n=3 respondents, below 50"))
    df = summarise_effects(r)
    sup = df[df.policy == "P2"]
    assert sup["suppressed"].all() and sup["mean"].isna().all() and (sup["reason"].str.contains("n=3")).all()
    assert df[df.policy != "P2"].groupby(["outcome", "scope"])["p_best"].sum().round(12).eq(1.0).all()
    # end to end: the engine's classes decide the label (default mapping: data-informed links
    # are data, others assumption); the shift's own dose is always an assumption
    rng = np.random.default_rng(5)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in marvel.edges])
    beta = sign * np.abs(rng.normal(0.2, 0.05, (50, len(marvel.edges))))
    iv = [Intervention(name="p", parts=[Shift(node="social_network", delta=0.3)])]
    for cls, expect in (("data-informed", "data"), ("prior-dominated", "assumption")):
        d = StructuralDraws.from_arrays(marvel, beta, np.zeros(len(marvel.nodes)),
                                        edge_class={k: cls for k in marvel.edge_keys})
        s = summarise_effects(do_query(d, iv, outcomes=["wellbeing"]))
        assert (s["evidence"] == expect).all()
        tot = s[["share_assumption", "share_literature", "share_data"]].sum(axis=1)
        np.testing.assert_allclose(tot, 1.0, atol=1e-12)
