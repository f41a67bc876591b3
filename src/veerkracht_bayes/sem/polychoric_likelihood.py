"""Stage 2 of the polychoric route: the structural model fitted to the latent-response
correlations of stage 1 (:mod:`veerkracht_bayes.survey.polychoric`) through a Gaussian
likelihood. The Bayesian analogue of WLSMV; the cost per gradient does not depend on N.

**Implied correlations.** Every item ``i`` has a standardised latent response
``y*_i = l_i eta_c(i) + e_i`` with ``Var(y*_i) = 1``: ``Var(e_i) = 1 - l_i^2``. Latents are
standardised as in every other path (``psi`` solves ``(A∘A) psi = 1 - diag(A G S_x G' A')``),
so with ``S_eta = A diag(psi) A' + A G S_x G' A'`` (unit diagonal)::

    corr(y*_i, y*_j) = l_i l_j S_eta[c(i), c(j)]           (i != j, both items)
    corr(y*_i, x_k)  = l_i (A G S_x)[c(i), k]                (x_k an observed covariate)

Observed covariates enter on their standardised (continuous) or latent-response (binary)
scale with ``S_x`` their stage-1 correlation matrix, held fixed: the covariate-covariate
correlations are conditioned on and left out of the likelihood, as the continuous path
conditions on ``x``.

**Loadings.** Each free loading is sampled on the same scale and prior as the exact ordinal
path (theta parameterisation, ``lambda ~ N+(loading_mu, loading_sd)``) and mapped to the
correlation scale ``l = lambda / sqrt(1 + lambda^2)``; continuous items use the same form
(their standardised loading). A construct with a single item needs a fixed loading by
assumption: ``l = sqrt(reliability)`` is the correlation of the item's *latent response*
with the construct (for a binary item that is the latent ``y*``, whose correlation with the
construct can reach 1, unlike the 0/1 answer, whose point-biserial correlation with a normal
variable cannot exceed 0.80). The same assumption as the exact ordinal path.

**Likelihood.** ``r_hat ~ N(rho(theta), Gamma_hat)`` with ``Gamma_hat`` the *full* sandwich
covariance of stage 1 (thresholds held at their stage-1 values; their sampling error is
already propagated into ``Gamma_hat``). The data enter as ``pm.Data`` containers: ``r_hat``
and the whitening factor ``L^-1`` (``Gamma_hat = L L'``), so
``log p = -1/2 |L^-1 (r_hat - rho)|^2`` plus a constant, a cost of ``O(s^2)`` per gradient for
``s`` correlations. That product dominates the gradient (``s = 1710`` on the MARVEL survey: a
23 MB matrix streamed twice per gradient), so ``L^-1`` is stored as row blocks that keep only
the columns up to each block's last row (it is lower triangular: the zeros above the diagonal
are not read), and, from ``s >= 256``, in float32, applied to the small difference
``r_hat - rho`` (rounding ~1e-6 of a whitened residual), the sum of squares in float64.

**Coordinates of the links on their priors.** Links that touch a construct without items (and
absent links) are sampled as ``z ~ N(0, 1)`` with ``beta = F^-1(Phi(z))`` (``F`` the link's
prior CDF; :func:`standardised_link_keys`, :func:`link_from_standard`): the same model, but
without the exponential tail of ``log|beta|`` from which NUTS trajectories overshot the
standardisation barrier (docs/performance.md §4b; ``PolychoricSettings(prior_links="native")``
keeps PyMC's coordinates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from veerkracht_bayes.graph.identification import model_classes
from veerkracht_bayes.errors import ModelError, Problem
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.model_builder import (
    ModelLayout,
    StabilitySettings,
    DATA_PREFIX,
    data_container,
    edge_prior_values,
    edge_rvs,
    full_system,
)
from veerkracht_bayes.survey.polychoric import PolychoricResult, whiten_correlations

__all__ = [
    "STANDARDISED_LINKS",
    "PolychoricData",
    "PolychoricSettings",
    "build_polychoric_model",
    "implied_correlations",
    "link_from_standard",
    "link_to_standard",
    "polychoric_data",
    "standardised_link_keys",
]

#: Name of the free variable holding the links sampled in prior-standardised coordinates.
STANDARDISED_LINKS = "beta_standardised"


@dataclass(frozen=True)
class PolychoricSettings:
    """Priors of the measurement part and the single-item reliability (latent-response scale).

    ``item_reliability`` gives single items their own reliability (item column -> value in
    (0, 1)), overriding ``reliability``. ``unmeasured="joint"`` keeps the constructs without
    items in the implied correlations (their links sampled with the others, on their priors);
    ``"cut"`` (default) leaves out of the implied correlations every link that touches one, which
    biases the links among measured constructs by the dropped paths (docs/performance.md §4b).

    Examples
    --------
    >>> PolychoricSettings().ridge
    1e-09
    >>> PolychoricSettings(item_reliability={"prof_help": 0.42}, unmeasured="joint").unmeasured
    'joint'
    """

    reliability: float = 0.8
    #: per single item (column name): its assumed latent-response reliability
    item_reliability: Mapping[str, float] | None = None
    #: "cut" or "joint" (see above)
    unmeasured: str = "cut"
    loading_mu: float = 1.0
    loading_sd: float = 1.0
    #: relative ridge added to Gamma_hat's diagonal before its Cholesky factor
    ridge: float = 1e-9
    #: coordinates of the links on their priors (those touching a construct without items, and
    #: absent links): "standardised" (``z ~ N(0, 1)``, the link its prior's quantile of
    #: ``Phi(z)``; see :func:`standardised_link_keys`) or "native" (PyMC's ``log|beta|``)
    prior_links: str = "standardised"


@dataclass(frozen=True)
class PolychoricData:
    """Stage-1 summaries arranged for the structural model.

    Attributes
    ----------
    stats
        The stage-1 result (all variables: items and covariates).
    item_names, item_construct
        Items (variables that measure a latent construct) and their graph nodes.
    x_names, x_vars
        Covariate nodes and the stage-1 variable observing each.
    lik_pairs
        Positions in ``stats.r`` of the correlations in the likelihood (not covariate-covariate).

    Examples
    --------
    Built by :func:`polychoric_data`:

    >>> import numpy as np
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> y = np.random.default_rng(1).integers(0, 3, (200, 3)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"]), {"a": "A", "b": "A", "c": "B"})
    >>> isinstance(data, PolychoricData), data.item_construct, data.x_names
    (True, ('A', 'A', 'B'), ())
    """

    stats: PolychoricResult
    item_names: tuple[str, ...]
    item_construct: tuple[str, ...]
    x_names: tuple[str, ...]
    x_vars: tuple[str, ...]
    lik_pairs: np.ndarray
    data_hash: str | None = None

    @property
    def x_cov(self) -> np.ndarray:
        """Correlation matrix of the covariates (stage 1), held fixed."""
        idx = [self.stats.names.index(v) for v in self.x_vars]
        return self.stats.correlation[np.ix_(idx, idx)]

    @property
    def n(self) -> int:
        """Rows used in stage 1."""
        return self.stats.n

    @property
    def constructs(self) -> list[str]:
        """Measured constructs in first-item order."""
        return list(dict.fromkeys(self.item_construct))


def polychoric_data(stats: PolychoricResult, item_construct: Mapping[str, str], *,
                    covariates: Mapping[str, str] | None = None, data_hash: str | None = None) -> PolychoricData:
    """Arrange stage-1 results for :func:`build_polychoric_model`.

    Parameters
    ----------
    stats
        Stage-1 result.
    item_construct
        Stage-1 variable -> graph node it measures (every variable that is not a covariate).
    covariates
        Graph covariate node -> the stage-1 variable that observes it.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> st = polychoric(rng.integers(0, 3, (200, 3)).astype(float), ["ordinal"] * 3, names=["a", "b", "c"])
    >>> polychoric_data(st, {"a": "A", "b": "A", "c": "B"}).lik_pairs.tolist()
    [0, 1, 2]
    """
    covariates = dict(covariates or {})
    known = set(stats.names)
    problems = [Problem(f"variable {v!r} is not in the stage-1 result (have {sorted(known)})", field=v)
                for v in list(item_construct) + list(covariates.values()) if v not in known]
    if problems:
        raise ModelError(problems)
    items = [v for v in stats.names if v in item_construct]
    xv = set(covariates.values())
    lik = [p for p, (a, b) in enumerate(stats.pairs)
           if not (stats.names[a] in xv and stats.names[b] in xv)
           and (stats.names[a] in item_construct or stats.names[a] in xv)
           and (stats.names[b] in item_construct or stats.names[b] in xv)]
    return PolychoricData(stats=stats, item_names=tuple(items), item_construct=tuple(item_construct[v] for v in items),
                          x_names=tuple(covariates), x_vars=tuple(covariates.values()),
                          lik_pairs=np.array(lik, dtype=int), data_hash=data_hash)


def implied_correlations(S_eta, SxG, l, item_c: np.ndarray,
                         var_kind: np.ndarray, var_idx: np.ndarray, pairs: np.ndarray):
    """Implied latent-response correlations for the given pairs (pytensor or NumPy inputs).

    Parameters
    ----------
    S_eta
        ``(P, P)`` latent correlation matrix; ``SxG`` ``(P, q)`` = ``A G S_x``.
    l
        ``(m,)`` correlation-scale loadings of the items; ``item_c`` their latent index.
    var_kind, var_idx
        Per stage-1 variable: 0 item / 1 covariate, and its index among items / covariates.
    pairs
        ``(s, 2)`` variable index pairs.

    Returns
    -------
    (parts, order)
        The correlations in blocks (item-item, item-covariate, covariate-item) and the
        permutation that puts their concatenation back in ``pairs`` order.

    Examples
    --------
    Items 0 and 1 measure latent 0, item 2 latent 1; the latents correlate 0.5:

    >>> import numpy as np
    >>> S_eta = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> parts, order = implied_correlations(S_eta, np.zeros((2, 0)), np.array([0.8, 0.7, 0.9]),
    ...                                     np.array([0, 0, 1]), np.zeros(3, int), np.arange(3),
    ...                                     np.array([[0, 1], [0, 2], [1, 2]]))
    >>> np.concatenate(parts)[order].round(3).tolist()  # 0.8*0.7, 0.8*0.9*0.5, 0.7*0.9*0.5
    [0.56, 0.36, 0.315]
    """
    a, b = pairs[:, 0], pairs[:, 1]
    ka, kb = var_kind[a], var_kind[b]
    out = []
    ii = np.flatnonzero((ka == 0) & (kb == 0))
    ix = np.flatnonzero((ka == 0) & (kb == 1))
    xi = np.flatnonzero((ka == 1) & (kb == 0))
    order = np.concatenate([ii, ix, xi])
    if ii.size:
        ia, ib = var_idx[a[ii]], var_idx[b[ii]]
        out.append(l[ia] * l[ib] * S_eta[item_c[ia], item_c[ib]])
    if ix.size:
        ia, xb = var_idx[a[ix]], var_idx[b[ix]]
        out.append(l[ia] * SxG[item_c[ia], xb])
    if xi.size:
        xa, ib = var_idx[a[xi]], var_idx[b[xi]]
        out.append(l[ib] * SxG[item_c[ib], xa])
    return out, np.argsort(order)


def standardised_link_keys(layout: object, prior_links: str = "standardised") -> tuple[str, ...]:
    """The links that the polychoric model samples in prior-standardised coordinates.

    Those whose posterior is (close to) their prior: absent links (no part of the model but
    their prior), and the links that touch a construct without items (``prior_only`` in the cut
    system; in the joint system informed at most through products along paths and through the
    standardisation). Only truncated-normal and normal priors have the closed-form quantile
    function the map needs; links with other priors keep PyMC's coordinates.

    Why (docs/performance.md §4b): in PyMC's ``log|beta|`` coordinates such a link has an
    exponential left tail. A trajectory that starts deep in it gains several nats of kinetic
    energy on the way back and overshoots the standardisation barrier of the construct it
    points into (a link from an exogenous construct without items changes only
    ``psi + beta^2`` of its target, so the likelihood is flat in it up to that barrier), into
    the region where a disturbance variance is negative (log-density ``-inf``): a divergence.
    In ``z`` the prior is ``N(0, 1)``: no tail to gain energy in, and no change of the posterior.

    Parameters
    ----------
    layout
        The model's :class:`~veerkracht_bayes.sem.model_builder.ModelLayout` (``edge_keys``,
        ``edge_kind``, ``unobserved_latent``, ``edge_priors``).
    prior_links
        ``"standardised"`` or ``"native"`` (then no link: the empty tuple).

    Returns
    -------
    tuple of str
        Edge keys, in ``layout.edge_keys`` order.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.sem.model_builder import EdgePriorValues
    >>> p = EdgePriorValues("truncated_normal", 0.0, 0.2, 0.0, None)
    >>> lay = SimpleNamespace(edge_keys=("a->b", "a->u", "u->b", "l->b"), unobserved_latent=("u",),
    ...     edge_kind={"a->b": "latent", "a->u": "latent", "u->b": "latent", "l->b": "absent"},
    ...     edge_priors=dict.fromkeys(("a->b", "a->u", "u->b", "l->b"), p))
    >>> standardised_link_keys(lay)
    ('a->u', 'u->b', 'l->b')
    >>> standardised_link_keys(lay, "native")
    ()
    """
    if prior_links not in ("standardised", "native"):
        raise ModelError(Problem(f"prior_links must be 'standardised' or 'native', got {prior_links!r}",
                                 field="prior_links", value=prior_links))
    if prior_links == "native":
        return ()
    unobserved = set(layout.unobserved_latent)  # type: ignore[attr-defined]
    kinds = layout.edge_kind  # type: ignore[attr-defined]
    priors = layout.edge_priors  # type: ignore[attr-defined]
    out = []
    for k in layout.edge_keys:  # type: ignore[attr-defined]
        src, dst = k.split("->")
        on_prior = kinds[k] in ("absent", "prior_only") or src in unobserved or dst in unobserved
        if on_prior and priors[k].distribution in ("truncated_normal", "normal") and priors[k].sd > 0:
            out.append(k)
    return tuple(out)


def _bounds(priors: Mapping[str, object], keys: list[str]) -> tuple[np.ndarray, ...]:
    """Per link: mean, sd and the prior mass below its lower / above its upper bound."""
    from scipy.special import ndtr

    mu = np.array([priors[k].mean for k in keys], dtype=float)  # type: ignore[attr-defined]
    sd = np.array([priors[k].sd for k in keys], dtype=float)  # type: ignore[attr-defined]
    trunc = np.array([priors[k].distribution == "truncated_normal" for k in keys])  # type: ignore[attr-defined]
    lo = np.array([priors[k].lower if t and priors[k].lower is not None else -np.inf  # type: ignore[attr-defined]
                   for k, t in zip(keys, trunc, strict=True)], dtype=float)
    hi = np.array([priors[k].upper if t and priors[k].upper is not None else np.inf  # type: ignore[attr-defined]
                   for k, t in zip(keys, trunc, strict=True)], dtype=float)
    return mu, sd, lo, hi, ndtr((lo - mu) / sd), ndtr((mu - hi) / sd)


def link_from_standard(z, priors: Mapping[str, object], keys: list[str], *, xp: str = "numpy"):
    """Links from prior-standardised coordinates: ``beta = F^-1(Phi(z))``, ``F`` each link's prior CDF.

    For ``z ~ N(0, 1)``, ``beta`` has exactly its (truncated) normal prior, so a model that puts
    ``z ~ N(0, 1)`` and uses ``beta(z)`` has the same posterior of ``beta`` as one that puts the
    prior on ``beta``. Computed from the nearer tail (``z < 0``: the mass below, else above), so
    links near a bound keep their relative precision; the result is clipped into the bounds.

    Parameters
    ----------
    z
        ``(..., k)`` coordinates (NumPy or PyTensor, as ``xp`` says).
    priors, keys
        Edge priors (:class:`~veerkracht_bayes.sem.model_builder.EdgePriorValues` per key) and
        the ``k`` links, in ``z``'s order.
    xp
        ``"numpy"`` or ``"pytensor"``.

    Examples
    --------
    >>> from veerkracht_bayes.sem.model_builder import EdgePriorValues
    >>> pri = {"a->b": EdgePriorValues("truncated_normal", 0.0, 0.2, 0.0, None),
    ...        "c->b": EdgePriorValues("normal", 0.1, 0.5, None, None)}
    >>> link_from_standard(np.array([0.0, 1.0]), pri, ["a->b", "c->b"]).round(4).tolist()
    [0.1349, 0.6]
    >>> z = np.random.default_rng(0).normal(size=(20000, 1))
    >>> b = link_from_standard(z, pri, ["a->b"])  # a half-normal(0.2) sample: mean 0.2 sqrt(2/pi)
    >>> bool(b.min() >= 0 and abs(b.mean() - 0.2 * np.sqrt(2 / np.pi)) < 0.003)
    True
    """
    mu, sd, lo, hi, pa, qb = _bounds(priors, keys)
    if xp == "pytensor":
        import pytensor.tensor as m

        erfc, erfcinv, where = m.erfc, m.erfcinv, m.switch
    else:
        from scipy.special import erfc, erfcinv

        m, where = np, np.where
        z = np.asarray(z, dtype=float)
    r2 = np.sqrt(2.0)
    # lower tail: Phi(x) = Pa + Phi(z) (1 - Pa - Qb); upper: Phi(-x) = Qb + Phi(-z) (1 - Pa - Qb)
    w = 1.0 - pa - qb
    neg = z < 0
    zl = where(neg, z, 0.0)
    zu = where(neg, 0.0, z)
    p_lo = pa + 0.5 * erfc(-zl / r2) * w
    p_hi = qb + 0.5 * erfc(zu / r2) * w
    x_lo = mu - sd * r2 * erfcinv(2.0 * p_lo)
    x_hi = mu + sd * r2 * erfcinv(2.0 * p_hi)
    x = where(neg, x_lo, x_hi)
    lo_f = np.where(np.isfinite(lo), lo, -1e300)
    hi_f = np.where(np.isfinite(hi), hi, 1e300)
    return m.minimum(m.maximum(x, lo_f), hi_f)


def link_to_standard(beta: np.ndarray, priors: Mapping[str, object], keys: list[str]) -> np.ndarray:
    """Inverse of :func:`link_from_standard` (NumPy): ``z = Phi^-1(F(beta))``.

    Links on a bound map to a finite ``z`` (at most 8 standard deviations out).

    Examples
    --------
    >>> from veerkracht_bayes.sem.model_builder import EdgePriorValues
    >>> pri = {"a->b": EdgePriorValues("truncated_normal", 0.3, 0.1, 0.0, None)}
    >>> z = link_to_standard(np.array([0.05, 0.3, 0.5]), pri, ["a->b"])
    >>> bool(np.allclose(link_from_standard(z, pri, ["a->b"]), [0.05, 0.3, 0.5]))
    True
    """
    from scipy.special import ndtr, ndtri

    mu, sd, lo, hi, pa, qb = _bounds(priors, keys)
    b = np.clip(np.asarray(beta, dtype=float), lo, hi)
    w = 1.0 - pa - qb
    below = (ndtr((b - mu) / sd) - pa) / w  # F(beta)
    above = (ndtr((mu - b) / sd) - qb) / w  # 1 - F(beta)
    z = np.where(below < 0.5, ndtri(np.clip(below, 1e-300, 1.0)), -ndtri(np.clip(above, 1e-300, 1.0)))
    return np.clip(z, -8.0, 8.0)


def build_polychoric_model(graph: CausalGraph, data: PolychoricData, priors: object | None = None, *,
                           settings: PolychoricSettings | None = None,
                           stability: StabilitySettings | None = None):
    """Build the PyMC model of the polychoric route (stage 2).

    Parameters
    ----------
    graph, data, priors
        The diagram, the stage-1 summaries (:func:`polychoric_data`) and the edge priors.
    settings, stability
        Measurement priors / single-item reliability, and the stability barrier.

    Returns
    -------
    (pm.Model, ModelLayout)
        Free variables: the grouped edge coefficients, ``beta_standardised`` (the links of
        :func:`standardised_link_keys` in prior-standardised coordinates, when there are any) and
        ``loading`` (theta-parameterisation scale, free loadings only). Deterministics ``beta`` (edge), ``psi`` and ``alpha``
        (node), ``lambda`` (item, correlation scale), ``rho_abs_bound``.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> y = np.random.default_rng(1).integers(0, 3, (200, 3)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"]), {"a": "A", "b": "A", "c": "B"})
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> model, layout = build_polychoric_model(graph_from_lavaan("B ~ A"), data)
    >>> {"beta", "loading", "lambda", "correlations"} <= set(model.named_vars), layout.edge_keys
    (True, ('A->B',))
    """
    import pymc as pm
    import pytensor.tensor as pt

    st = settings or PolychoricSettings()
    stability = stability or StabilitySettings()
    item_rel = dict(st.item_reliability or {})
    bad = [Problem(f"reliability must be in (0, 1), got {v}", field=k) for k, v in
           [("reliability", st.reliability), *item_rel.items()] if not 0 < float(v) < 1]
    bad += [Problem(f"item_reliability names {k!r}, which is not an item of the data "
                    f"(items: {list(data.item_names)})", field=k) for k in item_rel if k not in data.item_names]
    if bad:
        raise ModelError(bad)

    unknown = sorted(set(data.item_construct) - set(graph.nodes))
    if unknown:
        raise ModelError(f"items measure nodes that are not in the graph: {unknown}")
    # the one classification of nodes and links (graph.identification), as the other paths use
    classes = model_classes(graph, tuple(data.item_construct), tuple(data.x_names), unmeasured=st.unmeasured)
    latent, covariates, absent = list(classes.latent), list(classes.covariates), list(classes.absent)
    measured = data.constructs
    lik_latent = list(classes.lik_latent)
    lli = {k: i for i, k in enumerate(lik_latent)}
    eps = edge_prior_values(priors, graph)
    keys = graph.edge_keys
    edge_kind = dict(classes.edge_kind)
    counts = {c: data.item_construct.count(c) for c in measured}
    single = tuple(c for c in measured if counts[c] == 1)
    m, q = len(data.item_names), len(covariates)
    # covariates in the model's order, observed by their stage-1 variables
    xvar = dict(zip(data.x_names, data.x_vars, strict=True))
    x_cov_all = data.x_cov
    xo = [data.x_names.index(c) for c in covariates]
    x_cov = x_cov_all[np.ix_(xo, xo)] if q else np.zeros((0, 0))
    names = data.stats.names
    var_kind = np.full(len(names), -1)
    var_idx = np.full(len(names), -1)
    for i, v in enumerate(data.item_names):
        var_kind[names.index(v)], var_idx[names.index(v)] = 0, i
    for k, c in enumerate(covariates):
        var_kind[names.index(xvar[c])], var_idx[names.index(xvar[c])] = 1, k
    pairs = data.stats.pairs[data.lik_pairs]
    r_w_hat, Linv = whiten_correlations(data.stats, data.lik_pairs, ridge=st.ridge)
    item_c = np.array([lli[c] for c in data.item_construct], dtype=int)
    free = np.array([counts[c] > 1 for c in data.item_construct], bool)
    coords = {"edge": list(keys), "node": list(graph.nodes), "latent": latent, "lik_latent": lik_latent,
              "item": list(data.item_names), "covariate": covariates, "correlation": np.arange(len(r_w_hat))}
    layout = ModelLayout(
        nodes=tuple(graph.nodes), latent=tuple(latent), covariates=tuple(covariates), absent=tuple(absent),
        unobserved_latent=tuple(k for k in latent if k not in measured), edge_keys=tuple(keys),
        edge_kind=edge_kind, items=tuple(data.item_names), item_construct=tuple(data.item_construct),
        single_item_constructs=single, reliability=st.reliability, stability=stability, edge_priors=eps,
        lik_latent=tuple(lik_latent), unmeasured=st.unmeasured)
    std_keys = list(standardised_link_keys(layout, st.prior_links))
    rest_keys = [k for k in keys if k not in set(std_keys)]
    with pm.Model(coords=coords) as model:
        # links on their priors in prior-standardised coordinates (standardised_link_keys), the
        # others as PyMC's grouped truncated normals
        parts = [edge_rvs(eps, rest_keys)] if rest_keys else []
        if std_keys:
            z = pm.Normal(STANDARDISED_LINKS, 0.0, 1.0, shape=len(std_keys))
            parts.append(link_from_standard(z, eps, std_keys, xp="pytensor"))
        flat = pt.concatenate(parts) if len(parts) > 1 else parts[0]
        order = np.argsort(np.array([list(keys).index(k) for k in rest_keys + std_keys]))
        beta = pm.Deterministic("beta", flat[order], dims="edge")

        # full system: reported psi and stability (as in the continuous path)
        _, psi_full_lat, rho = full_system(beta, graph, edge_kind, latent, covariates, x_cov, stability)
        pm.Potential("stability", algebra.stability_barrier(rho, stability.rho_max, stability.width,
                                                            xp="pytensor"))
        pm.Potential("standardisation_full", algebra.standardisation_barrier(psi_full_lat, xp="pytensor"))
        P = len(lik_latent)
        B, G = algebra.structural_matrices(beta, graph.edges, edge_kind, lik_latent, covariates, ("latent",),
                                           xp="pytensor")
        A = algebra.equilibrium_matrix(B, xp="pytensor")
        AG = pt.dot(A, G) if q else None
        SxG = pt.dot(AG, x_cov) if q else pt.zeros((P, 1))  # A G S_x: covariance of eta with x
        psi = algebra.standardised_psi(A, AG, x_cov if q else None, xp="pytensor")
        psi_ok = pt.all(pt.gt(psi, 1e-4))
        psi_safe = pt.switch(pt.gt(psi, 1e-4), psi, 1e-4)
        pm.Potential("standardisation", pt.switch(psi_ok, 0.0, -np.inf))
        S_eta = algebra.latent_covariance(A, psi_safe, AG, x_cov if q else None, xp="pytensor")
        # loadings on the correlation scale
        l = pt.zeros((m,))
        if free.any():
            lam_free = pm.TruncatedNormal("loading", mu=st.loading_mu, sigma=st.loading_sd, lower=0.0,
                                          shape=int(free.sum()), initval=np.ones(int(free.sum())))
            l = pt.set_subtensor(l[np.flatnonzero(free)], lam_free / pt.sqrt(1.0 + lam_free ** 2))
        if (~free).any():
            rel = [float(item_rel.get(v, st.reliability)) for v, f in zip(data.item_names, free) if not f]
            l = pt.set_subtensor(l[np.flatnonzero(~free)], np.sqrt(np.array(rel)))
        pm.Deterministic("lambda", l, dims="item")
        parts, inv = implied_correlations(S_eta, SxG, l, item_c, var_kind, var_idx, pairs)
        rho_vec = pt.concatenate(parts)[inv] if len(parts) > 1 else parts[0][inv]
        pm.Potential("correlations", -0.5 * _whitened_sum_of_squares(
            model, rho_vec - data_container("correlations_hat", data.stats.r[data.lik_pairs]), Linv))
    return model, layout


#: correlations from which the whitening product runs in float32 (below it, float64)
_FLOAT32_FROM = 256


def _whitening_blocks(s: int) -> list[tuple[int, int]]:
    """Row blocks ``(i0, i1)`` of the ``s x s`` lower-triangular ``L^-1``: block rows ``i0:i1``
    need columns ``:i1`` only. Up to 8 blocks (about 56 % of the matrix read), ~128+ rows each."""
    nb = max(1, min(8, s // 128))
    edges = np.linspace(0, s, nb + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _whitened_sum_of_squares(model, diff, Linv: np.ndarray):
    """``|L^-1 diff|^2`` with ``L^-1`` as blocked data containers (see the module docstring)."""
    import pytensor
    import pytensor.tensor as pt

    s = Linv.shape[0]
    dtype = "float32" if s >= _FLOAT32_FROM else "float64"
    d = pt.cast(diff, dtype)
    total = 0.0
    for k, (i0, i1) in enumerate(_whitening_blocks(s)):
        block = np.ascontiguousarray(Linv[i0:i1, :i1], dtype=dtype)
        # pytensor.shared, not pm.Data: pm.Data converts to float64
        Lk = pytensor.shared(block, name=f"{DATA_PREFIX}gamma_inv_chol_{k}", shape=block.shape)
        model.register_data_var(Lk)
        e = pt.cast(pt.dot(Lk, d[:i1]), "float64")
        total = total + pt.sum(e ** 2)
    return total
