"""Tests of the two-stage EM (veerkracht_bayes.survey.missing_data).

* Without missing values the EM fixed point is the closed-form weighted least-squares /
  ML estimate and the expected statistics are the complete-data ones (identity, 1e-10).
* With missing values the EM estimate is the observed-data maximum-likelihood estimate: it is
  compared with a direct BFGS maximisation of the saturated observed-data likelihood (M, and S
  through its Cholesky factor) on a tiny problem. Both optimise the same smooth function; the
  EM stops at tol=1e-10 and BFGS at gtol=1e-9, so agreement to 1e-4 is a loose bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from veerkracht_bayes.survey.missing_data import em_saturated


def _data(n=120, m=3, miss=0.0, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    u = np.column_stack([np.ones(n), x])
    L = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [-0.3, 0.4, 0.7]])[:m, :m]
    y = u @ rng.normal(size=(2, m)) + rng.normal(size=(n, m)) @ L.T
    y[rng.random((n, m)) < miss] = np.nan
    y[np.isnan(y).all(axis=1), 0] = 0.5  # keep every row with one observed item
    w = rng.uniform(0.5, 2.0, n)
    return y, u, w


def test_complete_data_em_is_closed_form():
    y, u, w = _data()
    em = em_saturated(y, u, w, tol=1e-12)
    Suu = u.T @ (u * w[:, None])
    Suy = u.T @ (y * w[:, None])
    Syy = y.T @ (y * w[:, None])
    M = np.linalg.solve(Suu, Suy).T
    r = y - u @ M.T
    S = (r * w[:, None]).T @ r / w.sum()
    assert em.converged
    np.testing.assert_allclose(em.M, M, atol=1e-10)
    np.testing.assert_allclose(em.S, S, atol=1e-10)
    np.testing.assert_allclose(em.Syy, Syy, rtol=1e-12)
    np.testing.assert_allclose(em.Suy, Suy, rtol=1e-12)
    np.testing.assert_allclose(em.Suu, Suu, rtol=1e-12)
    assert em.missing_information == pytest.approx(0.0, abs=1e-12)


def _obs_negloglik(params, y, u, w, m, q1):
    M = params[: m * q1].reshape(m, q1)
    Lf = np.zeros((m, m))
    Lf[np.tril_indices(m)] = params[m * q1:]
    d = np.diag_indices(m)
    Lf[d] = np.exp(Lf[d])
    S = Lf @ Lf.T
    obs = ~np.isnan(y)
    mu = u @ M.T
    total = 0.0
    for pat in np.unique(obs, axis=0):  # scipy's MVN density, one call per missingness pattern
        rows = (obs == pat).all(axis=1)
        r = (y[rows] - mu[rows])[:, pat]
        lp = np.atleast_1d(multivariate_normal(np.zeros(pat.sum()), S[np.ix_(pat, pat)]).logpdf(r))
        total += w[rows] @ lp
    return -total


def test_em_equals_direct_observed_data_ml():
    y, u, w = _data(n=80, m=3, miss=0.25, seed=9)
    assert np.isnan(y).sum() > 40
    em = em_saturated(y, u, w, tol=1e-10, max_iter=5000)
    assert em.converged
    m, q1 = y.shape[1], u.shape[1]
    Lc = np.linalg.cholesky(em.S)
    Lc[np.diag_indices(m)] = np.log(np.diag(Lc))
    # start BFGS away from the EM solution (identity covariance, zero means)
    x0 = np.zeros(m * q1 + m * (m + 1) // 2)
    res = minimize(_obs_negloglik, x0, args=(y, u, w, m, q1), method="BFGS", options={"gtol": 1e-9})
    M = res.x[: m * q1].reshape(m, q1)
    Lf = np.zeros((m, m))
    Lf[np.tril_indices(m)] = res.x[m * q1:]
    Lf[np.diag_indices(m)] = np.exp(Lf[np.diag_indices(m)])
    np.testing.assert_allclose(em.M, M, atol=1e-4)
    np.testing.assert_allclose(em.S, Lf @ Lf.T, atol=1e-4)
    # the EM value is at least as good as the optimiser's
    x_em = np.concatenate([em.M.ravel(), Lc[np.tril_indices(m)]])
    assert _obs_negloglik(x_em, y, u, w, m, q1) <= res.fun + 1e-7


def test_expected_statistics_are_a_fixed_point():
    """At convergence, the M- and S-updates computed from the expected statistics return M, S."""
    y, u, w = _data(n=200, m=3, miss=0.2, seed=2)
    em = em_saturated(y, u, w, tol=1e-11, max_iter=5000)
    M = np.linalg.solve(em.Suu, em.Suy).T
    S = (em.Syy - M @ em.Suy - em.Suy.T @ M.T + M @ em.Suu @ M.T) / em.W
    np.testing.assert_allclose(M, em.M, atol=1e-8)
    np.testing.assert_allclose(S, em.S, atol=1e-8)
    share = np.mean(np.isnan(y))
    assert em.missing_information == pytest.approx(share, abs=0.02)  # weighted share of missing cells


def _rowwise_expected_stats(y, u, w, M, S):
    """Reference E-step, one row at a time, in the covariance form (not the precision form)."""
    n, m = y.shape
    Syy = np.zeros((m, m))
    Suy = np.zeros((u.shape[1], m))
    for i in range(n):
        o = ~np.isnan(y[i])
        r = ~o
        mu = M @ u[i]
        yh = y[i].copy()
        C = np.zeros((m, m))
        if r.any():
            B = S[np.ix_(r, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            yh[r] = mu[r] + B @ (y[i, o] - mu[o])
            C[np.ix_(r, r)] = S[np.ix_(r, r)] - B @ S[np.ix_(o, r)]
        Syy += w[i] * (np.outer(yh, yh) + C)
        Suy += w[i] * np.outer(u[i], yh)
    return Syy, Suy


def test_pattern_e_step_equals_rowwise_reference():
    """The returned statistics are the E-step at the returned (M, S): checked row by row.

    The pattern E-step (precision form, only the missing rows, batched by the number of
    missing items) and the row loop (covariance form) are algebraically identical; they
    differ by rounding only (~1e-13 relative on sums of 300 O(1) terms), so rtol 1e-9.
    """
    y, u, w = _data(n=300, m=3, miss=0.3, seed=4)
    rng = np.random.default_rng(4)
    extra = rng.normal(size=(300, 3))  # 6 items: more patterns, k from 1 to 5
    extra[rng.random((300, 3)) < 0.3] = np.nan
    y = np.concatenate([y, extra + 0.5 * np.nan_to_num(y[:, :1])], axis=1)
    pats, counts = np.unique(~np.isnan(y), axis=0, return_counts=True)
    assert len(pats) > 20
    # both forms of the E-step: incomplete patterns with at least D = q + 1 + m rows (their
    # moment matrix) and with fewer (their rows)
    D = u.shape[1] + y.shape[1]
    incomplete = ~pats.all(axis=1)
    assert np.any(counts[incomplete] >= D) and np.any(counts[incomplete] < D)
    em = em_saturated(y, u, w, tol=1e-10, max_iter=5000)
    assert em.converged
    Syy, Suy = _rowwise_expected_stats(y, u, w, em.M, em.S)
    np.testing.assert_allclose(em.Syy, Syy, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(em.Suy, Suy, rtol=1e-9, atol=1e-9)


def test_blocks_and_order_do_not_matter():
    """Splitting the patterns into blocks in any order gives the same fit (rounding only: 1e-10)."""
    from veerkracht_bayes.survey.missing_data import em_pattern_blocks, pattern_z
    from veerkracht_bayes.survey.statistics import pattern_stats

    y, u, w = _data(n=400, m=3, miss=0.3, seed=8)
    st = pattern_stats(y, u, w)
    Z = pattern_z(st.Suu, st.Suy, st.Syy)
    one = em_pattern_blocks([(Z, st.masks, st.W)], 2, tol=1e-11)
    perm = np.random.default_rng(0).permutation(len(Z))
    cut = len(Z) // 3
    blocks = [(Z[perm[:cut]].copy(), st.masks[perm[:cut]], st.W[perm[:cut]]),
              (Z[perm[cut:]].copy(), st.masks[perm[cut:]], st.W[perm[cut:]])]
    two = em_pattern_blocks(blocks, 2, tol=1e-11, in_place=True)
    assert one.iterations == two.iterations
    for name in ("M", "S", "Syy", "Suy", "Suu"):
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=1e-10, atol=1e-10)


def test_collinear_design_column_converges_to_the_same_fit():
    """A design column that is constant in the rows given (a covariate equal for everyone, as the
    grouping's own indicator is within a group) makes Suu singular; EM must still converge, to the
    fit of the design without that column (the same M u and S), not wander along the null space."""
    y, u, w = _data(n=150, m=3, miss=0.25, seed=11)
    reduced = em_saturated(y, u, w, tol=1e-10)
    collinear = np.column_stack([u, np.full(len(y), 1.0)])  # a covariate = 1 for every row
    em = em_saturated(y, collinear, w, tol=1e-10, max_iter=500)
    assert em.converged and reduced.converged
    assert em.iterations <= reduced.iterations + 5
    np.testing.assert_allclose(em.S, reduced.S, atol=1e-8)
    np.testing.assert_allclose(collinear @ em.M.T, u @ reduced.M.T, atol=1e-8)
    np.testing.assert_allclose(em.Syy, reduced.Syy, rtol=1e-8)


def test_rows_of_many_thin_patterns_equal_their_moment_matrices():
    """In memory, patterns with fewer rows than D = q + 1 + m keep their rows (in batches of a few
    thousand rows); the out-of-core form has every pattern's moment matrix. 20,000 rows with 3 of
    30 items missing each give 4,060 patterns of about 5 rows (all thin, several batches of
    rows): the two forms must give the same fit, up to rounding (1e-10)."""
    from veerkracht_bayes.survey.missing_data import em_pattern_blocks, pattern_z
    from veerkracht_bayes.survey.statistics import pattern_stats

    rng = np.random.default_rng(12)
    n, m = 20_000, 30
    u = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = u @ rng.normal(size=(2, m)) + rng.normal(size=(n, 4)) @ rng.normal(size=(4, m)) + rng.normal(size=(n, m))
    miss = np.argsort(rng.random((n, m)), axis=1)[:, :3]
    np.put_along_axis(y, miss, np.nan, axis=1)
    w = rng.uniform(0.5, 2.0, n)
    pats, counts = np.unique(~np.isnan(y), axis=0, return_counts=True)
    assert len(pats) > 4000 and counts.max() < u.shape[1] + m  # every pattern is thin
    rows_form = em_saturated(y, u, w, tol=1e-11)
    st = pattern_stats(y, u, w)
    matrix_form = em_pattern_blocks([(pattern_z(st.Suu, st.Suy, st.Syy), st.masks, st.W)], 2, tol=1e-11)
    assert rows_form.converged and rows_form.iterations == matrix_form.iterations
    for name in ("M", "S", "Syy", "Suy", "Suu"):
        np.testing.assert_allclose(getattr(rows_form, name), getattr(matrix_form, name), rtol=1e-10, atol=1e-10)
