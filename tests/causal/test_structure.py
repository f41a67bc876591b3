"""Structural uncertainty: Savage-Dickey inclusion probabilities and ranking robustness."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest
from scipy import stats

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Beta, Intervention, Shift
from veerkracht_bayes.causal.structure import (ROBUSTNESS_COLUMNS, STRUCTURE_COLUMNS,
                                               inclusion_probabilities, posterior_density_at_zero,
                                               prior_density_at_zero, structural_robustness)
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec

PRIOR = NS(distribution="truncated_normal", mean=0.15, sd=0.15, lower=0.0, upper=None, nu=None)


def graph() -> CausalGraph:
    """Levers L1 -> a, L2 -> b; x -> a (inferred, truly zero), x -> b (inferred, strong); a, b -> y;
    c -> y inferred but cut (c has no items)."""

    def node(i, role="construct"):
        return {"id": i, "label_en": i, "label_nl": i, "resource": "individual", "role": role}

    edges = [("L1", "a", False), ("L2", "b", False), ("x", "a", True), ("x", "b", True),
             ("a", "y", False), ("b", "y", False), ("c", "y", True)]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "st",
        "nodes": [node("L1", "policy_lever"), node("L2", "policy_lever"), node("x"), node("a"),
                  node("b"), node("y"), node("c")],
        "edges": [{"source": s, "target": t, "sign": "+", "delay": "short", "evidence": "test",
                   "inferred": inf} for s, t, inf in edges]}))


def conjugate_draws(true: float, se: float, rng, S: int) -> np.ndarray:
    """Posterior of a link under a Gaussian likelihood (estimate ~ N(true, se)) and PRIOR."""
    est = rng.normal(true, se)
    prec = 1 / PRIOR.sd ** 2 + 1 / se ** 2
    m = (PRIOR.mean / PRIOR.sd ** 2 + est / se ** 2) / prec
    s = prec ** -0.5
    return stats.truncnorm.rvs((0 - m) / s, np.inf, loc=m, scale=s, size=S, random_state=rng)


def test_density_helpers():
    assert prior_density_at_zero(PRIOR) == pytest.approx(
        stats.norm.pdf(0, 0.15, 0.15) / (1 - stats.norm.cdf(0, 0.15, 0.15)))
    rng = np.random.default_rng(1)
    x = stats.truncnorm.rvs(-0.5, np.inf, loc=0.05, scale=0.1, size=20000, random_state=rng)
    exact = stats.truncnorm.pdf(0.0, -0.5, np.inf, loc=0.05, scale=0.1)
    assert posterior_density_at_zero(x, 0.0) == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_zero_link_falls_strong_link_stays(seed):
    g = graph()
    rng = np.random.default_rng(seed)
    S = 2000
    beta = np.column_stack([
        rng.normal(0.3, 0.05, S), rng.normal(0.3, 0.05, S),
        conjugate_draws(0.0, 0.02, rng, S), conjugate_draws(0.4, 0.02, rng, S),
        rng.normal(0.3, 0.02, S), rng.normal(0.3, 0.02, S),
        stats.truncnorm.rvs(-1, np.inf, loc=0.15, scale=0.15, size=S, random_state=rng)])
    priors = {e.key: PRIOR for e in g.edges}
    t = inclusion_probabilities(g, beta, priors, informed={"x->a", "x->b", "a->y", "b->y"})
    assert list(t.columns) == list(STRUCTURE_COLUMNS)
    p = t.set_index("link")["p_include"]
    assert p["x->a"] < 0.25  # truly zero: falls below the prior 0.5
    assert p["x->b"] > 0.99  # strong: stays
    assert p["c->y"] == 0.5  # cut: prior only, the data cannot weigh it
    assert p["a->y"] == 1.0 and p["L1->a"] == 1.0  # not inferred: taken as present
    none = inclusion_probabilities(g, beta, priors, informed={"x->a"}, variants="none")
    assert (none["p_include"] == 1.0).all()
    with pytest.raises(ConfigError, match="unknown structure variants"):
        inclusion_probabilities(g, beta, priors, variants="inferd")


def _draws(g, S=400, seed=0, bxa=0.3, bxb=0.3):
    rng = np.random.default_rng(seed)
    beta = np.column_stack([np.full(S, 0.5), np.full(S, 0.5), np.full(S, bxa), np.full(S, bxb),
                            rng.normal(0.4, 0.02, S), rng.normal(0.3, 0.02, S), np.full(S, 0.2)])
    return StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)))


def test_robustness_known_answers():
    """P1 acts through a -> y (0.5 x 0.4 = 0.20), P2 through b -> y (0.5 x 0.3 = 0.15); the
    inferred links leave the lever paths alone, so the ranking holds in every structure. A policy
    that shifts x acts only through the inferred links: its sign holds exactly when one stays."""
    g = graph()
    d = _draws(g)
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=Beta(a=3, b=3), unit="exposure")]),
           Intervention(name="P2", parts=[Shift(node="L2", delta=Beta(a=3, b=3), unit="exposure")]),
           Intervention(name="X", parts=[Shift(node="x", delta=0.1)])]
    p_inc = {"x->a": 0.3, "x->b": 0.5, "c->y": 0.5}
    r = structural_robustness(d, ivs, ["y"], p_inc, n_structures=400, draws_per_structure=25, seed=4)
    assert list(r.columns) == list(ROBUSTNESS_COLUMNS)
    r = r.set_index("policy")
    assert r.loc["P1", "rank"] == 1 and r.loc["P1", "p_rank_holds"] == 1.0
    assert r.loc["P1", "p_sign_holds"] == 1.0
    # full-diagram mean equals the do-query's posterior mean (doses at their mean)
    full = do_query(d, ivs, ["y"], seed=0).outcome_effect("y")[0]
    assert r.loc["P1", "mean"] == pytest.approx(full.mean(), rel=0.05)
    # X: sign holds iff x->a or x->b is included: 1 - 0.7 * 0.5 = 0.65 (binomial error, 400 draws)
    assert r.loc["X", "p_sign_holds"] == pytest.approx(0.65, abs=3 * np.sqrt(0.65 * 0.35 / 400))
    # no uncertain link: everything holds, no structure drawn
    r0 = structural_robustness(d, ivs, ["y"], {k: 1.0 for k in p_inc}, n_structures=50)
    assert (r0["p_rank_holds"] == 1.0).all() and (r0["n_structures"] == 0).all()


def test_suppressed_cells_take_no_rank():
    from veerkracht_bayes.causal.do import SubgroupInfo

    g = graph()
    d = _draws(g, S=50)
    ivs = [Intervention(name="P1", parts=[Shift(node="L1", delta=0.5, unit="exposure")]),
           Intervention(name="P2", subgroup="tiny", parts=[Shift(node="L2", delta=0.5, unit="exposure")])]
    r = structural_robustness(d, ivs, ["y"], {"x->a": 0.5}, n_structures=10, draws_per_structure=10,
                              subgroups={"tiny": SubgroupInfo(prevalence=0.01, n=5)}, min_cell_size=50)
    r = r.set_index("policy")
    assert np.isnan(r.loc["P2", "p_rank_holds"]) and np.isnan(r.loc["P2", "rank"])
    assert r.loc["P1", "rank"] == 1
