"""Weights of a two-stage (moment-structure) likelihood: full, diagonal, and the sandwich.

Stage 1 gives estimates ``r`` (``m`` of them: correlations, thresholds) with an estimated
asymptotic covariance ``Gamma_hat``; stage 2 fits a model ``rho(theta)`` to them. Three
discrepancies, each written as ``|M (r - rho(theta))|^2`` with a fixed "whitener" ``M``:

* **full** (``M = L^-1``, ``Gamma_hat = L L'``): the Gaussian likelihood ``N(rho, Gamma_hat)``.
  It *inverts* the ``m x m`` matrix ``Gamma_hat``; at moderate n the noise of ``Gamma_hat``
  (each entry an average of n fourth-moment terms) makes that inverse too large on average, so
  the posterior is too narrow (the classic full-weight WLS / ADF problem).
* **diagonal** (``M = D^-1/2``, ``D = diag(Gamma_hat)``): diagonally weighted least squares
  (lavaan's DWLS). Consistent, but its curvature is not the sampling precision of the
  estimator: as a posterior it is not calibrated. Used as the pilot of the sandwich.
* **sandwich** (:func:`sandwich_whitener`): the quasi-likelihood of the DWLS estimating equation,
  the Bayesian analogue of WLSMV (Muthen, du Toit & Spisic 1997). With ``Delta`` the Jacobian
  ``d rho / d theta`` at a pilot point,

  ``g(theta) = Delta' D^-1 (r - rho(theta))`` (``E g(theta_true) = 0`` for any fixed ``Delta``),
  ``J = Delta' D^-1 Gamma_hat D^-1 Delta`` (the variance of ``g``), and
  ``log L(theta) = -1/2 g' J^+ g = -1/2 |M (r - rho(theta))|^2`` with
  ``M = S_k^-1/2 U_k' Delta' D^-1`` (``J``'s eigenvectors ``U_k`` with eigenvalue above
  ``tol * max``; directions that the data do not inform, such as zero columns of ``Delta``,
  drop out).

  ``Gamma_hat`` enters only linearly and through the small ``p x p`` matrix ``J``. The curvature
  of ``log L`` is ``H J^-1 H`` with ``H = Delta' D^-1 Delta``, the Godambe (sandwich) information
  of the DWLS estimator, so the quasi-posterior is asymptotically calibrated
  (Chernozhukov & Hong 2003, "An MCMC approach to classical estimation", J. Econometrics
  115:293; Yin 2009, Bayesian GMM). The quadratic form is invariant to reparameterising
  ``theta`` (``Delta -> Delta T`` leaves ``g' J^-1 g`` unchanged).

The functions are NumPy only; the models put ``M`` in a data container.
"""

from __future__ import annotations

import numpy as np

from veerkracht_bayes.errors import ModelError, Problem

__all__ = ["diagonal_whitener", "sandwich_whitener"]


def diagonal_whitener(gamma: np.ndarray) -> np.ndarray:
    """``D^-1/2`` as a vector, ``D = diag(Gamma_hat)``: the DWLS whitener (elementwise).

    Parameters
    ----------
    gamma
        ``(m, m)`` asymptotic covariance of the stage-1 estimates (only its diagonal is used).

    Returns
    -------
    ndarray, shape (m,)

    Raises
    ------
    ModelError
        When a variance is not finite and positive (naming its position).

    Examples
    --------
    >>> diagonal_whitener(np.diag([4.0, 0.25])).tolist()
    [0.5, 2.0]
    """
    d = np.diag(np.asarray(gamma, dtype=float)).copy()
    bad = np.flatnonzero(~(np.isfinite(d) & (d > 0)))
    if bad.size:
        raise ModelError([Problem(f"stage-1 variance {d[i]!r} at position {i} is not finite and positive",
                                  field=f"acov[{i}, {i}]", value=d[i]) for i in bad[:5]])
    return 1.0 / np.sqrt(d)


def sandwich_whitener(delta: np.ndarray, gamma: np.ndarray, *, tol: float = 1e-9) -> tuple[np.ndarray, int]:
    """The ``p x m`` whitener ``M`` of the DWLS sandwich quasi-likelihood (see the module docstring).

    ``-1/2 |M (r - rho(theta))|^2`` equals ``-1/2 g' J^+ g`` with ``g = Delta' D^-1 (r - rho)``,
    ``J = Delta' D^-1 Gamma D^-1 Delta`` and ``D = diag(Gamma)``. Rows beyond the rank ``k`` of
    ``J`` are zero, so the matrix has the same shape (``p`` = columns of ``Delta``) whatever the
    rank: one compiled model program serves data sets of any rank.

    Parameters
    ----------
    delta
        ``(m, p)`` Jacobian ``d rho / d theta`` at a pilot point (any smooth parameterisation;
        a parameter the estimates do not depend on is a zero column).
    gamma
        ``(m, m)`` asymptotic covariance of the estimates.
    tol
        Eigenvalues of ``J`` at or below ``tol * max`` are treated as zero.

    Returns
    -------
    (M, k)
        ``M`` of shape ``(p, m)`` and the rank ``k`` (its non-zero rows are the first ``k``).

    Examples
    --------
    A linear model ``rho = Delta theta``: the curvature ``M' M`` of the quasi-log-likelihood in
    ``rho`` gives ``Delta' M' M Delta = H J^-1 H`` with ``H = Delta' D^-1 Delta``:

    >>> rng = np.random.default_rng(0)
    >>> delta = rng.normal(size=(6, 2))
    >>> a = rng.normal(size=(6, 6)); gamma = a @ a.T + 6 * np.eye(6)
    >>> M, k = sandwich_whitener(delta, gamma)
    >>> H = delta.T @ np.diag(1 / np.diag(gamma)) @ delta
    >>> J = delta.T @ np.diag(1 / np.diag(gamma)) @ gamma @ np.diag(1 / np.diag(gamma)) @ delta
    >>> k, M.shape, bool(np.allclose(delta.T @ M.T @ M @ delta, H @ np.linalg.solve(J, H)))
    (2, (2, 6), True)

    A zero column (a parameter without data) is dropped:

    >>> M0, k0 = sandwich_whitener(np.column_stack([delta, np.zeros(6)]), gamma)
    >>> k0, M0.shape, bool(np.all(M0[2] == 0))
    (2, (3, 6), True)
    """
    delta = np.asarray(delta, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    m, p = delta.shape
    if gamma.shape != (m, m):
        raise ModelError(Problem(f"gamma has shape {gamma.shape}, expected ({m}, {m}) for a delta of {m} rows",
                                 field="gamma", value=gamma.shape))
    if not np.isfinite(delta).all():
        bad = np.argwhere(~np.isfinite(delta))[:5].tolist()
        raise ModelError(Problem(f"the Jacobian delta has non-finite entries at {bad}", field="delta"))
    d_inv = diagonal_whitener(gamma) ** 2
    a = delta.T * d_inv  # (p, m): Delta' D^-1
    jmat = a @ gamma @ a.T
    jmat = 0.5 * (jmat + jmat.T)
    w, u = np.linalg.eigh(jmat)
    top = float(w.max()) if w.size else 0.0
    keep = w > tol * top if top > 0 else np.zeros(p, bool)
    keep_idx = np.flatnonzero(keep)[::-1]  # largest first
    out = np.zeros((p, m))
    k = int(keep_idx.size)
    if k:
        out[:k] = (u[:, keep_idx] / np.sqrt(w[keep_idx])).T @ a
    return out, k
