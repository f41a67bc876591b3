"""Tests for veerkracht_bayes.causal.loops: gains, the walk split, amplification."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import SpecError
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.loops import (loop_amplification, loop_gain_summary, loop_gains,
                                            no_cycle_effect)
from veerkracht_bayes.causal.draws import StructuralDraws

from _structural_fixtures import random_draws, small_graph


def test_gains_are_products_and_p_reinforcing(marvel):
    d = random_draws(marvel, 50, seed=1)
    gains = loop_gains(d, marvel)
    ix = marvel.node_index
    B = d.B
    expect = B[:, ix["wellbeing"], ix["stress"]] * B[:, ix["livelihood_security"], ix["wellbeing"]] \
        * B[:, ix["stress"], ix["livelihood_security"]]
    np.testing.assert_allclose(gains["L1"], expect)
    tab = loop_gain_summary(d, marvel)
    assert list(tab["loop"]) == ["L1", "L2", "L3", "L4", "L5", "L6"]
    # sign-constrained draws: every named loop is reinforcing in every draw
    assert (tab["p_reinforcing"] == 1.0).all()
    # flip one draw's sign on a loop edge: P(reinforcing) drops by exactly 1/50
    beta = d.beta().copy()
    beta[0, list(marvel.edge_keys).index("stress->wellbeing")] *= -1
    d2 = StructuralDraws.from_arrays(marvel, beta, d.alpha)
    tab2 = loop_gain_summary(d2, marvel).set_index("loop")
    assert tab2.loc["L1", "p_reinforcing"] == pytest.approx(49 / 50)
    with pytest.raises(SpecError, match="unknown loop 'L9'"):
        loop_gains(d, marvel, loops=["L9"])


def test_lone_loop_carries_share_equal_to_gain():
    """A single 3-loop with gain g entered at v0 and read at v1: total b01/(1-g), no-cycle b01."""
    P = 4
    B = np.zeros((1, P, P))
    B[0, 1, 0], B[0, 2, 1], B[0, 0, 2] = 0.5, 0.6, 0.7
    B[0, 3, 1] = 0.3  # a sink outside the loop
    g = 0.5 * 0.6 * 0.7
    u = np.zeros((1, P)); u[0, 0] = 1.0
    nc = no_cycle_effect(B, u, [0, 1, 2])
    total = np.linalg.solve(np.eye(P) - B[0], u[0])
    assert nc[0, 1] == pytest.approx(0.5)
    assert (total[1] - nc[0, 1]) / total[1] == pytest.approx(g)
    assert nc[0, 3] == pytest.approx(0.5 * 0.3)


def _enumerate_no_cycle(B, src, cycle, max_len):
    """Brute force: sum of walk weights from src that never run len(cycle) consecutive loop edges."""
    P = B.shape[0]
    n = len(cycle)
    nxt = {cycle[i]: cycle[(i + 1) % n] for i in range(n)}
    out = np.zeros(P)
    stack = [(src, 1.0, 0, 0)]
    while stack:
        v, w, run, length = stack.pop()
        out[v] += w
        if length == max_len:
            continue
        for y in range(P):
            if B[y, v] != 0.0:
                r = run + 1 if nxt.get(v) == y else 0
                if r >= n:
                    continue
                stack.append((y, w * B[y, v], r, length + 1))
    return out


def test_no_cycle_effect_matches_walk_enumeration():
    g = small_graph()
    rng = np.random.default_rng(3)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    beta = sign * rng.uniform(0.15, 0.2, (1, len(g.edges)))
    d = StructuralDraws.from_arrays(g, beta, np.zeros((1, 5)))
    B = d.B[0]
    ix = g.node_index
    u = np.zeros((1, 5)); u[0, ix["e"]] = 1.0
    # walks up to length 16; at most 2 out-edges per node and |b| <= 0.2, so the omitted tail is
    # below sum_{L>16} (2*0.2)^L < 1e-6
    for cyc in (["a", "b", "c"], ["a", "b"]):
        idx = [ix[v] for v in cyc]
        got = no_cycle_effect(d.B, u, idx)[0]
        ref = _enumerate_no_cycle(B, ix["e"], idx, 16)
        np.testing.assert_allclose(got, ref, atol=1e-6)
        total = np.linalg.solve(np.eye(5) - B, u[0])
        assert np.abs(total - got).max() > 1e-4  # the loop does carry something


def test_loop_amplification_table():
    g = small_graph()
    d = random_draws(g, 30, seed=4, scale=0.3)
    ivs = [Intervention(name="p", parts=[Shift(node="e", delta=0.5)])]
    tab = loop_amplification(d, g, ivs, outcomes=["c", "d"])
    assert set(tab["loop"]) == {"L1", "L2"} and len(tab) == 4
    row = tab[(tab.outcome == "c") & (tab.loop == "L1")].iloc[0]
    # L1 (a->b->c->a) is reinforcing with positive links: it adds to a positive effect on c
    assert row.effect_mean > 0 and row.loop_carried_mean > 0 and row.p_amplifies == 1.0
    # L2 (a<->b, one negative link) is balancing: it damps the effect (never amplifies)
    row2 = tab[(tab.outcome == "c") & (tab.loop == "L2")].iloc[0]
    assert row2.loop_carried_mean < 0 and row2.p_amplifies == 0.0
