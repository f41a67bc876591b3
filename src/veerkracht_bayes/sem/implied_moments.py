"""Model-implied moments, vectorised over posterior draws (NumPy).

The algebra of :mod:`model_builder` on NumPy draws (both call
:mod:`veerkracht_bayes.sem.algebra`), used for the per-respondent log-likelihood (LOO),
posterior predictive checks and tests.
"""

from __future__ import annotations

import numpy as np

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.model_builder import ModelLayout
from veerkracht_bayes.survey.statistics import ModelData

__all__ = ["structural_matrices", "implied_moments", "pointwise_loglik"]


def structural_matrices(layout: ModelLayout, graph: CausalGraph, beta: np.ndarray, *,
                        system: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """Latent-block ``B`` (S, pl, pl) and covariate block ``Gamma`` (S, pl, q) from edge draws.

    Parameters
    ----------
    system
        ``"full"``: every latent node (``layout.latent``; stability, do-queries) or
        ``"likelihood"``: the system the likelihood uses (``layout.lik_latent``).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> g = load_graph("marvel")
    >>> _, layout = build_model(g, None)
    >>> B, G = structural_matrices(layout, g, np.zeros((2, len(layout.edge_keys))))
    >>> B.shape, G.shape
    ((2, 26, 26), (2, 26, 0))
    """
    beta = np.atleast_2d(np.asarray(beta, dtype=float))
    nodes = layout.latent if system == "full" else (layout.lik_latent or layout.latent)
    kinds = ("latent", "prior_only") if system == "full" else ("latent",)
    ib, ig = algebra.structural_indices(graph.edges, layout.edge_kind, nodes, layout.covariates, kinds)
    return algebra.assemble(beta, ib, xp="numpy"), algebra.assemble(beta, ig, xp="numpy")


def implied_moments(layout: ModelLayout, graph: CausalGraph, data: ModelData, draws: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Implied item covariance ``Sigma`` (S, m, m) and mean coefficients ``M`` (S, m, q+1).

    Parameters
    ----------
    draws
        Flattened draws: ``beta`` (S, E), ``lambda`` (S, m), ``theta`` (S, m), ``nu`` (S, m),
        ``psi`` (S, P) on graph nodes.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> _, layout = build_model(g, md)
    >>> draws = {"beta": np.full((2, 1), 0.3), "nu": np.zeros((2, 4)),
    ...          "lambda": np.full((2, 4), 0.8), "theta": np.full((2, 4), 0.36)}
    >>> Sigma, M = implied_moments(layout, g, md, draws)
    >>> Sigma.shape, M.shape, Sigma[0].diagonal().round(2).tolist()  # unit construct variances
    ((2, 4, 4), (2, 4, 1), [1.0, 1.0, 1.0, 1.0])
    >>> round(float(Sigma[0, 0, 2]), 3)  # a1 with b1: 0.8 * 0.3 * 0.8
    0.192
    """
    B, G = structural_matrices(layout, graph, draws["beta"], system="likelihood")
    A = algebra.equilibrium_matrix(B)
    nodes = layout.lik_latent or layout.latent
    # disturbance variances of the likelihood system: solve (A∘A) psi = 1 - diag(A G Sx G' A')
    AG = A @ G
    psi = np.maximum(algebra.standardised_psi(A, AG, data.x_cov), 1e-4)
    S_eta = algebra.latent_covariance(A, psi)
    li = {n: i for i, n in enumerate(nodes)}
    c = np.array([li[k] for k in layout.item_construct], dtype=int)
    lam, theta, nu = draws["lambda"], draws["theta"], draws["nu"]
    Sigma = lam[:, :, None] * lam[:, None, :] * S_eta[:, c][:, :, c]
    Sigma = Sigma + np.einsum("si,ij->sij", theta, np.eye(len(c)))
    M = np.concatenate([nu[:, :, None], lam[:, :, None] * AG[:, c]], axis=2)
    return Sigma, M


def pointwise_loglik(Sigma: np.ndarray, M: np.ndarray, data: ModelData, *, weighted: bool = True,
                     chunk: int = 10) -> np.ndarray:
    """Per-respondent observed-data log-likelihood ``(S, n)`` (times the weight if ``weighted``).

    Exact for every missingness pattern, via the precision matrix ``K = Sigma^-1``:
    ``log|Sigma_oo| = log|Sigma| + log|K_mm|`` and
    ``r_o' Sigma_oo^-1 r_o = r' K r - (K_mo r_o)' K_mm^-1 (K_mo r_o)`` (r zero where missing),
    with rows grouped by their number of missing items and draws processed in chunks of
    ``chunk`` (small chunks keep the ``(chunk, n, m)`` work arrays in cache). ``K r`` is one
    batched matrix product per chunk, and ``K_mo r_o`` is read off it (``K`` is symmetric), so
    the per-respondent work is a gather and a ``k x k`` solve (closed form for one missing item).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> _, layout = build_model(g, md)
    >>> draws = {"beta": np.full((2, 1), 0.3), "nu": np.zeros((2, 4)),
    ...          "lambda": np.full((2, 4), 0.8), "theta": np.full((2, 4), 0.36)}
    >>> Sigma, M = implied_moments(layout, g, md, draws)
    >>> ll = pointwise_loglik(Sigma, M, md)
    >>> ll.shape, bool(np.isfinite(ll).all())
    ((2, 60), True)
    """
    s_total = Sigma.shape[0]
    n = data.y.shape[0]
    obs = ~np.isnan(data.y)
    y0 = np.where(obs, data.y, 0.0)
    u = np.concatenate([np.ones((n, 1)), data.x], axis=1)
    kmiss = (~obs).sum(axis=1)
    buckets = {int(k): np.flatnonzero(kmiss == k) for k in np.unique(kmiss) if k > 0}
    miss_idx = {k: np.argsort(obs[rows], axis=1, kind="stable")[:, :k] for k, rows in buckets.items()}
    const = obs.sum(axis=1) * np.log(2 * np.pi)
    out = np.empty((s_total, n))
    chunk = max(int(chunk), 1)
    for a in range(0, s_total, chunk):
        Sg = Sigma[a:a + chunk]
        L = np.linalg.cholesky(Sg)
        logdet = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        K = np.linalg.inv(Sg)
        r = y0[None] - np.matmul(u[None], np.swapaxes(M[a:a + chunk], 1, 2))  # (s, n, m), BLAS
        r *= obs[None]
        Kr = np.matmul(r, K)  # row i is K r_i (K symmetric)
        quad = np.einsum("snm,snm->sn", Kr, r)
        ll = -0.5 * (logdet[:, None] + const[None] + quad)
        for k, rows in buckets.items():
            mi = miss_idx[k]
            q = np.take_along_axis(Kr[:, rows, :], mi[None], axis=2)  # K_mo r_o, (s, n_k, k)
            if k == 1:
                kmm = K[:, mi[:, 0], mi[:, 0]]  # (s, n_k)
                ll[:, rows] += -0.5 * np.log(kmm) + 0.5 * q[..., 0] ** 2 / kmm
                continue
            Kmm = K[:, mi[:, :, None], mi[:, None, :]]  # (s, n_k, k, k)
            C = np.linalg.cholesky(Kmm)
            ld = 2.0 * np.sum(np.log(np.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
            sol = np.linalg.solve(Kmm, q[..., None])[..., 0]
            ll[:, rows] += -0.5 * ld + 0.5 * np.sum(q * sol, axis=-1)
        out[a:a + chunk] = ll
    if weighted:
        out = out * data.weights[None, :]
    return out
