"""Tests for veerkracht_bayes.causal.sensitivity: widened doses, default lever priors and the
break-even coverage, on cases with closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import (Beta, Fixed, Intervention, LogNormal, Normal,
                                                   Shift, Uniform)
from veerkracht_bayes.causal.sensitivity import (assumption_sensitivity, lever_links, widen_dose,
                                                 with_default_lever_priors)
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec


def _graph():
    nodes = [("L1", "policy_lever"), ("L2", "policy_lever"), ("a", "construct"), ("b", "construct")]
    edges = [("L1", "a"), ("L2", "b"), ("b", "a")]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "sens",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": r}
                  for n, r in nodes],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"} for s, t in edges]}))


def test_widen_dose_keeps_mean_and_doubles_sd():
    n = widen_dose(Normal(mean=0.3, sd=0.1))
    assert (n.mean, n.sd) == (0.3, 0.2)
    u = widen_dose(Uniform(lo=0.2, hi=0.4))
    assert (u.lo, u.hi) == pytest.approx((0.1, 0.5))
    ln0 = LogNormal(median=0.2, sigma=0.4)
    ln = widen_dose(ln0)

    def ln_sd(d):
        return d.mean_value() * np.sqrt(np.expm1(d.sigma**2))
    assert ln.mean_value() == pytest.approx(ln0.mean_value())
    assert ln_sd(ln) == pytest.approx(2 * ln_sd(ln0))
    b0 = Beta(a=12.0, b=28.0)  # mean 0.3, concentration 40
    b = widen_dose(b0)

    def beta_sd(d):
        k = d.a + d.b
        m = d.a / k
        return np.sqrt(m * (1 - m) / (k + 1))
    assert b.mean_value() == pytest.approx(0.3)
    assert beta_sd(b) == pytest.approx(2 * beta_sd(b0))
    # a flat-ish beta cannot double its sd: concentration floored at min(k, 1), same mean
    bf = widen_dose(Beta(a=1.0, b=2.0))
    assert bf.a + bf.b == pytest.approx(1.0) and bf.mean_value() == pytest.approx(1 / 3)
    assert widen_dose(Fixed(value=0.4)) == Fixed(value=0.4)


def test_leader_runner_break_even_and_default_lever_priors():
    """P1 (coverage 0.6 on L1, L1->a = 0.5) gives 0.30 on a; P2 (coverage 0.3 on L2, L2->b = 0.8,
    b->a = 0.5) gives 0.12. P1 leads; the break-even coverage of P2 is 0.3 x 0.30 / 0.12 = 0.75.
    With default lever priors E1 = 0.6 |z1| 0.2 and E2 = 0.15 |z2| 0.2, so
    P(E1 > E2) = P(|z2| / |z1| < 4) = (2 / pi) arctan 4 = 0.8440 (a |Cauchy| ratio)."""
    g = _graph()
    S = 4000
    beta = np.tile([0.5, 0.8, 0.5], (S, 1))  # graph edge order: L1->a, L2->b, b->a
    d = StructuralDraws.from_arrays(g, beta, np.zeros(4))
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=Fixed(value=0.6))]),
           Intervention(name="P2", parts=[Shift(node="L2", delta=Fixed(value=0.3))])]
    assert lever_links(g) == ["L1->a", "L2->b"]
    df = assumption_sensitivity(d, ivs, ["a"], graph=g, scopes=("within",), seed=3)
    row = df.iloc[0]
    assert (row["leader"], row["runner_up"]) == ("P1", "P2")
    assert row["leader_mean"] == pytest.approx(0.30) and row["runner_up_mean"] == pytest.approx(0.12)
    assert row["p_order_holds"] == 1.0 and row["p_order_holds_doses_x2"] == 1.0
    assert row["order_holds_doses_x2"]
    assert row["break_even_factor"] == pytest.approx(2.5)
    assert row["runner_up_coverage"] == pytest.approx(0.3)
    assert row["break_even_coverage"] == pytest.approx(0.75)
    p_ref = 2 / np.pi * np.arctan(4.0)
    se = np.sqrt(p_ref * (1 - p_ref) / S)
    assert abs(row["p_order_holds_default_lever_priors"] - p_ref) < 4 * se
    assert row["order_holds_default_lever_priors"] and row["leader_default_lever_priors"] == "P1"
    assert row["n_lever_links"] == 2
    # the redraw is sign x HalfNormal(0.2): mean 0.2 sqrt(2/pi), and leaves other links alone
    d2 = with_default_lever_priors(d, g, seed=1)
    lv = d2.B[:, d.node_index["a"], d.node_index["L1"]]
    assert (lv > 0).all() and abs(lv.mean() - 0.2 * np.sqrt(2 / np.pi)) < 4 * 0.2 * 0.6 / np.sqrt(S)
    assert (d2.B[:, d.node_index["a"], d.node_index["b"]] == 0.5).all()


def test_break_even_not_attainable():
    """P2 at coverage 0.5 with L2->b = 0.4: E2 = 0.10, E1 = 0.30; c* = 0.5 x 3 = 1.5 > 1."""
    g = _graph()
    d = StructuralDraws.from_arrays(g, np.tile([0.5, 0.4, 0.5], (20, 1)), np.zeros(4))
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=Fixed(value=0.6))]),
           Intervention(name="P2", parts=[Shift(node="L2", delta=Normal(mean=0.5, sd=0.05))])]
    row = assumption_sensitivity(d, ivs, ["a"], graph=g, scopes=("within",)).iloc[0]
    assert np.isnan(row["break_even_coverage"]) and "not attainable" in row["break_even_note"]
