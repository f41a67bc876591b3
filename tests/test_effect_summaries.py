"""Tests for veerkracht_bayes.causal.summaries: interval maths, P(best), pairwise, evidence."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import DoResult, Outcome, do_query
from veerkracht_bayes.causal.summaries import (desirable_direction, p_best, pairwise_beats,
                                               summarise_effects)
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.draws import StructuralDraws

NODES = ("wellbeing", "stress")


def _result(effect, data_only=None, valid=None, suppressed=None, prevalence=None):
    I, S, P = effect.shape
    valid = np.ones((I, S), bool) if valid is None else valid
    return DoResult(
        names=tuple(f"P{i}" for i in range(I)), nodes=NODES, effect=effect,
        effect_data_only=effect * 0 if data_only is None else data_only,
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
    assert row["p_positive"] == pytest.approx(np.mean(x > 0))
    assert row["p_above_mrc"] == pytest.approx(np.mean(x > 0.1))
    assert row["p_improve"] == pytest.approx(np.mean(-x > 0.1))
    pop = df[(df.policy == "P3") & (df.outcome == "stress") & (df["scope"] == "population")].iloc[0]
    assert pop["mean"] == pytest.approx(0.25 * x.mean())
    for (o, s), grp in df.groupby(["outcome", "scope"]):
        assert grp["p_best"].sum() == pytest.approx(1.0)
    assert (df["ci_prob"] == 0.8).all()


def test_evidence_label_from_walk_split():
    eff = _effects(3)
    r_data = _result(eff, data_only=eff.copy())
    r_prior = _result(eff, data_only=np.zeros_like(eff))
    r_mixed = _result(eff, data_only=0.7 * eff)
    assert (summarise_effects(r_data)["evidence"] == "data").all()
    assert (summarise_effects(r_prior)["evidence"] == "prior").all()
    mixed = summarise_effects(r_mixed)
    np.testing.assert_allclose(mixed["prior_share"], 0.3)
    assert (mixed["evidence"] == "data").all()


def test_suppressed_rows_and_end_to_end_edge_classes(marvel):
    eff = _effects(4, I=3)
    eff[2] = np.nan
    r = _result(eff, suppressed=(None, None, "subgroup 'x' has n=3 respondents, below 50"))
    df = summarise_effects(r)
    sup = df[df.policy == "P2"]
    assert sup["suppressed"].all() and sup["mean"].isna().all() and (sup["reason"].str.contains("n=3")).all()
    assert df[df.policy != "P2"].groupby(["outcome", "scope"])["p_best"].sum().round(12).eq(1.0).all()
    # end to end: the engine's classes decide the label
    rng = np.random.default_rng(5)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in marvel.edges])
    beta = sign * np.abs(rng.normal(0.2, 0.05, (50, len(marvel.edges))))
    iv = [Intervention(name="p", parts=[Shift(node="social_network", delta=0.3)])]
    for cls, expect in (("data-informed", "data"), ("prior-dominated", "prior")):
        d = StructuralDraws.from_arrays(marvel, beta, np.zeros(len(marvel.nodes)),
                                        edge_class={k: cls for k in marvel.edge_keys})
        s = summarise_effects(do_query(d, iv, outcomes=["wellbeing"]))
        assert (s["evidence"] == expect).all()
