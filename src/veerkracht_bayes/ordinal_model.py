"""The exact ordinal (Likert) path: explicit latent scores and ordered-probit items.

Route (c) of MATH.md §2. Per respondent ``n`` the latent scores ``eta_n`` of the
*likelihood latents* (constructs with at least one item, as in the continuous path's cut
posterior) are parameters. The joint (pseudo-)log-density is

    Σ_n w_n [ log N(zeta_n; 0, diag psi) ]  +  (Σ_n w_n) · log|det(I − B)|        (structural)
  + Σ_n Σ_i w_n log P(y_ni | eta_n)                                            (items)

with ``zeta_n = (I − B) eta_n − Gamma x_n`` (:func:`ordinal_loglik_terms`, the reference).
The sampler sees it *non-centred*: ``eta_n = A (Gamma x_n + sqrt(psi) z_n)`` with free
``z_n ~ N(0, I)``; the log-Jacobian of eta -> z cancels the determinant and the ``log psi`` terms
exactly (when the weights sum to n), so the posterior is the same while the centred funnel
between psi (a function of B) and eta disappears.

**Why the Jacobian.** The structural model defines eta through its disturbances:
``eta = A (Gamma x + zeta)``, ``A = (I − B)⁻¹``. The density of eta is that of zeta at
``(I − B) eta − Gamma x`` times ``|det(I − B)|`` (change of variables). For an acyclic
graph ``I − B`` is triangular with unit diagonal and the determinant is 1, which is why
per-equation regressions are correct there; with a cycle (e.g. a→b→c→a, gain g) the
determinant is ``1 − g`` and depends on B. Dropping it would make the posterior of B wrong
(it would favour the determinant that maximises the regression fit, not the joint density).

**Scale.** As in :mod:`veerkracht_bayes.model_builder` every latent has variance 1 in the
population: ``psi`` solves ``(A∘A) psi = 1 − diag(A Gamma S_x Gammaᵀ Aᵀ)``, so every B is a
standardised coefficient comparable with the continuous path and the literature priors.

**Items.** Ordered probit in the *theta* parameterisation: ``y*_i = lambda_i eta_c(i) + eps``,
``eps ~ N(0, 1)``, ``y_i = k`` iff ``tau_{i,k-1} < y* ≤ tau_{i,k}`` with free ordered thresholds
per item (so no intercept). Binary items are 2-category ordinal items. A single-item construct
has its loading fixed from the assumed reliability ``rel`` of ``y*``:
``lambda = sqrt(rel / (1 − rel))``. Continuous and count items are Gaussian indicators on
their standardised scale (``nu + lambda eta + N(0, theta)``). Missing items drop out of the
product (exact under MAR). Survey weights multiply each respondent's complete-data
log-density (pseudo-likelihood, weights normalised to sum to n); with latent variables this
is an approximation to weighting the marginal likelihood — it leaves the point estimates
consistent, not the design-based width.

**Compute.** Everything is vectorised over respondents and items (no Python loops in the
graph), so the JAX backend (numpyro) runs it on a GPU when one is present, with
``chain_method="vectorized"`` running all chains on one device. Cost per gradient is
O(N · (P² + m)): this path does *not* have the flat-in-N cost of the sufficient-statistics
path; use it when items have few categories (≤ 4) or strongly skewed answers, where treating
Likert scores as continuous (route (a)) biases the loadings and hence B.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .causal_graph import CausalGraph
from .errors import ModelError, Problem
from .model_builder import (ModelLayout, StabilitySettings, _classify, _edge_rvs, _perron_root,
                            edge_prior_values)

__all__ = ["OrdinalData", "ordinal_data_from_survey", "build_ordinal_model", "fit_ordinal",
           "ordinal_loglik_terms", "ordinal_item_terms", "OrdinalSettings"]

log = logging.getLogger(__name__)
LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class OrdinalData:
    """Respondent-level data for the ordinal path (model order, excluded rows removed).

    Attributes
    ----------
    item_names, item_construct, n_categories
        Ordinal (Likert/binary) items, their graph node and number of categories.
    codes
        ``(n, m)`` integer codes ``0..k-1``, ``-1`` missing.
    cont_names, cont_construct, cont
        Gaussian indicators (continuous/count items) standardised, NaN missing: ``(n, mc)``.
    x_names, x
        Observed covariates (centred) ``(n, q)``.
    weights
        ``(n,)`` normalised to sum to ``n``.
    """

    item_names: tuple[str, ...]
    item_construct: tuple[str, ...]
    n_categories: np.ndarray
    codes: np.ndarray
    x_names: tuple[str, ...] = ()
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    weights: np.ndarray | None = None
    cont_names: tuple[str, ...] = ()
    cont_construct: tuple[str, ...] = ()
    cont: np.ndarray | None = None
    n_excluded: int = 0
    exclusion_reasons: dict[str, int] = field(default_factory=dict)
    data_hash: str | None = None

    @property
    def n(self) -> int:
        """Number of respondents."""
        return int(self.codes.shape[0])

    @property
    def w(self) -> np.ndarray:
        """Normalised weights (ones when none were given)."""
        return np.ones(self.n) if self.weights is None else np.asarray(self.weights, float)

    @property
    def xm(self) -> np.ndarray:
        """Covariates as an ``(n, q)`` array."""
        return self.x if self.x.shape[0] == self.n else np.zeros((self.n, len(self.x_names)))

    @property
    def x_cov(self) -> np.ndarray:
        """Weighted covariance of the centred covariates."""
        if not self.x_names:
            return np.zeros((0, 0))
        w = self.w / self.w.sum()
        return (self.xm * w[:, None]).T @ self.xm

    @property
    def constructs(self) -> list[str]:
        """Measured constructs in first-item order."""
        return list(dict.fromkeys(tuple(self.item_construct) + tuple(self.cont_construct)))


def ordinal_data_from_survey(survey: object, graph: CausalGraph, *,
                             covariates: Sequence[str] | None = None) -> OrdinalData:
    """Ordinal-path data from a :class:`~veerkracht_bayes.survey_data.SurveyData`.

    Covariates are inferred and coded exactly as in
    :func:`~veerkracht_bayes.sufficient_stats.model_data_from_survey`; rows with a missing
    covariate or no observed item are excluded and counted.
    """
    from .sufficient_stats import _wmean_sd

    y_all, cols = survey.item_matrix(reverse=True)
    codes_all = survey.ordinal_codes(reverse=True)
    constructs = survey.constructs
    col_node = {c: node for node, items in constructs.items() for c in items}
    specs = {it.column: it for _, it in survey.codebook.item_specs()}
    if covariates is None:
        covariates = [node for node, items in constructs.items()
                      if graph.has_node(node) and not graph.parents(node)
                      and graph.node(node).role == "exogenous" and len(items) == 1]
    covariates = list(covariates)
    w = survey.weights
    xcols = []
    for node in covariates:
        if node not in constructs:
            raise ModelError(Problem(f"covariate node {node!r} has no item in the codebook", field=node))
        v = y_all[:, cols.index(constructs[node][0])].copy()
        vals = np.unique(v[~np.isnan(v)])
        if not set(vals.tolist()) <= {0.0, 1.0}:
            mu, sd = _wmean_sd(v, w)
            v = (v - mu) / sd
        xcols.append(v)
    x = np.column_stack(xcols) if xcols else np.zeros((len(w), 0))
    ord_cols, cont_cols = [], []
    for j, c in enumerate(cols):
        if col_node[c] in covariates:
            continue
        (ord_cols if specs[c].scale in ("likert", "binary") else cont_cols).append(j)
    n = len(w)
    codes = np.full((n, len(ord_cols)), -1, dtype=np.int64)
    ncat = np.zeros(len(ord_cols), dtype=np.int64)
    for k, j in enumerate(ord_cols):
        c, it = cols[j], specs[cols[j]]
        if it.scale == "likert":
            codes[:, k] = codes_all[c]
            ncat[k] = int(it.categories)
        else:
            lo = it.range[0] or 0.0
            v = y_all[:, j]
            codes[:, k] = np.where(np.isnan(v), -1, np.nan_to_num(v - lo)).astype(np.int64)
            ncat[k] = 2
    cont = y_all[:, cont_cols].copy() if cont_cols else np.zeros((n, 0))
    reasons: dict[str, int] = {}
    keep = np.ones(n, bool)
    if x.shape[1]:
        bad = np.isnan(x).any(axis=1)
        if bad.any():
            reasons["missing covariate (" + ", ".join(covariates) + ")"] = int(bad.sum())
            keep &= ~bad
    none = (codes < 0).all(axis=1) & np.isnan(cont).all(axis=1)
    if (none & keep).any():
        reasons["no item observed"] = int((none & keep).sum())
        keep &= ~none
    codes, cont, x, w = codes[keep], cont[keep], x[keep], w[keep]
    w = w * (len(w) / w.sum())
    for k in range(cont.shape[1]):
        mu, sd = _wmean_sd(cont[:, k], w)
        cont[:, k] = (cont[:, k] - mu) / sd
    if x.shape[1]:
        x = x - (w @ x) / w.sum()
    return OrdinalData(
        item_names=tuple(cols[j] for j in ord_cols), item_construct=tuple(col_node[cols[j]] for j in ord_cols),
        n_categories=ncat, codes=codes, x_names=tuple(covariates), x=x, weights=w,
        cont_names=tuple(cols[j] for j in cont_cols), cont_construct=tuple(col_node[cols[j]] for j in cont_cols),
        cont=cont, n_excluded=int((~keep).sum()), exclusion_reasons=reasons, data_hash=survey.sha256)


# ----------------------------------------------------------------------------- log-density
def _log_interval_prob(lo, hi, mu, xp):  # noqa: ANN001 - backend-generic (pytensor or numpy)
    """log(Phi(hi - mu) - Phi(lo - mu)), computed on the tail that keeps precision."""
    a = (lo - mu) / np.sqrt(2.0)
    b = (hi - mu) / np.sqrt(2.0)
    upper = 0.5 * (xp.erfc(a) - xp.erfc(b))  # good when a > 0 (both in the upper tail)
    lower = 0.5 * (xp.erfc(-b) - xp.erfc(-a))  # good when b <= 0 or straddling
    p = xp.switch(a > 0, upper, lower)
    return xp.log(xp.maximum(p, 1e-300))


def ordinal_loglik_terms(B, G, psi, eta, x, w, lam, tau_pad, codes, c_idx, *,  # noqa: ANN001
                         cont=None, cont_c_idx=None, cont_lam=None, cont_nu=None, cont_theta=None):
    """Structural and item log-density terms (pytensor tensors or numbers).

    Parameters
    ----------
    B, G
        ``(P, P)`` and ``(P, q)`` structural matrices of the likelihood latents.
    psi
        ``(P,)`` disturbance variances.
    eta
        ``(n, P)`` latent scores.
    x, w
        ``(n, q)`` centred covariates and ``(n,)`` weights.
    lam, tau_pad, codes, c_idx
        Ordinal loadings ``(m,)``, padded thresholds ``(m, K+1)`` (``-inf`` first column,
        ``+inf`` from column ``k_i``), codes ``(n, m)`` (``-1`` missing), construct index of items.
    cont, cont_c_idx, cont_lam, cont_nu, cont_theta
        Gaussian indicators (optional).

    Returns
    -------
    (structural, items)
        Scalars; ``structural`` includes ``(Σ w) · log|det(I − B)|``.
    """
    import pytensor.tensor as pt

    P = eta.shape[1]
    I = pt.eye(P)
    zeta = pt.dot(eta, (I - B).T) - pt.dot(x, G.T)
    lp_struct = -0.5 * (zeta ** 2 / psi[None, :] + pt.log(psi)[None, :] + LOG_2PI)
    struct = pt.sum(w * pt.sum(lp_struct, axis=1)) + pt.sum(w) * pt.log(pt.abs(pt.linalg.det(I - B)))
    items = ordinal_item_terms(eta, w, lam, tau_pad, codes, c_idx, cont=cont, cont_c_idx=cont_c_idx,
                               cont_lam=cont_lam, cont_nu=cont_nu, cont_theta=cont_theta)
    return struct, items


def ordinal_item_terms(eta, w, lam, tau_pad, codes, c_idx, *,  # noqa: ANN001, ANN201
                       cont=None, cont_c_idx=None, cont_lam=None, cont_nu=None, cont_theta=None):
    """Item (measurement) log-density given latent scores: the second term of
    :func:`ordinal_loglik_terms` (same arguments)."""
    import pytensor.tensor as pt

    obs = codes >= 0
    cc = np.where(obs, codes, 0)
    rows = np.arange(codes.shape[1])[None, :]
    lo = tau_pad[rows, cc]
    hi = tau_pad[rows, cc + 1]
    mu = eta[:, c_idx] * lam[None, :]
    lp_items = _log_interval_prob(lo, hi, mu, pt)
    items = pt.sum(w[:, None] * pt.switch(obs, lp_items, 0.0))
    if cont is not None and cont.shape[1]:
        ok = ~np.isnan(cont)
        y0 = np.where(ok, cont, 0.0)
        r = y0 - cont_nu[None, :] - eta[:, cont_c_idx] * cont_lam[None, :]
        lpc = -0.5 * (r ** 2 / cont_theta[None, :] + pt.log(cont_theta)[None, :] + LOG_2PI)
        items = items + pt.sum(w[:, None] * pt.switch(ok, lpc, 0.0))
    return items


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class OrdinalSettings:
    """Priors of the measurement part and the single-item reliability."""

    reliability: float = 0.8
    loading_mu: float = 1.0
    loading_sd: float = 1.0
    threshold_sd: float = 2.5
    theta_logmean: float = float(np.log(0.5))
    theta_logsd: float = 0.75
    nu_sd: float = 0.5


def build_ordinal_model(graph: CausalGraph, data: OrdinalData, priors: object | None = None, *,
                        settings: OrdinalSettings | None = None,
                        stability: StabilitySettings | None = None,
                        keep_eta: bool = False):  # noqa: ANN201 - (pm.Model, ModelLayout)
    """Build the PyMC model of the exact ordinal path.

    Returns
    -------
    (pm.Model, ModelLayout)
        Free variables: the edge coefficients (grouped as in the continuous path), the
        standardised disturbances ``z`` ``(respondent, lik_latent)`` (non-centred latent scores
        ``eta = A (G x + sqrt(psi) z)``, a Deterministic when ``keep_eta``), ``loading``, ``thresholds`` (ordered) and, with Gaussian
        indicators, ``cont_loading``, ``residual_var``, ``nu``. Deterministics ``beta`` (edge),
        ``psi`` and ``alpha`` (node), ``lambda`` (item), ``rho_abs_bound``, as in ``fit``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    st = settings or OrdinalSettings()
    stability = stability or StabilitySettings()
    if not 0 < st.reliability < 1:
        raise ModelError(f"reliability must be in (0, 1) on the ordinal path, got {st.reliability}")

    class _D:  # what _classify needs
        x_names = data.x_names
        item_construct = tuple(data.item_construct) + tuple(data.cont_construct)

    latent, covariates, absent = _classify(graph, _D)  # type: ignore[arg-type]
    unknown = sorted(set(_D.item_construct) - set(graph.nodes))
    if unknown:
        raise ModelError(f"items measure nodes that are not in the graph: {unknown}")
    measured = data.constructs
    lik_latent = [n for n in latent if n in measured]
    li = {n: i for i, n in enumerate(latent)}
    lli = {n: i for i, n in enumerate(lik_latent)}
    ci = {n: i for i, n in enumerate(covariates)}
    eps = edge_prior_values(priors, graph)
    keys = graph.edge_keys
    edge_kind = {}
    for e in graph.edges:
        if e.source in ci:
            kind = "covariate" if e.target in lli else "prior_only"
        elif e.source in absent:
            kind = "absent"
        else:
            kind = "latent" if (e.source in lli and e.target in lli) else "prior_only"
        edge_kind[e.key] = kind
    all_items = tuple(data.item_names) + tuple(data.cont_names)
    all_cons = tuple(data.item_construct) + tuple(data.cont_construct)
    counts = {c: all_cons.count(c) for c in measured}
    single = tuple(c for c in measured if counts[c] == 1)
    n, m = data.codes.shape
    w = data.w
    x = data.xm
    q = len(covariates)
    coords = {"edge": list(keys), "node": list(graph.nodes), "latent": latent, "lik_latent": lik_latent,
              "item": list(all_items), "ordinal_item": list(data.item_names), "covariate": covariates,
              "respondent": np.arange(n)}
    kmax = int(data.n_categories.max()) if m else 2
    with pm.Model(coords=coords) as model:
        beta = pm.Deterministic("beta", _edge_rvs(eps, list(keys)), dims="edge")

        def block(idx: dict[str, int], kinds: tuple[str, ...]) -> pt.TensorVariable:
            sel = [i for i, e in enumerate(graph.edges) if edge_kind[e.key] in kinds
                   and e.source in idx and e.target in idx]
            mat = pt.zeros((len(idx), len(idx)))
            if sel:
                r = np.array([idx[graph.edges[i].target] for i in sel])
                c = np.array([idx[graph.edges[i].source] for i in sel])
                mat = pt.set_subtensor(mat[r, c], beta[np.array(sel)])
            return mat

        def gamma(idx: dict[str, int]) -> pt.TensorVariable:
            sel = [i for i, e in enumerate(graph.edges) if e.source in ci and e.target in idx]
            mat = pt.zeros((len(idx), q))
            if sel:
                r = np.array([idx[graph.edges[i].target] for i in sel])
                c = np.array([ci[graph.edges[i].source] for i in sel])
                mat = pt.set_subtensor(mat[r, c], beta[np.array(sel)])
            return mat

        x_cov = data.x_cov
        # full system: reported psi and stability (as in the continuous path)
        pl = len(latent)
        B_full = block(li, ("latent", "prior_only"))
        A_full = pt.linalg.inv(pt.eye(pl) - B_full)
        if q:
            AGf = pt.dot(A_full, gamma(li))
            dxf = pt.sum(pt.dot(AGf, x_cov) * AGf, axis=1)
        else:
            dxf = pt.zeros((pl,))
        psi_full_lat = pt.linalg.solve(A_full * A_full, 1.0 - dxf)
        psi_full = pt.zeros((len(graph.nodes),))
        psi_full = pt.set_subtensor(psi_full[np.array([graph.node_index[k] for k in latent])], psi_full_lat)
        if q:
            psi_full = pt.set_subtensor(psi_full[np.array([graph.node_index[k] for k in covariates])],
                                        np.diag(x_cov))
        pm.Deterministic("psi", psi_full, dims="node")
        pm.Deterministic("alpha", pt.zeros((len(graph.nodes),)), dims="node")
        rho = _perron_root(pt.abs(B_full), stability.power_iterations)
        pm.Deterministic("rho_abs_bound", rho)
        pm.Potential("stability", -pt.softplus(-(stability.rho_max - rho) / stability.width))
        pm.Potential("standardisation_full", pt.sum(-pt.softplus(-(psi_full_lat - 0.02) / 0.01)))
        # likelihood system
        P = len(lik_latent)
        B = block(lli, ("latent",))
        A = pt.linalg.inv(pt.eye(P) - B)
        G = gamma(lli)
        if q:
            AG = pt.dot(A, G)
            dx = pt.sum(pt.dot(AG, x_cov) * AG, axis=1)
        else:
            dx = pt.zeros((P,))
        psi = pt.linalg.solve(A * A, 1.0 - dx)
        psi_ok = pt.all(pt.gt(psi, 1e-4))
        psi_safe = pt.switch(pt.gt(psi, 1e-4), psi, 1e-4)
        pm.Potential("standardisation", pt.switch(psi_ok, 0.0, -np.inf))
        # Non-centred latent scores: eta_n = A (G x_n + sqrt(psi) * z_n), z_n ~ N(0, I).
        # The change of variables eta -> z has log-Jacobian n·(0.5 Σ log psi − log|det(I − B)|)
        # (unweighted), so the target in z equals the centred pseudo-log-density
        #   Σ w_n log N(zeta_n; 0, psi) + (Σ w) log|det(I − B)| + items      (ordinal_loglik_terms)
        # plus that Jacobian:  Σ w_n log N(z_n; 0, I) + (Σ w − n)(log|det(I − B)| − 0.5 Σ log psi)
        # + items. With weights normalised to sum to n the middle term is exactly 0. The centred
        # form put a funnel between psi (a function of B) and eta, which NUTS could not cross
        # (tree depth 8+, R-hat ~2 with wide edge priors); see tests/test_ordinal_model.py.
        z = pm.Normal("z", 0.0, 1.0, dims=("respondent", "lik_latent"))
        xg = pt.dot(x, G.T) if q else pt.zeros((n, P))
        eta = pt.dot(xg + z * pt.sqrt(psi_safe)[None, :], A.T)
        if keep_eta:
            pm.Deterministic("eta", eta, dims=("respondent", "lik_latent"))
        # ordinal items
        c_idx = np.array([lli[c] for c in data.item_construct], dtype=int)
        free = np.array([counts[c] > 1 for c in data.item_construct], bool)
        lam = pt.zeros((m,))
        if free.any():
            lam_free = pm.TruncatedNormal("loading", mu=st.loading_mu, sigma=st.loading_sd, lower=0.0,
                                          shape=int(free.sum()))
            lam = pt.set_subtensor(lam[np.flatnonzero(free)], lam_free)
        if (~free).any():
            lam = pt.set_subtensor(lam[np.flatnonzero(~free)], np.sqrt(st.reliability / (1 - st.reliability)))
        tau_init = np.tile(np.linspace(-1.5, 1.5, kmax - 1), (m, 1))
        for i, k in enumerate(data.n_categories):  # spread each item's used thresholds
            tau_init[i, : k - 1] = np.linspace(-1.5, 1.5, k - 1) if k > 2 else 0.0
            tau_init[i, k - 1:] = 2.0 + np.arange(kmax - k)
        tau = pm.Normal("thresholds", 0.0, st.threshold_sd, shape=(m, kmax - 1),
                        transform=pm.distributions.transforms.ordered, initval=tau_init)
        colj = np.arange(1, kmax)[None, :]
        used = colj <= (data.n_categories[:, None] - 1)
        tau_mid = pt.switch(used, tau, np.inf)
        tau_pad = pt.concatenate([pt.fill(tau[:, :1], -np.inf), tau_mid, pt.fill(tau[:, :1], np.inf)], axis=1)
        kw = {}
        mc = len(data.cont_names)
        lam_all = lam
        if mc:
            cc_idx = np.array([lli[c] for c in data.cont_construct], dtype=int)
            cfree = np.array([counts[c] > 1 for c in data.cont_construct], bool)
            cl = pt.zeros((mc,))
            ct = pt.zeros((mc,))
            if cfree.any():
                cl = pt.set_subtensor(cl[np.flatnonzero(cfree)], pm.TruncatedNormal(
                    "cont_loading", mu=0.7, sigma=0.3, lower=0.0, shape=int(cfree.sum())))
                ct = pt.set_subtensor(ct[np.flatnonzero(cfree)], pm.LogNormal(
                    "residual_var", mu=st.theta_logmean, sigma=st.theta_logsd, shape=int(cfree.sum())))
            if (~cfree).any():
                cl = pt.set_subtensor(cl[np.flatnonzero(~cfree)], np.sqrt(st.reliability))
                ct = pt.set_subtensor(ct[np.flatnonzero(~cfree)], 1 - st.reliability)
            nu = pm.Normal("nu", 0.0, st.nu_sd, shape=mc)
            kw = dict(cont=data.cont, cont_c_idx=cc_idx, cont_lam=cl, cont_nu=nu, cont_theta=ct)
            lam_all = pt.concatenate([lam, cl])
        pm.Deterministic("lambda", lam_all, dims="item")
        items = ordinal_item_terms(eta, w, lam, tau_pad, data.codes, c_idx, **kw)
        logn_z = -0.5 * (z ** 2 + LOG_2PI)
        struct = (pt.sum((w - 1.0)[:, None] * logn_z)
                  + (float(w.sum()) - n) * (pt.log(pt.abs(pt.linalg.det(pt.eye(P) - B)))
                                            - 0.5 * pt.sum(pt.log(psi_safe))))
        pm.Potential("structural", struct)  # the weights' part; the N(0, I) part is z's prior
        pm.Potential("items", items)
    layout = ModelLayout(
        nodes=tuple(graph.nodes), latent=tuple(latent), covariates=tuple(covariates), absent=tuple(absent),
        unobserved_latent=tuple(k for k in latent if k not in measured), edge_keys=tuple(keys),
        edge_kind=edge_kind, items=all_items, item_construct=all_cons, single_item_constructs=single,
        reliability=st.reliability, stability=stability, edge_priors=eps, lik_latent=tuple(lik_latent),
        unmeasured="cut")
    return model, layout


