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

**Weights** (``PolychoricSettings(weight=...)``, :mod:`veerkracht_bayes.sem.moment_weights`).
``"sandwich"``: ``log L = -1/2 |M (rho(theta) - r_hat)|^2`` with the ``p x s`` matrix ``M`` of
the DWLS estimating equation's quasi-likelihood (``p`` = edges + free loadings): ``Gamma_hat``
enters only linearly and through a ``p x p`` matrix, and the curvature is the sandwich
(Godambe) information, so the posterior is calibrated where the full weight's is too narrow.
``M`` needs a pilot point: the mode of the DWLS posterior (the same model with the diagonal
weight, found by L-BFGS on the JAX-compiled log-density) and the exact Jacobian of the implied
correlations in the links and free loadings there (:func:`fit_sandwich_weight`). ``"diagonal"``:
``-1/2 sum (rho - r_hat)^2 / diag(Gamma_hat)``, DWLS without the adjustment (not calibrated;
for comparison). ``"full"``, described next, was the route's only weight before.

**Likelihood (full weight).** ``r_hat ~ N(rho(theta), Gamma_hat)`` with ``Gamma_hat`` the *full* sandwich
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

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    latent_system,
    standardisation_wall,
)
from veerkracht_bayes.sem.moment_weights import diagonal_whitener, sandwich_whitener
from veerkracht_bayes.runtime import register_program_cache, release_compiled_programs_if_needed, x64
from veerkracht_bayes.survey.polychoric import PolychoricResult, whiten_correlations

__all__ = [
    "JOINT_MODE_BARRIER",
    "STANDARDISED_LINKS",
    "WEIGHTS",
    "PolychoricData",
    "PolychoricSettings",
    "SandwichPilot",
    "build_polychoric_model",
    "implied_correlations",
    "link_from_standard",
    "link_to_standard",
    "lbfgs_program",
    "minimise_lbfgs",
    "polychoric_data",
    "fit_sandwich_weight",
    "sandwich_pilot_info",
    "set_sandwich_whitener",
    "standardised_link_keys",
]

