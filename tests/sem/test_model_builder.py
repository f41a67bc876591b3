"""Tests of the PyMC model builder (veerkracht_bayes.sem.model_builder).

The built model's ``loglik`` potential is compared with a hand-written reference (one
``scipy.stats.multivariate_normal`` per respondent on its observed sub-vector, times the
normalised weight) at random parameter points, for an acyclic and a cyclic graph, with and
without missing items. These are deterministic identities: the tolerance is floating-point
only (relative 1e-9 on sums of ~500 terms of size ~10, each exact to ~1e-13).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.stats import multivariate_normal

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem.algebra import perron_bound
from veerkracht_bayes.sem.model_builder import StabilitySettings, build_model
from veerkracht_bayes.survey.statistics import prepare_model_data


def make_graph(edges: list[tuple[str, str, str]], exogenous: tuple[str, ...] = ()) -> CausalGraph:
    """A small graph from ``(source, target, sign)`` triples."""
    nodes = list(dict.fromkeys([s for s, _, _ in edges] + [t for _, t, _ in edges]))
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "test",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in exogenous else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "test"} for s, t, sg in edges],
    })
    return CausalGraph(spec)


CYCLIC = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "-"), ("c", "a", "-")]
ACYCLIC = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "-"), ("a", "c", "+")]
CONSTRUCT = ["a", "a", "a", "b", "b", "c"]  # c has a single item (fixed reliability)


def simulate(edges, n=400, seed=1, miss=0.0):
    """Continuous items from a standard-ish structural model with one binary covariate."""
    rng = np.random.default_rng(seed)
    x = rng.binomial(1, 0.3, n).astype(float)
    idx = {"a": 0, "b": 1, "c": 2}
    B = np.zeros((3, 3))
    vals = {"a->b": 0.4, "b->c": -0.35, "c->a": -0.3, "a->c": 0.2}
    for s, t, _ in edges:
        if s != "x":
            B[idx[t], idx[s]] = vals[f"{s}->{t}"]
    A = np.linalg.inv(np.eye(3) - B)
    g = np.array([0.5, 0.0, 0.0])
    eta = (A @ (g[:, None] * x[None] + 0.8 * rng.normal(size=(3, n)))).T
    c = np.array([idx[k] for k in CONSTRUCT])
    lam = np.array([0.8, 0.7, 0.6, 0.8, 0.7, 0.9])
    y = eta[:, c] * lam + 0.5 * rng.normal(size=(n, 6))
    y[rng.random((n, 6)) < miss] = np.nan
    w = rng.uniform(0.5, 2.0, n)
    return prepare_model_data(y, [f"i{j}" for j in range(6)], CONSTRUCT, weights=w,
                              covariates=x[:, None], covariate_names=["x"], missing="fiml")


def reference_loglik(graph, md, beta, lam, theta, nu, psi):
    """Hand-written weighted log-likelihood: scipy MVN per respondent, observed entries only."""
    lat = ["a", "b", "c"]
    li = {n: i for i, n in enumerate(lat)}
    B = np.zeros((3, 3))
    G = np.zeros((3, 1))
    for e, b in zip(graph.edges, beta):
        if e.source == "x":
            G[li[e.target], 0] = b
        else:
            B[li[e.target], li[e.source]] = b
    A = np.linalg.inv(np.eye(3) - B)
    psi_l = np.array([psi[graph.node_index[n]] for n in lat])
    S_eta = A @ np.diag(psi_l) @ A.T
    ci = [li[c] for c in md.item_construct]
    Sig = np.outer(lam, lam) * S_eta[np.ix_(ci, ci)] + np.diag(theta)
    pi = lam * (A @ G)[ci, 0]
    total = 0.0
    for i in range(md.n):
        o = ~np.isnan(md.y[i])
        mu = nu + pi * md.x[i, 0]
        total += md.weights[i] * multivariate_normal(mu[o], Sig[np.ix_(o, o)]).logpdf(md.y[i, o])
    return total, A, G, psi_l


def value_fn(model, names):
    """Compile ``names`` as functions of the value variables (random variables replaced by their
    values, as the sampler sees them; ``compile_fn`` alone would draw the RVs at random)."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    f = pytensor.function(model.value_vars, outs, on_unused_input="ignore", mode="FAST_COMPILE")
    return lambda point: f(*[point[v.name] for v in model.value_vars])


def compiled(model):
    return value_fn(model, ["loglik", "beta", "lambda", "theta", "nu", "psi"])


def random_points(model, k, seed, f=None):
    """``k`` random points near the initial point (transformed space) at which every
    disturbance variance psi is positive (points with psi <= 0 have zero density, tested apart)."""
    rng = np.random.default_rng(seed)
    ip = model.initial_point()
    f = f or compiled(model)
    out = []
    while len(out) < k:
        cand = {name: v + 0.3 * rng.normal(size=np.shape(v)) for name, v in ip.items()}
        if (f(cand)[5][1:] > 1e-4).all():  # nodes are x, a, b, c (x carries its own variance)
            out.append(cand)
    return out


