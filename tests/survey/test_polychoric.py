"""Stage 1 of the polychoric route: bivariate normal CDF, recovery of known latent-response
correlations, and the asymptotic covariance against replication.

Tolerances come from Monte Carlo error: with R replications the mean of an estimate has
standard error sd / sqrt(R) (checked at 4 of those), the empirical SD has relative standard
error about 1 / sqrt(2 (R - 1)) (checked at 4 of those), and the mean of the quadratic form
(r - rho)' Gamma^-1 (r - rho), chi-square with s degrees of freedom if Gamma is right, has
standard error sqrt(2 s / R).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from veerkracht_bayes.errors import ModelError, SurveyError
from veerkracht_bayes.survey.polychoric import bvn_cdf, polychoric, whiten_correlations

R_TRUE = np.array([[1.0, 0.5, 0.3, 0.6],
                   [0.5, 1.0, -0.4, 0.2],
                   [0.3, -0.4, 1.0, 0.45],
                   [0.6, 0.2, 0.45, 1.0]])
KINDS = ["ordinal", "ordinal", "continuous", "continuous"]


def simulate(n: int, seed: int, missing: float = 0.1):
    """A 5-category item, a binary item (20 % yes), a linear and a log-normal continuous item
    (the last log-transformed back before use), 10 % missing completely at random, weights
    that do not depend on the values (so the weighted estimators target the same truth)."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(4), R_TRUE, size=n)
    y = np.column_stack([np.digitize(z[:, 0], [-1.0, 0.0, 0.7, 1.5]), np.digitize(z[:, 1], [0.84]),
                         2.0 * z[:, 2] + 1.0, np.log(np.exp(0.5 + z[:, 3]))]).astype(float)
    y[rng.random((n, 4)) < missing] = np.nan
    return y, rng.uniform(0.5, 2.0, n)


@pytest.mark.parametrize("h,k,rho", [(0.3, -1.2, 0.7), (-2.0, 0.5, -0.9), (1.0, 1.0, 0.98), (0.0, 0.0, 0.5),
                                     (0.0, 1.3, -0.2), (-0.5, -0.5, 0.3), (40.0, 1.0, 0.5), (-np.inf, 1.0, 0.2)])
def test_bvn_cdf_matches_scipy(h, k, rho):
    ref = multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([max(h, -40), k])
    assert bvn_cdf(h, k, rho) == pytest.approx(ref, abs=1e-8)


def test_recovery_and_asymptotic_covariance_match_replication():
    reps, n = 150, 1000
    kinds = KINDS
    rs, ses, quad = [], [], []
    truth = R_TRUE[np.triu_indices(4, 1)]
    for rep in range(reps):
        y, w = simulate(n, rep)
        res = polychoric(y, kinds, weights=w)
        rs.append(res.r)
        ses.append(res.se)
        d = res.r - truth
        quad.append(d @ np.linalg.solve(res.acov, d))
    rs, ses = np.array(rs), np.array(ses)
    sd = rs.std(axis=0, ddof=1)
    assert np.all(np.abs(rs.mean(axis=0) - truth) < 4 * sd / np.sqrt(reps))
    ratio = sd / ses.mean(axis=0)
    assert np.all(np.abs(ratio - 1) < 4 / np.sqrt(2 * (reps - 1))), ratio
    s = len(truth)
    assert abs(np.mean(quad) - s) < 4 * np.sqrt(2 * s / reps), np.mean(quad)


def test_thresholds_and_kinds_of_pairs():
    y, _ = simulate(20000, 7, missing=0.0)
    res = polychoric(y, KINDS, names=["lik", "bin", "lin", "log"])
    assert res.n_categories.tolist() == [5, 2, 0, 0]
    assert res.thresholds[0] == pytest.approx([-1.0, 0.0, 0.7, 1.5], abs=4 * max(res.threshold_se[0]))
    assert res.thresholds[1] == pytest.approx([0.84], abs=4 * res.threshold_se[1][0])
    assert res.thresholds[2].size == 0
    # the correlation matrix is symmetric with unit diagonal and agrees with r
    assert np.allclose(res.correlation, res.correlation.T)
    assert res.correlation[res.pairs[:, 0], res.pairs[:, 1]] == pytest.approx(res.r)
    i = res.index("log", "lik")
    assert res.r[i] == pytest.approx(0.6, abs=4 * res.se[i])
    # diagonal-only covariance equals the diagonal of the full one
    diag = polychoric(y[:3000], KINDS, acov="diagonal")
    full = polychoric(y[:3000], KINDS)
    assert np.diag(diag.acov) == pytest.approx(np.diag(full.acov), rel=1e-10)


