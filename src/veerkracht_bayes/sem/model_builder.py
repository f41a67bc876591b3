"""Build the PyMC model of a signed, cyclic structural equation model.

Model (continuous path, latent scores marginalised; see ``docs/model.md``)
-------------------------------------------------------------------------
Nodes of the graph fall into three classes:

* **covariates** ``x`` – observed exogenous nodes (no parents, one measured column);
  the model is conditional on them (lavaan's ``fixed.x``), centred at the weighted mean;
* **absent** nodes – unmeasured nodes without parents (policy levers, unmeasured
  exogenous factors): value 0 in the baseline population; their outgoing links are
  estimated from their priors alone (used by do-queries);
* **latent constructs** ``eta`` – every other node, measured or not.

Structural part on standardised latents::

    eta = B eta + Gamma x + zeta,   zeta ~ N(0, diag(psi)),   A = (I - B)^-1
    Cov(eta | x) = A diag(psi) A^T

Identification of scale: every latent has variance 1 in the population
(``diag(A diag(psi) A^T + A Gamma S_x Gamma^T A^T) = 1``). ``psi`` is therefore not a free
parameter: it solves the linear system ``(A∘A) psi = 1 - diag(A Gamma S_x Gamma^T A^T)``,
so every coefficient is a standardised (correlation-sized) effect, comparable to
literature betas. Draws for which some ``psi <= 0`` have no valid standardised solution
and get zero density.

Measurement part on standardised items (weighted mean 0, sd 1)::

    y_i = nu_i + lambda_i eta_{c(i)} + eps_i,   eps_i ~ N(0, theta_i)

Constructs with a single item have their loading fixed by an assumed reliability
``rel`` (``lambda = sqrt(rel)``, ``theta = 1 - rel``; default 0.8), since a single
indicator cannot separate true from error variance. Likert items are treated as
continuous here (route (a) of docs/model.md; documented in every brief).

Marginal likelihood (exact for cycles: the implied moments use ``(I - B)^-1``)::

    y | x ~ N(nu + Lambda A Gamma x,  Lambda A diag(psi) A^T Lambda^T + diag(theta))

evaluated through per-missingness-pattern sufficient statistics (full-information
maximum likelihood form) and multiplied by normalised survey weights
(**pseudo-likelihood**: weights sum to n, so the posterior has the width of an
unweighted sample of the same size; it is not a design-based variance).

Unmeasured constructs (``unmeasured="cut"``, the default): the likelihood is that of the
*measured sub-system* — latent constructs with at least one item, the covariates and the
links among them. Links that touch an unmeasured construct are not in the likelihood:
they keep their (stability-truncated) priors, as the issue asks ("constructs with no data
stay in the model on their priors"). This is a cut (modular) posterior (Plummer, 2015): it
stops prior-only loops such as stress <-> shame from bending the geometry of the data-informed
coefficients, at the price of ignoring the weak information the data carry about them
through the standardisation. Paths measured -> unmeasured -> measured are therefore
represented twice in do-queries (once inside the data-estimated direct link, once through the
prior-only path); on MARVEL such paths are products of two or more small prior links.
In the sampler, the prior-only links are independent of everything else (the barriers act
on the likelihood system); the full system's barriers are then imposed on them by an exact
accept/redraw step (``sampling.cut_completion``). ``unmeasured="joint"`` fits the full
system instead. ``psi`` is reported for the full system
(every latent with variance 1); a soft barrier keeps it positive.

Stability: a smooth barrier on the Perron root of |B| (an upper bound of the spectral
radius of B, a Collatz-Wielandt bound with a power-iteration test vector, so that it is differentiable):
``log_sigmoid((rho_max - rho(|B|)) / width)``. The exact spectral radius of every
draw is reported by the diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import logging

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import ModelError, Problem
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.preconditioning import WHITEN_PREFIX, edge_groups, intercept_whitening
from veerkracht_bayes.survey.statistics import ModelData

__all__ = ["EdgePriorValues", "ModelLayout", "StabilitySettings", "build_model", "data_container",
           "edge_prior_values", "edge_groups", "edge_rvs", "full_system", "latent_system", "LatentSystem",
           "measurement_parameters",
           "fixed_item_reliability", "PSI_WALL", "standardisation_wall",
           "pattern_loglik_tensor",
           "perron_upper_bound"]

LOG_2PI = float(np.log(2 * np.pi))
#: Name prefix of the model's data containers (``pm.Data``): the sufficient statistics and
#: the covariates' covariance. Samplers may pass them as arguments (see ``jax_nuts``).
DATA_PREFIX = "data_"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StabilitySettings:
    """The model's smooth barriers (part of its prior).

    Stability: density times ``sigmoid((rho_max - rho(|B|)) / width)``. Positive disturbance
    variances (R^2 < 1): density times ``sigmoid((psi - psi_floor) / psi_width)`` per latent
    (:func:`~veerkracht_bayes.sem.algebra.standardisation_barrier`); below ``psi = 1e-4``
    (:data:`PSI_WALL`, :func:`standardisation_wall`) the density is 0. A wider standardisation
    barrier (``psi_floor=0.1, psi_width=0.03``) keeps trajectories of the sampler away from that
    hard edge: on the polychoric route's joint mode it removed most divergences at the cost of
    down-weighting R^2 above about 0.85 (docs/performance.md §4b).

    Examples
    --------
    >>> StabilitySettings().rho_max
    0.99
    >>> StabilitySettings(psi_floor=0.1, psi_width=0.03).psi_floor
    0.1
    """

    rho_max: float = 0.99
    width: float = 0.005
    power_iterations: int = 128
    psi_floor: float = algebra.PSI_FLOOR
    psi_width: float = algebra.PSI_WIDTH

    def __post_init__(self) -> None:
        bad = []
        if not 0 <= float(self.psi_floor) < 1:
            bad.append(Problem(f"psi_floor must be in [0, 1), got {self.psi_floor}", field="psi_floor",
                               value=self.psi_floor))
        if not float(self.psi_width) > 0:
            bad.append(Problem(f"psi_width must be positive, got {self.psi_width}", field="psi_width",
                               value=self.psi_width))
        if bad:
            raise ModelError(bad)


@dataclass(frozen=True)
class EdgePriorValues:
    """Numeric prior of one edge coefficient (standardised scale).

    Examples
    --------
    >>> EdgePriorValues("truncated_normal", 0.2, 0.1, 0.0, None, None).mean
    0.2
    """

    distribution: str  # truncated_normal | normal | student_t | half_normal
    mean: float
    sd: float
    lower: float | None
    upper: float | None
    nu: float | None = None


#: Default prior for an edge without a literature source: |beta| ~ N(0.15, 0.15) truncated to sign.
DEFAULT_EDGE_PRIOR = (0.15, 0.15)


def edge_prior_values(priors: object | None, graph: CausalGraph, *, vague: bool = False
                      ) -> dict[str, EdgePriorValues]:
    """Numeric priors for every edge, from a PriorSet-like object or the defaults.

    Parameters
    ----------
    priors
        An object with ``for_edge(key)`` returning something with ``distribution``,
        ``mean`` and ``sd`` attributes (see :mod:`veerkracht_bayes.priors.spec`), or None.
    graph
        The diagram (edge signs).
    vague
        Without ``priors``: unconstrained Normal(0, 1) (generic lavaan models) instead
        of the sign-constrained default.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> eps = edge_prior_values(None, g)
    >>> p = eps[g.edge_keys[0]]
    >>> isinstance(p, EdgePriorValues), p.distribution
    (True, 'truncated_normal')
    """
    out = {}
    for e in graph.edges:
        sgn = 1.0 if e.sign == "+" else -1.0
        if priors is not None:
            p = priors.for_edge(e.key)
            dist = str(getattr(p, "distribution", "truncated_normal"))
            mean = float(getattr(p, "mean"))
            sd = float(getattr(p, "sd"))
            nu = getattr(p, "nu", None)
        elif vague:
            dist, mean, sd, nu = "normal", 0.0, 1.0, None
        else:
            dist, mean, sd, nu = "truncated_normal", sgn * DEFAULT_EDGE_PRIOR[0], DEFAULT_EDGE_PRIOR[1], None
        if dist == "half_normal":
            dist, mean = "truncated_normal", 0.0
        if dist == "truncated_normal":
            lower, upper = (0.0, None) if sgn > 0 else (None, 0.0)
        else:
            lower = upper = None
        out[e.key] = EdgePriorValues(dist, mean, sd, lower, upper, None if nu is None else float(nu))
    return out


@dataclass(frozen=True)
class ModelLayout:
    """How graph nodes and edges map onto model arrays (returned with the model).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> _, layout = build_model(load_graph("marvel"), None)
    >>> isinstance(layout, ModelLayout), len(layout.latent)
    (True, 26)
    """

    nodes: tuple[str, ...]
    latent: tuple[str, ...]
    covariates: tuple[str, ...]
    absent: tuple[str, ...]
    unobserved_latent: tuple[str, ...]
    edge_keys: tuple[str, ...]
    edge_kind: dict[str, str]  # latent | prior_only | covariate | absent
    items: tuple[str, ...]
    item_construct: tuple[str, ...]
    single_item_constructs: tuple[str, ...]
    reliability: float
    stability: StabilitySettings
    edge_priors: dict[str, EdgePriorValues] = field(default_factory=dict)
    lik_latent: tuple[str, ...] = ()
    unmeasured: str = "cut"
    measurement_priors: dict[str, float] = field(default_factory=dict)
    free_items: tuple[bool, ...] = ()
    identification_warnings: tuple[str, ...] = ()
    cut_active: bool = False
    sampled_edges: tuple[str, ...] = ()
    #: Per-link identification status (:class:`~veerkracht_bayes.graph.identification.IdentificationReport`),
    #: from the same classification as ``edge_kind``.
    identification: object | None = field(default=None, compare=False, repr=False)
    #: Single items with their own reliability (item column -> value on the scale the model uses:
    #: the observed, standardised score on the continuous path); the others take ``reliability``.
    item_reliability: dict[str, float] = field(default_factory=dict)


def _classify(graph: CausalGraph, data: ModelData | None) -> tuple[list[str], list[str], list[str]]:
    """Latent, covariate and absent nodes: :func:`~veerkracht_bayes.graph.identification.model_classes`."""
    from veerkracht_bayes.graph.identification import model_classes

    cls = model_classes(graph, () if data is None else tuple(data.item_construct),
                        () if data is None else tuple(data.x_names))
    return list(cls.latent), list(cls.covariates), list(cls.absent)


def data_container(name: str, value: np.ndarray) -> pt.TensorVariable:
    """A float data container ``pm.Data(DATA_PREFIX + name)`` with a static shape.

    The static shape lets PyTensor's rewrites and contractions know the sizes; the prefix lets
    the samplers pass the container as an argument (see ``inference.jax_nuts``). Call it inside
    a ``pm.Model`` context.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model():
    ...     d = data_container("W", np.ones(3))
    >>> d.name, d.type.shape
    ('data_W', (3,))
    """
    value = np.asarray(value, dtype=float)
    return pm.Data(DATA_PREFIX + name, value, shape=value.shape)


def perron_upper_bound(absb: np.ndarray, iters: int = 128) -> np.ndarray:
    """The model's stability bound on NumPy arrays, vectorised over leading dimensions.

    The same function as the model's barrier (:func:`~veerkracht_bayes.sem.algebra.perron_bound`).

    Examples
    --------
    >>> import numpy as np
    >>> bool(abs(perron_upper_bound(np.array([[0.0, 0.5], [0.5, 0.0]])) - 0.5) < 2e-3)
    True
    """
    return algebra.perron_bound(np.asarray(absb, dtype=float), iters, xp="numpy")


def edge_rvs(priors: dict[str, EdgePriorValues], keys: list[str]) -> pt.TensorVariable:
    """One vector of edge coefficients (in ``keys`` order) made of grouped random variables.

    Edges with the same prior family and sign constraint share one vector-valued RV
    (:func:`~veerkracht_bayes.sem.preconditioning.edge_groups` names and groups them); the
    result concatenates the groups and restores the order of ``keys``. Shared by the
    continuous, ordinal, polychoric and multi-group models. Call it inside a ``pm.Model``.

    Parameters
    ----------
    priors
        Numeric prior per edge key (:func:`edge_prior_values`).
    keys
        The edges to create, in the order of the returned vector.

    Examples
    --------
    >>> import pymc as pm
    >>> pri = {"a->b": EdgePriorValues("truncated_normal", 0.2, 0.1, 0.0, None),
    ...        "b->c": EdgePriorValues("normal", 0.0, 1.0, None, None)}
    >>> with pm.Model() as m:
    ...     beta = edge_rvs(pri, ["a->b", "b->c"])
    >>> sorted(rv.name for rv in m.free_RVs)
    ['beta_normal', 'beta_truncated_normal_pos']
    """
    parts, order = [], []
    for name, dist, idx in edge_groups(priors, keys):
        mu = np.array([priors[keys[i]].mean for i in idx])
        sd = np.array([priors[keys[i]].sd for i in idx])
        lo = priors[keys[idx[0]]].lower
        hi = priors[keys[idx[0]]].upper
        if dist == "truncated_normal":
            # (no initval here: PyMC's log-density utilities refuse models with custom initial
            # values; `fit` starts every chain from a valid prior draw instead)
            rv = pm.TruncatedNormal(name, mu=mu, sigma=sd, lower=lo, upper=hi, shape=len(idx))
        elif dist == "normal":
            rv = pm.Normal(name, mu=mu, sigma=sd, shape=len(idx))
        elif dist == "student_t":
            nu = np.array([priors[keys[i]].nu or 4.0 for i in idx])
            rv = pm.StudentT(name, nu=nu, mu=mu, sigma=sd, shape=len(idx))
        else:
            raise ModelError(f"unknown prior distribution {dist!r} (expected truncated_normal, "
                             "normal, student_t or half_normal)")
        parts.append(rv)
        order.extend(idx)
    flat = pt.concatenate(parts) if len(parts) > 1 else parts[0]
    inv = np.argsort(np.array(order))
    return flat[inv]


def pattern_loglik_tensor(lam: pt.TensorVariable, theta: pt.TensorVariable, c_idx: np.ndarray,
                          plk: int, B: pt.TensorVariable, psi: pt.TensorVariable,
                          M: pt.TensorVariable, D: pt.TensorVariable, W: pt.TensorVariable,
                          Syy: pt.TensorVariable, Suy: pt.TensorVariable,
                          Suu: pt.TensorVariable) -> pt.TensorVariable:
    """Gaussian log-likelihood of each missingness pattern from its sufficient statistics (PyTensor).

    Shared by the continuous and the multi-group models; the NumPy twin that evaluates stored
    draws is :func:`veerkracht_bayes.inference.sampling.pattern_loglik`.

    The implied covariance of the observed items of pattern ``p`` is
    ``Sigma_p = Lambda_p S Lambda_p' + Theta_p`` with ``S = A diag(psi) A'`` the latent covariance
    (``P`` latents) and ``Lambda_p`` the loadings of the observed items. Because every item
    loads on one construct, ``Lambda_p' Theta_p^-1 Lambda_p = diag(k_p)`` is diagonal, and the
    Woodbury identity and the matrix determinant lemma give, with
    ``K_p = S^-1 + diag(k_p) = (I - B)' diag(1/psi) (I - B) + diag(k_p)`` (``P x P``)::

        log|Sigma_p| = sum_obs log theta_i + sum log psi - 2 log|det(I - B)| + log|K_p|
        tr(Sigma_p^-1 R_p) = sum_obs R_ii / theta_i - tr(K_p^-1 F_p' R_p F_p),
        F_p = Theta_p^-1 Lambda_p,   R_p = Syy_p - M Suy_p - (M Suy_p)' + M Suu_p M'

    so a gradient costs one ``P x P`` Cholesky per pattern instead of one ``m x m`` Cholesky
    (``P`` constructs against ``m`` items) and needs no inverse of ``I - B``. Identical to the
    dense form ``log N`` with ``Sigma_p`` (tested against a SciPy reference to 1e-9).

    Parameters
    ----------
    lam, theta
        ``(m,)`` loadings and residual variances of the items.
    c_idx
        ``(m,)`` construct (row of ``B``) of each item.
    plk
        Number of latents ``P`` of the likelihood system.
    B, psi
        ``(P, P)`` coefficients and ``(P,)`` disturbance variances.
    M
        ``(m, 1 + q)`` item means: intercepts ``nu`` and the covariates' effects on the items.
    D, W, Syy, Suy, Suu
        Per-pattern sufficient statistics
        (:class:`~veerkracht_bayes.survey.statistics.PatternStats`): observed-item masks
        ``(patterns, m)``, weights, and the weighted cross products.

    Returns
    -------
    ``(patterns,)`` weighted log-likelihood of each pattern.

    Examples
    --------
    >>> import numpy as np, pytensor.tensor as pt
    >>> from scipy.stats import multivariate_normal
    >>> y = np.array([[0.5, -0.2], [1.0, 0.3]])  # two rows, two items of one construct
    >>> ll = pattern_loglik_tensor(
    ...     pt.as_tensor(np.array([0.8, 0.6])), pt.as_tensor(np.array([0.3, 0.5])),
    ...     np.array([0, 0]), 1, pt.as_tensor(np.zeros((1, 1))), pt.as_tensor(np.ones(1)),
    ...     pt.as_tensor(np.zeros((2, 1))), pt.as_tensor(np.ones((1, 2))),
    ...     pt.as_tensor(np.array([2.0])), pt.as_tensor((y.T @ y)[None]),
    ...     pt.as_tensor(np.ones((1, 1, 2)) * y.sum(0)), pt.as_tensor(np.array([[[2.0]]])))
    >>> S = np.outer([0.8, 0.6], [0.8, 0.6]) + np.diag([0.3, 0.5])
    >>> bool(np.isclose(ll.eval()[0], multivariate_normal(np.zeros(2), S).logpdf(y).sum()))
    True
    """
    m = int(c_idx.shape[0])
    ind = np.zeros((m, plk))
    ind[np.arange(m), c_idx] = 1.0
    a = D / theta[None, :]  # (patterns, m): 1/theta on observed items, 0 elsewhere
    k = pt.dot(a * (lam * lam)[None, :], ind)  # (patterns, P)
    ib = pt.eye(plk) - B
    s_inv = pt.dot(ib.T / psi[None, :], ib)
    K = s_inv[None] + k[:, :, None] * np.eye(plk)[None]
    E = lam[:, None] * ind  # (m, P) loadings matrix
    F = a[:, :, None] * E[None]  # (patterns, m, P)
    FM = pt.matmul(F.transpose(0, 2, 1), M[None])  # (patterns, P, 1 + q): F' M
    SuyF = pt.matmul(Suy, F)  # (patterns, 1 + q, P)
    cross = pt.matmul(FM, SuyF)
    G = (pt.matmul(F.transpose(0, 2, 1), pt.matmul(Syy, F)) - cross - cross.transpose(0, 2, 1)
         + pt.matmul(pt.matmul(FM, Suu), FM.transpose(0, 2, 1)))
    MSuy = pt.sum(M.T[None] * Suy, axis=1)  # (patterns, m): diag(M Suy_p)
    MSuuM = pt.sum(pt.matmul(M[None], Suu) * M[None], axis=2)  # (patterns, m): diag(M Suu_p M')
    r_diag = pt.diagonal(Syy, axis1=1, axis2=2) - 2.0 * MSuy + MSuuM
    L = pt.linalg.cholesky(K)
    logdet_k = 2.0 * pt.sum(pt.log(pt.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    V = pt.linalg.solve_triangular(L, G, lower=True)
    U = pt.linalg.solve_triangular(L, V.transpose(0, 2, 1), lower=True)
    quad = pt.sum(a * r_diag, axis=1) - pt.sum(pt.diagonal(U, axis1=-2, axis2=-1), axis=-1)
    _, logabsdet = pt.linalg.slogdet(ib)
    logdet = pt.dot(D, pt.log(theta)) + pt.sum(pt.log(psi)) - 2.0 * logabsdet + logdet_k
    m_obs = D.sum(axis=1)
    return -0.5 * (W * (logdet + m_obs * LOG_2PI) + quad)


#: Below this standardised disturbance variance the density is 0: the hard edge behind the smooth
#: standardisation barrier (:func:`standardisation_wall`).
PSI_WALL = 1e-4


def standardisation_wall(psi: pt.TensorVariable, name: str = "standardisation") -> pt.TensorVariable:
    """Register the hard edge of the standardised system and return ``psi`` held at it.

    Adds the potential ``name``: 0 while every disturbance variance exceeds :data:`PSI_WALL`,
    minus infinity otherwise (R^2 >= 1 has no standardised solution). Returns ``psi`` with
    values at or below the wall replaced by it, for the likelihood's algebra, which then stays
    finite where the density is 0. Call it inside a ``pm.Model``.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as m:
    ...     safe = standardisation_wall(pt.as_tensor(np.array([0.5, -0.1])))
    >>> safe.eval().tolist(), float(m["standardisation"].eval())
    ([0.5, 0.0001], -inf)
    """
    pm.Potential(name, pt.switch(pt.all(pt.gt(psi, PSI_WALL)), 0.0, -np.inf))
    return pt.switch(pt.gt(psi, PSI_WALL), psi, PSI_WALL)


class LatentSystem(NamedTuple):
    """The matrices of one latent system, built once and shared by the model's terms.

    Attributes
    ----------
    B, G
        Coefficients among the latents and from the covariates (:func:`algebra.structural_matrices`).
    A, AG
        ``(I - B)^-1`` and ``A G`` (None without covariates).
    psi
        The latents' standardised disturbance variances (:func:`algebra.standardised_psi`).
    latent, index
        The latents (row order) and the edge positions and shapes of ``B`` and ``G``, which decide
        whether another system is the same one (:func:`latent_system`'s ``same_as``).

    Examples
    --------
    Built by :func:`latent_system`:

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> s = latent_system(pt.as_tensor(np.array([0.6])), graph_from_lavaan("b ~ a"), {"a->b": "latent"},
    ...                   ["a", "b"], [], None)
    >>> round(float(s.A.eval()[1, 0]), 2), s.AG is None, s.latent  # A = (I - B)^-1: b = 0.6 a + ...
    (0.6, True, ('a', 'b'))
    """

    B: pt.TensorVariable
    G: pt.TensorVariable
    A: pt.TensorVariable
    AG: pt.TensorVariable | None
    psi: pt.TensorVariable
    latent: tuple[str, ...]
    index: tuple[np.ndarray, ...]


def latent_system(beta: pt.TensorVariable, graph: CausalGraph, edge_kind: Mapping[str, str],
                  latent: list[str], covariates: list[str], x_cov: object,
                  kinds: tuple[str, ...] = ("latent",), *, same_as: LatentSystem | None = None) -> LatentSystem:
    """The latent system of ``latent`` with the links of ``kinds`` (PyTensor).

    With ``same_as``, a system with the same latents and the same links is returned as it is, so
    the full and the likelihood system of a model without a cut (every latent in the likelihood,
    no prior-only link) share one inverse and one solve for ``psi`` in the compiled log-density.

    Parameters
    ----------
    beta
        Edge coefficients (graph edge order).
    graph, edge_kind
        The diagram and the kind of each link.
    latent, covariates
        The system's latents (row order) and the model's covariates.
    x_cov
        Covariance of the covariates (array or data container; unused without covariates).
    kinds
        Edge kinds in ``B`` (:func:`algebra.structural_indices`).
    same_as
        A system built before, reused when it is this one.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> beta = pt.as_tensor(np.array([0.6]))
    >>> full = latent_system(beta, g, {"a->b": "latent"}, ["a", "b"], [], None, ("latent", "prior_only"))
    >>> full.psi.eval().round(2).tolist()
    [1.0, 0.64]
    >>> latent_system(beta, g, {"a->b": "latent"}, ["a", "b"], [], None, same_as=full) is full
    True
    >>> latent_system(beta, g, {"a->b": "latent"}, ["b"], [], None, same_as=full) is full  # a sub-system
    False
    """
    ib, ig = algebra.structural_indices(graph.edges, edge_kind, latent, covariates, kinds)
    index = tuple(np.asarray(a) for i in (ib, ig) for a in (i.edges, i.rows, i.cols, i.shape))
    if (same_as is not None and same_as.latent == tuple(latent) and len(index) == len(same_as.index)
            and all(np.array_equal(a, b) for a, b in zip(index, same_as.index, strict=True))):
        return same_as
    q = len(covariates)
    B, G = algebra.assemble(beta, ib, xp="pytensor"), algebra.assemble(beta, ig, xp="pytensor")
    A = algebra.equilibrium_matrix(B, xp="pytensor")
    AG = pt.dot(A, G) if q else None
    psi = algebra.standardised_psi(A, AG, x_cov if q else None, xp="pytensor")
    return LatentSystem(B, G, A, AG, psi, tuple(latent), index)


def full_system(beta: pt.TensorVariable, graph: CausalGraph, edge_kind: Mapping[str, str],
                latent: list[str], covariates: list[str], x_cov: object,
                stability: StabilitySettings) -> tuple[LatentSystem, pt.TensorVariable]:
    """The full latent system of a model (every latent; prior-only links included).

    Registers the deterministics every model reports: ``psi`` (node: the latents'
    standardised disturbance variances, the covariates' variances), ``alpha`` (node: zeros) and
    ``rho_abs_bound`` (the stability bound of ``|B_full|``). Shared by the continuous, ordinal and
    polychoric models; call it inside their ``pm.Model`` (coords ``node``).

    Parameters
    ----------
    beta
        Edge coefficients (graph edge order).
    graph, edge_kind, latent, covariates
        The diagram, the kind of each link and the model's latent and covariate nodes.
    x_cov
        Covariance of the covariates (array or data container; unused without covariates).
    stability
        The stability barrier's settings (power iterations of the bound).

    Returns
    -------
    (system, rho)
        The full :class:`LatentSystem` (its ``psi``: the latents' standardised disturbance
        variances) and its stability bound. Pass ``system`` as ``same_as`` to
        :func:`latent_system` for the likelihood system.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> with pm.Model(coords={"node": list(g.nodes)}):
    ...     full, rho = full_system(pt.as_tensor(np.array([0.6])), g, {"a->b": "latent"},
    ...                             ["a", "b"], [], None, StabilitySettings())
    >>> full.psi.eval().round(2).tolist()
    [1.0, 0.64]
    """
    q = len(covariates)
    full = latent_system(beta, graph, edge_kind, latent, covariates, x_cov, ("latent", "prior_only"))
    psi = pt.zeros((len(graph.nodes),))
    lat_pos = np.array([graph.node_index[n] for n in latent], dtype=int)
    psi = pt.set_subtensor(psi[lat_pos], full.psi)
    if q:
        cov_pos = np.array([graph.node_index[n] for n in covariates], dtype=int)
        psi = pt.set_subtensor(psi[cov_pos], pt.diagonal(x_cov))
    pm.Deterministic("psi", psi, dims="node")
    pm.Deterministic("alpha", pt.zeros((len(graph.nodes),)), dims="node")
    rho = (algebra.perron_bound(pt.abs(full.B), stability.power_iterations, xp="pytensor") if latent
           else pt.constant(0.0))
    pm.Deterministic("rho_abs_bound", rho)
    return full, rho


def fixed_item_reliability(layout: ModelLayout) -> np.ndarray:
    """Per item of ``layout.items``: the reliability that fixes its loading when it is a single item
    (``layout.item_reliability`` where it names the item, else ``layout.reliability``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> lay = SimpleNamespace(items=("a1", "b1"), reliability=0.8, item_reliability={"b1": 0.3})
    >>> fixed_item_reliability(lay).tolist()
    [0.8, 0.3]
    """
    own = dict(getattr(layout, "item_reliability", None) or {})
    return np.array([float(own.get(it, layout.reliability)) for it in layout.items], dtype=float)


def measurement_parameters(free: np.ndarray, mp: Mapping[str, float], reliability: float | np.ndarray
                           ) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Loadings and residual variances of the standardised items (continuous-item models).

    Items of constructs with several items get ``loading ~ N+(loading_mu, loading_sd)`` and
    ``residual_var ~ LogNormal(theta_logmean, theta_logsd)``; a single item has its loading fixed
    by the assumed reliability (``lambda = sqrt(rel)``, ``theta = 1 - rel``). Registers the
    deterministics ``lambda`` and ``theta`` (dims ``item``); shared by the single- and multi-group
    models.

    Parameters
    ----------
    free
        Boolean per item: its loading is free.
    mp
        Measurement priors (``loading_mu``, ``loading_sd``, ``theta_logmean``, ``theta_logsd``).
    reliability
        Assumed reliability of single-item constructs: one value, or one per fixed item (the
        items where ``free`` is False, in order).

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> mp = {"loading_mu": 0.7, "loading_sd": 0.3, "theta_logmean": -0.7, "theta_logsd": 0.75}
    >>> with pm.Model(coords={"item": ["y1", "y2", "z"]}) as m:
    ...     lam, theta = measurement_parameters(np.array([True, True, False]), mp, 0.8)
    >>> [rv.name for rv in m.free_RVs], theta.eval({m["residual_var"]: np.ones(2)}).round(2).tolist()
    (['loading', 'residual_var'], [1.0, 1.0, 0.2])
    """
    m = len(free)
    lam = pt.zeros((m,))
    theta = pt.zeros((m,))
    if free.any():
        lam_free = pm.TruncatedNormal("loading", mu=mp["loading_mu"], sigma=mp["loading_sd"],
                                      lower=0.0, shape=int(free.sum()))
        th_free = pm.LogNormal("residual_var", mu=mp["theta_logmean"], sigma=mp["theta_logsd"],
                               shape=int(free.sum()))
        lam = pt.set_subtensor(lam[np.flatnonzero(free)], lam_free)
        theta = pt.set_subtensor(theta[np.flatnonzero(free)], th_free)
    if (~free).any():
        rel = np.broadcast_to(np.asarray(reliability, dtype=float), (int((~free).sum()),))
        lam = pt.set_subtensor(lam[np.flatnonzero(~free)], np.sqrt(rel))
        theta = pt.set_subtensor(theta[np.flatnonzero(~free)], 1.0 - rel)
    pm.Deterministic("lambda", lam, dims="item")
    pm.Deterministic("theta", theta, dims="item")
    return lam, theta


def build_model(
    graph: CausalGraph,
    data: ModelData | None,
    priors: object | None = None,
    *,
    vague: bool = False,
    reliability: float = 0.8,
    stability: StabilitySettings | None = None,
    measurement_priors: Mapping[str, float] | None = None,
    unmeasured: str = "cut",
    whiten_intercepts: bool = True,
    report_identification: bool = True,
    item_reliability: Mapping[str, float] | None = None,
) -> tuple[pm.Model, ModelLayout]:
    """Build the PyMC model for ``graph`` and (optionally) survey data.

    Parameters
    ----------
    graph
        The signed diagram.
    data
        Prepared survey data (:func:`~veerkracht_bayes.survey.statistics.prepare_model_data`),
        or None for a prior-only model.
    priors
        PriorSet-like object (``for_edge``); None for defaults.
    vague
        Use vague unconstrained edge priors when ``priors`` is None.
    reliability
        Assumed reliability of single-item constructs.
    stability
        Settings of the stability barrier.
    measurement_priors
        Overrides for the measurement priors: ``loading_mu`` (0.7), ``loading_sd`` (0.3),
        ``theta_logmean`` (log 0.5), ``theta_logsd`` (0.75), ``nu_sd`` (0.5).
    unmeasured
        ``"cut"`` (default) or ``"joint"``: see the module docstring.
    whiten_intercepts
        Store a whitening matrix for the intercepts, so that the JAX sampler moves in
        whitened coordinates (:mod:`~veerkracht_bayes.sem.preconditioning`); the model and its
        posterior are the same either way.
    item_reliability
        Single items with their own reliability on the observed (standardised score) scale, item
        column -> value in (0, 1], overriding ``reliability`` (for a binary or Likert item from a
        latent-response value, :func:`~veerkracht_bayes.survey.codebook.observed_scale_reliability`).
        Naming an item that is not the single item of its construct is an error.
    report_identification
        Log the one-line identification warning (cut links, order-condition failures). Builders
        that reuse this model for a classification already reported (the multi-group model)
        turn it off; the report itself is always on the layout.

    Returns
    -------
    (pm.Model, ModelLayout)

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> model, layout = build_model(load_graph("marvel"), None)  # no data: the prior model
    >>> len(layout.edge_keys), "beta" in model.named_vars
    (72, True)
    """
    stability = stability or StabilitySettings()
    if not 0 < reliability <= 1:
        raise ModelError(f"reliability must be in (0, 1], got {reliability}")
    own_rel = {str(k): float(v) for k, v in (item_reliability or {}).items()}
    bad_rel = [Problem(f"item reliability must be in (0, 1], got {v}", field=k, value=v)
               for k, v in own_rel.items() if not 0 < v <= 1]
    if data is not None:
        n_of = {c: list(data.item_construct).count(c) for c in set(data.item_construct)}
        single_items = {it for it, c in zip(data.item_names, data.item_construct, strict=True) if n_of[c] == 1}
        bad_rel += [Problem(f"item_reliability names {k!r}, which is not the single item of a construct "
                            f"(single items: {sorted(single_items)})", field=k, value=own_rel[k])
                    for k in own_rel if k not in single_items]
    if bad_rel:
        raise ModelError(bad_rel)
    mp = {"loading_mu": 0.7, "loading_sd": 0.3, "theta_logmean": float(np.log(0.5)),
          "theta_logsd": 0.75, "nu_sd": 0.5}
    mp.update(measurement_priors or {})
    if unmeasured not in ("cut", "joint"):
        raise ModelError(f"unmeasured must be 'cut' or 'joint', got {unmeasured!r}")
    if data is not None:
        unknown = sorted(set(data.item_construct) - set(graph.nodes))
        if unknown:
            raise ModelError(f"items measure nodes that are not in the graph: {unknown}")
    from veerkracht_bayes.graph.identification import assert_identified, identification_report, model_classes

    # one classification of nodes and links, shared with the identification report
    classes = model_classes(graph, () if data is None else tuple(data.item_construct),
                            () if data is None else tuple(data.x_names), unmeasured=unmeasured)
    latent, covariates, absent = list(classes.latent), list(classes.covariates), list(classes.absent)
    id_warnings = assert_identified(graph, classes if data is not None else None,
                                    vague=(priors is None and vague))
    id_report = identification_report(graph, classes)
    if data is not None and report_identification:
        cnt = id_report.counts()
        if cnt["cut"] or cnt["order condition fails"]:
            # one WARNING line (the per-link report is in diagnostics.json, section 'identification')
            log.warning("identification: %d of %d links are cut (prior only), %d fail the order condition; "
                        "%s", cnt["cut"], len(id_report.links), cnt["order condition fails"],
                        " ".join(id_report.findings()))
    eps = edge_prior_values(priors, graph, vague=vague)
    keys = graph.edge_keys
    measured = list(classes.measured)
    lik_latent = list(classes.lik_latent)
    lli = {n: i for i, n in enumerate(lik_latent)}
    edge_kind = dict(classes.edge_kind)
    unobserved = tuple(n for n in latent if n not in measured)
    items = () if data is None else data.item_names
    item_construct = () if data is None else data.item_construct
    counts = {c: item_construct.count(c) for c in measured}
    single = tuple(c for c in measured if counts[c] == 1)

    coords = {"edge": list(keys), "node": list(graph.nodes), "latent": latent,
              "item": list(items), "covariate": covariates}
    with pm.Model(coords=coords) as model:
        # In cut mode the links outside the likelihood (prior_only, absent) get no random
        # variable: they are independent of the data and of NUTS, and are drawn exactly from
        # their priors afterwards (sampling.cut_completion). They are 0 inside this graph.
        cut_edges = (unmeasured == "cut" and data is not None
                     and len(lik_latent) < len(latent))
        sampled = [i for i, k in enumerate(keys)
                   if not cut_edges or edge_kind[k] in ("latent", "covariate")]
        if len(sampled) == len(keys):
            beta_t = edge_rvs(eps, list(keys))
        else:
            beta_t = pt.zeros((len(keys),))
            if sampled:
                sub = edge_rvs(eps, [keys[i] for i in sampled])
                beta_t = pt.set_subtensor(beta_t[np.array(sampled, dtype=int)], sub)
        beta = pm.Deterministic("beta", beta_t, dims="edge")
        q = len(covariates)
        x_cov = data.x_cov if (data is not None and q) else np.zeros((q, q))
        if data is not None and q:
            # data enter as pm.Data (shared variables): a JAX sampler can take them as
            # arguments, so one compiled program serves all data sets of the same shape
            x_cov = data_container("x_cov", x_cov)
        # full latent system: stability and reported psi (every latent standardised)
        pl = len(latent)
        full, rho_full = full_system(beta, graph, edge_kind, latent, covariates, x_cov, stability)
        psi_full_lat = full.psi
        # likelihood system (measured sub-system in cut mode; the full one itself otherwise)
        plk = len(lik_latent)
        lik = latent_system(beta, graph, edge_kind, lik_latent, covariates, x_cov, same_as=full)
        B, AG, psi_lat = lik.B, lik.AG, lik.psi
        psi_safe = standardisation_wall(psi_lat)
        # Smooth barriers: stability and positive disturbance variances (R^2 < 1). In cut mode
        # they act on the likelihood system here; the full system's barriers are applied to the
        # prior-only links afterwards by rejection (sampling.fit), as the cut posterior requires.
        cut_active = unmeasured == "cut" and data is not None and plk < pl
        if cut_active:
            rho_b = (algebra.perron_bound(pt.abs(B), stability.power_iterations, xp="pytensor")
                     if plk else pt.constant(0.0))
            psi_b = psi_lat
        else:
            rho_b, psi_b = rho_full, psi_full_lat
        pm.Potential("stability", algebra.stability_barrier(rho_b, stability.rho_max, stability.width,
                                                             xp="pytensor"))
        pm.Potential("standardisation_soft", algebra.standardisation_barrier(
            psi_b, floor=stability.psi_floor, width=stability.psi_width, xp="pytensor"))

        if data is not None and len(items):
            c_idx = np.array([lli[c] for c in item_construct], dtype=int)
            free = np.array([counts[c] > 1 for c in item_construct])
            lam, theta = measurement_parameters(free, mp, np.array(
                [own_rel.get(it, reliability) for it, f in zip(items, free, strict=True) if not f]))
            st = data.stats
            nu = pm.Normal("nu", 0.0, mp["nu_sd"], dims="item")
            if whiten_intercepts:
                # read by the JAX sampler only (jax_nuts): NUTS moves in z with nu = T z
                data_container(WHITEN_PREFIX + "nu", intercept_whitening(st, mp["nu_sd"]))
            if q:
                Pi = lam[:, None] * AG[c_idx]
                M = pt.concatenate([nu[:, None], Pi], axis=1)
            else:
                M = nu[:, None]
            D = data_container("masks", st.masks.astype(float))
            W = data_container("W", st.W)
            Syy = data_container("Syy", st.Syy)
            Suy = data_container("Suy", st.Suy)
            Suu = data_container("Suu", st.Suu)
            ll = pattern_loglik_tensor(lam, theta, c_idx, plk, B, psi_safe, M, D, W, Syy, Suy, Suu)
            pm.Potential("loglik", pt.sum(ll))
    layout = ModelLayout(
        nodes=tuple(graph.nodes), latent=tuple(latent), covariates=tuple(covariates),
        absent=tuple(absent), unobserved_latent=unobserved, edge_keys=tuple(keys),
        edge_kind=edge_kind, items=tuple(items), item_construct=tuple(item_construct),
        single_item_constructs=single, reliability=reliability, stability=stability,
        edge_priors=eps, lik_latent=tuple(lik_latent), unmeasured=unmeasured,
        measurement_priors=dict(mp),
        free_items=tuple(bool(counts[c] > 1) for c in item_construct),
        identification_warnings=tuple(str(w) for w in id_warnings),
        cut_active=bool(unmeasured == "cut" and data is not None and len(lik_latent) < len(latent)),
        sampled_edges=tuple(keys[i] for i in sampled),
        identification=id_report,
        item_reliability=dict(own_rel),
    )
    return model, layout
