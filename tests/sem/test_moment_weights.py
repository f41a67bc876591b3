"""The stage-2 weights (``sem.moment_weights``) and the polychoric model's sandwich weight.

On a linear Gaussian toy (``rho(theta) = Delta theta``, ``r ~ N(Delta theta, Gamma)``) everything
is closed form: the sandwich quasi-log-likelihood ``-1/2 |M (r - Delta theta)|^2`` has precision
``H J^-1 H`` (``H = Delta' D^-1 Delta``, ``J = Delta' D^-1 Gamma D^-1 Delta``), its mode under a flat
prior is the DWLS estimator, whose sampling covariance is ``H^-1 J H^-1``: the quasi-posterior is
calibrated exactly, and the plain DWLS "posterior" (precision ``H``) is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _polychoric_fixtures import LAMBDA, TRUE_BETA, WidePriors, make_graph, simulate

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.sem.moment_weights import diagonal_whitener, sandwich_whitener
from veerkracht_bayes.sem.polychoric_likelihood import (
    PolychoricSettings,
    build_polychoric_model,
    fit_sandwich_weight,
    sandwich_pilot_info,
    set_sandwich_whitener,
)


def _toy(seed: int, m: int = 12, p: int = 3):
    rng = np.random.default_rng(seed)
    delta = rng.normal(size=(m, p))
    a = rng.normal(size=(m, m))
    # strongly non-diagonal Gamma with unequal variances: DWLS is then not the efficient GLS
    gamma = a @ a.T / m + np.diag(rng.uniform(0.2, 3.0, m))
    return delta, gamma


def _hj(delta, gamma):
    dinv = np.diag(1.0 / np.diag(gamma))
    H = delta.T @ dinv @ delta
    J = delta.T @ dinv @ gamma @ dinv @ delta
    return H, J


def test_linear_toy_precision_and_posterior_are_exact():
    """Quasi-posterior precision = H J^-1 H + prior precision, and its mean the closed form."""
    delta, gamma = _toy(1)
    M, k = sandwich_whitener(delta, gamma)
    H, J = _hj(delta, gamma)
    assert k == 3 and M.shape == (3, 12)
    assert np.allclose(delta.T @ M.T @ M @ delta, H @ np.linalg.solve(J, H), rtol=1e-10, atol=1e-12)
    # with a N(m0, P0^-1) prior: the posterior of the quadratic log-density
    rng = np.random.default_rng(2)
    r = rng.normal(size=12)
    P0, m0 = np.diag([0.5, 2.0, 1.0]), np.array([0.1, -0.2, 0.3])
    prec = delta.T @ M.T @ M @ delta + P0
    mean = np.linalg.solve(prec, delta.T @ M.T @ M @ r + P0 @ m0)
    expected_prec = H @ np.linalg.solve(J, H) + P0
    g = delta.T @ np.diag(1 / np.diag(gamma)) @ r  # Delta' D^-1 r
    expected_mean = np.linalg.solve(expected_prec, H @ np.linalg.solve(J, g) + P0 @ m0)
    assert np.allclose(prec, expected_prec) and np.allclose(mean, expected_mean)


def test_linear_toy_sandwich_is_calibrated_and_dwls_is_not():
    """2,000 data sets r ~ N(Delta theta0, Gamma), flat prior: the sandwich's 90 % intervals
    (mode +- 1.645 sqrt(diag (H J^-1 H)^-1)) hold theta0 within the central 99.9 % of
    Binomial(2000, 0.9) for every parameter; DWLS's (precision H) fall outside that range for at
    least one parameter (here its SDs are 1/1.16 and 1/0.88 of the right ones)."""
    delta, gamma = _toy(3)
    H, J = _hj(delta, gamma)
    M, _ = sandwich_whitener(delta, gamma)
    rng = np.random.default_rng(4)
    theta0 = np.array([0.3, -0.5, 0.8])
    L = np.linalg.cholesky(gamma)
    r = delta @ theta0 + rng.normal(size=(2000, 12)) @ L.T
    Q = delta.T @ M.T @ M @ delta
    mode = np.linalg.solve(Q, (delta.T @ M.T @ M @ r.T)).T  # flat prior: the quasi-posterior mode
    sd_sw = np.sqrt(np.diag(np.linalg.inv(Q)))
    sd_dw = np.sqrt(np.diag(np.linalg.inv(H)))
    hits_sw = (np.abs(mode - theta0) <= 1.645 * sd_sw).sum(0)
    hits_dw = (np.abs(mode - theta0) <= 1.645 * sd_dw).sum(0)
    lo, hi = binom.ppf(0.0005, 2000, 0.9), binom.ppf(0.9995, 2000, 0.9)
    assert np.all((lo <= hits_sw) & (hits_sw <= hi)), hits_sw
    assert np.any((hits_dw < lo) | (hits_dw > hi)), hits_dw
    # the mode is the DWLS estimator: H^-1 Delta' D^-1 r
    dwls = np.linalg.solve(H, delta.T @ np.diag(1 / np.diag(gamma)) @ r[0])
    assert np.allclose(mode[0], dwls)


def test_quadratic_form_is_invariant_to_reparameterisation():
    """Delta -> Delta T (theta = T phi, T invertible): |M_T (r - Delta T phi)|^2 = |M (r - Delta theta)|^2."""
    delta, gamma = _toy(5)
    rng = np.random.default_rng(6)
    T = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    M, _ = sandwich_whitener(delta, gamma)
    MT, _ = sandwich_whitener(delta @ T, gamma)
    for _ in range(5):
        r, phi = rng.normal(size=12), rng.normal(size=3)
        a = np.sum((M @ (r - delta @ (T @ phi))) ** 2)
        b = np.sum((MT @ (r - delta @ T @ phi)) ** 2)
        assert a == pytest.approx(b, rel=1e-9)


def test_zero_and_collinear_columns_drop_out():
    """A zero column (a parameter the data do not inform) and a duplicated column (a direction the
    data cannot separate) reduce the rank; the quadratic form is that of the reduced Jacobian."""
    delta, gamma = _toy(7)
    M, k = sandwich_whitener(delta, gamma)
    wide = np.column_stack([delta[:, :1], np.zeros(12), delta[:, 1:], delta[:, 2:3]])
    Mw, kw = sandwich_whitener(wide, gamma)
    assert (k, kw, Mw.shape) == (3, 3, (5, 12))
    assert np.all(Mw[kw:] == 0)
    rng = np.random.default_rng(8)
    for _ in range(5):
        d = rng.normal(size=12)
        assert np.sum((Mw @ d) ** 2) == pytest.approx(np.sum((M @ d) ** 2), rel=1e-8)
    assert sandwich_whitener(np.zeros((12, 2)), gamma)[1] == 0


def test_bad_inputs_are_located_errors():
    delta, gamma = _toy(9)
    with pytest.raises(ModelError, match="shape"):
        sandwich_whitener(delta, gamma[:5, :5])
    g = gamma.copy()
    g[4, 4] = -1.0
    with pytest.raises(ModelError, match="position 4"):
        diagonal_whitener(g)
    with pytest.raises(ModelError, match="non-finite"):
        sandwich_whitener(np.where(np.eye(12, 3) > 0, np.nan, delta), gamma)


def _corr_term(model, beta, loading):
    from veerkracht_bayes.sem.model_builder import edge_groups, edge_prior_values

    keys = list(model.coords["edge"])
    eps = edge_prior_values(WidePriors(), make_graph())
    for rv in model.free_RVs:
        if rv.name == "loading":
            model.set_initval(rv, loading)
    for name, _, idx in edge_groups(eps, keys):
        model.set_initval(model[name], np.array([beta[i] for i in idx]))
    outs = model.replace_rvs_by_values([model["correlations"]])
    return float(model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(model.initial_point())[0])


def test_polychoric_model_weights_are_the_stated_quadratic_forms():
    """At the truth: weight="diagonal" gives -1/2 sum (r - rho)^2 / diag(Gamma); weight="sandwich"
    with a given M gives -1/2 |M (r - rho)|^2; its pilot's Jacobian matches central finite
    differences of the NumPy implied correlations (inference.polychoric_check); a second pilot gives
    the same whitener."""
    from types import SimpleNamespace

    from veerkracht_bayes.inference.polychoric_check import stage2_implied_correlations

    _, pdata = simulate(2000, 6)
    g = make_graph()
    idx = pdata.lik_pairs
    r = pdata.stats.r[idx]
    G = pdata.stats.acov[np.ix_(idx, idx)]
    l_true = LAMBDA / np.sqrt(1 + LAMBDA ** 2)
    md, layout = build_polychoric_model(g, pdata, WidePriors(), settings=PolychoricSettings(weight="diagonal"))
    lay = SimpleNamespace(lik_latent=layout.lik_latent, covariates=layout.covariates, edge_kind=layout.edge_kind)
    rho = stage2_implied_correlations(pdata, lay, g, TRUE_BETA, l_true)[0]
    assert _corr_term(md, TRUE_BETA, LAMBDA) == pytest.approx(-0.5 * np.sum((r - rho) ** 2 / np.diag(G)), rel=1e-6)

    M = np.random.default_rng(0).normal(size=(4 + 9, len(r)))
    ms, _ = build_polychoric_model(g, pdata, WidePriors(), settings=PolychoricSettings(weight="sandwich"), whitener=M)
    assert _corr_term(ms, TRUE_BETA, LAMBDA) == pytest.approx(-0.5 * np.sum((M @ (r - rho)) ** 2), rel=1e-6)
    with pytest.raises(ModelError, match="shape"):
        set_sandwich_whitener(ms, M[:3])
    with pytest.raises(ModelError, match="whitener"):
        build_polychoric_model(g, pdata, WidePriors(), whitener=M, settings=PolychoricSettings(weight="full"))
    with pytest.raises(ModelError, match="weight"):
        build_polychoric_model(g, pdata, WidePriors(), settings=PolychoricSettings(weight="dwls"))

    mp, _ = build_polychoric_model(g, pdata, WidePriors(), settings=PolychoricSettings(weight="sandwich"), pilot=False)
    info = fit_sandwich_weight(mp, cache_key="test_moment_weights fixture model")
    assert sandwich_pilot_info(mp) is info and info.rank == 13 and info.converged, info.message
    # a second pilot on the same model starts from the DWLS model again, not from the sandwich it holds
    again = fit_sandwich_weight(mp, cache_key="test_moment_weights fixture model")
    assert np.allclose(again.whitener, info.whitener, rtol=1e-6, atol=1e-9)
    b0, l0 = info.point["beta"], info.point["lambda"]
    assert np.all(np.abs(b0 - TRUE_BETA) < 0.15), b0  # the DWLS mode, n = 2,000
    h = 1e-6
    fd = []
    for j in range(4 + 9):
        up, dn = [b0.copy(), l0.copy()], [b0.copy(), l0.copy()]
        part, i = (0, j) if j < 4 else (1, j - 4)
        up[part][i] += h
        dn[part][i] -= h
        fd.append((stage2_implied_correlations(pdata, lay, g, *up)[0]
                   - stage2_implied_correlations(pdata, lay, g, *dn)[0]) / (2 * h))
    assert np.allclose(info.delta, np.column_stack(fd), atol=1e-6)
    assert np.allclose(info.whitener, sandwich_whitener(info.delta, G + 1e-9 * np.trace(G) / len(G) * np.eye(len(G)))[0])


def test_pilot_optimiser_steps_back_from_an_infinite_barrier():
    """The pilot's L-BFGS (optax, ``minimise_lbfgs``) on a quadratic whose minimum (0.9, 0.9) lies 0.1
    from a wall (``x0 >= 1``: +inf, as the negative log-density outside the support; beyond it
    the quadratic itself would keep falling): the first unit step from (0.5, 0.5) lands at
    x0 = 1.5, in the wall, and must be shortened; the run ends at the minimum."""
    import jax
    import jax.numpy as jnp

    from veerkracht_bayes.sem.polychoric_likelihood import minimise_lbfgs, lbfgs_program

    def f(x, c):
        q = 3.0 * (x[0] - c[0]) ** 2 + 2.0 * (x[1] - x[0]) ** 2
        return jnp.where(x[0] < 1.0, q, jnp.inf)

    program = lbfgs_program(f)
    c = jnp.array([0.9])
    x0 = np.array([0.5, 0.5])
    with jax.enable_x64(True):
        init, value_and_grad, step = program
        v, g = value_and_grad(jnp.asarray(x0), c)
        first, f_first, _, stepsize, _ = step(jnp.asarray(x0), init(jnp.asarray(x0)), v, g, c)
    assert float(stepsize) < 1.0 and float(first[0]) < 1.0 and np.isfinite(float(f_first))
    x, fx, it, converged, message = minimise_lbfgs(program, x0, 100, c)
    assert converged and message == "converged", message
    assert np.allclose(x, [0.9, 0.9], atol=1e-6) and 0.0 <= fx < 1e-10 and it < 100
