"""Model-fit check of the polychoric route: a posterior predictive check on the stage-2 statistics.

The polychoric route's likelihood is on the stage-1 correlations ``r`` (polychoric, polyserial and
Pearson correlations of the items and covariates) with their asymptotic covariance ``Gamma``
(:mod:`veerkracht_bayes.sem.polychoric_likelihood`), not on the item covariance that the continuous
path's check replicates. The check here replicates exactly those statistics. Per posterior draw
``theta``:

- ``rho(theta)``: the implied latent-response correlations of the pairs in the likelihood (the same
  algebra as the model: ``A = (I - B)^-1`` over the likelihood's latents, ``psi`` standardised so
  ``Var(eta) = 1``, ``S_eta = A diag(psi) A' + A G S_x G' A'``, ``corr = l_i l_j S_eta`` and
  ``l_i (A G S_x)``);
- the discrepancy ``T(r, theta) = (r - rho(theta))' W (r - rho(theta))`` with ``W = Gamma^-1`` the
  stage-2 weight (the same ridge as the likelihood), at the observed ``r`` and at a replicate
  ``r_rep ~ N(rho(theta), Gamma)`` (``Gamma`` is the sampling covariance of ``r``: the ``Gamma / n``
  of the asymptotic theory);
- ``PPP = P(T_rep >= T_obs)`` over the draws.

Under the model ``T_rep`` is chi-square with ``s`` degrees of freedom (``s`` correlations) whatever
``theta``, and ``T_obs`` is near ``s`` plus the misfit, so a well-fitting model gives a PPP away from
0 and a misspecified one a PPP near 0. Like the continuous path's check, it is a check of the
structure (which links exist, the measurement model), not of the normality of the latent responses
alone. ``srmr`` is the root mean square of ``r - rho`` (correlation scale, the pairs in the
likelihood), averaged over the draws, the categorical-data SRMR of lavaan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.sem import algebra

__all__ = ["STATISTIC", "Stage2Check", "stage2_implied_correlations", "stage2_ppp"]

#: The name of the statistic this check replicates (``ppp.statistic`` in ``diagnostics.json``).
STATISTIC = "stage2_correlations"


@dataclass(frozen=True, eq=False)
class Stage2Check:
    """The posterior predictive check of the stage-2 statistics (:func:`stage2_ppp`).

    Attributes
    ----------
    ppp
        ``P(T_rep >= T_obs)``.
    t_obs, t_rep
        The discrepancy per draw at the observed and the replicated correlations.
    n_correlations
        ``s``, the correlations in the likelihood (``T_rep`` is chi-square with ``s`` df).
    n
        Respondents of stage 1.
    srmr
        Root mean square residual correlation, averaged over the draws.
    worst_residual
        ``(variable, variable, r - mean rho)`` of the largest absolute residual.

    Examples
    --------
    >>> c = Stage2Check(0.4, np.array([45.0]), np.array([47.0]), 45, 2000, 0.01, ("a0", "b1", 0.03))
    >>> c.ppp, c.n_correlations
    (0.4, 45)
    """

    ppp: float
    t_obs: np.ndarray
    t_rep: np.ndarray
    n_correlations: int
    n: int
    srmr: float
    worst_residual: tuple[str, str, float]


def stage2_implied_correlations(data: Any, layout: Any, graph: Any, beta: np.ndarray,
                                lam: np.ndarray) -> np.ndarray:
    """Implied correlations ``rho(theta)`` of the likelihood's pairs, per draw (NumPy).

    Parameters
    ----------
    data
        The stage-1 summaries (:class:`~veerkracht_bayes.sem.polychoric_likelihood.PolychoricData`).
    layout
        The fit's :class:`~veerkracht_bayes.sem.model_builder.ModelLayout` (``lik_latent``,
        ``covariates``, ``edge_kind``).
    graph
        The diagram.
    beta
        ``(k, E)`` link coefficients in ``graph.edge_keys`` order.
    lam
        ``(k, m)`` correlation-scale loadings in ``data.item_names`` order.

    Returns
    -------
    ndarray
        ``(k, s)``: the implied correlations in the order of ``data.stats.r[data.lik_pairs]``.

    Examples
    --------
    Two constructs, two items each, ``a -> b`` with 0.5; at loadings 0.8 the items of different
    constructs correlate ``0.8 * 0.8 * 0.5``:

    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> from veerkracht_bayes.sem.polychoric_likelihood import polychoric_data
    >>> y = np.random.default_rng(1).integers(0, 3, (200, 4)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 4, names=["a1", "a2", "b1", "b2"]),
    ...                        {"a1": "a", "a2": "a", "b1": "b", "b2": "b"})
    >>> layout = SimpleNamespace(lik_latent=("a", "b"), covariates=(), edge_kind={"a->b": "latent"})
    >>> rho = stage2_implied_correlations(data, layout, graph_from_lavaan("b ~ a"), np.array([[0.5]]),
    ...                                   np.full((1, 4), 0.8))
    >>> rho.round(3).tolist()
    [[0.64, 0.32, 0.32, 0.32, 0.32, 0.64]]
    """
    beta = np.atleast_2d(np.asarray(beta, dtype=float))
    lam = np.atleast_2d(np.asarray(lam, dtype=float))
    lik_latent, covariates = list(layout.lik_latent), list(layout.covariates)
    B, G = algebra.structural_matrices(beta, graph.edges, layout.edge_kind, lik_latent, covariates,
                                       ("latent",), xp="numpy")
    A = algebra.equilibrium_matrix(B, xp="numpy")
    q = len(covariates)
    if q:
        xo = [data.x_names.index(c) for c in covariates]
        x_cov = data.x_cov[np.ix_(xo, xo)]
        AG = A @ G
        SxG = AG @ x_cov
    else:
        x_cov, AG, SxG = None, None, None
    psi = algebra.standardised_psi(A, AG, x_cov, xp="numpy")
    S_eta = algebra.latent_covariance(A, psi, AG, x_cov, xp="numpy")
    names = list(data.stats.names)
    lli = {k: i for i, k in enumerate(lik_latent)}
    item_pos = {v: i for i, v in enumerate(data.item_names)}
    xvar = dict(zip(data.x_names, data.x_vars, strict=True))
    x_pos = {xvar[c]: k for k, c in enumerate(covariates)}
    item_c = np.array([lli[c] for c in data.item_construct], dtype=int)
    pairs = data.stats.pairs[data.lik_pairs]
    out = np.empty((beta.shape[0], len(pairs)))
    for j, (a, b) in enumerate(pairs):
        va, vb = names[a], names[b]
        if va in item_pos and vb in item_pos:
            ia, ib = item_pos[va], item_pos[vb]
            out[:, j] = lam[:, ia] * lam[:, ib] * S_eta[:, item_c[ia], item_c[ib]]
        elif va in item_pos and vb in x_pos:
            ia = item_pos[va]
            out[:, j] = lam[:, ia] * SxG[:, item_c[ia], x_pos[vb]]
        elif vb in item_pos and va in x_pos:
            ib = item_pos[vb]
            out[:, j] = lam[:, ib] * SxG[:, item_c[ib], x_pos[va]]
        else:
            raise ModelError(f"pair ({va}, {vb}) of the likelihood is neither item-item nor item-covariate")
    return out


def stage2_ppp(result: Any, ppp_draws: int = 200, seed: int = 0, *, ridge: float = 1e-9) -> Stage2Check:
    """Posterior predictive check of a polychoric-route fit on its stage-2 correlations.

    Parameters
    ----------
    result
        A :class:`~veerkracht_bayes.inference.sampling.FitResult` of
        :func:`~veerkracht_bayes.inference.polychoric_fit.fit_polychoric` (``result.data`` the
        stage-1 summaries; posterior ``beta`` on ``edge`` and ``lambda`` on ``item``).
    ppp_draws
        Posterior draws used (a seeded random subset when there are more).
    seed
        Seed of the subset and of the replicates.
    ridge
        Relative ridge of ``Gamma`` (the likelihood's default).

    Returns
    -------
    Stage2Check

    Examples
    --------
    Needs a fit (seconds on a small model; the same call is made by
    ``tests/inference/test_polychoric_check.py``):

    >>> check = stage2_ppp(fit_polychoric(graph, pdata))  # doctest: +SKIP
    >>> 0 <= check.ppp <= 1  # doctest: +SKIP
    True
    """
    from scipy.linalg import solve_triangular

    from veerkracht_bayes.survey.polychoric import whiten_correlations

    data = result.data
    if data is None or not hasattr(data, "lik_pairs"):
        raise ModelError("stage2_ppp needs a polychoric-route fit (result.data: the stage-1 summaries)")
    post = result.idata["posterior"]
    beta_da = post["beta"].sel(edge=list(result.graph.edge_keys))
    beta = beta_da.stack(sample=("chain", "draw")).transpose("sample", "edge").values
    lam = post["lambda"].sel(item=list(data.item_names)).stack(sample=("chain", "draw")).transpose(
        "sample", "item").values
    total = beta.shape[0]
    rng = np.random.default_rng(seed)
    k = min(int(ppp_draws), total)
    idx = np.sort(rng.choice(total, size=k, replace=False))
    rho = stage2_implied_correlations(data, result.layout, result.graph, beta[idx], lam[idx])
    r_hat = np.asarray(data.stats.r[data.lik_pairs], dtype=float)
    _, Linv = whiten_correlations(data.stats, data.lik_pairs, ridge=ridge)
    resid = r_hat[None, :] - rho                                   # (k, s)
    t_obs = np.sum((resid @ Linv.T) ** 2, axis=1)
    # r_rep = rho + L z with Gamma = L L' (L from L^-1 by a triangular solve)
    z = rng.standard_normal((len(r_hat), k))
    r_rep = rho + solve_triangular(Linv, z, lower=True).T
    t_rep = np.sum(((r_rep - rho) @ Linv.T) ** 2, axis=1)
    ppp = float(np.mean(t_rep >= t_obs))
    srmr = float(np.mean(np.sqrt(np.mean(resid ** 2, axis=1))))
    mean_resid = resid.mean(axis=0)
    j = int(np.argmax(np.abs(mean_resid)))
    a, b = data.stats.pairs[data.lik_pairs][j]
    worst = (str(data.stats.names[a]), str(data.stats.names[b]), float(mean_resid[j]))
    return Stage2Check(ppp, t_obs, t_rep, len(r_hat), int(data.n), srmr, worst)