def test_weights_enter_the_tables():
    """Oversampling the upper categories and weighting them back gives the population answer;
    ignoring the weights does not."""
    rng = np.random.default_rng(3)
    z = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=40000)
    keep = rng.random(40000) < np.where(z[:, 0] > 0, 1.0, 0.25)
    y = np.column_stack([np.digitize(z[keep, 0], [0.0]), np.digitize(z[keep, 1], [-0.5, 0.5])]).astype(float)
    w = np.where(z[keep, 0] > 0, 1.0, 4.0)
    wt = polychoric(y, ["ordinal", "ordinal"], weights=w)
    un = polychoric(y, ["ordinal", "ordinal"])
    assert wt.thresholds[0][0] == pytest.approx(0.0, abs=4 * wt.threshold_se[0][0])
    assert abs(un.thresholds[0][0]) > 10 * un.threshold_se[0][0]


def test_bad_input_is_located():
    y, _ = simulate(50, 0)
    y[4, 0] = 1.5
    with pytest.raises(SurveyError, match="integers") as err:
        polychoric(y, KINDS, names=["a", "b", "c", "d"])
    assert err.value.problems[0].line == 5 and err.value.problems[0].field == "a"
    y, _ = simulate(50, 0)
    with pytest.raises(SurveyError, match="kind"):
        polychoric(y, ["ordinal", "ordinal", "nominal", "continuous"])
    y[:, 1] = 0.0
    with pytest.raises(SurveyError, match="2 observed categories"):
        polychoric(y, KINDS)


def test_whiten_correlations_whitens_and_refuses_a_singular_gamma():
    """``L^-1`` whitens the (ridged) asymptotic covariance of the chosen correlations, and a
    Gamma_hat that is not positive definite is refused with a ModelError."""
    import dataclasses

    rng = np.random.default_rng(3)
    z = rng.multivariate_normal(np.zeros(4), 0.4 + 0.6 * np.eye(4), size=300)
    res = polychoric((z > 0).astype(float) + (z > 1), ["ordinal"] * 4)
    sub = np.array([0, 2, 5])
    r_w, l_inv = whiten_correlations(res, sub, ridge=0.0)
    G = res.acov[np.ix_(sub, sub)]
    assert np.allclose(l_inv @ G @ l_inv.T, np.eye(3), atol=1e-8)
    assert np.allclose(r_w, l_inv @ res.r[sub])
    assert np.allclose(np.tril(l_inv), l_inv)
    bad = dataclasses.replace(res, acov=-np.eye(len(res.r)))
    with pytest.raises(ModelError, match="not positive definite"):
        whiten_correlations(bad)


def test_pair_counts_are_the_weighted_jointly_observed_rows():
    """The tables behind every correlation (ordinal x ordinal, polyserial, Pearson) count each
    pair's jointly observed rows with the normalised weights, whatever the missingness pattern."""
    rng = np.random.default_rng(5)
    n = 1500
    z = rng.multivariate_normal(np.zeros(5), 0.3 + 0.7 * np.eye(5), size=n)
    d = np.column_stack([np.digitize(z[:, 0], [-1, 0, 1]), np.digitize(z[:, 1], [0.3]), z[:, 2],
                         np.exp(z[:, 3]), np.digitize(z[:, 4], [-0.5, 0.5])]).astype(float)
    d[rng.random(d.shape) < 0.1] = np.nan
    w = rng.gamma(2.0, 0.5, n)
    res = polychoric(d, ["ordinal", "ordinal", "continuous", "continuous", "ordinal"], weights=w, acov="none")
    wn = w * n / w.sum()
    obs = ~np.isnan(d)
    expected = [wn[obs[:, i] & obs[:, j]].sum() for i, j in res.pairs]
    np.testing.assert_allclose(res.pair_n, expected, rtol=1e-12)