@pytest.fixture(scope="module", params=["acyclic-complete", "cyclic-complete", "acyclic-fiml", "cyclic-fiml"])
def case(request):
    shape, miss = request.param.split("-")
    edges = CYCLIC if shape == "cyclic" else ACYCLIC
    g = make_graph(edges, exogenous=("x",))
    md = simulate(edges, miss=0.0 if miss == "complete" else 0.08, seed=3 if shape == "cyclic" else 4)
    model, layout = build_model(g, md)
    return g, md, model, layout, compiled(model)


def test_missing_patterns_present(case):
    g, md, *_ = case
    if md.missing_method == "fiml":
        assert md.stats.n_patterns > 5
    else:
        assert md.missing_method == "complete" and md.stats.n_patterns == 1


def test_loglik_equals_scipy_reference(case):
    g, md, model, layout, f = case
    for point in random_points(model, 3, seed=11, f=f):
        ll, beta, lam, theta, nu, psi = f(point)
        assert np.allclose(f(point)[1], beta)  # deterministic in the point
        ref, *_ = reference_loglik(g, md, beta, lam, theta, nu, psi)
        assert np.isfinite(ll)
        assert ll == pytest.approx(ref, rel=1e-9, abs=1e-8)


def test_latent_variances_are_one(case):
    """diag(A diag(psi) A' + A Gamma S_x Gamma' A') = 1 at random points (standardised latents)."""
    g, md, model, layout, f = case
    for point in random_points(model, 4, seed=12, f=f):
        _, beta, lam, theta, nu, psi = f(point)
        A, G, psi_l = _mats(g, beta, psi)
        assert (psi_l > 0).all()
        V = A @ np.diag(psi_l) @ A.T + A @ G @ md.x_cov @ G.T @ A.T
        np.testing.assert_allclose(np.diag(V), 1.0, rtol=0, atol=1e-10)


def _mats(g, beta, psi):
    lat = ["a", "b", "c"]
    li = {n: i for i, n in enumerate(lat)}
    B = np.zeros((3, 3))
    G = np.zeros((3, 1))
    for e, b in zip(g.edges, beta):
        if e.source == "x":
            G[li[e.target], 0] = b
        else:
            B[li[e.target], li[e.source]] = b
    return np.linalg.inv(np.eye(3) - B), G, np.array([psi[g.node_index[n]] for n in lat])


def test_single_item_construct_has_fixed_reliability(case):
    g, md, model, layout, f = case
    assert layout.single_item_constructs == ("c",)
    _, _, lam, theta, _, _ = f(random_points(model, 1, seed=13, f=f)[0])
    assert lam[5] == pytest.approx(np.sqrt(0.8)) and theta[5] == pytest.approx(0.2)


def test_negative_psi_gives_minus_infinity():
    """a->b with beta = 1.2 needs Var(zeta_b) = 1 - 1.44 < 0: zero density, not a crash."""
    g = make_graph([("a", "b", "+")])
    rng = np.random.default_rng(0)
    eta_a = rng.normal(size=300)
    eta = np.column_stack([eta_a, 0.5 * eta_a + np.sqrt(0.75) * rng.normal(size=300)])
    y = np.column_stack([eta[:, [0, 0, 1, 1]] * 0.8 + 0.6 * rng.normal(size=(300, 4))])
    md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    model, _ = build_model(g, md, vague=True)  # untransformed Normal(0, 1) edge prior
    fl = pytensor.function(model.value_vars, model.logp(), mode="FAST_COMPILE")
    pt_ = model.initial_point()

    def logp(point):
        return fl(*[point[v.name] for v in model.value_vars])

    name = [k for k in pt_ if k.startswith("beta")][0]
    pt_[name] = np.array([0.5])
    assert np.isfinite(logp(pt_))
    pt_[name] = np.array([1.2])
    assert logp(pt_) == -np.inf


def _barrier_fn(p: int):
    M = pt.matrix("M")
    st = StabilitySettings()
    rho = perron_bound(pt.abs(M), st.power_iterations, xp="pytensor")
    return pytensor.function([M], [rho, -pt.softplus(-(st.rho_max - rho) / st.width)],
                             mode="FAST_COMPILE"), st


def _exact_barrier(B, st):
    rho = np.max(np.abs(np.linalg.eigvals(np.abs(B))))
    return rho, -np.logaddexp(0.0, -(st.rho_max - rho) / st.width)


def _check_rho(rho, rho_x, p):
    """The builder returns a Collatz-Wielandt upper bound of rho(|B| + 1e-6), smoothed by a
    log-sum-exp at temperature 1000: rho_x - 1e-9 <= rho <= rho_x + p*1e-6 + log(p)/1000 + 1e-4
    (the 1e-6 shift moves the root by at most p*1e-6; the smoothing raises it by at most
    log(p)/1000; 1e-4 allows for incomplete convergence of 60 iterations on I + |B|)."""
    assert rho_x - 1e-9 <= rho <= rho_x + p * 1e-6 + np.log(p) / 1000 + 1e-4