def _prior_group(model, layout: ModelLayout, graph: CausalGraph, n: int, seed: int) -> xr.Dataset:  # noqa: ANN001
    """Forward prior draws of the structural quantities, barriers applied by rejection."""
    import pymc as pm

    from .implied_moments import structural_matrices

    names = ["beta", "psi", "alpha", "rho_abs_bound"]
    rng = np.random.default_rng(seed)
    kept, total = [], 0
    for _ in range(20):
        pp = pm.sample_prior_predictive(draws=max(2 * n, 200), model=model, var_names=names,
                                        random_seed=int(rng.integers(2**31)))
        prior = pp["prior"].to_dataset() if hasattr(pp["prior"], "to_dataset") else pp["prior"]
        flat = prior.stack(sample=("chain", "draw"))
        beta = flat["beta"].transpose("sample", "edge").values
        psi = flat["psi"].transpose("sample", "node").values
        Bm, _ = structural_matrices(layout, graph, beta)
        rho = np.array([np.max(np.abs(np.linalg.eigvals(np.abs(b)))) if b.size else 0.0 for b in Bm])
        psi_lat = psi[:, [graph.node_index[k] for k in layout.latent]]
        s = layout.stability
        log_acc = -np.logaddexp(0.0, -(s.rho_max - rho) / s.width)
        log_acc += np.sum(-np.logaddexp(0.0, -(psi_lat - 0.02) / 0.01), axis=1)
        keep = (psi_lat > 1e-4).all(axis=1) & (rng.random(len(rho)) < np.exp(log_acc))
        idx = np.flatnonzero(keep)
        kept.append(flat.isel(sample=idx).drop_vars(["sample", "chain", "draw"]))
        total += len(idx)
        if total >= n:
            break
    if total < n:
        raise ModelError(f"only {total} of {n} prior draws have a stable, standardisable system")
    allp = xr.concat(kept, dim="sample").isel(sample=slice(0, n))
    allp = allp.assign_coords(sample=np.arange(n)).rename(sample="draw").expand_dims(chain=[0])
    return allp.transpose("chain", "draw", ...)