#: Name of the free variable holding the links sampled in prior-standardised coordinates.
STANDARDISED_LINKS = "beta_standardised"
#: The stage-2 weights (``PolychoricSettings.weight``; :mod:`veerkracht_bayes.sem.moment_weights`).
WEIGHTS = ("sandwich", "full", "diagonal")
#: data containers of the diagonal / sandwich weights (after :data:`DATA_PREFIX`)
WEIGHT_CONTAINERS = ("weight_dwls_diagonal", "weight_sandwich")
#: pilot of each sandwich model (:func:`sandwich_pilot_info`)
_PILOTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: compiled pilot programs by cache key (:func:`fit_sandwich_weight`)
_PILOT_PROGRAMS: dict = {}
register_program_cache(_PILOT_PROGRAMS.clear)
#: The joint mode's default standardisation barrier (``StabilitySettings`` fields): the density
#: times ``sigmoid((psi - 0.1) / 0.03)`` per disturbance variance instead of the continuous path's
#: ``sigmoid((psi - 0.02) / 0.01)``. In the joint mode, links out of constructs without items
#: (flat likelihood up to the edge where a target's R^2 reaches 1) carried trajectories over the
#: narrow default barrier into the hard edge at ``psi = 1e-4`` within one or two leapfrog steps:
#: divergences. With this barrier: 1 of 6,000 draws on the shipped survey (4 + 7 + 10 with the
#: default; seeds 2023-2025), link means unchanged within Monte Carlo error (docs/performance.md §4b).
#: Part of the prior: it halves the density at R^2 = 0.9 and down-weights R^2 above about 0.85.
JOINT_MODE_BARRIER = {"psi_floor": 0.1, "psi_width": 0.03}
#: what the pilot of each sandwich model needs (tensors, free loadings, Gamma_hat, tolerance)
_CONTEXT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PolychoricSettings:
    """Priors of the measurement part and the single-item reliability (latent-response scale).

    ``item_reliability`` gives single items their own reliability (item column -> value in
    (0, 1)), overriding ``reliability``. ``unmeasured="joint"`` keeps the constructs without
    items in the implied correlations (their links sampled with the others, on their priors);
    ``"cut"`` (default) leaves out of the implied correlations every link that touches one, which
    biases the links among measured constructs by the dropped paths (docs/performance.md §4b).
    ``weight`` picks the stage-2 likelihood (module docstring; default ``"sandwich"``).

    Examples
    --------
    >>> PolychoricSettings().ridge
    1e-09
    >>> PolychoricSettings().weight
    'sandwich'
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
    #: stage-2 weight (:mod:`veerkracht_bayes.sem.moment_weights`): "sandwich" (the DWLS
    #: estimating equation's quasi-likelihood with the sandwich variance: calibrated by the SBC,
    #: docs/performance.md §4b.1), "full" (``N(rho, Gamma_hat)``, Gamma_hat inverted: too narrow
    #: at moderate n) or "diagonal" (DWLS without the adjustment: not calibrated, comparison only)
    weight: str = "sandwich"
    #: eigenvalues of the sandwich's ``J`` at or below ``sandwich_tol * max`` count as zero
    sandwich_tol: float = 1e-9


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
                           stability: StabilitySettings | None = None,
                           whitener: np.ndarray | None = None,
                           pilot_start: Mapping[str, object] | None = None,
                           pilot: bool = True):
    """Build the PyMC model of the polychoric route (stage 2).

    Parameters
    ----------
    graph, data, priors
        The diagram, the stage-1 summaries (:func:`polychoric_data`) and the edge priors.
    settings, stability
        Measurement priors / single-item reliability, the stage-2 ``weight``, and the model's
        barriers. Without ``stability``, the joint mode (``settings.unmeasured="joint"``) gets
        :data:`JOINT_MODE_BARRIER` (a standardisation barrier from ``psi`` = 0.1 instead of 0.02),
        the cut mode ``StabilitySettings()``.
    whitener
        ``weight="sandwich"`` only: the ``(p, s)`` matrix ``M`` of
        :func:`~veerkracht_bayes.sem.moment_weights.sandwich_whitener` (``p`` = edges + free
        loadings, in that order; ``s`` correlations). Without it the model computes its own:
        the mode of the DWLS posterior (the same model with the diagonal weight) from
        ``pilot_start`` by L-BFGS, the Jacobian of the implied correlations in the links and
        free correlation-scale loadings there, and ``M`` from that Jacobian and Gamma_hat
        (:func:`sandwich_pilot_info` reports it).
    pilot_start
        Constrained starting values of the pilot's optimiser (free random variables by name,
        as the samplers' initial values); PyMC's initial point when omitted.
    pilot
        ``False``: return a ``weight="sandwich"`` model without a whitener (it is then the DWLS
        model) for :func:`fit_sandwich_weight` to finish, e.g. from the sampler's start points.

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
    >>> model, layout = build_polychoric_model(graph_from_lavaan("B ~ A"), data, pilot=False)
    >>> {"beta", "loading", "lambda", "correlations"} <= set(model.named_vars), layout.edge_keys
    (True, ('A->B',))

    (``pilot=False`` only saves the doctest the sandwich pilot's seconds; see
    :func:`fit_sandwich_weight`.)
    """
    import pymc as pm
    import pytensor.tensor as pt

    st = settings or PolychoricSettings()
    if stability is None:
        stability = StabilitySettings(**JOINT_MODE_BARRIER) if st.unmeasured == "joint" else StabilitySettings()
    item_rel = dict(st.item_reliability or {})
    bad = [Problem(f"reliability must be in (0, 1), got {v}", field=k) for k, v in
           [("reliability", st.reliability), *item_rel.items()] if not 0 < float(v) < 1]
    bad += [Problem(f"item_reliability names {k!r}, which is not an item of the data "
                    f"(items: {list(data.item_names)})", field=k) for k in item_rel if k not in data.item_names]
    if st.weight not in WEIGHTS:
        bad.append(Problem(f"weight must be one of {list(WEIGHTS)}, got {st.weight!r}", field="weight",
                           value=st.weight))
    if whitener is not None and st.weight != "sandwich":
        bad.append(Problem(f"a whitener is used only with weight='sandwich', not {st.weight!r}",
                           field="whitener"))
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
    s_lik = len(data.lik_pairs)
    if st.weight == "full":
        r_w_hat, Linv = whiten_correlations(data.stats, data.lik_pairs, ridge=st.ridge)
    else:
        r_w_hat, Linv = np.zeros(s_lik), None
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
        full, rho = full_system(beta, graph, edge_kind, latent, covariates, x_cov, stability)
        pm.Potential("stability", algebra.stability_barrier(rho, stability.rho_max, stability.width,
                                                            xp="pytensor"))
        pm.Potential("standardisation_full", algebra.standardisation_barrier(
            full.psi, floor=stability.psi_floor, width=stability.psi_width, xp="pytensor"))
        P = len(lik_latent)
        # the likelihood system: the full one itself in the joint mode (one inverse, one psi solve)
        lik = latent_system(beta, graph, edge_kind, lik_latent, covariates, x_cov, same_as=full)
        A, AG, psi = lik.A, lik.AG, lik.psi
        SxG = pt.dot(AG, x_cov) if q else pt.zeros((P, 1))  # A G S_x: covariance of eta with x
        psi_safe = standardisation_wall(psi)
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
        l = pm.Deterministic("lambda", l, dims="item")
        parts, inv = implied_correlations(S_eta, SxG, l, item_c, var_kind, var_idx, pairs)
        rho_vec = pt.concatenate(parts)[inv] if len(parts) > 1 else parts[0][inv]
        diff = rho_vec - data_container("correlations_hat", data.stats.r[data.lik_pairs])
        if st.weight == "full":
            pm.Potential("correlations", -0.5 * _whitened_sum_of_squares(model, diff, Linv))
        else:
            gamma = _lik_gamma(data, st.ridge)
            # DWLS: the elementwise D^-1/2 (the sandwich's pilot; zero once the sandwich is set)
            dw = _shared(model, WEIGHT_CONTAINERS[0], diagonal_whitener(gamma))
            total = pt.sum((dw * diff) ** 2)
            if st.weight == "sandwich":
                p_par = len(keys) + int(free.sum())
                mw = _shared(model, WEIGHT_CONTAINERS[1], np.zeros((p_par, s_lik)))
                total = total + pt.sum(pt.dot(mw, diff) ** 2)
            pm.Potential("correlations", -0.5 * total)
    if st.weight == "sandwich":
        _CONTEXT[model] = (beta, l, rho_vec, np.flatnonzero(free), gamma, st.sandwich_tol)
        if whitener is None:
            if pilot:
                fit_sandwich_weight(model, [pilot_start] if pilot_start else ())
            return model, layout
        else:
            whitener = np.asarray(whitener, dtype=float)
            if whitener.shape != (p_par, s_lik):
                raise ModelError(Problem(f"whitener has shape {whitener.shape}, expected ({p_par}, {s_lik}) "
                                         "(edges + free loadings, correlations)", field="whitener",
                                         value=whitener.shape))
            info = SandwichPilot(point={}, delta=np.zeros((s_lik, 0)), whitener=whitener,
                                 rank=int(np.any(whitener != 0, axis=1).sum()), seconds=0.0, iterations=0,
                                 converged=True, message="whitener given")
        set_sandwich_whitener(model, whitener)
        _PILOTS[model] = info
    return model, layout


def fit_sandwich_weight(model, starts: Sequence[Mapping[str, object]] = (), *,
                        cache_key: str | None = None) -> SandwichPilot:
    """Compute and set the sandwich whitener of a ``weight="sandwich"`` model (its pilot).

    The pilot: the mode of the model's DWLS posterior (the same model with the diagonal weight)
    by L-BFGS in the value space, from the first of ``starts`` with a finite log-density (then
    PyMC's initial point, then its links shrunk towards 0); the Jacobian ``Delta`` of the
    implied correlations in the edges and the free correlation-scale loadings there (JAX,
    exact); ``M`` from ``Delta`` and Gamma_hat
    (:func:`~veerkracht_bayes.sem.moment_weights.sandwich_whitener`). The pilot only affects
    efficiency: ``E g(theta_true) = 0`` for any fixed ``Delta``.

    Parameters
    ----------
    model
        From ``build_polychoric_model(..., settings=PolychoricSettings(weight="sandwich"))``.
    starts
        Constrained candidate starts (free random variables by name).
    cache_key
        A key that identifies the model's graph up to its data values (e.g.
        :func:`veerkracht_bayes.inference.jax_nuts.model_fingerprint`): models with the same key
        reuse the pilot's compiled programs (the data containers are their arguments).

    Returns
    -------
    SandwichPilot
        Also kept for :func:`sandwich_pilot_info`.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> y = np.random.default_rng(1).integers(0, 3, (300, 3)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"]), {"a": "A", "b": "A", "c": "B"})
    >>> model, _ = build_polychoric_model(graph_from_lavaan("B ~ A"), data,
    ...                                   settings=PolychoricSettings(weight="sandwich"), pilot=False)
    >>> info = fit_sandwich_weight(model)
    >>> info.whitener.shape, info.rank  # 1 edge + 2 free loadings, 3 correlations
    ((3, 3), 3)
    """
    if model not in _CONTEXT:
        raise ModelError(Problem("the model has no sandwich weight (build it with weight='sandwich')",
                                 field="weight"))
    beta, l, rho_vec, free_idx, gamma, tol = _CONTEXT[model]
    info = _sandwich_pilot(model, beta, l, rho_vec, free_idx, gamma, list(starts), tol, cache_key)
    set_sandwich_whitener(model, info.whitener)
    _PILOTS[model] = info
    return info


def _lik_gamma(data: PolychoricData, ridge: float) -> np.ndarray:
    """Gamma_hat of the correlations in the likelihood, with the same relative ridge as the full weight."""
    idx = np.asarray(data.lik_pairs, dtype=int)
    g = data.stats.acov[np.ix_(idx, idx)]
    return g + ridge * np.trace(g) / max(len(g), 1) * np.eye(len(g))


def _shared(model, name: str, value: np.ndarray):
    """A float64 data container (``pytensor.shared`` registered as model data, replaceable in place)."""
    import pytensor

    v = pytensor.shared(np.asarray(value, dtype=float), name=DATA_PREFIX + name, shape=np.shape(value))
    model.register_data_var(v)
    return v


def set_sandwich_whitener(model, whitener: np.ndarray) -> None:
    """Put a sandwich whitener ``M`` into a ``weight="sandwich"`` model and switch its DWLS pilot term off.

    The model's correlation term is then ``-1/2 |M (rho - r_hat)|^2``
    (:func:`~veerkracht_bayes.sem.moment_weights.sandwich_whitener`). ``build_polychoric_model``
    calls it; call it yourself only to replace the weight of a built model (same shape).

    Parameters
    ----------
    model
        A model from :func:`build_polychoric_model` with ``weight="sandwich"``.
    whitener
        ``(p, s)``: edges + free loadings by correlations.

    Raises
    ------
    ModelError
        When the model has no sandwich weight or the shape differs.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> y = np.random.default_rng(1).integers(0, 3, (300, 3)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"]), {"a": "A", "b": "A", "c": "B"})
    >>> model, _ = build_polychoric_model(graph_from_lavaan("B ~ A"), data,
    ...                                   settings=PolychoricSettings(weight="sandwich"), pilot=False)
    >>> set_sandwich_whitener(model, np.zeros((3, 3)))  # edges (1) + free loadings (2) by 3 correlations
    >>> abs(float(model.compile_logp(vars=[model["correlations"]], sum=True)(model.initial_point())))
    0.0
    """
    found = {v.name: v for v in model.data_vars}
    names = [DATA_PREFIX + n for n in WEIGHT_CONTAINERS]
    if names[1] not in found:
        raise ModelError(Problem("the model has no sandwich weight (build it with weight='sandwich')",
                                 field="weight"))
    mw, dw = found[names[1]], found[names[0]]
    w = np.asarray(whitener, dtype=float)
    shape = tuple(np.shape(mw.get_value(borrow=True)))
    if w.shape != shape:
        raise ModelError(Problem(f"whitener has shape {w.shape}, expected {shape}", field="whitener",
                                 value=w.shape))
    mw.set_value(w)
    dw.set_value(np.zeros(np.shape(dw.get_value(borrow=True))))


@dataclass(frozen=True)
class SandwichPilot:
    """How a sandwich model's weight was made (:func:`sandwich_pilot_info`).

    Attributes
    ----------
    point
        The pilot (DWLS posterior mode): ``beta`` (edges) and ``lambda`` (items, correlation scale).
    delta
        ``(s, p)`` Jacobian of the implied correlations in the edges and the free loadings there.
    whitener
        The ``(p, s)`` matrix ``M``; ``rank`` its non-zero rows.
    seconds, iterations, converged, message
        The optimiser's time (compilation included), iterations and verdict.

    Examples
    --------
    >>> SandwichPilot({}, np.zeros((3, 1)), np.zeros((1, 3)), 0, 0.1, 5, True, "ok").rank
    0
    """

    point: dict
    delta: np.ndarray
    whitener: np.ndarray
    rank: int
    seconds: float
    iterations: int
    converged: bool
    message: str


def sandwich_pilot_info(model) -> SandwichPilot | None:
    """The pilot behind a ``weight="sandwich"`` model's whitener (None for other models).

    Examples
    --------
    >>> import pymc as pm
    >>> sandwich_pilot_info(pm.Model()) is None
    True
    """
    return _PILOTS.get(model)


@x64
def _sandwich_pilot(model, beta_var, l_var, rho_var, free_idx: np.ndarray, gamma: np.ndarray,
                    starts: list, tol: float, cache_key: str | None = None, maxiter: int = 1000) -> SandwichPilot:
    """The DWLS posterior mode, the Jacobian of rho there, and the sandwich whitener."""
    import time

    import jax
    import pytensor.tensor as pt
    from pymc.initial_point import make_initial_point_fn
    from pytensor.graph.replace import clone_replace

    from veerkracht_bayes.programs import serialised_program
    from veerkracht_bayes.sem.jax_conversion import jaxify
    t0 = time.perf_counter()
    value_vars = list(model.value_vars)
    shared = sorted((v for v in model.data_vars if v.name.startswith(DATA_PREFIX)), key=lambda v: v.name)
    names = [v.name for v in value_vars]
    ip = model.initial_point()
    shapes = [tuple(np.shape(ip[n])) for n in names]
    sizes = [int(np.prod(sh, dtype=int)) for sh in shapes]
    cuts = np.cumsum([0] + sizes)

    def unravel(flat):
        return [flat[cuts[i]:cuts[i + 1]].reshape(shapes[i]) for i in range(len(names))]

    # the DWLS model, whatever weight the model holds now (a second pilot starts from the same)
    pilot_data = {DATA_PREFIX + WEIGHT_CONTAINERS[0]: diagonal_whitener(gamma),
                  DATA_PREFIX + WEIGHT_CONTAINERS[1]: None}
    data = [np.asarray(v.get_value(borrow=True)) for v in shared]
    data = [np.zeros_like(d) if pilot_data.get(v.name, d) is None else np.asarray(pilot_data.get(v.name, d))
            for v, d in zip(shared, data, strict=True)]
    programs = _PILOT_PROGRAMS.get(cache_key) if cache_key is not None else None
    if programs is None:
        release_compiled_programs_if_needed()
        converted: dict[str, Any] = {}

        def graphs() -> dict[str, Any]:
            """The log-density, the links and loadings, and rho as JAX functions (PyTensor's
            conversion, done when a program is traced: not when all are read back serialised)."""
            if not converted:
                syms = [pt.tensor(dtype=str(v.dtype), shape=v.type.shape, name=v.name + "_in") for v in shared]
                repl = dict(zip(shared, syms, strict=True))
                logp = clone_replace([model.logp()], replace=repl)
                b_in = pt.tensor(dtype="float64", shape=beta_var.type.shape, name="beta_in")
                l_in = pt.tensor(dtype="float64", shape=l_var.type.shape, name="lambda_in")
                # constants of the conversion must be arrays, not tracers of the program being traced
                with jax.ensure_compile_time_eval():
                    converted["logp"] = jaxify(inputs=value_vars + syms, outputs=logp)
                    converted["point"] = jaxify(
                        inputs=value_vars, outputs=model.replace_rvs_by_values([beta_var, l_var]))
                    converted["rho"] = jaxify(
                        inputs=[b_in, l_in], outputs=[clone_replace(rho_var, replace={beta_var: b_in, l_var: l_in})])
            return converted

        def neg_logp(flat, *d):  # +inf outside the support (where the log-density is -inf)
            v = graphs()["logp"](*unravel(flat), *d)[0]
            return jax.numpy.where(jax.numpy.isfinite(v), -v, jax.numpy.inf)

        flat_spec = jax.ShapeDtypeStruct((int(cuts[-1]),), np.float64)
        data_specs = [jax.ShapeDtypeStruct(d.shape, d.dtype) for d in data]
        jacobians: dict[Any, Any] = {}

        def jac_fn(b, l_):
            shapes_bl = (np.shape(b), np.shape(l_))
            if shapes_bl not in jacobians:
                jacobians[shapes_bl] = serialised_program(
                    "pilot-jacobian", cache_key, jax.jacfwd(lambda bb, ll: graphs()["rho"](bb, ll)[0], argnums=(0, 1)),
                    tuple(jax.ShapeDtypeStruct(sh, np.float64) for sh in shapes_bl))
            return jacobians[shapes_bl](b, l_)

        programs = (lbfgs_program(neg_logp, key=cache_key, specs=(flat_spec, *data_specs)),
                    serialised_program("pilot-point", cache_key, lambda flat: graphs()["point"](*unravel(flat)),
                                       (flat_spec,)),
                    jac_fn)
        if cache_key is not None:
            if len(_PILOT_PROGRAMS) >= 8:
                _PILOT_PROGRAMS.pop(next(iter(_PILOT_PROGRAMS)))
            _PILOT_PROGRAMS[cache_key] = programs
    lbfgs_prog, point_fn, jac_fn = programs
    vg = lbfgs_prog[1]

    def value_point(overrides: Mapping[str, object]) -> dict:
        return make_initial_point_fn(model=model, overrides=dict(overrides), jitter_rvs=set(),
                                     return_transformed=True)(0)

    def candidates():
        yield from (dict(c) for c in starts if c)
        yield {}
        # PyMC's initial point with the links shrunk towards 0 (inside the standardisation and
        # stability region for small enough links; signs and bounds kept)
        plain = make_initial_point_fn(model=model, jitter_rvs=set(), return_transformed=False)(0)
        links = [rv.name for rv in model.free_RVs if rv.name != "loading"]
        yield from ({k: f * np.asarray(plain[k]) for k in links} for f in (0.3, 0.1, 0.03))

    dj = [jax.device_put(d) for d in data]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = vg(flat, *dj)
        v, g = float(v), np.asarray(g, dtype=float)
        if not (np.isfinite(v) and np.isfinite(g).all()):
            return 1e30, np.zeros_like(flat)
        return v, g

    for cand in candidates():
        x0 = value_point(cand)
        flat0 = np.concatenate([np.ravel(np.asarray(x0[n], dtype=float)) for n in names])
        f0, _ = objective(flat0)
        if f0 < 1e30:
            break
    if f0 >= 1e30:
        raise ModelError(Problem("the sandwich pilot's start has a non-finite log-density; pass pilot_start "
                                 "(e.g. a prior draw inside the stability and standardisation region)",
                                 field="pilot_start"))
    best, fbest, nit, converged, message = minimise_lbfgs(lbfgs_prog, flat0, maxiter, *dj)
    beta0, l0 = (np.asarray(a, dtype=float) for a in point_fn(best))
    jb, jl = jac_fn(beta0, l0)
    delta = np.column_stack([np.asarray(jb), np.asarray(jl)[:, free_idx]])
    whitener, rank = sandwich_whitener(delta, gamma, tol=tol)
    return SandwichPilot(point={"beta": beta0, "lambda": l0}, delta=delta, whitener=whitener, rank=rank,
                         seconds=time.perf_counter() - t0, iterations=nit, converged=converged,
                         message=f"{message}; log-density {-fbest:.6g} (start {-f0:.6g})")


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


def lbfgs_program(value_fn: Callable[..., Any], memory: int = 10, *, key: str | None = None,
                  specs: Sequence[Any] | None = None) -> tuple[Callable, Callable, Callable]:
    """optax's L-BFGS with its zoom (strong Wolfe) line search, compiled for one objective.

    The line search bisects away from an infinite value and never ends on one (it takes a zero
    step instead); the approximate-Wolfe relaxation is off, so a step decreases the value. Build
    it once per ``value_fn`` (``jax.jit`` compiles per function object). Used by the sandwich
    pilot (:func:`fit_sandwich_weight`) through :func:`minimise_lbfgs`.

    Parameters
    ----------
    value_fn
        ``value_fn(x, *args)``, JAX-traceable, ``+inf`` outside the support.
    memory
        Number of curvature pairs kept.
    key, specs
        With both, the value-and-gradient and step programs are serialised under ``key``
        (:func:`veerkracht_bayes.programs.serialised_program`; ``specs``: ``x`` and the
        further arguments), so a later process reads them instead of tracing the objective.

    Returns
    -------
    (init, value_and_grad, step)
        ``init(x)`` the optimiser state; ``value_and_grad(x, *args)`` compiled;
        ``step(x, state, f, g, *args) -> (x_new, f_new, g_new, stepsize, state)`` compiled (``f``,
        ``g`` the value and gradient at ``x``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> init, value_and_grad, step = lbfgs_program(lambda x: jnp.sum((x - 1.0) ** 2))
    >>> float(value_and_grad(jnp.zeros(2))[0])
    2.0
    """
    import jax
    import optax

    opt = optax.lbfgs(memory_size=memory, linesearch=optax.scale_by_zoom_linesearch(
        max_linesearch_steps=60, approx_dec_rtol=None, initial_guess_strategy="one"))

    def step(x, state, f, g, *args):
        updates, state = opt.update(g, state, x, value=f, grad=g, value_fn=lambda p: value_fn(p, *args))
        return (optax.apply_updates(x, updates), optax.tree.get(state, "value"),
                optax.tree.get(state, "grad"), optax.tree.get(state, "learning_rate"), state)

    def init(x):  # strongly typed, as ``step`` returns the state: ``step`` compiles once
        return jax.tree.map(lambda a: jax.numpy.asarray(a, dtype=a.dtype), opt.init(x))

    if key is None or specs is None:
        return init, jax.jit(jax.value_and_grad(value_fn)), jax.jit(step)
    from veerkracht_bayes.programs import serialised_program

    # serialised: the optimiser's state crosses the program boundary as its list of leaves
    state = jax.eval_shape(opt.init, specs[0])
    treedef = jax.tree.structure(state)
    leaf_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in jax.tree.leaves(state)]

    def step_leaves(x, leaves, f, g, *args):
        x_new, f_new, g_new, rate, st = step(x, jax.tree.unflatten(treedef, leaves), f, g, *args)
        return x_new, f_new, g_new, rate, jax.tree.leaves(st)

    value_and_grad = serialised_program("lbfgs-value", key, jax.value_and_grad(value_fn), specs)
    step_program = serialised_program("lbfgs-step", key, step_leaves, (
        specs[0], leaf_specs, jax.ShapeDtypeStruct((), specs[0].dtype), specs[0], *specs[1:]))

    def step_state(x, st, f, g, *args):
        x_new, f_new, g_new, rate, leaves = step_program(x, jax.tree.leaves(st), f, g, *args)
        return x_new, f_new, g_new, rate, jax.tree.unflatten(treedef, leaves)

    return init, value_and_grad, step_state


@x64
def minimise_lbfgs(program: tuple[Callable, Callable, Callable], x0: np.ndarray, maxiter: int, *args: Any,
                   rtol: float = 1e-10) -> tuple[np.ndarray, float, int, bool, str]:
    """Minimise the objective of ``program`` from ``x0`` (inside the support) by optax's L-BFGS.

    Stops at a relative decrease below ``rtol`` three times in a row, ``max|grad| < 1e-6`` or
    ``maxiter`` iterations. A step that ends outside the support (or with a non-finite
    gradient) or does not decrease the value is not taken: L-BFGS restarts from the gradient
    there, and stops if that fails too. (SciPy's L-BFGS-B stops at the support's barrier after
    a step or two: its line search reads the barrier as no reduction.)

    Parameters
    ----------
    program
        :func:`lbfgs_program` of the objective.
    x0
        Start, inside the support.
    maxiter
        Most iterations.
    *args
        Further arguments of the objective (data).
    rtol
        Relative decrease counted as none.

    Returns
    -------
    (x, f, iterations, converged, message)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> program = lbfgs_program(lambda x: jnp.where(x[0] < 1.0, jnp.sum((x - 0.9) ** 2), jnp.inf))
    >>> x, f, it, converged, message = minimise_lbfgs(program, np.array([0.5, 0.0]), 100)
    >>> np.round(x, 6).tolist(), converged, message
    ([0.9, 0.9], True, 'converged')
    """
    import jax.numpy as jnp

    init, value_and_grad, step = program
    x = jnp.asarray(x0, dtype=jnp.float64)
    f_x, g_x = value_and_grad(x, *args)
    f = float(f_x)
    if not (np.isfinite(f) and np.isfinite(np.asarray(g_x)).all()):
        return np.array(x), f, 0, False, "the start is outside the support"
    state, fresh = init(x), True
    small = 0
    for it in range(1, maxiter + 1):
        xn, fn_x, gn_x, stepsize, state_n = step(x, state, f_x, g_x, *args)
        fn = float(fn_x)
        if not (float(stepsize) > 0 and np.isfinite(fn) and fn <= f and np.isfinite(np.asarray(gn_x)).all()):
            if fresh:  # already along the gradient
                return np.array(x), f, it, False, "line search found no decrease"
            state, fresh = init(x), True  # drop the curvature pairs: restart from the gradient
            continue
        rel = (f - fn) / max(abs(f), abs(fn), 1.0)
        x, f, f_x, g_x, state, fresh = xn, fn, fn_x, gn_x, state_n, False
        small = small + 1 if rel < rtol else 0
        if small >= 3 or float(jnp.max(jnp.abs(g_x))) < 1e-6:
            return np.array(x), f, it, True, "converged"
    return np.array(x), f, maxiter, False, "iteration limit"