@pytest.mark.parametrize("B", [
    np.array([[0, 0.3, 0.2], [0.5, 0, 0.1], [0.2, -0.4, 0]]),                     # primitive, mixed signs
    np.array([[0, 0, -0.7, 0], [0.6, 0, 0, 0.3], [0.2, 0.9, 0, 0], [0, 0.5, 0.4, 0]]),
    np.array([[0, 0, 0.2], [0.6, 0, 0], [0, 0.3, 0]]),                            # one 3-cycle (periodic)
    np.array([[0, 0.1, 0, 0], [0.7, 0, 0, 0], [0, 0, 0, 0.1], [0, 0, 0.8, 0]]),   # two 2-cycles (reducible)
])
def test_stability_barrier_matches_eigvals(B):
    """Perron bound by power iteration vs numpy eigvals, including periodic |B| (a single
    cycle), where plain power iteration oscillates (the bug fixed on iterating with I + |B|)."""
    f, st = _barrier_fn(B.shape[0])
    rho, pot = f(B)
    rho_x, _ = _exact_barrier(B, st)
    _check_rho(float(rho), rho_x, B.shape[0])
    assert pot == pytest.approx(-np.logaddexp(0.0, -(st.rho_max - float(rho)) / st.width), rel=1e-9)


@pytest.mark.parametrize("beta", [(0.8, 0.9, 0.6, 0.8), (0.5, 0.6, 0.4, 0.5)])
def test_stability_barrier_in_model_potential(beta):
    """The model's `stability` potential at a fixed B equals the formula with the exact root.

    The first point has rho = 1.043 (unstable: the barrier must bite, about -10.6), the second
    rho = 0.670 (stable: barrier about 0). Covariates x1 -> b and x2 -> c make every
    equation satisfy the order condition (build_model checks identification)."""
    g = make_graph([("a", "b", "+"), ("b", "a", "+"), ("b", "c", "+"), ("c", "a", "+"),
                    ("x1", "b", "+"), ("x2", "c", "+")], exogenous=("x1", "x2"))
    model, layout = build_model(g, None, vague=True)
    f = value_fn(model, ["stability", "rho_abs_bound"])
    pt_ = model.initial_point()
    name = [k for k in pt_ if k.startswith("beta")][0]
    pt_[name] = np.array(list(beta) + [0.0, 0.0])  # a->b, b->a, b->c, c->a, x1->b, x2->c
    pot, rho = f(pt_)
    B = np.zeros((3, 3))
    B[1, 0], B[0, 1], B[2, 1], B[0, 2] = beta
    rho_x, pot_x = _exact_barrier(B, layout.stability)
    _check_rho(float(rho), rho_x, 3)
    st = layout.stability
    assert pot == pytest.approx(-np.logaddexp(0.0, -(st.rho_max - float(rho)) / st.width), rel=1e-9, abs=1e-12)
    if rho_x > st.rho_max:
        assert pot < -10.0
    else:
        assert pot > -1e-6


def test_prior_only_model_has_no_loglik():
    g = make_graph(CYCLIC, exogenous=("x",))
    model, layout = build_model(g, None)
    assert "loglik" not in model.named_vars
    assert layout.absent == ("x",) and layout.latent == ("a", "b", "c")


def test_latent_system_is_shared_only_when_it_is_the_same_system():
    """The likelihood system is the full system's object when latents and links coincide, and
    its own (with its own psi) when a prior-only link is left out of it."""
    from veerkracht_bayes.sem.algebra import equilibrium_matrix, standardised_psi
    from veerkracht_bayes.sem.model_builder import latent_system

    g = make_graph(CYCLIC)
    beta = np.array([0.4, 0.5, -0.3, -0.2])  # graph edge order: x->a, a->b, b->c, c->a
    latent, covs = ["a", "b", "c"], ["x"]
    kinds = {"x->a": "covariate", "a->b": "latent", "b->c": "latent", "c->a": "latent"}
    x_cov = np.array([[1.0]])
    full = latent_system(pt.as_tensor(beta), g, kinds, latent, covs, x_cov, ("latent", "prior_only"))
    assert latent_system(pt.as_tensor(beta), g, kinds, latent, covs, x_cov, same_as=full) is full
    # the reference: B, G by hand, psi from the NumPy algebra
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = 0.5, -0.3, -0.2
    A = equilibrium_matrix(B)
    AG = A @ np.array([[0.4], [0.0], [0.0]])
    np.testing.assert_allclose(full.psi.eval(), standardised_psi(A, AG, x_cov), rtol=1e-12)

    cut = dict(kinds, **{"c->a": "prior_only"})
    full_c = latent_system(pt.as_tensor(beta), g, cut, latent, covs, x_cov, ("latent", "prior_only"))
    lik_c = latent_system(pt.as_tensor(beta), g, cut, latent, covs, x_cov, same_as=full_c)
    assert lik_c is not full_c
    B[0, 2] = 0.0
    A = equilibrium_matrix(B)
    np.testing.assert_allclose(lik_c.psi.eval(), standardised_psi(A, A @ np.array([[0.4], [0.0], [0.0]]), x_cov),
                               rtol=1e-12)
    assert not np.allclose(lik_c.psi.eval(), full_c.psi.eval())
