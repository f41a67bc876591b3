"""Value of information: invariants and a closed-form two-policy decision."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.voi import (
    VOI_COLUMNS,
    evpi,
    evsi,
    evsi_reweight,
    informed_links,
    psis_weights,
    sampling_covariance,
    scale_reliability,
    value_of_information,
    wave_scores,
)
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem import algebra

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
                               reliability=0.8, seed=3, method="gaussian")
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
    t = value_of_information(res, g, "y", measured={"y", "a"}, candidates="all", n=[100, 10000],
                             method="gaussian")
    a = t[t["construct"] == "a"].sort_values("n")
    assert bool(a["measured"].iloc[0]) and a["informed_links"].iloc[0] == "a->y"
    assert a["evsi"].iloc[1] > a["evsi"].iloc[0] > 0


# ------------------------------------------------------------------ preposterior reweighting route
OUTER = 1500  # simulated waves per candidate in the reweighting tests (stated outer draws)


@pytest.fixture(scope="module")
def standardised():
    """The two-policy graph with psi standardised (Var(eta) = 1 in every draw, as in a fit)."""
    g = two_policy_graph()
    rng = np.random.default_rng(5)
    S = 3000
    beta = np.column_stack([np.full(S, 0.5), rng.normal(MU, SD, S), np.full(S, K),
                            rng.normal(0.2, 0.1, S)])
    d0 = StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)))
    psi = algebra.standardised_psi(algebra.equilibrium_matrix(d0.B, xp="numpy"), xp="numpy")
    d = StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)), psi)
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=1.0, unit="exposure")]),
           Intervention(name="P2", parts=[Shift(node="L2", delta=0.5, unit="exposure")])]
    return g, d, do_query(d, ivs, ["y"])


def test_reweight_agrees_with_gaussian_approximation(standardised):
    """Both routes on the same small graph: EVSI agree within Monte Carlo error (Gaussian: one
    simulated estimate per draw, S = 3000; reweighting: OUTER simulated waves)."""
    g, _, res = standardised
    ns = [10, 30, 100]
    kw = {"measured": {"y"}, "candidates": ["a"], "n": ns, "seed": 2}
    ga = value_of_information(res, g, "y", method="gaussian", **kw)
    rw = value_of_information(res, g, "y", method="reweight", outer_draws=OUTER, **kw)
    assert (rw["method"] == "reweight").all() and (rw["outer_draws"] == OUTER).all()
    assert (rw["share_k_bad"] < 0.05).all()  # importance weights usable at these n
    for (_, a), (_, b) in zip(ga.sort_values("n").iterrows(), rw.sort_values("n").iterrows()):
        tol = 3.0 * np.hypot(a["evsi_se"], b["evsi_se"])
        assert abs(a["evsi"] - b["evsi"]) < tol, (a["n"], a["evsi"], b["evsi"], tol)
        assert b["evsi"] > 5 * b["evsi_se"]  # the comparison is not between two zeros


def test_reweight_invariants(standardised):
    """0 <= EVSI <= EVPI, EVSI grows with n, off-path z ~ 0, on-path a beats z (reweighting)."""
    g, _, res = standardised
    tab = value_of_information(res, g, "y", measured={"y"}, n=[10, 100, 1000], seed=4,
                               method="reweight", outer_draws=OUTER)
    assert (tab["evsi"] >= 0).all()
    assert (tab["evsi"] <= tab["evpi"] + 3 * tab["evsi_se"]).all()
    a = tab[tab["construct"] == "a"].sort_values("n")
    z = tab[tab["construct"] == "z"].sort_values("n")
    assert np.all(np.diff(a["evsi"].to_numpy()) > 0)
    assert (z["evsi"] < 0.02 * z["evpi"]).all()
    assert (a["evsi"].to_numpy() > z["evsi"].to_numpy() + 3 * a["evsi_se"].to_numpy()).all()
    assert tab["construct"].iloc[0] == "a"
    # a large wave on the one uncertain input recovers (nearly) the EVPI
    assert a["evsi"].iloc[-1] == pytest.approx(a["evpi"].iloc[-1], rel=0.15)


def test_wave_scores_and_psis(standardised):
    g, d, _ = standardised
    names, Sig = wave_scores(g, d, {"y"}, "a", items=3, reliability=0.8)
    assert names == ["y", "a"]  # levers are never observed; the candidate comes last
    assert wave_scores(g, d, {"y", "z"}, "a", scope="neighbours")[0] == ["y", "a"]  # z: no link
    assert wave_scores(g, d, {"y", "z"}, "a")[0] == ["y", "z", "a"]
    rho = scale_reliability(3, 0.8)
    # reliability: Var(eta) / Var(score) = rho; Cov(a, y) = beta_ay (unit variances)
    assert np.allclose(1.0 / np.diagonal(Sig, axis1=1, axis2=2), rho, atol=1e-6)
    assert np.allclose(Sig[:, 0, 1], d.B[:, 3, 2], atol=1e-9)
    rng = np.random.default_rng(1)
    w, k = psis_weights(np.vstack([rng.normal(0, 0.1, 4000), rng.standard_cauchy(4000) * 5]))
    assert np.allclose(w.sum(axis=1), 1.0) and k[0] < 0.3 and k[1] > 0.7
    # a refit fallback is called exactly for the waves whose weights degenerate
    calls = []
    U = np.stack([d.B[:, 3, 2], np.full(d.n_draws, 0.3)])
    *_, diag = evsi_reweight(U, Sig, [100000], outer=200, seed=0,
                             refit=lambda j, W, n: calls.append(j) or U[:, j])
    assert diag[0]["n_refits"] == len(calls) == round(diag[0]["share_k_bad"] * 200) > 0
    *_, diag = evsi_reweight(U, Sig, [100000], outer=200, seed=0, refit=lambda j, W, n: None)
    assert diag[0]["n_refits"] == 0 and diag[0]["share_k_bad"] > 0  # over budget: flagged
    with pytest.raises(ConfigError, match="unknown method"):
        value_of_information(_res(standardised), g, "y", measured={"y"}, method="refit")


def _res(setup):
    return setup[2]


def test_degenerate_weights_are_checked_against_their_null_baseline(standardised):
    """A wave far larger than the posterior sample can represent: where the wave carries no
    information on the decision (utilities independent of the wave's parameters, true EVSI 0)
    the reweighted estimate is pure selection bias, matches its null baseline and is refused;
    where it does carry information the estimate clears the baseline and is reported."""
    from veerkracht_bayes.causal.voi import reweight_status

    g, d, _ = standardised
    _, Sig = wave_scores(g, d, {"y"}, "a", items=3, reliability=0.8)
    b = d.B[:, 3, 2]
    rng = np.random.default_rng(9)
    for U, informative in ((np.stack([b, np.full(d.n_draws, K)]), True),
                           (np.stack([rng.permutation(b), np.full(d.n_draws, K)]), False)):
        (ev,), (se,), (dg,) = evsi_reweight(U, Sig, [200000], outer=400, seed=1)
        assert dg["share_k_bad"] > 0.5  # the weights degenerate
        st = reweight_status(ev, se, dg["evsi_null"], dg["evsi_null_se"], dg["share_k_bad"])
        gap = (ev - dg["evsi_null"]) / np.hypot(se, dg["evsi_null_se"])
        if informative:
            assert st == "rough" and gap > 3
        else:
            assert ev > 0  # biased upward: the true value is 0
            assert abs(gap) < 3 and st == "not_estimable"


def test_table_reports_status_null_and_gaussian(standardised):
    g, _, res = standardised
    tab = value_of_information(res, g, "y", measured={"y"}, n=[30, 200000], seed=4,
                               method="reweight", outer_draws=300)
    assert set(tab["status"]) <= {"ok", "rough", "not_estimable"}
    small = tab[tab["n"] == 30]
    assert (small["status"] == "ok").all() and (small["evsi"] == small["evsi_raw"]).all()
    refused = tab["status"] == "not_estimable"
    assert tab.loc[refused, "evsi"].isna().all() and tab.loc[~refused, "evsi"].notna().all()
    assert tab["evsi_gaussian"].notna().all() and tab["evsi_null"].notna().all()
    z = tab[(tab["construct"] == "z") & (tab["n"] == 200000)].iloc[0]
    assert z["status"] != "rough"  # z informs no lever path: never reported as valuable
