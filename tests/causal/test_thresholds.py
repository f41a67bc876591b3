"""Threshold outcomes (causal/thresholds.py) against brute-force simulation.

Truth: ``b ~ a`` with beta = 0.4 (a observed, x ~ N(0, 1)), three items ``y = 2 + lambda eta_b + e``
(``simulate_groups``), groups "u" (latent mean 0) and "v" (structural intercept 0.5 on b). Scale:
the sum of b's items, cut-off 4.5, share below. The baseline share from the true parameters must
match the simulated share within 4 Monte Carlo SE; the effect of do(a += 1) in percentage points
(its latent effect from ``do_query``) must match the change in the simulated share when every
respondent's a is raised by 1 (same errors), within 4 SE of that paired difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.thresholds import ThresholdSpec, scale_moments, threshold_shares
from veerkracht_bayes.datasets.heterogeneous import simulate_groups
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan

N = 100_000
SPEC = ThresholdSpec(name="low_b", outcome="b", items=["b1", "b2", "b3"], cutoff=4.5, direction="below")


@pytest.fixture(scope="module")
def sim():
    g = graph_from_lavaan("b ~ a")
    s = simulate_groups(g, {"a->b": 0.4}, {"u": N, "v": N}, intercepts={"v": {"b": 0.5}}, seed=11)
    return g, s


def _moments(s):
    lam = s.loadings
    return scale_moments(SPEC, s.item_names, lam, 1 - lam**2, np.zeros(3), np.full(3, 2.0), np.ones(3))


@pytest.mark.parametrize("group, mean", [("u", 0.0), ("v", 0.5)])
def test_baseline_and_effect_match_brute_force(sim, group, mean):
    g, s = sim
    sel = s.groups == group
    score = s.items[sel].sum(axis=1)
    p_sim = np.mean(score <= SPEC.cutoff)
    # latent effect of do(a += 1) on b from the do-query on the true structure
    draws = StructuralDraws.from_arrays(g, np.array([[0.4]]), np.zeros((1, 2)))
    eff = do_query(draws, [Intervention(name="a_up", parts=[Shift(node="a", delta=1.0)])], ["b"]).outcome_effect("b")[0]
    assert eff[0] == pytest.approx(0.4)
    res = threshold_shares(SPEC, *_moments(s), latent_mean=mean, latent_var=1.0, effect=eff)
    se = np.sqrt(p_sim * (1 - p_sim) / sel.sum())
    assert abs(res.baseline[0] - p_sim) < 4 * se, (res.baseline[0], p_sim)
    # brute force: raise a by 1 for everyone -> eta_b + 0.4 -> every item + lambda * 0.4 (same errors)
    score1 = (s.items[sel] + s.loadings * 0.4).sum(axis=1)
    diff = np.mean(score1 <= SPEC.cutoff) - p_sim
    se_d = np.sqrt(np.mean((score1 <= SPEC.cutoff) != (score <= SPEC.cutoff)) / sel.sum())
    assert abs(res.effect_pp[0] / 100 - diff) < 4 * se_d + 1e-12, (res.effect_pp[0], 100 * diff)
    assert res.effect_pp[0] < -1.0  # a real, sizeable decrease


def test_calibration_and_direction(sim):
    _, s = sim
    mom = _moments(s)
    plain = threshold_shares(SPEC, *mom, effect=np.array([0.4]))
    cal = threshold_shares(SPEC, *mom, effect=np.array([0.4]), observed_share=float(plain.baseline[0]))
    assert cal.calibrated and cal.baseline[0] == pytest.approx(plain.baseline[0], abs=1e-12)
    assert cal.effect_pp[0] == pytest.approx(plain.effect_pp[0], abs=1e-9)
    # a different observed share moves the baseline to it and changes the effect (probit shift)
    cal2 = threshold_shares(SPEC, *mom, effect=np.array([0.4]), observed_share=0.30)
    assert cal2.baseline[0] == pytest.approx(0.30) and cal2.effect_pp[0] != pytest.approx(plain.effect_pp[0])
    above = threshold_shares(SPEC.model_copy(update={"direction": "above"}), *mom, effect=np.array([0.4]))
    assert above.baseline[0] == pytest.approx(1 - plain.baseline[0])
    assert above.effect_pp[0] == pytest.approx(-plain.effect_pp[0])
    summ = plain.summary()
    assert summ["effect_pp"] == pytest.approx(plain.effect_pp[0]) and summ["n_used"] == 1


def test_threshold_errors():
    with pytest.raises(InterventionError, match="not in the model"):
        scale_moments(SPEC, ["b1", "b2", "bx"], np.ones(3), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        ThresholdSpec(name="x", outcome="b", items=["b1"], weights=[1.0, 2.0], cutoff=1.0)
    with pytest.raises(InterventionError, match="observed share"):
        threshold_shares(SPEC, np.zeros(1), np.ones(1), np.zeros(1), observed_share=1.5)
