"""Tests of the NumPy implied moments and the pointwise log-likelihood (implied_moments).

The per-respondent (weighted) log-likelihood summed over respondents must equal the model's
``loglik`` potential (FIML through pattern statistics) at the same parameter values: an
algebraic identity, checked to relative 1e-9 (sums of ~400 terms, each exact to ~1e-13).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
from scipy.stats import multivariate_normal

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem.implied_moments import implied_moments, pointwise_loglik, structural_matrices
from veerkracht_bayes.sem.model_builder import build_model
from veerkracht_bayes.survey.statistics import prepare_model_data

EDGES = [("x", "a", "+"), ("z", "b", "+"), ("a", "b", "+"), ("b", "c", "-"), ("c", "a", "-")]
CONSTRUCT = ["a", "a", "b", "b", "b", "c", "c"]


def make_graph() -> CausalGraph:
    nodes = ["x", "z", "a", "b", "c"]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "im",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in "xz" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(21)
    n = 400
    x = np.column_stack([rng.binomial(1, 0.4, n), rng.normal(size=n)]).astype(float)
    B = np.array([[0, 0, -0.3], [0.4, 0, 0], [0, -0.35, 0]])
    G = np.array([[0.5, 0], [0, 0.3], [0, 0]])
    A = np.linalg.inv(np.eye(3) - B)
    eta = (A @ (G @ x.T + 0.8 * rng.normal(size=(3, n)))).T
    c = np.array(["abc".index(k) for k in CONSTRUCT])
    y = eta[:, c] * 0.75 + 0.6 * rng.normal(size=(n, len(c)))
    y[rng.random(y.shape) < 0.1] = np.nan
    md = prepare_model_data(y, [f"i{j}" for j in range(len(c))], CONSTRUCT,
                            weights=rng.uniform(0.3, 3, n), covariates=x, covariate_names=["x", "z"],
                            missing="fiml")
    g = make_graph()
    model, layout = build_model(g, md)
    names = ["loglik", "beta", "lambda", "theta", "nu", "psi"]
    outs = model.replace_rvs_by_values([model[k] for k in names])
    f = pytensor.function(model.value_vars, outs, mode="FAST_COMPILE")
    ip = model.initial_point()
    pts = []
    while len(pts) < 4:  # random points with positive disturbance variances
        cand = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in ip.items()}
        vals = f(*[cand[v.name] for v in model.value_vars])
        if (vals[5][2:] > 1e-4).all():
            pts.append(dict(zip(names, vals)))
    return g, md, layout, pts


def _draws(pts):
    return {k: np.stack([p[k] for p in pts]) for k in ("beta", "lambda", "theta", "nu", "psi")}


def test_pointwise_sums_to_potential(setup):
    g, md, layout, pts = setup
    assert md.stats.n_patterns > 10
    Sigma, M = implied_moments(layout, g, md, _draws(pts))
    ll = pointwise_loglik(Sigma, M, md, chunk=3)  # chunk smaller than the number of draws
    assert ll.shape == (len(pts), md.n)
    for s, p in enumerate(pts):
        assert ll[s].sum() == pytest.approx(float(p["loglik"]), rel=1e-9)


def test_pointwise_rows_equal_scipy(setup):
    g, md, layout, pts = setup
    Sigma, M = implied_moments(layout, g, md, _draws(pts[:1]))
    ll = pointwise_loglik(Sigma, M, md, weighted=False)[0]
    u = np.column_stack([np.ones(md.n), md.x])
    for i in range(0, md.n, 7):
        o = ~np.isnan(md.y[i])
        ref = multivariate_normal((M[0] @ u[i])[o], Sigma[0][np.ix_(o, o)]).logpdf(md.y[i, o])
        assert ll[i] == pytest.approx(ref, rel=1e-10, abs=1e-10)
    llw = pointwise_loglik(Sigma, M, md, weighted=True)[0]
    np.testing.assert_allclose(llw, ll * md.weights, rtol=1e-12)


def test_structural_matrices_place_edges(setup):
    g, md, layout, pts = setup
    beta = pts[0]["beta"]
    B, G = structural_matrices(layout, g, beta)
    li = {n: i for i, n in enumerate(layout.latent)}
    ci = {n: i for i, n in enumerate(layout.covariates)}
    for e, b in zip(g.edges, beta):
        if e.source in ci:
            assert G[0, li[e.target], ci[e.source]] == b
        else:
            assert B[0, li[e.target], li[e.source]] == b
    assert np.count_nonzero(B) + np.count_nonzero(G) == len(g.edges)


def test_implied_latent_variance_is_one(setup):
    """Latent block of the implied moments: Var(eta | x) + Var(E[eta | x]) = 1 per construct."""
    g, md, layout, pts = setup
    B, G = structural_matrices(layout, g, _draws(pts)["beta"])
    lat = [g.node_index[n] for n in layout.latent]
    for s, p in enumerate(pts):
        A = np.linalg.inv(np.eye(3) - B[s])
        V = A @ np.diag(p["psi"][lat]) @ A.T + A @ G[s] @ md.x_cov @ G[s].T @ A.T
        np.testing.assert_allclose(np.diag(V), 1.0, atol=1e-10)
