"""Stage 1's asymptotic covariance of the polychoric correlations: the empirical sandwich
(``acov="full"``) against the model-based one (``acov="model"``), at a fixed parameter with a
strong negative loop (loop gain -0.70, the kind of draw where the polychoric SBC missed most).

Both have the right mean (the Monte Carlo covariance of the correlations across replications);
the empirical one is noisy from data set to data set (relative SD of its diagonal ~0.07 at
n = 1,000, 45 correlations), and that noise made the stage-2 posterior too narrow (the
likelihood-ratio statistic at the truth exceeded its chi-square(13) 90 % point in 20 % of 200
replications with it, 10 % with the model-based matrix; docs/performance.md §4b). The fast tests
check both properties of the model-based matrix with few replications; the calibration itself is
checked by ``tests/sem/test_polychoric_sbc.py::test_sbc_slow_interval_coverage`` (slow).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _polychoric_fixtures import simulate

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.polychoric import polychoric

#: a prior draw of the SBC with a strong negative loop: x->a, a->b, b->c, c->a and 9 loadings
BETA = np.array([0.211, 0.867, 0.868, -0.936])
LAM = np.array([1.04, 1.86, 1.21, 0.07, 0.99, 2.35, 0.77, 0.44, 0.03])


def implied(beta: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The fixture model's latent-response correlation matrix (9 items, then x), by hand."""
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = beta[1], beta[2], beta[3]
    A = np.linalg.inv(np.eye(3) - B)
    AG = A @ np.array([[beta[0]], [0.0], [0.0]])
    psi = np.linalg.solve(A * A, 1.0 - (AG ** 2).sum(1))
    S = A @ np.diag(psi) @ A.T + AG @ AG.T
    l = lam / np.sqrt(1 + lam ** 2)
    c = np.repeat(np.arange(3), 3)
    C = np.eye(10)
    C[:9, :9] = np.outer(l, l) * S[np.ix_(c, c)]
    C[:9, 9] = C[9, :9] = l * AG[c, 0]
    np.fill_diagonal(C, 1.0)
    return C


@functools.lru_cache(maxsize=1)
def replications(reps: int = 24, n: int = 1000, rows: int = 20_000):
    """Correlations and both covariance estimates over ``reps`` data sets at the fixed parameter."""
    rs, full, model = [], [], []
    for k in range(reps):
        od, pdata = simulate(n, 9100 + k, beta=BETA, lam=LAM)
        mat = np.column_stack([np.where(od.codes < 0, np.nan, od.codes).astype(float), od.x[:, 0]])
        st = polychoric(mat, ["ordinal"] * 9 + ["continuous"], acov="model", model_rows=rows, seed=k)
        assert np.allclose(st.r, pdata.stats.r)  # the same estimates, only the covariance differs
        rs.append(st.r)
        full.append(pdata.stats.acov)
        model.append(st.acov)
    rho = implied(BETA, LAM)[tuple(pdata.stats.pairs.T)]
    return np.array(rs), np.array(full), np.array(model), rho


def test_model_acov_has_the_monte_carlo_mean():
    """Mean of the quadratic form (r - rho)' Gbar^-1 (r - rho) over the replications (Gbar the
    mean model-based matrix): chi-square(45) when Gbar is the sampling covariance and r is
    unbiased, so its mean over R replications is 45 +- sqrt(90 / R) (1.9 at R = 24); 4 SE
    allowed (a matrix 20 % too small or too large moves it by 9 or 7.5)."""
    rs, _, model, rho = replications()
    gbar = model.mean(axis=0)
    e = rs - rho
    q = np.einsum("ri,ij,rj->r", e, np.linalg.inv(gbar), e)
    s, reps = len(rho), len(rs)
    print("\nmean quadratic form", q.mean(), "expected", s, "+-", np.sqrt(2 * s / reps))
    assert abs(q.mean() - s) < 4 * np.sqrt(2 * s / reps)
    # per element: the Monte Carlo variances against the diagonal (ratio 1, each element's
    # variance estimate with relative SD sqrt(2 / (R - 1)) ~ 0.29; the mean of 45 ratios far less)
    ratio = np.mean(e ** 2, axis=0) / np.diag(gbar)
    assert 0.7 < ratio.mean() < 1.3, ratio.mean()


def test_model_acov_is_less_noisy_than_the_empirical_sandwich():
    """Across data sets, the relative SD of the diagonal of the model-based matrix is below
    0.8 x that of the empirical sandwich (measured at R = 200, model_rows = 100,000: 0.039 vs 0.071;
    at model_rows = 20,000 the Monte Carlo part adds ~0.016 in quadrature). Each noise level is a
    mean of 45 relative SDs, each from R = 24 values (relative error ~0.15 each): 0.8 leaves
    room for that, and an estimator as noisy as the empirical one fails."""
    _, full, model, _ = replications()
    idx = np.diag_indices(full.shape[1])
    noise = {k: float(np.mean(g.std(axis=0)[idx] / g.mean(axis=0)[idx])) for k, g in
             (("full", full), ("model", model))}
    print("\nrelative SD of the diagonal across data sets", noise)
    assert noise["model"] < 0.8 * noise["full"], noise
    # the two estimate the same matrix: their means agree within the noise
    rel = np.diag(model.mean(axis=0)) / np.diag(full.mean(axis=0))
    assert abs(rel.mean() - 1) < 0.05, rel.mean()


def test_model_acov_is_deterministic_given_the_seed_and_checks_model_rows():
    y = np.random.default_rng(3).integers(0, 3, (300, 3)).astype(float)
    a = polychoric(y, ["ordinal"] * 3, acov="model", model_rows=5000, seed=4)
    b = polychoric(y, ["ordinal"] * 3, acov="model", model_rows=5000, seed=4)
    assert np.array_equal(a.acov, b.acov) and np.allclose(a.acov, a.acov.T)
    assert np.all(np.linalg.eigvalsh(a.acov) > 0)
    with pytest.raises(SurveyError, match="model_rows"):
        polychoric(y, ["ordinal"] * 3, acov="model", model_rows=0)
    with pytest.raises(SurveyError, match="acov must be"):
        polychoric(y, ["ordinal"] * 3, acov="sandwich")
