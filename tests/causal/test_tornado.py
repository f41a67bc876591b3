"""Tornado: variance shares of each link and dose in a headline effect."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.interventions import Intervention, Normal, Set, Shift
from veerkracht_bayes.causal.tornado import TORNADO_COLUMNS, effect_tornado, tornado_table
from veerkracht_bayes.errors import InterventionError

from _structural_fixtures import random_draws, small_graph


@pytest.fixture(scope="module")
def result():
    g = small_graph()
    d = random_draws(g, 400, seed=3)
    ivs = [Intervention(name="shift_e", parts=[Shift(node="e", delta=Normal(mean=0.5, sd=0.1))]),
           Intervention(name="shift_b", parts=[Shift(node="b", delta=0.3)])]
    return do_query(d, ivs, ["d", "c"], seed=1)


def _effect(B, w, u):
    return float(w @ np.linalg.solve(np.eye(len(w)) - B, u))


def test_shares_sum_to_linearised_variance(result):
    t = effect_tornado(result, "d", "shift_e")
    assert list(t.columns) == list(TORNADO_COLUMNS)
    assert t["share"].sum() == pytest.approx(1.0, abs=1e-12)
    assert t["contribution"].sum() == pytest.approx(t["linearised_var"].iloc[0], rel=1e-12)
    assert (t["contribution"].diff().dropna() <= 1e-15).all()  # sorted, largest first


def test_matches_finite_difference_recomputation(result):
    """Brute force: re-solve the equilibrium with each input perturbed, at the linearisation point."""
    t = effect_tornado(result, "d", "shift_e", scope="within").set_index("input")
    d = result.draws
    ok = result.usable()[0]
    Bbar = d.B[ok].mean(axis=0)
    w = result._weights("d")
    nodes, u = result.injections[0]
    ubar = np.zeros(len(d.nodes))
    ubar[nodes] = np.asarray(u)[:, ok].mean(axis=1)
    h = 1e-6
    total = 0.0
    for key, s, g in zip(d.edge_keys, d.edge_sources, d.edge_targets):
        Bp, Bm = Bbar.copy(), Bbar.copy()
        Bp[g, s] += h
        Bm[g, s] -= h
        deriv = (_effect(Bp, w, ubar) - _effect(Bm, w, ubar)) / (2 * h)
        sd = d.B[ok][:, g, s].std(ddof=1)
        assert t.loc[key, "derivative"] == pytest.approx(deriv, rel=1e-5, abs=1e-9)
        assert t.loc[key, "contribution"] == pytest.approx((deriv * sd) ** 2, rel=1e-5, abs=1e-12)
        total += (deriv * sd) ** 2
    j = int(nodes[0])
    up, um = ubar.copy(), ubar.copy()
    up[j] += h
    um[j] -= h
    dd = (_effect(Bbar, w, up) - _effect(Bbar, w, um)) / (2 * h)
    sd_u = np.asarray(u)[0, ok].std(ddof=1)
    assert t.loc["dose:e", "contribution"] == pytest.approx((dd * sd_u) ** 2, rel=1e-5)
    total += (dd * sd_u) ** 2
    assert t["linearised_var"].iloc[0] == pytest.approx(total, rel=1e-5)
    # the first-order variance is in the range of the Monte Carlo variance for small coefficients
    assert 0.2 < t["linearised_var"].iloc[0] / t["mc_var"].iloc[0] < 5.0


def test_chain_known_answer():
    """lever -> a -> b: dE/db1 = b2 c, dE/db2 = b1 c, dE/dc = b1 b2 (at the means)."""
    from veerkracht_bayes.causal.draws import StructuralDraws

    nodes, keys = ("L", "a", "b"), ("L->a", "a->b")
    rng = np.random.default_rng(0)
    S = 2000
    b1, b2 = rng.normal(0.5, 0.1, S), rng.normal(0.4, 0.05, S)
    B = np.zeros((S, 3, 3))
    B[:, 1, 0], B[:, 2, 1] = b1, b2
    d = StructuralDraws(nodes, keys, B, np.zeros((S, 3)), np.ones((S, 3)))
    res = do_query(d, [Intervention(name="p", parts=[Shift(node="L", delta=Normal(mean=0.3, sd=0.05))])],
                   ["b"], seed=2)
    t = effect_tornado(res, "b", "p").set_index("input")
    c = res.injections[0][1][0]
    assert t.loc["L->a", "derivative"] == pytest.approx(b2.mean() * c.mean(), rel=1e-10)
    assert t.loc["a->b", "derivative"] == pytest.approx(b1.mean() * c.mean(), rel=1e-10)
    assert t.loc["dose:L", "derivative"] == pytest.approx(b1.mean() * b2.mean(), rel=1e-10)
    assert t.loc["L->a", "sd"] == pytest.approx(b1.std(ddof=1))


def test_population_scope_scales_by_prevalence():
    from veerkracht_bayes.causal.do import SubgroupInfo

    g = small_graph()
    d = random_draws(g, 100, seed=4)
    iv = Intervention(name="x", subgroup="grp", parts=[Shift(node="e", delta=0.5)])
    res = do_query(d, [iv], ["d"], subgroups={"grp": SubgroupInfo(prevalence=0.25)})
    tw = effect_tornado(res, "d", "x", scope="within")
    tp = effect_tornado(res, "d", "x", scope="population")
    assert tp["linearised_var"].iloc[0] == pytest.approx(0.25 ** 2 * tw["linearised_var"].iloc[0])


def test_table_and_refusal(result):
    tab = tornado_table(result, top=3)
    assert set(tab["policy"]) == {"shift_e", "shift_b"} and set(tab["outcome"]) == {"d", "c"}
    assert (tab.groupby(["policy", "outcome"]).size() == 3).all()
    g = small_graph()
    d = random_draws(g, 20, seed=1)
    res = do_query(d, [Intervention(name="s", parts=[Set(node="b", value=0.2)])], ["d"])
    with pytest.raises(InterventionError, match="shift interventions only"):
        effect_tornado(res, "d", "s")
    assert tornado_table(res).empty
