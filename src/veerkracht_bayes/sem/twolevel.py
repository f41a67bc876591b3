"""Two-level (respondents within neighbourhoods) structural model on per-cluster sufficient statistics.

Item scores of respondent ``i`` in cluster ``j`` (items standardised in the pooled sample)::

    y_ij = nu + y_B,j + y_W,ij,     y_B,j ~ N(0, Sigma_B),   y_W,ij ~ N(0, Sigma_W),  independent.

Within level (cluster-centred deviations): every measured construct ``c`` has a within latent
``eta_W`` with the diagram's links among measured constructs::

    eta~_W = B_W eta~_W + zeta_W,   Var(eta~_W) = 1 (psi standardisation, sem.algebra)
    eta_W,c = sqrt(1 - v_c) eta~_W,c
    Sigma_W = Lambda Phi_W Lambda' + diag(theta_W),  Phi_W = D_W A_W diag(psi_W) A_W' D_W

Between level (neighbourhood random intercepts): the *between constructs* (default the collective
part of the diagram that the survey measures: neighbourhood trust, community support, collective
agency, meeting places, neighbourhood professionals, community initiatives) get a between latent
with a between-level structural model; every item also gets its own random intercept
(``theta_B``, an item-specific neighbourhood variance)::

    eta~_B = B_B eta~_B + zeta_B,   Var(eta~_B) = 1
    eta_B,c = sqrt(v_c) eta~_B,c
    Sigma_B = Lambda_B Phi_B Lambda_B' + diag(theta_B),  Phi_B = D_B A_B diag(psi_B) A_B' D_B

``v_c`` is the construct's *between variance share* (the latent intraclass correlation): the
construct's total variance ``(1 - v_c) + v_c = 1``. Loadings are equal across levels (cross-level
invariance, so that ``v_c`` is a share of one construct). Links on each level are standardised on
that level (``B_W`` on within-neighbourhood SDs, ``B_B`` on between-neighbourhood SDs). Non-between
constructs have ``v_c = 0``: their items vary between neighbourhoods only through ``theta_B``.

Likelihood (exact normal ML of the stacked cluster vectors; McDonald & Goldstein 1989, Muthen
1990): with ``N`` respondents in ``J`` clusters and, per distinct cluster size ``n``, ``k_n``
clusters with mean of cluster means ``m_n`` and scatter ``C_n``
(:func:`~veerkracht_bayes.survey.clusters.cluster_statistics`)::

    -2 loglik = N p log(2 pi) + (N - J) [log|Sigma_W| + tr(Sigma_W^-1 S_PW)]
                + sum_n { k_n log|Sigma_W + n Sigma_B|
                          + n tr((Sigma_W + n Sigma_B)^-1 [C_n + k_n (m_n - mu)(m_n - mu)']) }

This is exact for balanced *and* unbalanced clusters (clusters are grouped by size, the usual
exact decomposition; nothing is approximated), and its cost depends on the number of size classes
and items only, not on the respondents. With survey weights the level-1 weights are scaled to the
cluster size inside each cluster (a pseudo-likelihood; exact ML without weights).

Priors (documented defaults): links ``Normal(0, link_sd = 0.5)`` on both levels under the usual
stability barrier (sem.algebra) and positive-disturbance barrier; shares ``v_c ~ Beta(1, 4)``;
loadings ``TruncatedNormal(0.7, 0.3, lower=0)``; within residual variances
``LogNormal(log 0.4, 0.7)``; item random-intercept SDs ``sqrt(theta_B) ~ HalfNormal(0.2)``;
intercepts ``nu ~ Normal(0, 0.5)``. Single-item constructs have loading ``sqrt(reliability)`` and
within residual variance ``1 - reliability`` (fixed). The package's literature priors
(priors/) are *not* used here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from veerkracht_bayes.errors import ModelError, Problem, did_you_mean
from veerkracht_bayes.sem.algebra import (
    assemble,
    backend,
    edge_index,
    equilibrium_matrix,
    latent_covariance,
    perron_bound,
    stability_barrier,
    standardisation_barrier,
    unit_variance_psi,
)
from veerkracht_bayes.survey.clusters import ClusterStatistics

__all__ = [
    "COLLECTIVE_CONSTRUCTS",
    "TwoLevelLayout",
    "build_twolevel_model",
    "implied_twolevel_covariances",
    "twolevel_layout",
    "twolevel_loglik",
]

#: The collective (neighbourhood-level) part of the MARVEL diagram.
COLLECTIVE_CONSTRUCTS = ("neighbourhood_trust", "community_support", "collective_agency", "meeting_places",
                         "neighbourhood_professionals", "community_initiatives")

#: Prefix of the data containers (passed to the compiled sampler as arguments).
_DATA = "data_"


def twolevel_loglik(Sigma_W: Any, Sigma_B: Any, mu: Any, stats: ClusterStatistics | Mapping[str, Any], *,
                    xp: str | ModuleType | None = None) -> Any:
    """The two-level normal log-likelihood on per-size-class statistics (module docstring).

    Parameters
    ----------
    Sigma_W, Sigma_B
        ``(p, p)`` implied within and between covariances.
    mu
        ``(p,)`` implied mean.
    stats
        :class:`~veerkracht_bayes.survey.clusters.ClusterStatistics` or a mapping with ``n``,
        ``n_clusters``, ``S_PW``, ``sizes``, ``counts``, ``class_means``, ``class_scatter``
        (arrays of the same library as the covariances for JAX / PyTensor).
    xp
        Array library (default: from the arguments).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> y = np.random.default_rng(0).normal(size=(12, 2))
    >>> cs = cluster_statistics(y, np.repeat([0, 1, 2, 3], 3), standardise=False)
    >>> float(np.round(twolevel_loglik(np.eye(2), 0.1 * np.eye(2), np.zeros(2), cs), 3)) < 0
    True
    """
    get = (lambda k: getattr(stats, k)) if isinstance(stats, ClusterStatistics) else (lambda k: stats[k])
    name = backend(Sigma_W, Sigma_B, mu, xp=xp)
    if name == "numpy":
        m = np
        Sigma_W, Sigma_B, mu = (np.asarray(a, dtype=float) for a in (Sigma_W, Sigma_B, mu))
    elif name == "jax":
        import jax.numpy as m  # type: ignore[no-redef]
    else:
        import pytensor.tensor as m  # type: ignore[no-redef]
    N, J = get("n"), get("n_clusters")
    S_PW, sizes, counts = get("S_PW"), get("sizes"), get("counts")
    cm, cs = get("class_means"), get("class_scatter")
    p = int(np.shape(S_PW)[-1]) if name != "pytensor" else None

    def chol_logdet(S: Any) -> Any:
        L = m.linalg.cholesky(S)
        return 2.0 * m.sum(m.log(m.diagonal(L, axis1=-2, axis2=-1)), axis=-1)

    ld_w = chol_logdet(Sigma_W)
    tr_w = m.sum(m.linalg.solve(Sigma_W, S_PW) * m.eye(Sigma_W.shape[-1]))
    sz = sizes * 1.0
    Sn = Sigma_W[None, :, :] + sz[:, None, None] * Sigma_B[None, :, :]
    d = cm - mu[None, :]
    M = cs + (counts * 1.0)[:, None, None] * (d[:, :, None] * d[:, None, :])
    X = m.linalg.solve(Sn, M)
    tr_n = m.sum(m.diagonal(X, axis1=-2, axis2=-1), axis=-1)
    ld_n = chol_logdet(Sn)
    pdim = Sigma_W.shape[-1] if p is None else p
    val = (N * pdim * np.log(2.0 * np.pi) + (N - J) * (ld_w + tr_w)
           + m.sum(counts * ld_n + sz * tr_n))
    return -0.5 * val


@dataclass(frozen=True)
class TwoLevelLayout:
    """Which items, constructs and links the two-level model has, in array order.

    Attributes
    ----------
    items, item_construct
        Items (the statistics' order) and the construct of each.
    constructs
        Measured constructs (within latents), in first-item order.
    between
        Between constructs (a subset of ``constructs``), in ``constructs`` order.
    within_links, between_links
        ``"source->target"`` keys of the within and between structural links.
    single_item_constructs
        Constructs with one item (loading fixed by ``reliability``).
    reliability, link_sd, share_prior, theta_b_sd, loading_prior
        Settings of the priors (module docstring).

    Examples
    --------
    >>> lay = twolevel_layout(None, {"a1": "a", "a2": "a", "b1": "b"}, between=["a"], between_links=[],
    ...                       within_links=["a->b"])
    >>> lay.constructs, lay.between, lay.single_item_constructs, lay.within_index().shape
    (('a', 'b'), ('a',), ('b',), (2, 2))
    """

    items: tuple[str, ...]
    item_construct: tuple[str, ...]
    constructs: tuple[str, ...]
    between: tuple[str, ...]
    within_links: tuple[str, ...]
    between_links: tuple[str, ...]
    single_item_constructs: tuple[str, ...]
    reliability: float = 0.8
    link_sd: float = 0.5
    share_prior: tuple[float, float] = (1.0, 4.0)
    theta_b_sd: float = 0.2
    loading_prior: tuple[float, float] = (0.7, 0.3)

    def _split(self, keys: Sequence[str]) -> tuple[list[str], list[str]]:
        pairs = [k.split("->") for k in keys]
        return [a for a, _ in pairs], [b for _, b in pairs]

    def within_index(self) -> Any:
        """:class:`~veerkracht_bayes.sem.algebra.EdgeIndex` of ``B_W`` (constructs x constructs)."""
        s, t = self._split(self.within_links)
        return edge_index(s, t, self.constructs)

    def between_index(self) -> Any:
        """:class:`~veerkracht_bayes.sem.algebra.EdgeIndex` of ``B_B`` (between x between)."""
        s, t = self._split(self.between_links)
        return edge_index(s, t, self.between)

    def loading_matrix(self, lam: Any, *, xp: str | ModuleType | None = None) -> tuple[Any, Any]:
        """``Lambda (p, K)`` and ``Lambda_B (p, K_B)`` from per-item loadings ``lam (p,)``."""
        ci = {c: k for k, c in enumerate(self.constructs)}
        bi = {c: k for k, c in enumerate(self.between)}
        rows = np.arange(len(self.items))
        cols = np.array([ci[c] for c in self.item_construct], dtype=int)
        from veerkracht_bayes.sem.algebra import EdgeIndex

        L = assemble(lam, EdgeIndex(rows, rows, cols, (len(self.items), len(self.constructs))), xp=xp)
        brow = np.array([i for i, c in enumerate(self.item_construct) if c in bi], dtype=int)
        bcol = np.array([bi[self.item_construct[i]] for i in brow], dtype=int)
        LB = assemble(lam, EdgeIndex(brow, brow, bcol, (len(self.items), len(self.between))), xp=xp)
        return L, LB


def _link_key(link: object) -> str:
    if isinstance(link, str):
        return link.replace(" ", "")
    a, b = link  # type: ignore[misc]
    return f"{a}->{b}"


def twolevel_layout(graph: Any, item_construct: Mapping[str, str], *, between: Sequence[str] | None = None,
                    between_links: Iterable[object] | None = None, within_links: Iterable[object] | None = None,
                    reliability: float = 0.8, link_sd: float = 0.5, share_prior: tuple[float, float] = (1.0, 4.0),
                    theta_b_sd: float = 0.2) -> TwoLevelLayout:
    """Validate the two-level model's choices and lay out its arrays.

    Parameters
    ----------
    graph
        The diagram (:class:`~veerkracht_bayes.graph.causal_graph.CausalGraph`): its links among
        measured constructs are the within links, and (by default) its links among the between
        constructs the between links. May be None when both link sets are given.
    item_construct
        Item -> construct, in the statistics' item order.
    between
        Between constructs (default: the measured ones of :data:`COLLECTIVE_CONSTRUCTS`).
    between_links, within_links
        ``"a->b"`` keys or ``(a, b)`` pairs; default the graph's links among the between / the
        measured constructs. Between links may be any pair of between constructs.

    Examples
    --------
    >>> lay = twolevel_layout(None, {"t1": "trust", "t2": "trust", "s1": "support", "s2": "support"},
    ...                       between=["trust", "support"], between_links=["support->trust"], within_links=[])
    >>> lay.between_links, lay.single_item_constructs
    (('support->trust',), ())
    """
    items = tuple(item_construct)
    ic = tuple(item_construct[i] for i in items)
    constructs = tuple(dict.fromkeys(ic))
    if not items:
        raise ModelError(Problem("no items for the two-level model", field="item_construct"))
    if between is None:
        between = [c for c in COLLECTIVE_CONSTRUCTS if c in constructs]
        if not between:
            raise ModelError(Problem("none of the collective constructs "
                                     f"{list(COLLECTIVE_CONSTRUCTS)} has items; name the between constructs",
                                     field="between"))
    for c in between:
        if c not in constructs:
            raise ModelError(Problem(f"between construct {c!r} has no items in the statistics"
                                     f"{did_you_mean(str(c), list(constructs))}", field="between", value=c))
    btup = tuple(c for c in constructs if c in set(between))
    if within_links is None:
        if graph is None:
            raise ModelError(Problem("within_links must be given without a graph", field="within_links"))
        wl = [f"{e.source}->{e.target}" for e in graph.edges
              if e.source in constructs and e.target in constructs and e.source != e.target]
    else:
        wl = [_link_key(x) for x in within_links]
    if between_links is None:
        if graph is None:
            raise ModelError(Problem("between_links must be given without a graph", field="between_links"))
        bl = [f"{e.source}->{e.target}" for e in graph.edges
              if e.source in btup and e.target in btup and e.source != e.target]
    else:
        bl = [_link_key(x) for x in between_links]
    for what, keys, nodes in (("within_links", wl, constructs), ("between_links", bl, btup)):
        for k in keys:
            parts = k.split("->")
            if len(parts) != 2 or parts[0] not in nodes or parts[1] not in nodes or parts[0] == parts[1]:
                raise ModelError(Problem(f"{what}: {k!r} is not a link between two different "
                                         f"{'between' if what == 'between_links' else 'measured'} constructs "
                                         f"{list(nodes)}", field=what, value=k))
        if len(set(keys)) != len(keys):
            raise ModelError(Problem(f"{what}: duplicate links", field=what))
    counts = {c: ic.count(c) for c in constructs}
    single = tuple(c for c in constructs if counts[c] == 1)
    for c in btup:
        if counts[c] == 1:
            raise ModelError(Problem(f"between construct {c!r} has a single item: its between factor and the "
                                     "item's random intercept are not separately identified (needs 2+ items)",
                                     field="between", value=c))
    if not 0 < reliability < 1:
        raise ModelError(Problem(f"reliability must be in (0, 1), got {reliability}", field="reliability"))
    return TwoLevelLayout(items=items, item_construct=ic, constructs=constructs, between=btup,
                          within_links=tuple(wl), between_links=tuple(bl), single_item_constructs=single,
                          reliability=float(reliability), link_sd=float(link_sd),
                          share_prior=(float(share_prior[0]), float(share_prior[1])), theta_b_sd=float(theta_b_sd))


def implied_twolevel_covariances(layout: TwoLevelLayout, lam: Any, theta_w: Any, theta_b: Any, beta_w: Any,
                                 beta_b: Any, share: Any, *, xp: str | ModuleType | None = None
                                 ) -> dict[str, Any]:
    """``Sigma_W``, ``Sigma_B`` and the standardised disturbance variances of both levels.

    One parameter point (no draw axis). ``share`` holds ``v_c`` of the between constructs.

    Returns
    -------
    dict
        ``Sigma_W``, ``Sigma_B`` (p, p); ``B_W``, ``B_B``, ``psi_W``, ``psi_B``.

    Examples
    --------
    >>> import numpy as np
    >>> lay = twolevel_layout(None, {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}, between=["a", "b"],
    ...                       between_links=["a->b"], within_links=["a->b"])
    >>> out = implied_twolevel_covariances(lay, np.full(4, 0.8), np.full(4, 0.35), np.full(4, 0.01),
    ...                                    np.array([0.3]), np.array([0.5]), np.array([0.2, 0.1]))
    >>> float(np.round(out["Sigma_W"][0, 0] + out["Sigma_B"][0, 0], 4))
    1.0
    """
    name = backend(lam, theta_w, theta_b, beta_w, beta_b, share, xp=xp)
    if name == "numpy":
        m = np
    elif name == "jax":
        import jax.numpy as m  # type: ignore[no-redef]
    else:
        import pytensor.tensor as m  # type: ignore[no-redef]
    K, KB = len(layout.constructs), len(layout.between)
    L, LB = layout.loading_matrix(lam, xp=name)
    B_W = assemble(beta_w, layout.within_index(), xp=name)
    A_W = equilibrium_matrix(B_W, xp=name)
    psi_W = unit_variance_psi(A_W, xp=name)
    pos = np.array([layout.constructs.index(c) for c in layout.between], dtype=int)
    if name == "numpy":
        v_full = np.zeros(K)
        v_full[pos] = share
    elif name == "jax":
        v_full = m.zeros(K).at[pos].set(share)
    else:
        v_full = m.set_subtensor(m.zeros((K,))[pos], share)
    dw = m.sqrt(1.0 - v_full)
    Phi_W = latent_covariance(A_W, psi_W, xp=name) * (dw[:, None] * dw[None, :])
    Sigma_W = m.dot(m.dot(L, Phi_W), L.T) + m.diag(theta_w) if name == "pytensor" else L @ Phi_W @ L.T + m.diag(theta_w)
    B_B = assemble(beta_b, layout.between_index(), xp=name)
    A_B = equilibrium_matrix(B_B, xp=name)
    psi_B = unit_variance_psi(A_B, xp=name)
    db = m.sqrt(share)
    Phi_B = latent_covariance(A_B, psi_B, xp=name) * (db[:, None] * db[None, :])
    if name == "pytensor":
        Sigma_B = m.dot(m.dot(LB, Phi_B), LB.T) + m.diag(theta_b)
    else:
        Sigma_B = LB @ Phi_B @ LB.T + m.diag(theta_b)
    if KB == 0:
        Sigma_B = m.diag(theta_b)
    return {"Sigma_W": Sigma_W, "Sigma_B": Sigma_B, "B_W": B_W, "B_B": B_B, "psi_W": psi_W, "psi_B": psi_B,
            "A_W": A_W, "A_B": A_B}


def build_twolevel_model(stats: ClusterStatistics, layout: TwoLevelLayout, *, rho_max: float = 0.95,
                         width: float = 0.01, power_iterations: int = 64) -> Any:
    """The PyMC model of the two-level SEM (module docstring) on cluster statistics.

    Parameters
    ----------
    stats
        :func:`~veerkracht_bayes.survey.clusters.cluster_statistics` of the layout's items (same order).
    layout
        :func:`twolevel_layout`.
    rho_max, width, power_iterations
        The stability barrier on both levels (sem.algebra).

    Returns
    -------
    pm.Model
        Posterior variables: ``beta_within`` (within_link), ``beta_between`` (between_link),
        ``share`` (between), ``lambda``, ``theta_within``, ``theta_between``, ``nu``, ``item_icc``
        (item), ``psi_within`` (construct), ``psi_between`` (between), ``rho_within``, ``rho_between``.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> ic = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
    >>> y = np.random.default_rng(0).normal(size=(40, 4))
    >>> cs = cluster_statistics(y, np.repeat(range(10), 4), item_names=list(ic))
    >>> model = build_twolevel_model(cs, twolevel_layout(None, ic, between=["a", "b"], between_links=["a->b"],
    ...                                                  within_links=["a->b"]))
    >>> sorted(rv.name for rv in model.free_RVs)
    ['beta_between', 'beta_within', 'item_between_sd', 'loading', 'nu', 'residual_var', 'share']
    """
    import pymc as pm
    import pytensor.tensor as pt

    if tuple(stats.item_names) != layout.items:
        raise ModelError(Problem(f"statistics items {list(stats.item_names)[:5]}... differ from the layout's "
                                 f"{list(layout.items)[:5]}... (expected the same items in the same order)",
                                 field="items"))
    p = len(layout.items)
    single = np.array([c in layout.single_item_constructs for c in layout.item_construct], dtype=bool)
    coords = {"item": list(layout.items), "construct": list(layout.constructs), "between": list(layout.between),
              "within_link": list(layout.within_links), "between_link": list(layout.between_links)}
    a, b = layout.share_prior
    lm, ls = layout.loading_prior
    rel = layout.reliability
    with pm.Model(coords=coords) as model:
        d = {
            "n": float(stats.n), "n_clusters": float(stats.n_clusters),
            "S_PW": pm.Data(_DATA + "S_PW", np.asarray(stats.S_PW, float)),
            "sizes": pm.Data(_DATA + "sizes", np.asarray(stats.sizes, float)),
            "counts": pm.Data(_DATA + "counts", np.asarray(stats.counts, float)),
            "class_means": pm.Data(_DATA + "class_means", np.asarray(stats.class_means, float)),
            "class_scatter": pm.Data(_DATA + "class_scatter", np.asarray(stats.class_scatter, float)),
        }
        lam = pt.zeros((p,))
        th_w = pt.zeros((p,))
        if (~single).any():
            nf = int((~single).sum())
            lam_f = pm.TruncatedNormal("loading", mu=lm, sigma=ls, lower=0.0, shape=nf)
            th_f = pm.LogNormal("residual_var", mu=np.log(0.4), sigma=0.7, shape=nf)
            lam = pt.set_subtensor(lam[np.flatnonzero(~single)], lam_f)
            th_w = pt.set_subtensor(th_w[np.flatnonzero(~single)], th_f)
        if single.any():
            lam = pt.set_subtensor(lam[np.flatnonzero(single)], np.sqrt(rel))
            th_w = pt.set_subtensor(th_w[np.flatnonzero(single)], 1.0 - rel)
        pm.Deterministic("lambda", lam, dims="item")
        pm.Deterministic("theta_within", th_w, dims="item")
        sd_b = pm.HalfNormal("item_between_sd", sigma=layout.theta_b_sd, dims="item")
        th_b = pm.Deterministic("theta_between", sd_b ** 2, dims="item")
        nu = pm.Normal("nu", 0.0, 0.5, dims="item")
        bw = (pm.Normal("beta_within", 0.0, layout.link_sd, dims="within_link") if layout.within_links
              else pt.zeros((0,)))
        bb = (pm.Normal("beta_between", 0.0, layout.link_sd, dims="between_link") if layout.between_links
              else pt.zeros((0,)))
        share = (pm.Beta("share", alpha=a, beta=b, dims="between") if layout.between else pt.zeros((0,)))
        imp = implied_twolevel_covariances(layout, lam, th_w, th_b, bw, bb, share, xp="pytensor")
        pm.Deterministic("psi_within", imp["psi_W"], dims="construct")
        if layout.between:
            pm.Deterministic("psi_between", imp["psi_B"], dims="between")
        for lev, B, psi in (("within", imp["B_W"], imp["psi_W"]), ("between", imp["B_B"], imp["psi_B"])):
            if B.type.shape[-1] == 0:
                continue
            rho = perron_bound(pt.abs(B), power_iterations, xp="pytensor")
            pm.Deterministic(f"rho_{lev}", rho)
            pm.Potential(f"stability_{lev}", stability_barrier(rho, rho_max, width, xp="pytensor"))
            pm.Potential(f"standardisation_{lev}", standardisation_barrier(psi, xp="pytensor"))
            pm.Potential(f"psi_positive_{lev}", pt.switch(pt.all(pt.gt(psi, 1e-4)), 0.0, -np.inf))
        Sw, Sb = imp["Sigma_W"], imp["Sigma_B"]
        pm.Deterministic("item_icc", pt.diagonal(Sb) / (pt.diagonal(Sb) + pt.diagonal(Sw)), dims="item")
        pm.Potential("loglik", twolevel_loglik(Sw, Sb, nu, d, xp="pytensor"))
    return model
