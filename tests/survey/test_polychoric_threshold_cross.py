"""Stage 1's joint asymptotic covariance of thresholds and correlations
(veerkracht_bayes.survey.polychoric: ``threshold_acov`` and ``threshold_r_acov``)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.sem.lavaan_ordinal import threshold_acov
from veerkracht_bayes.survey.polychoric import polychoric

R = np.array([[1.0, 0.7, 0.5], [0.7, 1.0, 0.6], [0.5, 0.6, 1.0]])
CUTS = ([1.0], [1.2], [0.5, 1.5])  # skewed thresholds: the cross-covariance is far from 0


def _sim(rng, n):
    z = rng.multivariate_normal(np.zeros(3), R, size=n)
    return np.column_stack([np.digitize(z[:, j], CUTS[j]) for j in range(3)]).astype(float)


def test_threshold_block_equals_the_item_sandwich_and_shapes():
    y = _sim(np.random.default_rng(0), 600)
    res = polychoric(y, ["ordinal"] * 3)
    assert res.threshold_acov.shape == (4, 4) and res.threshold_r_acov.shape == (4, 3)
    np.testing.assert_allclose(res.threshold_acov, threshold_acov(y.astype(int), list(res.thresholds)),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.sqrt(np.diag(res.threshold_acov)), np.concatenate(res.threshold_se), rtol=1e-10)
    assert polychoric(y, ["ordinal"] * 3, acov="diagonal").threshold_r_acov is None


def test_mixed_kinds_and_missing_values_give_a_positive_definite_joint_covariance():
    rng = np.random.default_rng(1)
    y = _sim(rng, 800)
    y = np.column_stack([y, y[:, 0] + rng.normal(size=800)])  # a continuous item
    y[rng.random(y.shape) < 0.05] = np.nan
    res = polychoric(y, ["ordinal", "ordinal", "ordinal", "continuous"])
    V = np.block([[res.threshold_acov, res.threshold_r_acov], [res.threshold_r_acov.T, res.acov]])
    assert res.threshold_r_acov.shape == (4, 6) and np.linalg.eigvalsh(V).min() > 0


def test_cross_block_matches_monte_carlo():
    """The asymptotic (thresholds x correlations) covariance against the covariance of the
    estimates over 1000 simulated samples of n = 1000. On the correlation scale the Monte Carlo
    SE of each entry is about (1 - c^2) / sqrt(1000) <= 0.032: each entry within 0.12, and the
    block is not ~0 (its largest entry beyond 0.1 in both)."""
    rng = np.random.default_rng(2)
    big = polychoric(_sim(rng, 200_000), ["ordinal"] * 3)
    V = np.block([[big.threshold_acov, big.threshold_r_acov], [big.threshold_r_acov.T, big.acov]])
    sd = np.sqrt(np.diag(V))
    asym = (V / np.outer(sd, sd))[:4, 4:]
    est = []
    for _ in range(1000):
        r = polychoric(_sim(rng, 1000), ["ordinal"] * 3, acov="none")
        est.append(np.concatenate([*r.thresholds, r.r]))
    C = np.cov(np.array(est).T)
    esd = np.sqrt(np.diag(C))
    emp = (C / np.outer(esd, esd))[:4, 4:]
    assert np.abs(asym - emp).max() < 0.12, (asym.round(3), emp.round(3))
    assert np.abs(asym).max() > 0.1 and np.abs(emp).max() > 0.1
    # and the variances themselves (scaled to n = 1000): within 10 %
    assert esd / (sd * np.sqrt(200_000 / 1000)) == pytest.approx(np.ones(7), abs=0.1)
