"""The polychoric route's model-fit check: a posterior predictive check on the stage-2 correlations
(``inference.polychoric_check``), in ``diagnose`` under the continuous check's JSON fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from _polychoric_fixtures import TRUE_BETA, LAMBDA, WidePriors, make_graph, simulate
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.inference.diagnostics import diagnose
from veerkracht_bayes.inference.polychoric_check import STATISTIC, stage2_implied_correlations, stage2_ppp
from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
from veerkracht_bayes.inference.sampling import SamplerSettings
from veerkracht_bayes.survey.polychoric import whiten_correlations

STD_LAMBDA = LAMBDA / np.sqrt(1 + LAMBDA ** 2)
N = 2000


def _chain_graph() -> CausalGraph:
    """The fixture's diagram without the feedback link c -> a (misspecified for its data)."""
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "polychoric-test-no-loop",
        "nodes": [{"id": k, "label_en": k, "label_nl": k, "resource": "individual",
                   "role": "exogenous" if k == "x" else "construct"} for k in "xabc"],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "test"}
                  for s, t in (("x", "a"), ("a", "b"), ("b", "c"))],
    })
    return CausalGraph(spec)


@pytest.fixture(scope="module")
def pdata():
    return simulate(N, 21)[1]


def _fit(graph, pdata):
    return fit_polychoric(graph, pdata, WidePriors(), settings=SamplerSettings(
        chains=2, draws=200, tune=200, progressbar=False, prior_draws=100, random_seed=7))


@pytest.fixture(scope="module")
def good(pdata):
    return _fit(make_graph(), pdata)


@pytest.fixture(scope="module")
def bad(pdata):
    return _fit(_chain_graph(), pdata)


def test_discrepancy_at_the_truth_is_chi_square(pdata) -> None:
    """At the generating parameters T = (r - rho)' Gamma^-1 (r - rho) is a chi-square(s) draw: inside
    its central 99.8 % range."""
    from types import SimpleNamespace

    g = make_graph()
    layout = SimpleNamespace(lik_latent=("a", "b", "c"), covariates=("x",),
                             edge_kind={"x->a": "covariate", "a->b": "latent", "b->c": "latent",
                                        "c->a": "latent"})
    beta = np.array([[dict(zip(("x->a", "a->b", "b->c", "c->a"), TRUE_BETA))[k] for k in g.edge_keys]])
    rho = stage2_implied_correlations(pdata, layout, g, beta, STD_LAMBDA[None])
    r = pdata.stats.r[pdata.lik_pairs]
    _, Linv = whiten_correlations(pdata.stats, pdata.lik_pairs)
    t = float(np.sum((Linv @ (r - rho[0])) ** 2))
    s = len(r)
    assert s == 9 * 8 // 2 + 9
    assert stats.chi2.ppf(0.001, s) < t < stats.chi2.ppf(0.999, s), (t, s)
    # implied correlations are the model's: loadings times the latent correlation
    assert np.all(np.abs(rho) < 1)


def test_ppp_of_the_data_generating_model_is_not_extreme(good) -> None:
    check = stage2_ppp(good, ppp_draws=200, seed=1)
    print(f"\ncorrect model: PPP {check.ppp:.3f}, mean T_obs {check.t_obs.mean():.1f}, SRMR {check.srmr:.4f}")
    s = check.n_correlations
    # replicates are chi-square(s) whatever theta: their mean within 4 Monte Carlo SE of s
    assert abs(check.t_rep.mean() - s) < 4 * np.sqrt(2 * s / len(check.t_rep)), check.t_rep.mean()
    assert 0.05 < check.ppp < 0.99, check.ppp
    assert check.srmr < 0.05


def test_a_misspecified_model_gets_a_small_ppp(good, bad) -> None:
    """Leaving out the feedback link c -> a (true value -0.3, n = 2,000) is detected."""
    check = stage2_ppp(bad, ppp_draws=200, seed=1)
    print(f"\nmisspecified model: PPP {check.ppp:.3f}, mean T_obs {check.t_obs.mean():.1f}, SRMR {check.srmr:.4f}")
    assert check.ppp < 0.01, check.ppp
    assert check.t_obs.mean() > stage2_ppp(good, ppp_draws=200, seed=1).t_obs.mean() + 50


def test_diagnose_reports_it_in_the_ppp_fields(good, bad) -> None:
    d = diagnose(good, ppp_draws=100, seed=2).to_dict()["ppp"]
    assert d["applicable"] and d["statistic"] == STATISTIC
    assert 0 <= d["ppp"] <= 1 and d["n_draws"] == 100 and d["chi2_df"] == 45 and d["wishart_df"] is None
    assert set(d["worst_residual"]) == {"item_1", "item_2", "residual_correlation"}
    dbad = diagnose(bad, ppp_draws=100, seed=2)
    assert dbad.misfit
    assert any("stage-2 correlations" in p for p in dbad.problems + dbad.notes)
