"""Tests for veerkracht_bayes.causal.dynamics: convergence to the equilibrium, rates, t = 0."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.dynamics import RATES_PER_YEAR, edge_rates, simulate_trajectories
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.causal.interventions import Intervention, MechanismChange, Normal, Set, Shift

from _structural_fixtures import random_draws, small_graph


def test_trajectories_converge_to_equilibrium_small():
    g = small_graph()
    d = random_draws(g, 40, seed=1, scale=0.4)
    ivs = [Intervention(name="shift", parts=[Shift(node="e", delta=Normal(mean=0.3, sd=0.1))]),
           Intervention(name="set", parts=[Set(node="b", value=1.0)]),
           Intervention(name="mech", parts=[MechanismChange(source="b", target="c", scale=0.5)])]
    outs = ["a", "c", "d"]
    eq = do_query(d, ivs, outcomes=outs, seed=9)
    # generational rate 0.05/yr: the slowest mode decays like 0.95^t; 600 steps leave < 1e-12
    tr = simulate_trajectories(d, ivs, outcomes=outs, horizon=600, seed=9)
    stable = eq.stable & eq.solvable
    assert stable.all()
    for k, o in enumerate(outs):
        np.testing.assert_allclose(tr.outcome(o)[:, :, -1], eq.outcome_effect(o), atol=1e-8)
    assert tr.times[-1] == 600.0


def test_trajectories_converge_on_marvel(marvel):
    d = random_draws(marvel, 20, seed=2)
    ivs = [Intervention(name="p", parts=[Shift(node="social_network", delta=0.2),
                                         Set(node="financial_means", value=0.5)])]
    eq = do_query(d, ivs, outcomes=["wellbeing", "stress"])
    tr = simulate_trajectories(d, ivs, outcomes=["wellbeing", "stress"], horizon=800)
    for o in ("wellbeing", "stress"):
        np.testing.assert_allclose(tr.outcome(o)[:, :, -1], eq.outcome_effect(o), atol=1e-8)


def test_t0_is_direct_impact_only_and_delays_slow_things_down():
    g = small_graph()
    d = random_draws(g, 5, seed=3)
    iv = [Intervention(name="s", parts=[Shift(node="a", delta=1.0)])]
    tr = simulate_trajectories(d, iv, outcomes=["a", "d"], horizon=3)
    np.testing.assert_allclose(tr.outcome("a")[0, :, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(tr.outcome("d")[0, :, 0], 0.0, atol=1e-12)
    # a->d is a 'short' edge (rate 0.7/yr): one step later d has moved by 0.7 * B[d, a] * 1.0
    B_da = d.B[:, g.node_index["d"], g.node_index["a"]]
    np.testing.assert_allclose(tr.outcome("d")[0, :, 1], 0.7 * B_da, atol=1e-12)


def test_edge_rates_and_step_length():
    r = edge_rates(["immediate", "short", "medium", "long", "generational"])
    np.testing.assert_allclose(r, [1.0, 0.7, 0.35, 0.15, 0.05])
    # two half-year steps close the same gap as one year
    r_half = edge_rates(["medium"], dt=0.5)[0]
    assert (1 - r_half) ** 2 == pytest.approx(1 - RATES_PER_YEAR["medium"])
    with pytest.raises(InterventionError, match="did you mean 'short'"):
        edge_rates(["shrt"])


def _simulate_edges(B, c, c_do, Bdo, src, tgt, rate, T):
    """Numpy reference: the per-edge memory recursion of the module docstring, literally."""
    base = np.linalg.solve(np.eye(B.shape[0]) - B, c)
    mem = base[src].copy()
    out = []
    for _ in range(T + 1):
        eta = c_do.copy()
        np.add.at(eta, tgt, Bdo[tgt, src] * mem)
        out.append(eta - base)
        mem = mem + rate * (eta[src] - mem)
    return np.array(out)


@pytest.mark.parametrize("graph_name", ["small", "marvel"])
def test_trajectories_match_per_edge_simulation(graph_name, marvel):
    """The batched adjoint recursion equals the literal per-edge simulation, step by step, for
    shifts, sets, mechanism changes, subgroup baselines and suppressed cells.

    Tolerance 1e-10: the two differ only by floating-point reassociation over 12 steps of a
    contracting recursion (entries O(1)), i.e. ~1e-15.
    """
    from veerkracht_bayes.causal.do import SubgroupInfo

    g = small_graph() if graph_name == "small" else marvel
    S, T = 6, 12
    d = random_draws(g, S, seed=4)
    ix = g.node_index
    P = len(g.nodes)
    n0, n1, n2 = (("a", "b", "c") if graph_name == "small"
                  else ("stress", "social_network", "wellbeing"))
    e0 = g.edges[2]
    mean = np.random.default_rng(1).normal(0, 0.5, P)
    sg = {"grp": SubgroupInfo(0.2, n=100, mean=mean), "tiny": SubgroupInfo(0.01, n=3)}
    mech = MechanismChange(source=e0.source, target=e0.target, scale=0.3)
    ivs = [Intervention(name="shift", parts=[Shift(node=n0, delta=Normal(mean=0.3, sd=0.1))]),
           Intervention(name="set_grp", parts=[Set(node=n1, value=0.8)], subgroup="grp"),
           Intervention(name="mech", parts=[mech, Shift(node=n2, delta=0.2)]),
           Intervention(name="combo_grp", parts=[mech, Set(node=n1, value=-0.5)], subgroup="grp"),
           Intervention(name="tiny", parts=[Shift(node=n0, delta=0.3)], subgroup="tiny")]
    outs = [n0, n2]
    tr = simulate_trajectories(d, ivs, outcomes=outs, horizon=T, subgroups=sg, seed=2)
    eq = do_query(d, ivs, outcomes=outs, subgroups=sg, seed=2)  # same doses
    rate = edge_rates(d.edge_delays)
    src, tgt = d.edge_sources, d.edge_targets
    sel = [ix[o] for o in outs]
    for i, iv in enumerate(ivs[:4]):
        for s in range(S):
            B = d.B[s]
            c = d.alpha[s] if iv.subgroup is None else (np.eye(P) - B) @ mean
            Bdo, c_do = B.copy(), c + eq.doses[i, s]
            for p in iv.parts:
                if isinstance(p, MechanismChange):
                    Bdo[ix[p.target], ix[p.source]] *= p.scale
            for p in iv.parts:
                if isinstance(p, Set):
                    Bdo[ix[p.node], :] = 0.0
                    c_do[ix[p.node]] = p.value
            ref = _simulate_edges(B, c, c_do, Bdo, src, tgt, rate, T)[:, sel]
            np.testing.assert_allclose(tr.effect[i, s], ref, atol=1e-10, rtol=0)
    assert np.isnan(tr.effect[4]).all()