def fit_ordinal(graph: CausalGraph, survey: object, priors: object | None = None, *,
                settings: object | None = None, ordinal: OrdinalSettings | None = None,
                chain_method: str = "vectorized", keep_eta: bool = False):  # noqa: ANN201 - FitResult
    """Fit the exact ordinal path with NUTS (numpyro by default).

    Parameters
    ----------
    graph
        The diagram.
    survey
        A :class:`~veerkracht_bayes.survey_data.SurveyData` or an :class:`OrdinalData`.
    priors
        PriorSet-like (``for_edge``) or None for the sign-constrained defaults.
    settings
        :class:`~veerkracht_bayes.sampling.SamplerSettings` (sampler ``numpyro``, ``nutpie``,
        ``blackjax`` or ``pymc``).
    ordinal
        Measurement priors and single-item reliability.
    chain_method
        numpyro ``"vectorized"`` (all chains on one device; use on a GPU), ``"parallel"``
        (one device per chain) or ``"sequential"``.
    keep_eta
        Keep the ``(chain, draw, respondent, lik_latent)`` latent scores in the posterior
        (large: off by default).

    Returns
    -------
    FitResult
        ``idata`` has ``posterior`` (``beta`` on ``edge``, ``psi``/``alpha`` on ``node``,
        ``lambda``, ``thresholds``...), ``prior``, ``sample_stats`` and provenance; no
        ``log_likelihood`` group (LOO on this path would need the marginal over eta).
        ``FitResult.data`` is the :class:`OrdinalData`.
    """
    import pymc as pm

    from .provenance import collect_provenance
    from .sampling import FitResult, SamplerSettings, enable_compilation_cache

    settings = settings or SamplerSettings()
    if chain_method not in ("vectorized", "parallel", "sequential"):
        raise ModelError(f"chain_method must be 'vectorized', 'parallel' or 'sequential', got {chain_method!r}")
    data = survey if isinstance(survey, OrdinalData) else ordinal_data_from_survey(survey, graph)
    model, layout = build_ordinal_model(graph, data, priors, settings=ordinal, keep_eta=keep_eta)
    prior = _prior_group(model, layout, graph, settings.prior_draws, settings.random_seed)
    if settings.sampler in ("numpyro", "blackjax"):
        enable_compilation_cache()
    nuts: dict[str, object] = {"target_accept": settings.target_accept}
    if settings.sampler == "numpyro":
        nuts.update(chain_method=chain_method, dense_mass=settings.dense_mass,
                    max_tree_depth=settings.max_treedepth)
    kwargs: dict[str, object] = {"nuts": nuts}
    # start: each chain at a different stability-truncated prior draw of B, eta at 0
    picks = np.random.default_rng(settings.random_seed).choice(prior.sizes["draw"], size=settings.chains,
                                                               replace=False)
    kwargs["initvals"] = _beta_initvals(model, layout, prior, picks)
    if settings.sampler in ("numpyro", "blackjax"):
        nuts["jitter"] = False
    with model:
        idata = pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                          cores=min(settings.chains, os.cpu_count() or 1), random_seed=settings.random_seed,
                          progressbar=settings.progressbar, nuts_sampler=settings.sampler,
                          compute_convergence_checks=False, idata_kwargs={"log_likelihood": False},
                          var_names=_posterior_names(model), **kwargs)
    post = idata["posterior"].to_dataset()
    idata = xr.DataTree.from_dict({"posterior": post, "prior": prior,
                                   "sample_stats": idata["sample_stats"].to_dataset()})
    prov = collect_provenance(seed=settings.random_seed, files={}, hashes={"data": data.data_hash},
                              settings={**settings.__dict__, "path": "ordinal", "chain_method": chain_method,
                                        **(ordinal or OrdinalSettings()).__dict__})
    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    idata.attrs["prior_only"] = 0
    idata.attrs["likelihood"] = "ordinal"
    return FitResult(idata=idata, layout=layout, graph=graph, data=data, settings=settings)  # type: ignore[arg-type]


def _posterior_names(model) -> list[str]:  # noqa: ANN001
    skip = {"z"}  # eta is a Deterministic only when keep_eta
    names = [rv.name for rv in model.free_RVs if rv.name not in skip]
    return names + [d.name for d in model.deterministics]


def _beta_initvals(model, layout: ModelLayout, prior: xr.Dataset, picks: np.ndarray) -> list[dict]:  # noqa: ANN001
    """Initial values per chain: the grouped edge RVs at a prior draw, eta at 0."""
    keys = list(layout.edge_keys)
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        p = layout.edge_priors[k]
        name = f"beta_{p.distribution}{'_pos' if p.lower is not None else ''}{'_neg' if p.upper is not None else ''}"
        groups.setdefault(name, []).append(i)
    out = []
    for i in picks:
        b = prior["beta"].isel(chain=0, draw=int(i)).values
        d = {name: b[np.array(idx)] for name, idx in groups.items() if name in model.named_vars}
        d["z"] = np.zeros(model["z"].type.shape if None not in model["z"].type.shape
                          else tuple(int(s) for s in model["z"].shape.eval()))
        out.append(d)
    return out
