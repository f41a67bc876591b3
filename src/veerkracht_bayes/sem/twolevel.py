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
(``theta_B``, an item-specific neighbourhood variance). The between level is parameterised in
total-scale units (``between_scale="raw"``, the default)::

    eta_B = B_B eta_B + zeta_B,   Var(zeta_B) = diag(omega)   (omega >= 0)
    Phi_B = A_B diag(omega) A_B',  Sigma_B = Lambda_B Phi_B Lambda_B' + diag(theta_B)

with derived quantities per draw: the *between variance share* ``v_c = Phi_B[c, c]`` (the latent
intraclass correlation; the construct's total variance ``(1 - v_c) + v_c = 1``), the standardised
between links ``B~_B[t, s] = B_B[t, s] sqrt(v_s / v_t)`` and the standardised between disturbances
``psi~_c = omega_c / v_c`` (0: the construct's neighbourhood variance comes only from its between
parents, a boundary the raw parameterisation reaches smoothly). ``between_scale="standardised"``
keeps the former parameterisation (``v_c`` and ``B~_B`` as parameters, ``psi~`` derived under the
positive-disturbance barrier). Loadings are equal across levels (cross-level invariance, so that
``v_c`` is a share of one construct). Within links are standardised on within-neighbourhood SDs.
Non-between constructs have ``v_c = 0``: their items vary between neighbourhoods only through
``theta_B``. The stability barrier acts on both levels; ``B_B`` and ``B~_B`` differ by a diagonal
similarity, so they share the spectral radius and the Perron root of ``|B|``.

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

The sampler evaluates the likelihood in ``K x K`` algebra (:func:`twolevel_loglik_lowrank`:
matrix determinant lemma and Woodbury identity, one batched Cholesky over the size classes).

Priors (documented defaults): within links ``Normal(0, link_sd = 0.5)`` or the diagram link's
literature prior with its sign constraint (``within_prior``), under the stability and
positive-disturbance barriers; raw between links ``Normal(0, between_link_sd = 0.5)``; between
disturbance SDs ``sqrt(omega_c) ~ HalfNormal(between_sd = 0.3)``; loadings
``TruncatedNormal(0.7, 0.3, lower=0)``; within residual variances ``LogNormal(log 0.4, 0.7)``; item
random-intercept SDs ``sqrt(theta_B) ~ HalfNormal(0.2)``; intercepts ``nu ~ Normal(0, 0.5)``.
Single-item constructs have loading ``sqrt(reliability)`` (equal across levels) and within residual
variance ``1 - reliability`` (fixed), with the item's own reliability where ``item_reliability``
gives one (the codebook's value on the observed scale in a run, as in the single-level fit:
:func:`~veerkracht_bayes.sem.model_builder.fixed_item_reliability`), else the global ``reliability``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    "twolevel_loglik_lowrank",
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


def _module(name: str) -> Any:
    if name == "numpy":
        return np
    if name == "jax":
        import jax.numpy as jnp

        return jnp
    import pytensor.tensor as pt

    return pt


def _small_cholesky(G: Any, K: int, m: Any) -> tuple[Any, list[list[Any]]]:
    """Batched Cholesky of ``(C, K, K)`` matrices, unrolled over the ``K`` columns (elementwise over
    ``C``): ``log|G|`` (C,) and the lower triangular inverse ``Z = L^-1`` as nested lists of (C,)."""
    Lc: list[list[Any]] = [[None] * K for _ in range(K)]
    for j in range(K):
        s = G[:, j, j]
        for k in range(j):
            s = s - Lc[j][k] ** 2
        Lc[j][j] = m.sqrt(s)
        for i in range(j + 1, K):
            t = G[:, i, j]
            for k in range(j):
                t = t - Lc[i][k] * Lc[j][k]
            Lc[i][j] = t / Lc[j][j]
    logdet = 2.0 * sum(m.log(Lc[j][j]) for j in range(K))
    Z: list[list[Any]] = [[None] * K for _ in range(K)]
    for i in range(K):
        Z[i][i] = 1.0 / Lc[i][i]
        for j in range(i):
            t = Lc[i][j] * Z[j][j]
            for k in range(j + 1, i):
                t = t + Lc[i][k] * Z[k][j]
            Z[i][j] = -t / Lc[i][i]
    return logdet, Z


def twolevel_loglik_lowrank(lam: Any, construct: Sequence[int] | np.ndarray, Phi_W: Any, Phi_B: Any, theta_w: Any,
                            theta_b: Any, mu: Any, stats: ClusterStatistics | Mapping[str, Any], *,
                            xp: str | ModuleType | None = None) -> Any:
    """:func:`twolevel_loglik` for factor-structured covariances, in ``K x K`` algebra (fast).

    With loadings ``lam`` (item ``i`` on construct ``construct[i]``, equal across levels),
    ``Sigma_W = L Phi_W L' + diag(theta_W)`` and ``Sigma_B = L Phi_B L' + diag(theta_B)``, the
    covariance of a cluster of size ``n`` is ``D_n + L M_n L'`` with
    ``D_n = diag(theta_W + n theta_B)`` and ``M_n = Phi_W + n Phi_B``. With the diagonal
    ``W_n = L' D_n^-1 L`` and ``G_n = I + W_n^(1/2) M_n W_n^(1/2)`` (``K x K``), the matrix
    determinant lemma and the Woodbury identity give ``log|Sigma_n| = log|D_n| + log|G_n|`` and
    ``Sigma_n^-1 = D_n^-1 - U_n (I - G_n^-1) U_n'`` with ``U_n = D_n^-1 L W_n^(-1/2)``. The within
    term is the class ``n = 0`` with weight ``N - J``. One batched Cholesky of the ``G_n`` over the
    size classes (unrolled over the ``K`` columns, elementwise over the classes) replaces a
    ``p x p`` factorisation and solve per class; the value equals :func:`twolevel_loglik` of the same
    covariances (tested to 1e-8).

    Parameters
    ----------
    lam
        ``(p,)`` loadings (array of the backend).
    construct
        ``(p,)`` integer construct of each item (``0 .. K-1``; every construct has an item).
    Phi_W, Phi_B
        ``(K, K)`` within and between latent covariances (``Phi_B`` zero for non-between constructs).
    theta_w, theta_b
        ``(p,)`` within residual variances (positive) and item random-intercept variances.
    mu
        ``(p,)`` implied mean.
    stats
        As :func:`twolevel_loglik`.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> y = np.random.default_rng(0).normal(size=(24, 4))
    >>> cs = cluster_statistics(y, np.repeat(range(6), 4), standardise=False)
    >>> lam, con = np.array([0.8, 0.7, 0.6, 0.9]), np.array([0, 0, 1, 1])
    >>> L = np.array([[0.8, 0], [0.7, 0], [0, 0.6], [0, 0.9]])
    >>> PW, PB = np.array([[1.0, 0.3], [0.3, 1.0]]), np.array([[0.2, 0.05], [0.05, 0.1]])
    >>> tw, tb = np.full(4, 0.4), np.full(4, 0.02)
    >>> dense = twolevel_loglik(L @ PW @ L.T + np.diag(tw), L @ PB @ L.T + np.diag(tb), np.zeros(4), cs)
    >>> bool(abs(twolevel_loglik_lowrank(lam, con, PW, PB, tw, tb, np.zeros(4), cs) - dense) < 1e-9)
    True
    """
    get = (lambda k: getattr(stats, k)) if isinstance(stats, ClusterStatistics) else (lambda k: stats[k])
    name = backend(lam, Phi_W, Phi_B, theta_w, theta_b, mu, xp=xp)
    m = _module(name)
    if name == "numpy":
        lam, Phi_W, Phi_B, theta_w, theta_b, mu = (np.asarray(a, dtype=float)
                                                   for a in (lam, Phi_W, Phi_B, theta_w, theta_b, mu))
    con = np.asarray(construct, dtype=int)
    p = con.size
    K = int(con.max()) + 1
    P = np.zeros((p, K))
    P[np.arange(p), con] = 1.0                                     # item -> construct membership
    N, J = get("n"), get("n_clusters")
    S_PW, sizes, counts = get("S_PW"), get("sizes"), get("counts")
    cm, cs = get("class_means"), get("class_scatter")
    zero = 0.0 * sizes[:1]
    n = m.concatenate([zero, sizes * 1.0])                          # (C,) class 0 = the within term
    ld_w = m.concatenate([zero + (N - J), counts * 1.0])           # weight of log|Sigma_n|
    tr_w = m.concatenate([zero + (N - J), sizes * 1.0])            # weight of tr(Sigma_n^-1 A_n)
    k = m.concatenate([zero, counts * 1.0])
    A0 = m.concatenate([S_PW[None, :, :], cs], axis=0)             # (C, p, p)
    delta = m.concatenate([0.0 * mu[None, :], cm - mu[None, :]], axis=0)   # (C, p)
    C = 1 + int(np.shape(sizes)[0]) if name != "pytensor" else 1 + int(sizes.type.shape[0])
    d = theta_w[None, :] + n[:, None] * theta_b[None, :]           # (C, p)
    w = m.dot((lam * lam)[None, :] / d, P)                         # (C, K) diagonal of L' D^-1 L
    s = m.sqrt(w)
    M = Phi_W[None, :, :] + n[:, None, None] * Phi_B[None, :, :]
    G = s[:, :, None] * M * s[:, None, :] + np.eye(K)[None, :, :]
    logdet_G, Z = _small_cholesky(G, K, m)
    u = lam[None, :] / d / s[:, con]                               # (C, p): U_n = diag(u) P
    X = A0 * (u[:, :, None] * u[:, None, :])
    Y = m.dot(m.reshape(X, (C * p, p)), P)                         # (C p, K)
    Yt = m.reshape(Y, (C, p, K))
    Yt = Yt.transpose(0, 2, 1) if name != "pytensor" else m.transpose(Yt, (0, 2, 1))
    Q = m.reshape(m.dot(m.reshape(Yt, (C * K, p)), P), (C, K, K))  # P' X P = U' A0 U
    Ud = m.dot(u * delta, P)                                       # (C, K) U' delta
    diagA = m.diagonal(A0, axis1=1, axis2=2) + k[:, None] * delta ** 2
    tr_DA = m.sum(diagA / d, axis=1)
    tr_Q = m.sum(m.diagonal(Q, axis1=1, axis2=2), axis=1) + k * m.sum(Ud * Ud, axis=1)
    tr_GQ = 0.0
    for a in range(K):
        za = [Z[a][i] for i in range(a + 1)]
        zq = sum(za[i] * Ud[:, i] for i in range(a + 1))
        tr_GQ = tr_GQ + k * zq * zq
        for i in range(a + 1):
            for j in range(a + 1):
                tr_GQ = tr_GQ + za[i] * za[j] * Q[:, i, j]
    logdet = m.sum(m.log(d), axis=1) + logdet_G
    trace = tr_DA - tr_Q + tr_GQ
    val = N * p * np.log(2.0 * np.pi) + m.sum(ld_w * logdet + tr_w * trace)
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
        Constructs with one item (loading fixed by ``reliability``, or by the item's own value in
        ``item_reliability``).
    reliability, link_sd, share_prior, theta_b_sd, loading_prior, between_sd, between_link_sd
        Settings of the priors (module docstring).
    between_scale
        ``"raw"`` (default) or ``"standardised"``: the between level's parameterisation.
    within_prior
        One :class:`~veerkracht_bayes.sem.model_builder.EdgePriorValues` per within link, or empty
        (``Normal(0, link_sd)``).
    item_reliability
        Single items with their own reliability (item -> value on the observed, standardised
        scale), overriding ``reliability`` for them
        (:func:`~veerkracht_bayes.sem.model_builder.fixed_item_reliability` reads it).

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
    between_scale: str = "raw"
    between_sd: float = 0.3
    between_link_sd: float = 0.5
    within_prior: tuple[Any, ...] = ()
    item_reliability: dict[str, float] = field(default_factory=dict)

    def within_priors(self) -> dict[str, Any]:
        """:class:`~veerkracht_bayes.sem.model_builder.EdgePriorValues` per within link
        (``within_prior``, else ``Normal(0, link_sd)``)."""
        from veerkracht_bayes.sem.model_builder import EdgePriorValues

        if self.within_prior:
            return dict(zip(self.within_links, self.within_prior))
        return {k: EdgePriorValues("normal", 0.0, self.link_sd, None, None) for k in self.within_links}

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
                    theta_b_sd: float = 0.2, between_scale: str = "raw", between_sd: float = 0.3,
                    between_link_sd: float = 0.5, within_prior: Mapping[str, Any] | None = None,
                    item_reliability: Mapping[str, float] | None = None) -> TwoLevelLayout:
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
    reliability, link_sd, share_prior, theta_b_sd, between_sd, between_link_sd
        Prior settings (module docstring): ``between_sd`` is the HalfNormal scale of the between
        disturbance SDs and ``between_link_sd`` the Normal SD of the raw between links;
        ``share_prior`` (Beta) and ``link_sd`` for the between links apply only with
        ``between_scale="standardised"``.
    between_scale
        ``"raw"`` (default): between links in total-scale units and between disturbance variances
        are the parameters, shares and standardised links derived. ``"standardised"``: the former
        parameterisation (shares ``v_c ~ Beta`` and standardised links, disturbances derived under
        the positive-disturbance barrier), kept for comparison.
    within_prior
        ``"a->b"`` -> the within link's prior: an
        :class:`~veerkracht_bayes.sem.model_builder.EdgePriorValues` (e.g. the literature prior with
        its sign constraint, from :func:`~veerkracht_bayes.sem.model_builder.edge_prior_values`) or
        ``(mean, sd)`` of a Normal; links not named get ``Normal(0, link_sd)``.
    item_reliability
        Item -> reliability in (0, 1) of a single item on the observed (standardised) scale,
        overriding ``reliability`` for it at both levels (a run passes the codebook's values,
        :func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`). Naming an item
        that is not the single item of a construct is a located error.

    Examples
    --------
    >>> lay = twolevel_layout(None, {"t1": "trust", "t2": "trust", "s1": "support", "s2": "support"},
    ...                       between=["trust", "support"], between_links=["support->trust"], within_links=[])
    >>> lay.between_links, lay.single_item_constructs
    (('support->trust',), ())
    >>> lay = twolevel_layout(None, {"t1": "trust", "t2": "trust", "h": "help"}, between=["trust"],
    ...                       between_links=[], within_links=["help->trust"], item_reliability={"h": 0.18})
    >>> lay.item_reliability
    {'h': 0.18}
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
    own_rel = {str(k): float(v) for k, v in (item_reliability or {}).items()}
    single_items = [it for it, c in zip(items, ic) if c in single]
    bad_rel = [Problem(f"item reliability must be in (0, 1), got {v}", location=f"item_reliability.{k}",
                       field="item_reliability", value=v) for k, v in own_rel.items() if not 0 < v < 1]
    bad_rel += [Problem(f"item_reliability names {k!r}, which is not the single item of a construct of the "
                        f"two-level model{did_you_mean(k, single_items)} (single items: {single_items})",
                        location=f"item_reliability.{k}", field="item_reliability", value=k)
                for k in own_rel if k not in single_items]
    if bad_rel:
        raise ModelError(bad_rel)
    if between_scale not in ("raw", "standardised"):
        raise ModelError(Problem(f"between_scale must be 'raw' or 'standardised', got {between_scale!r}",
                                 field="between_scale", value=between_scale))
    for nm, val in (("between_sd", between_sd), ("between_link_sd", between_link_sd), ("link_sd", link_sd),
                    ("theta_b_sd", theta_b_sd)):
        if not float(val) > 0:
            raise ModelError(Problem(f"{nm} must be positive, got {val}", field=nm, value=val))
    wp = {_link_key(k): v for k, v in (within_prior or {}).items()}
    unknown = sorted(set(wp) - set(wl))
    if unknown:
        raise ModelError(Problem(f"within_prior for {unknown[0]!r}, which is not a within link"
                                 f"{did_you_mean(unknown[0], wl)}", field="within_prior", value=unknown[0]))
    from veerkracht_bayes.sem.model_builder import EdgePriorValues

    def as_prior(v: Any) -> Any:
        if isinstance(v, EdgePriorValues):
            return v
        mean, sd = (float(x) for x in v)
        return EdgePriorValues("normal", mean, sd, None, None)

    wprior = tuple(as_prior(wp[k]) if k in wp else EdgePriorValues("normal", 0.0, float(link_sd), None, None)
                   for k in wl) if wp else ()
    return TwoLevelLayout(items=items, item_construct=ic, constructs=constructs, between=btup,
                          within_links=tuple(wl), between_links=tuple(bl), single_item_constructs=single,
                          reliability=float(reliability), link_sd=float(link_sd),
                          share_prior=(float(share_prior[0]), float(share_prior[1])), theta_b_sd=float(theta_b_sd),
                          between_scale=between_scale, between_sd=float(between_sd),
                          between_link_sd=float(between_link_sd), within_prior=wprior,
                          item_reliability=own_rel)


def implied_twolevel_covariances(layout: TwoLevelLayout, lam: Any, theta_w: Any, theta_b: Any, beta_w: Any,
                                 beta_b: Any, share: Any = None, *, omega: Any = None,
                                 xp: str | ModuleType | None = None) -> dict[str, Any]:
    """``Sigma_W``, ``Sigma_B``, the latent covariances and the between level on both scales.

    One parameter point (no draw axis). Two ways to give the between level:

    * standardised (``share`` given): ``beta_b`` are links on between-neighbourhood SDs and
      ``share`` the between variance shares ``v_c``; the between disturbances follow from
      ``Var(eta~_B) = 1``;
    * raw (``omega`` given, the model's parameterisation): ``beta_b`` are links in total-scale
      units and ``omega`` the between disturbance variances; ``v_c = diag(A_B diag(omega) A_B')``.

    Returns
    -------
    dict
        ``Sigma_W``, ``Sigma_B`` (p, p); ``L`` (p, K) loadings; ``Phi_W``, ``Phi_B`` (K, K; ``Phi_B``
        zero outside the between constructs); ``B_W``, ``A_W``, ``psi_W`` (standardised within
        disturbances); ``B_B`` (standardised), ``B_B_raw``, ``A_B`` (of ``B_B_raw``), ``share``,
        ``omega`` (raw between disturbance variances), ``psi_B`` (``omega / share``, the
        standardised between disturbances) and ``beta_between`` / ``beta_between_raw`` (link vectors).

    Examples
    --------
    >>> import numpy as np
    >>> lay = twolevel_layout(None, {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}, between=["a", "b"],
    ...                       between_links=["a->b"], within_links=["a->b"])
    >>> out = implied_twolevel_covariances(lay, np.full(4, 0.8), np.full(4, 0.35), np.full(4, 0.01),
    ...                                    np.array([0.3]), np.array([0.5]), np.array([0.2, 0.1]))
    >>> float(np.round(out["Sigma_W"][0, 0] + out["Sigma_B"][0, 0], 4))
    1.0
    >>> raw = implied_twolevel_covariances(lay, np.full(4, 0.8), np.full(4, 0.35), np.full(4, 0.01),
    ...                                    np.array([0.3]), out["beta_between_raw"], omega=out["omega"])
    >>> np.round(raw["share"], 6).tolist(), np.round(raw["beta_between"], 6).tolist()
    ([0.2, 0.1], [0.5])
    """
    if (share is None) == (omega is None):
        raise ModelError(Problem("give exactly one of share (standardised between level) and omega (raw)",
                                 field="share"))
    name = backend(lam, theta_w, theta_b, beta_w, beta_b, share if omega is None else omega, xp=xp)
    m = _module(name)

    def mm(a: Any, b: Any) -> Any:
        return m.dot(a, b) if name == "pytensor" else a @ b

    K, KB = len(layout.constructs), len(layout.between)
    L, _ = layout.loading_matrix(lam, xp=name)
    B_W = assemble(beta_w, layout.within_index(), xp=name)
    A_W = equilibrium_matrix(B_W, xp=name)
    psi_W = unit_variance_psi(A_W, xp=name)
    bidx = layout.between_index()
    src, tgt = np.asarray(bidx.cols, dtype=int), np.asarray(bidx.rows, dtype=int)
    if omega is None:
        B_B = assemble(beta_b, bidx, xp=name)
        psi_B = unit_variance_psi(equilibrium_matrix(B_B, xp=name), xp=name)
        v = share
        sd = m.sqrt(v)
        b_std = beta_b
        b_raw = beta_b * sd[tgt] / sd[src]
        B_raw = assemble(b_raw, bidx, xp=name)
        A_B = equilibrium_matrix(B_raw, xp=name)
        om = psi_B * v
        Phi_Bb = latent_covariance(A_B, om, xp=name)
    else:
        B_raw = assemble(beta_b, bidx, xp=name)
        A_B = equilibrium_matrix(B_raw, xp=name)
        om = omega
        Phi_Bb = latent_covariance(A_B, om, xp=name)
        v = m.diagonal(Phi_Bb)
        sd = m.sqrt(v)
        b_raw = beta_b
        b_std = beta_b * sd[src] / sd[tgt]
        B_B = assemble(b_std, bidx, xp=name)
        psi_B = om / v
    P = np.zeros((K, KB))
    P[[layout.constructs.index(c) for c in layout.between], np.arange(KB)] = 1.0
    v_full = mm(P, v) if KB else m.zeros(K) if name != "pytensor" else m.zeros((K,))
    Phi_B = mm(mm(P, Phi_Bb), P.T) if KB else 0.0 * mm(L.T, L)
    dw = m.sqrt(1.0 - v_full)
    Phi_W = latent_covariance(A_W, psi_W, xp=name) * (dw[:, None] * dw[None, :])
    Sigma_W = mm(mm(L, Phi_W), L.T) + m.diag(theta_w)
    Sigma_B = mm(mm(L, Phi_B), L.T) + m.diag(theta_b)
    return {"Sigma_W": Sigma_W, "Sigma_B": Sigma_B, "L": L, "Phi_W": Phi_W, "Phi_B": Phi_B, "B_W": B_W,
            "A_W": A_W, "psi_W": psi_W, "B_B": B_B, "B_B_raw": B_raw, "A_B": A_B, "share": v, "omega": om,
            "psi_B": psi_B, "beta_between": b_std, "beta_between_raw": b_raw}


def build_twolevel_model(stats: ClusterStatistics, layout: TwoLevelLayout, *, rho_max: float = 0.95,
                         width: float = 0.01, power_iterations: int = 64) -> Any:
    """The PyMC model of the two-level SEM (module docstring) on cluster statistics.

    Parameters
    ----------
    stats
        :func:`~veerkracht_bayes.survey.clusters.cluster_statistics` of the layout's items (same order).
    layout
        :func:`twolevel_layout` (its ``between_scale`` picks the between parameterisation).
    rho_max, width, power_iterations
        The stability barrier on both levels (sem.algebra).

    Returns
    -------
    pm.Model
        Posterior variables: ``beta_within`` (within_link), ``beta_between`` (standardised) and
        ``beta_between_raw`` (between_link), ``share``, ``between_sd`` and ``omega_between`` (raw
        between disturbance SD and variance), ``psi_between`` (standardised between disturbance;
        all between), ``lambda``, ``theta_within``, ``theta_between``, ``nu``, ``item_icc`` (item),
        ``psi_within`` (construct), ``rho_within``, ``rho_between``.

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
    ['beta_between_raw', 'beta_within', 'between_sd', 'item_between_sd', 'loading', 'nu', 'residual_var']
    """
    import pymc as pm
    import pytensor.tensor as pt

    from veerkracht_bayes.sem.model_builder import (data_container, edge_rvs, fixed_item_reliability,
                                                    standardisation_wall)

    if tuple(stats.item_names) != layout.items:
        raise ModelError(Problem(f"statistics items {list(stats.item_names)[:5]}... differ from the layout's "
                                 f"{list(layout.items)[:5]}... (expected the same items in the same order)",
                                 field="items"))
    p = len(layout.items)
    single = np.array([c in layout.single_item_constructs for c in layout.item_construct], dtype=bool)
    coords = {"item": list(layout.items), "construct": list(layout.constructs), "between": list(layout.between),
              "within_link": list(layout.within_links), "between_link": list(layout.between_links)}
    lm, ls = layout.loading_prior
    rel = fixed_item_reliability(layout)[single]  # per single item: its own value, else the global one
    raw = layout.between_scale == "raw"
    with pm.Model(coords=coords) as model:
        d = {"n": float(stats.n), "n_clusters": float(stats.n_clusters),
             **{k: data_container(k, getattr(stats, k))
                for k in ("S_PW", "sizes", "counts", "class_means", "class_scatter")}}
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
        if layout.within_prior:
            bw = pm.Deterministic("beta_within", edge_rvs(layout.within_priors(), list(layout.within_links)),
                                  dims="within_link")
        elif layout.within_links:
            bw = pm.Normal("beta_within", 0.0, layout.link_sd, dims="within_link")
        else:
            bw = pt.zeros((0,))
        if raw:
            bb = (pm.Normal("beta_between_raw", 0.0, layout.between_link_sd, dims="between_link")
                  if layout.between_links else pt.zeros((0,)))
            bsd = (pm.HalfNormal("between_sd", sigma=layout.between_sd, dims="between") if layout.between
                   else pt.zeros((0,)))
            imp = implied_twolevel_covariances(layout, lam, th_w, th_b, bw, bb, omega=bsd ** 2, xp="pytensor")
        else:
            a, b = layout.share_prior
            bb = (pm.Normal("beta_between", 0.0, layout.link_sd, dims="between_link") if layout.between_links
                  else pt.zeros((0,)))
            share = pm.Beta("share", alpha=a, beta=b, dims="between") if layout.between else pt.zeros((0,))
            imp = implied_twolevel_covariances(layout, lam, th_w, th_b, bw, bb, share, xp="pytensor")
        pm.Deterministic("psi_within", imp["psi_W"], dims="construct")
        if layout.between:
            if raw:
                pm.Deterministic("share", imp["share"], dims="between")
                if layout.between_links:
                    pm.Deterministic("beta_between", imp["beta_between"], dims="between_link")
            else:
                pm.Deterministic("between_sd", pt.sqrt(imp["omega"]), dims="between")
                if layout.between_links:
                    pm.Deterministic("beta_between_raw", imp["beta_between_raw"], dims="between_link")
            pm.Deterministic("omega_between", imp["omega"], dims="between")
            pm.Deterministic("psi_between", imp["psi_B"], dims="between")
            # shares below 1: the within variance 1 - v_c stays positive (far from the posterior)
            pm.Potential("share_below_one", pt.switch(pt.all(pt.lt(imp["share"], 1.0)), 0.0, -np.inf))
        levels = (("within", imp["B_W"], imp["psi_W"], True), ("between", imp["B_B_raw"], imp["psi_B"], not raw))
        for lev, B, psi, standardised in levels:
            if B.type.shape[-1] == 0:
                continue
            # rho(|B_raw|) = rho(|B_std|): the two differ by a diagonal similarity
            rho = perron_bound(pt.abs(B), power_iterations, xp="pytensor")
            pm.Deterministic(f"rho_{lev}", rho)
            pm.Potential(f"stability_{lev}", stability_barrier(rho, rho_max, width, xp="pytensor"))
            if standardised:
                pm.Potential(f"standardisation_{lev}", standardisation_barrier(psi, xp="pytensor"))
                standardisation_wall(psi, f"psi_positive_{lev}")
        Sw, Sb = imp["Sigma_W"], imp["Sigma_B"]
        pm.Deterministic("item_icc", pt.diagonal(Sb) / (pt.diagonal(Sb) + pt.diagonal(Sw)), dims="item")
        con = [layout.constructs.index(c) for c in layout.item_construct]
        pm.Potential("loglik", twolevel_loglik_lowrank(lam, con, imp["Phi_W"], imp["Phi_B"], th_w, th_b, nu, d,
                                                       xp="pytensor"))
    return model
