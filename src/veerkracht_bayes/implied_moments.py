"""Model-implied moments, vectorised over posterior draws (NumPy).

An independent implementation of the algebra in :mod:`model_builder`, used for the
per-respondent log-likelihood (LOO), posterior predictive checks and tests.
"""

from __future__ import annotations

import numpy as np

from .causal_graph import CausalGraph
from .model_builder import ModelLayout
from .sufficient_stats import ModelData

__all__ = ["structural_matrices", "implied_moments", "pointwise_loglik"]


def structural_matrices(layout: ModelLayout, graph: CausalGraph, beta: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Latent-block ``B`` (S, pl, pl) and covariate block ``Gamma`` (S, pl, q) from edge draws."""
    beta = np.atleast_2d(beta)
    s = beta.shape[0]
    li = {n: i for i, n in enumerate(layout.latent)}
    ci = {n: i for i, n in enumerate(layout.covariates)}
    B = np.zeros((s, len(li), len(li)))
    G = np.zeros((s, len(li), len(ci)))
    for e_i, e in enumerate(graph.edges):
        kind = layout.edge_kind[e.key]
        if kind == "latent":
            B[:, li[e.target], li[e.source]] = beta[:, e_i]
        elif kind == "covariate":
            G[:, li[e.target], ci[e.source]] = beta[:, e_i]
    return B, G


def implied_moments(layout: ModelLayout, graph: CausalGraph, data: ModelData, draws: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Implied item covariance ``Sigma`` (S, m, m) and mean coefficients ``M`` (S, m, q+1).

    Parameters
    ----------
    draws
        Flattened draws: ``beta`` (S, E), ``lambda`` (S, m), ``theta`` (S, m), ``nu`` (S, m),
        ``psi`` (S, P) on graph nodes.
    """
    B, G = structural_matrices(layout, graph, draws["beta"])
    s, pl, _ = B.shape
    A = np.linalg.inv(np.eye(pl)[None] - B)
    lat_pos = [graph.node_index[n] for n in layout.latent]
    psi = draws["psi"][:, lat_pos]
    S_eta = np.einsum("sij,sj,skj->sik", A, psi, A)
    li = {n: i for i, n in enumerate(layout.latent)}
    c = np.array([li[k] for k in layout.item_construct], dtype=int)
    lam, theta, nu = draws["lambda"], draws["theta"], draws["nu"]
    Sigma = lam[:, :, None] * lam[:, None, :] * S_eta[:, c][:, :, c]
    Sigma = Sigma + np.einsum("si,ij->sij", theta, np.eye(len(c)))
    AG = np.einsum("sij,sjk->sik", A, G)
    M = np.concatenate([nu[:, :, None], lam[:, :, None] * AG[:, c]], axis=2)
    return Sigma, M


def pointwise_loglik(Sigma: np.ndarray, M: np.ndarray, data: ModelData, *, weighted: bool = True
                     ) -> np.ndarray:
    """Per-respondent log-likelihood ``(S, n)`` (times the normalised weight if ``weighted``)."""
    s = Sigma.shape[0]
    n = data.n
    out = np.empty((s, n))
    u = np.concatenate([np.ones((n, 1)), data.x], axis=1)
    st = data.stats
    for p in range(st.n_patterns):
        rows = np.flatnonzero(st.pattern_of_row == p)
        o = np.flatnonzero(st.masks[p])
        if len(o) == 0:
            out[:, rows] = 0.0
            continue
        S_oo = Sigma[:, o][:, :, o]
        L = np.linalg.cholesky(S_oo)
        mu = np.einsum("sik,nk->sni", M[:, o], u[rows])
        r = data.y[rows][:, o][None] - mu  # (S, n_p, m_o)
        z = np.linalg.solve(L, np.swapaxes(r, 1, 2))  # (S, m_o, n_p)
        quad = np.sum(z**2, axis=1)
        logdet = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        out[:, rows] = -0.5 * (logdet[:, None] + len(o) * np.log(2 * np.pi) + quad)
    if weighted:
        out = out * data.weights[None, :]
    return out
