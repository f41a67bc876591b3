"""Value of information: invariants and a closed-form two-policy decision."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.voi import (VOI_COLUMNS, evpi, evsi, informed_links,
                                         sampling_covariance, scale_reliability,
                                         value_of_information)
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec

MU, SD, K = 0.30, 0.10, 0.28  # a->y ~ N(MU, SD); the alternative policy's effect is the constant K


def two_policy_graph() -> CausalGraph:
    """L1 -> a -> y (a unmeasured), L2 -> y (known effect), z -> y (z on no lever path)."""

    def node(i, role="construct"):
        return {"id": i, "label_en": i, "label_nl": i, "resource": "individual", "role": role}

    edges = [("L1", "a"), ("a", "y"), ("L2", "y"), ("z", "y")]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "voi",
        "nodes": [node("L1", "policy_lever"), node("L2", "policy_lever"), node("a"), node("y"),
                  node("z")],
        "edges": [{"source": s, "target": t, "sign": "+", "delay": "short", "evidence": "test"}
                  for s, t in edges]}))


@pytest.fixture(scope="module")
def setup():
    g = two_policy_graph()
    rng = np.random.default_rng(11)
    S = 6000
    beta = np.column_stack([np.ones(S), rng.normal(MU, SD, S), np.full(S, K),
                            rng.normal(0.2, 0.1, S)])
    psi = np.tile([1.0, 1.0, 0.8, 0.6, 1.0], (S, 1))
    d = StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)), psi)
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=1.0, unit="exposure")]),
           Intervention(name="P2", parts=[Shift(node="L2", delta=1.0, unit="exposure")])]
    return g, d, do_query(d, ivs, ["y"])


def test_closed_form_and_invariants(setup):
    g, d, res = setup
    tab = value_of_information(res, g, "y", measured={"y"}, n=[20, 200, 2000, 20000], items=3,
                               reliability=0.8, seed=3)
    assert list(tab.columns) == list(VOI_COLUMNS)
    assert set(tab["construct"]) == {"a", "z"}
    # the decision's EVPI in closed form: E[max(0, D)] - max(0, E D), D = beta_ay - K ~ N(MU - K, SD)
    delta = (MU - K) / SD
    exact_evpi = SD * stats.norm.pdf(delta) + (MU - K) * stats.norm.cdf(delta) - max(0.0, MU - K)
    assert tab["evpi"].iloc[0] == pytest.approx(exact_evpi, rel=0.05)
    a = tab[tab["construct"] == "a"].sort_values("n")
    z = tab[tab["construct"] == "z"].sort_values("n")
    assert a["informed_links"].iloc[0] == "a->y"  # L1->a stays cut: a lever is never measured
    # EVSI in closed form: the posterior mean of beta_ay after the wave is N(MU, s_pre)
    V = sampling_covariance(g, d, {"y", "a"}, ["a->y"])[0, 0]
    rho = scale_reliability(3, 0.8)
    for _, row in a.iterrows():
        s_pre = SD ** 2 / np.sqrt(SD ** 2 + V / (row["n"] * rho))
        dd = (MU - K) / s_pre
        exact = s_pre * stats.norm.pdf(dd) + (MU - K) * stats.norm.cdf(dd) - max(0.0, MU - K)
        assert row["evsi"] == pytest.approx(exact, rel=0.1, abs=4 * row["evsi_se"])
    # 0 <= EVSI <= EVPI, growing with n
    assert (tab["evsi"] >= 0).all()
    assert (tab["evsi"] <= tab["evpi"] + 3 * tab["evsi_se"]).all()
    assert np.all(np.diff(a["evsi"].to_numpy()) > 0)
    # z lies on no path from a lever to y: EVSI ~ 0 (regression noise only); a beats z at every n
    assert (z["evsi"] < 0.02 * z["evpi"]).all()
    assert (a["evsi"].to_numpy() > z["evsi"].to_numpy()).all()
    assert tab["construct"].iloc[0] == "a"  # ranked first


def test_evsi_limits():
    rng = np.random.default_rng(0)
    th = rng.normal(0.0, 1.0, (3000, 2))
    U = np.stack([th[:, 0] + 0.5 * th[:, 1], np.zeros(3000)])
    ev, se = evsi(U, th, np.eye(2), [1e-6, 1e8])
    assert ev[0] == pytest.approx(0.0, abs=1e-4)  # no data: no value
    assert ev[1] == pytest.approx(evpi(U), rel=0.02)  # perfect data on every input: EVPI
    ev0, _ = evsi(U, np.zeros((3000, 0)), np.zeros((0, 0)), [100.0])
    assert ev0[0] == 0.0


def test_informed_links_and_errors(setup):
    g, d, res = setup
    assert informed_links(g, {"y"}, "a") == ["a->y"]
    assert informed_links(g, set(), "a") == []
    assert scale_reliability(1, 0.8) == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="reliability"):
        scale_reliability(3, 1.5)
    with pytest.raises(ConfigError, match="unknown candidates"):
        value_of_information(res, g, "y", measured={"y"}, candidates="unmesured")
    with pytest.raises(ConfigError, match="unknown construct"):
        value_of_information(res, g, "y", measured={"y"}, candidates=["w"])
    t = value_of_information(res, g, "y", measured=set(), n=500)
    assert (t["evsi"] == 0).all() and (t["n_informed_links"] == 0).all()


def test_informed_links_follow_the_builder_and_the_order_condition():
    """x -> a <-> b: measuring b brings a->b (instrumented by x) into play, but not b->a (the
    equation of a has the endogenous regressor b and no excluded instrument)."""

    def node(i):
        return {"id": i, "label_en": i, "label_nl": i, "resource": "individual", "role": "construct"}

    g = CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "cyc", "nodes": [node("x"), node("a"), node("b")],
        "edges": [{"source": s, "target": t, "sign": "+", "delay": "short", "evidence": "t"}
                  for s, t in [("x", "a"), ("a", "b"), ("b", "a")]]}))
    assert informed_links(g, {"x", "a"}, "b") == ["a->b"]
    # a measured construct at a larger n: its links already in the likelihood
    assert informed_links(g, {"x", "a"}, "a") == ["x->a"]


def test_measured_construct_at_larger_n(setup):
    g, d, res = setup
    t = value_of_information(res, g, "y", measured={"y", "a"}, candidates="all", n=[100, 10000])
    a = t[t["construct"] == "a"].sort_values("n")
    assert bool(a["measured"].iloc[0]) and a["informed_links"].iloc[0] == "a->y"
    assert a["evsi"].iloc[1] > a["evsi"].iloc[0] > 0
