"""Ordinal and binary indicators in generic lavaan models (lavaan's ``ordered =``), two-stage.

The Bayesian analogue of lavaan's WLSMV, with the data entering only through stage-1 summaries
(cost flat in the number of respondents). ``docs/lavaan_models.md``, "Ordered items".

Stage 1 (:func:`veerkracht_bayes.survey.polychoric.polychoric`, complete cases as lavaan's
default ``missing = "listwise"``): every item named in ``ordered`` is coarsened from a standard
normal latent response ``y*`` (its distinct values, sorted, are the categories); thresholds are
``Phi^-1`` of the cumulative proportions; the correlation matrix of all modelled variables
(polychoric between ordered items, polyserial between an ordered and a continuous variable,
Pearson between continuous ones) and its full asymptotic covariance ``Gamma_hat`` (sandwich).

Stage 2: the lavaan model (:func:`~veerkracht_bayes.sem.lavaan_model.specify`, same rows, same
vague priors as the continuous engine) implies a covariance matrix of ``[y*, y_cont, x]``;
the likelihood is ``r_hat ~ N(rho(theta), Gamma_hat)`` on every correlation except those among
fixed.x covariates (conditioned on, as in the continuous engine). Delta parameterisation (lavaan's
default for WLSMV): the total variance of every ordered item's latent response is 1 and of every
continuous modelled variable its sample variance, so the residual variances of modelled observed
variables are not free parameters: ``theta_v = Var_target(v) - explained variance of v`` (a
linear solve through ``(I - B)^-1``), shown in the table with ``free = 0`` and their posterior
(lavaan prints them without a standard error). Covariates keep their raw units (their sample
covariance is held fixed, ``fixed.x``).

Thresholds (``|`` rows, ``t1, t2, ...`` as lavaan prints them): the threshold structure is
saturated (no ``~ 1`` rows, one group), so the structural posterior is the same whether they are
sampled or not (a saturated Gaussian block marginalises out exactly). Thresholds and correlations
are one Gaussian block (stage 1 gives their joint asymptotic covariance, cross block included);
with a flat prior each threshold draw is taken from its conditional given the structural draw's
implied correlations (:func:`draw_thresholds`), so their joint with the structural parameters is
the posterior's, and at the mode the thresholds are lavaan's WLS estimates.

Several groups (lavaan's ``group =``): :func:`veerkracht_bayes.sem.lavaan_multigroup.fit_sem_multigroup`
with ``ordered``; its joint model sums :func:`ordinal_loglik_pt` over the groups, and with equal
thresholds the threshold term of that function (shared thresholds, latent means and scaling
factors) makes the thresholds informative; that term is one Gaussian with the correlations
(the full joint asymptotic covariance of thresholds and correlations, lavaan's WLS).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from veerkracht_bayes.errors import ModelError, Problem, did_you_mean
from veerkracht_bayes.graph.lavaan_syntax import LavaanModel
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.lavaan_model import (
    TABLE_COLUMNS,
    VAGUE_COEF_SD,
    VAGUE_SD_RATE,
    ParamRow,
    SemData,
    SemFit,
    SemPrior,
    SemSpec,
    check_identification,
    count_divergences,
    matrices_pt,
    ml_start,
    model_location,
    parameter_table,
    prepare_sem_data,
    prior_for,
    row_values_pt,
    sample_sem_model,
    specify,
)
from veerkracht_bayes.survey.polychoric import PolychoricResult, cholesky_whitener, polychoric, whiten_correlations

__all__ = [
    "MAX_CATEGORIES",
    "OrdinalSemData",
    "OrdinalSemFit",
    "build_ordinal_sem_model",
    "cpc_transform",
    "draw_thresholds",
    "fit_sem_ordinal",
    "heywood_boxes",
    "implied_correlations_np",
    "latent_corr_block",
    "latent_sd_prior",
    "ordinal_loglik_pt",
    "ordinal_map_estimate",
    "ordinal_reference_scales",
    "parse_ordered",
    "prepare_ordinal_data",
    "specify_ordinal",
    "threshold_acov",
]

log = logging.getLogger(__name__)

#: Most categories an ``ordered`` item may have (as the codebook's ordinal path).
MAX_CATEGORIES = 10


def parse_ordered(ordered: str | Sequence[str] | None) -> tuple[str, ...]:
    """Names from ``"x1,x2"`` or a sequence (stripped, empty parts dropped, order kept, unique).

    Examples
    --------
    >>> parse_ordered("x1, x2,,x1")
    ('x1', 'x2')
    """
    if ordered is None:
        return ()
    parts = ordered.split(",") if isinstance(ordered, str) else [str(o) for o in ordered]
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


# --------------------------------------------------------------------------- specification
def specify_ordinal(model: LavaanModel, columns: Sequence[str], ordered: Sequence[str]) -> SemSpec:
    """:func:`~veerkracht_bayes.sem.lavaan_model.specify` for the two-stage ordinal route.

    The residual variance rows (``v ~~ v``) of modelled observed variables become *derived*
    rows (``fixed is None`` and ``pid == -1``): their value is computed from the other
    parameters (delta parameterisation). The remaining free parameters are renumbered.

    Raises
    ------
    ModelError
        An ``ordered`` name that is not a data column or not a variable of the model; ``~ 1``
        rows (thresholds replace intercepts; not supported); a fixed or labelled residual
        variance of a modelled observed variable; a covariance between a modelled observed
        variable and a latent, or between observed variables of which one affects another.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify_ordinal(parse_lavaan("f =~ y1 + y2 + y3"), ["y1", "y2", "y3"], "y1,y2")
    >>> [(r.key, r.pid) for r in spec.rows if r.op == "~~"][:2]
    [('y1 ~~ y1', -1), ('y2 ~~ y2', -1)]
    """
    cols = [str(c) for c in columns]
    ordered = parse_ordered(ordered)
    probs: list[Problem] = []
    mvars = set(model.variables())
    for o in ordered:
        if o not in cols:
            probs.append(Problem(f"--ordered variable {o!r} is not a column of the data"
                                 f"{did_you_mean(o, cols)}; expected data columns used by the model",
                                 field="ordered", value=o))
        elif o not in mvars:
            probs.append(Problem(f"--ordered variable {o!r} is not a variable of the model"
                                 f"{did_you_mean(o, sorted(mvars))}; expected an observed variable the "
                                 "model uses", file=model.path, field="ordered", value=o))
    if probs:
        raise ModelError(probs)
    spec = specify(model, cols)
    if spec.meanstructure:
        line = model.intercepts()[0].line
        raise ModelError(Problem("'~ 1' rows are not supported with ordered items (thresholds take the "
                                 "place of the intercepts and are estimated freely); expected a model "
                                 "without '~ 1'", **model_location(model, line)))
    obs = set(spec.observed)
    lat = set(spec.latents)
    # observed nodes that affect another node (regressors that are modelled variables)
    nonsink = {r.rhs for r in spec.rows if r.op == "~" and r.rhs in obs}
    rows: list[ParamRow] = []
    for r in spec.rows:
        if r.op == "~~" and r.lhs == r.rhs and r.lhs in obs:
            if r.fixed is not None or r.label:
                probs.append(Problem(
                    f"the residual variance of {r.lhs!r} is "
                    f"{'fixed at ' + str(r.fixed) if r.fixed is not None else 'labelled ' + repr(r.label)}, "
                    "but with ordered items the residual variances of observed variables follow from the "
                    "model (delta parameterisation: total variance 1 for an ordered item, the sample "
                    "variance for a continuous one); expected no such row", **model_location(model, r.line),
                    field=r.lhs))
                continue
            rows.append(dataclasses.replace(r, pid=-1))
            continue
        if r.op == "~~" and r.lhs != r.rhs and (r.lhs in obs or r.rhs in obs):
            other = {r.lhs, r.rhs}
            if other & lat or other & nonsink:
                probs.append(Problem(
                    f"covariance '{r.lhs} ~~ {r.rhs}' is not supported with ordered items: a residual "
                    "covariance of an observed variable is allowed only with another observed variable, "
                    "neither of which is a regressor; expected such a pair or no row",
                    **model_location(model, r.line), field=r.lhs))
                continue
        rows.append(r)
    if probs:
        raise ModelError(probs)
    # renumber the free parameters
    old = sorted({r.pid for r in rows if r.pid >= 0})
    new_of = {p: i for i, p in enumerate(old)}
    rows = [dataclasses.replace(r, pid=new_of[r.pid]) if r.pid >= 0 else r for r in rows]
    return dataclasses.replace(spec, rows=tuple(rows), n_free=len(old),
                               free_kind=tuple(spec.free_kind[p] for p in old),
                               bounds=tuple(spec.bounds[p] for p in old))


def _is_derived(r: ParamRow) -> bool:
    return r.fixed is None and r.pid < 0


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class OrdinalSemData:
    """Stage-1 summaries for a lavaan model with ordered items.

    Attributes
    ----------
    base
        The continuous engine's complete-case summaries (``n``, ``mean``, ``sd``, ``x_cov``).
    stats
        Stage-1 result over ``observed + covariates`` (in that order).
    ordered
        Ordered modelled variables, in the order of ``observed``.
    categories
        Per ordered item, its distinct values in the data (sorted): category ``k`` is the k-th.
    target_var
        Per observed variable, its total variance (1 for an ordered item: its latent response;
        the sample variance, divisor ``n``, for a continuous one).
    lik_pairs
        Positions in ``stats.r`` of the correlations in the likelihood.
    tau_cov
        Per ordered item, the asymptotic covariance of its thresholds.
    tau_acov
        Asymptotic covariance of all ordered items' thresholds, stacked in the order of
        ``ordered`` (:func:`threshold_acov`; its diagonal blocks are ``tau_cov``).
    tau_r_acov
        Asymptotic cross-covariance ``(t, s)`` of those thresholds and the likelihood's
        correlations (``stats.r[lik_pairs]``): with ``tau_acov`` and the correlations' own block
        it makes the joint covariance of ``(thresholds, correlations)`` that lavaan's WLS weight
        matrix inverts. None (treated as zero) when stage 1 did not provide it.

    Examples
    --------
    Made by :func:`prepare_ordinal_data`:

    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400)
    >>> df = pd.DataFrame({f"y{i}": (f + rng.normal(size=400) > 0).astype(int) + 1 for i in range(3)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), list(df.columns))
    >>> d = prepare_ordinal_data(spec, df, list(df.columns))
    >>> isinstance(d, OrdinalSemData), d.n, d.ordered, d.stats.names, d.tau_cov["y0"].shape
    (True, 400, ('y0', 'y1', 'y2'), ('y0', 'y1', 'y2'), (1, 1))
    """

    base: SemData
    stats: PolychoricResult
    ordered: tuple[str, ...]
    categories: dict[str, tuple[float, ...]]
    target_var: np.ndarray
    lik_pairs: np.ndarray
    tau_cov: dict[str, np.ndarray]
    tau_acov: np.ndarray | None = None
    tau_r_acov: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Complete cases used."""
        return self.base.n

    @property
    def n_dropped(self) -> int:
        """Rows excluded for a missing value."""
        return self.base.n_dropped


def prepare_ordinal_data(spec: SemSpec, df: pd.DataFrame, ordered: Sequence[str],
                         source: str | None = None, *,
                         categories: Mapping[str, Sequence[float]] | None = None) -> OrdinalSemData:
    """Complete cases, category recoding and stage 1 (thresholds, correlations, ``Gamma_hat``).

    ``categories`` (per ordered item, its categories in order) replaces the data's own distinct
    values: a multi-group model with equal thresholds codes every group on the pooled categories
    (every category must occur in every group; the caller checks that with the group named).

    Raises
    ------
    ModelError
        A non-numeric column, an ordered item with a single category or with more than
        :data:`MAX_CATEGORIES` categories (column, values and file named), too few rows.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400)
    >>> df = pd.DataFrame({f"y{i}": (f + rng.normal(size=400) > 0).astype(int) + 1 for i in range(3)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), list(df.columns))
    >>> d = prepare_ordinal_data(spec, df, list(df.columns))
    >>> d.categories["y0"], d.target_var.tolist(), len(d.lik_pairs)
    ((1.0, 2.0), [1.0, 1.0, 1.0], 3)
    """
    ordered = parse_ordered(ordered)
    used = list(spec.observed) + list(spec.covariates)
    num = pd.DataFrame({c: pd.to_numeric(df[c].astype(float) if df[c].dtype == bool else df[c],
                                         errors="coerce") for c in used})[used]
    if (num.isna() & df[used].notna()).to_numpy().any():
        prepare_sem_data(spec, df, source)  # raises the located non-numeric error
    X = num.to_numpy(float)
    X = X[np.isfinite(X).all(axis=1)]
    ordset = set(ordered)
    x_ord = [c for c in spec.covariates if c in ordset]
    if x_ord:
        log.warning("ordered variable(s) %s are exogenous covariates (fixed.x): used with their numeric "
                    "codes, as lavaan does", ", ".join(x_ord))
    probs: list[Problem] = []
    kinds, cats = [], {}
    data = X.copy()
    for j, c in enumerate(used):
        if c in ordset and c in spec.observed:
            vals = np.unique(X[:, j]) if categories is None or c not in categories else \
                np.asarray(sorted(categories[c]), dtype=float)
            if vals.size < 2:
                probs.append(Problem(f"ordered item {c!r} has a single category ({vals[0]:g}) in the "
                                     f"{len(X)} complete cases; expected at least 2", file=source,
                                     location=c, field=c, value=float(vals[0])))
            elif vals.size > MAX_CATEGORIES:
                probs.append(Problem(f"ordered item {c!r} has {vals.size} distinct values; expected at most "
                                     f"{MAX_CATEGORIES} categories (treat it as continuous: leave it out of "
                                     "--ordered)", file=source, location=c, field=c, value=int(vals.size)))
            cats[c] = tuple(float(v) for v in vals)
            data[:, j] = np.searchsorted(vals, X[:, j])
            kinds.append("ordinal")
        else:
            kinds.append("continuous")
    if probs:
        raise ModelError(probs)
    base = prepare_sem_data(spec, df, source)
    stats = polychoric(data, kinds, names=used, acov="full")
    xset = set(spec.covariates)
    lik = np.array([p for p, (a, b) in enumerate(stats.pairs)
                    if not (used[a] in xset and used[b] in xset)], dtype=int)
    tvar = np.array([1.0 if c in cats else base.sd[c] ** 2 for c in spec.observed])
    ord_names = tuple(c for c in spec.observed if c in cats)
    jj = [used.index(c) for c in ord_names]
    acov = threshold_acov(data[:, jj].astype(int), [stats.thresholds[j] for j in jj])
    cross = None
    if stats.threshold_r_acov is not None:
        # stage 1 stacks the thresholds of its ordinal columns in column order: those are the
        # ordered observed items (ordered covariates enter as continuous), i.e. ``ord_names``
        cross = stats.threshold_r_acov[:, lik]
    tau_cov, k0 = {}, 0
    for c, j in zip(ord_names, jj):
        k = len(stats.thresholds[j])
        tau_cov[c] = acov[k0:k0 + k, k0:k0 + k]
        k0 += k
    return OrdinalSemData(base=base, stats=stats, ordered=ord_names, categories=cats, target_var=tvar,
                          lik_pairs=lik, tau_cov=tau_cov, tau_acov=acov, tau_r_acov=cross)


def threshold_acov(codes: np.ndarray, thresholds: Sequence[np.ndarray]) -> np.ndarray:
    """Sandwich covariance of the thresholds of several items, stacked item by item.

    ``tau_jk = Phi^-1(p_jk)``, ``p_jk = P(y_j <= k)``; respondent ``i`` contributes
    ``(1[y_ij <= k] - p_jk) / (n phi(tau_jk))``, and the covariance is the sum of the outer
    products (thresholds of different items covary through the items' joint distribution).

    Parameters
    ----------
    codes : ndarray
        ``(n, m)`` integer codes ``0..K_j-1`` (complete cases).
    thresholds : sequence of ndarray
        Per column its ``K_j - 1`` thresholds.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> codes = rng.integers(0, 3, (500, 2))
    >>> from scipy.stats import norm
    >>> tau = [norm.ppf(np.cumsum(np.bincount(codes[:, j]))[:-1] / 500) for j in range(2)]
    >>> V = threshold_acov(codes, tau)
    >>> V.shape, bool(np.allclose(V, V.T))
    ((4, 4), True)
    """
    codes = np.asarray(codes)
    n = len(codes)
    blocks = []
    for j, tau in enumerate(thresholds):
        tau = np.asarray(tau, dtype=float)
        k = np.arange(len(tau))
        ind = (codes[:, j][:, None] <= k[None, :]).astype(float)
        p = ind.mean(axis=0)
        blocks.append((ind - p) / (n * np.exp(-0.5 * tau ** 2) / np.sqrt(2 * np.pi)))
    C = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return C.T @ C


# --------------------------------------------------------------------------- model
def _layout(spec: SemSpec, data: OrdinalSemData):
    """Index arrays shared by the PyTensor model and the NumPy reference."""
    names = data.stats.names
    p, q = len(spec.observed), len(spec.covariates)
    pairs = data.stats.pairs[data.lik_pairs]
    F = np.array([spec.node_index[v] for v in spec.observed], dtype=int)
    assert tuple(names) == tuple(spec.observed) + tuple(spec.covariates)
    return p, q, pairs, F


def ordinal_reference_scales(spec: SemSpec, data: OrdinalSemData) -> dict[str, float]:
    """Reference sd per node: 1 for an ordered item (latent response), the sample sd otherwise;
    a latent takes its marker (first) indicator's (the scale of the vague sd priors).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"y0": rng.integers(0, 2, 200), "y1": rng.integers(0, 3, 200),
    ...                    "y2": rng.normal(0, 2, 200)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), "y0,y1")
    >>> sc = ordinal_reference_scales(spec, prepare_ordinal_data(spec, df, "y0,y1"))
    >>> sc["f"], sc["y1"], round(sc["y2"], 1)
    (1.0, 1.0, 2.0)
    """
    inds = spec.model.indicators()
    own = {v: (1.0 if v in data.categories else data.base.sd[v]) for v in spec.observed}

    def ref(v: str, depth: int = 0) -> float:
        if v in own:
            return own[v]
        if v in inds and depth < 20:
            return ref(inds[v][0], depth + 1)
        return 1.0

    return {v: ref(v) for v in spec.nodes}


def latent_sd_prior(name: str, scale: np.ndarray, upper: np.ndarray | None = None):  # noqa: ANN201 - a PyMC variable
    """The vague ``Gamma(1, VAGUE_SD_RATE / scale)`` prior of latent SDs, inside ``(0, upper)`` when given.

    With ``upper`` (the Heywood box of :func:`heywood_boxes`) the variable is sampled through an
    interval transform on ``(0, upper)``, so every point of the sampler's space keeps the derived
    residual variances positive; its start is ``min(sqrt(0.5) scale, upper / 2)``. Called inside
    a ``pm.Model`` context; shared by the single- and multi-group ordinal models.

    Parameters
    ----------
    name
        Variable name.
    scale
        Reference scale per SD (the prior's rate is ``VAGUE_SD_RATE / scale``).
    upper
        Upper bound per SD, or None for an unbounded SD.

    Returns
    -------
    pytensor.tensor.TensorVariable

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as m:
    ...     sd = latent_sd_prior("sd_box", np.ones(2), upper=np.array([0.8, 2.0]))
    >>> m.rvs_to_transforms[sd].__class__.__name__, m.initial_point()["sd_box_interval__"].shape
    ('Interval', (2,))
    """
    import pymc as pm
    import pytensor.tensor as pt

    scale = np.asarray(scale, dtype=float)
    kw = {}
    init = np.sqrt(0.5) * scale
    if upper is not None:
        up = np.asarray(upper, dtype=float)
        kw["default_transform"] = pm.distributions.transforms.Interval(
            bounds_fn=lambda *_, up=up: (pt.zeros(up.shape), pt.as_tensor(up)))
        init = np.minimum(init, 0.5 * up)
    return pm.Gamma(name, alpha=1.0, beta=VAGUE_SD_RATE / scale, shape=len(scale), initval=init, **kw)


def heywood_boxes(spec: SemSpec, target_var: np.ndarray):
    """Boxes that keep the derived residual variances positive, for simple-structure factors.

    A latent ``f`` qualifies when it is exogenous (no ``~`` row on it, not an indicator itself)
    and each of its indicators is an observed variable with that one loading and no other row
    (no regression, no residual covariance). Then ``theta_j = T_j - lambda_j^2 Var(f)`` and
    ``theta_j > 0`` is exactly ``|lambda_j| < sqrt(T_j) / sd_f`` (free loadings) and
    ``sd_f < sqrt(T_j) / |c_j|`` (loadings fixed at ``c_j``). Returns ``(lam, sd_up)``:
    ``lam[pid] = [(f, sqrt(T_j)), ...]`` per free loading all of whose rows qualify, and
    ``sd_up[pid]`` the upper bound of a qualifying latent's free sd.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify_ordinal(parse_lavaan("f =~ y1 + y2 + y3"), ["y1", "y2", "y3"], "y1,y2,y3")
    >>> lam, sd_up = heywood_boxes(spec, np.ones(3))
    >>> lam, sd_up
    ({0: [('f', 1.0)], 1: [('f', 1.0)]}, {2: 1.0})
    """
    obs = {v: i for i, v in enumerate(spec.observed)}
    lat = set(spec.latents)
    touched: dict[str, int] = {}
    for r in spec.rows:
        if r.op == "~~" and r.lhs == r.rhs:
            continue
        for v in (r.lhs, r.rhs):
            if v in obs:
                touched[v] = touched.get(v, 0) + 1
    ok_f = {}
    for f in lat:
        rows = [r for r in spec.rows if r.op == "=~" and r.lhs == f]
        bad = any(r.op == "~" and r.lhs == f for r in spec.rows) or any(
            r.op == "=~" and r.rhs == f for r in spec.rows)
        bad = bad or not rows or any(r.rhs not in obs or touched.get(r.rhs, 0) != 1 for r in rows)
        var = [r for r in spec.rows if r.op == "~~" and r.lhs == r.rhs == f]
        if bad or len(var) != 1:
            continue
        ok_f[f] = (rows, var[0])
    lam: dict[int, list[tuple[str, float]]] = {}
    sd_up: dict[int, float] = {}
    for f, (rows, var) in ok_f.items():
        for r in rows:
            t = float(np.sqrt(target_var[obs[r.rhs]]))
            if r.pid >= 0:
                lam.setdefault(r.pid, []).append((f, t))
            elif r.fixed and var.pid >= 0:
                sd_up[var.pid] = min(sd_up.get(var.pid, np.inf), t / abs(float(r.fixed)))
    qualifying = {r.pid for r in spec.rows if r.op == "=~" and r.lhs in ok_f and r.pid >= 0}
    for r in spec.rows:  # a free number shared with a row outside these factors: no box
        if r.pid in lam and not (r.op == "=~" and r.lhs in ok_f):
            lam.pop(r.pid)
    lam = {p: v for p, v in lam.items() if p in qualifying}
    return lam, sd_up


def cpc_transform(k: int):
    """A PyMC transform from ``R^(k(k-1)/2)`` onto the correlations (``triu_indices`` order) of the
    positive-definite ``k x k`` correlation matrices: ``z = tanh(u)`` are canonical partial
    correlations, ``L`` the Cholesky factor built from them (Lewandowski, Kurowicka & Joe 2009)
    and the values are the upper triangle of ``L L'``. Its log-Jacobian is
    ``sum log(1 - z^2) + sum_(i<j) (k - i - 2) / 2 log(1 - z_ij^2)`` (rows ``i`` from 0): with a
    flat density on the correlations the posterior is unchanged, and the positive-definiteness
    edge is no longer inside the sampler's space.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> r = cpc_transform(3).backward(pt.as_tensor(np.array([0.5, -0.3, 2.0]))).eval()
    >>> R = np.eye(3); R[np.triu_indices(3, 1)] = r; R = R + R.T - np.eye(3)
    >>> bool(np.linalg.eigvalsh(R).min() > 0)
    True
    """
    import pytensor.tensor as pt
    from pymc.distributions.transforms import Transform

    iu, ju = np.triu_indices(k, 1)
    pos = {(int(a), int(b)): q for q, (a, b) in enumerate(zip(iu, ju))}

    def chol_from_z(z):
        rows = []
        for i in range(k):
            row, acc = [], 0.0
            for j in range(i):
                rem = pt.sqrt(pt.maximum(1.0 - acc, 1e-300))
                v = z[pos[(j, i)]] * rem
                row.append(v)
                acc = acc + v ** 2
            row.append(pt.sqrt(pt.maximum(1.0 - acc, 1e-300)) if i else pt.constant(1.0))
            rows.append(row + [pt.constant(0.0)] * (k - i - 1))
        return pt.stack([pt.stack(r) for r in rows])

    class CPC(Transform):
        name = "cpc"
        ndim_supp = 1

        def backward(self, value, *inputs):
            L = chol_from_z(pt.tanh(value))
            R = pt.dot(L, L.T)
            return R[iu, ju]

        def forward(self, value, *inputs):
            R = pt.eye(k)
            R = pt.set_subtensor(R[iu, ju], value)
            R = pt.set_subtensor(R[ju, iu], value)
            L = pt.linalg.cholesky(R)
            out = []
            for a, b in zip(iu, ju):  # z_(a, b): element (b, a) of L over what is left of row b
                acc = pt.sum(L[b, :a] ** 2) if a else 0.0
                out.append(L[b, a] / pt.sqrt(pt.maximum(1.0 - acc, 1e-300)))
            return pt.arctanh(pt.clip(pt.stack(out), -1 + 1e-12, 1 - 1e-12))

        def log_jac_det(self, value, *inputs):
            z = pt.tanh(value)
            w = np.array([(k - a - 2) / 2.0 for a in iu])
            return pt.sum(pt.log1p(-z ** 2) * (1.0 + w), axis=-1)

    return CPC()


def latent_corr_block(spec: SemSpec) -> list[int]:
    """Free ``corr`` numbers that are exactly all pairs of a set of latents (each pair one row of
    its own number, in ``numpy.triu_indices`` order of that set), or ``[]``: such a block can be
    sampled as an LKJ(1) correlation matrix, the uniform density on positive-definite matrices
    that the independent Uniform(-1, 1) priors restricted to positive definiteness also give.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify_ordinal(parse_lavaan("a =~ y1 + y2\\nb =~ y3 + y4\\nc =~ y5 + y6"),
    ...                        [f"y{i}" for i in range(1, 7)], [f"y{i}" for i in range(1, 7)])
    >>> [spec.free_rows()[p][0].key for p in latent_corr_block(spec)]
    ['a ~~ b', 'a ~~ c', 'b ~~ c']
    """
    lat = set(spec.latents)
    cov = [r for r in spec.rows if r.op == "~~" and r.lhs != r.rhs and (r.lhs in lat or r.rhs in lat)]
    if not cov or any(r.pid < 0 or r.lhs not in lat or r.rhs not in lat for r in cov):
        return []
    pids = [r.pid for r in cov]
    if len(set(pids)) != len(pids) or any(len(spec.free_rows()[p]) != 1 for p in pids):
        return []
    members = [v for v in spec.latents if any(v in (r.lhs, r.rhs) for r in cov)]
    k = len(members)
    if len(cov) != k * (k - 1) // 2:
        return []
    at = {frozenset((r.lhs, r.rhs)): r.pid for r in cov}
    iu, ju = np.triu_indices(k, 1)
    out = [at.get(frozenset((members[a], members[b]))) for a, b in zip(iu, ju)]
    return [] if None in out else [int(p) for p in out]



def build_ordinal_sem_model(spec: SemSpec, data: OrdinalSemData,
                            priors: Mapping[str, SemPrior] | None = None, *, boxes: bool = True):
    """The PyMC model of stage 2 (see the module docstring).

    Free variables as :func:`~veerkracht_bayes.sem.lavaan_model.build_sem_model` (``coef``,
    ``sd``, ``corr``; the same vague priors, with reference scale 1 for ordered items);
    deterministic ``param_value`` over the table rows (derived residual variances included).
    Zero density where a derived residual variance is not positive or the disturbance
    correlation matrix is not positive definite. With ``boxes`` (default) those regions are
    moved out of the sampler's space where they have a simple form, the density unchanged:
    loadings and latent sds of simple-structure factors inside :func:`heywood_boxes`
    (``coef_box``, ``sd_box``), a full block of latent correlations through
    :func:`cpc_transform` (``corr_pd``); ``boxes=False`` gives the plain variables.

    Examples
    --------
    >>> pm_model = build_ordinal_sem_model(spec, prepare_ordinal_data(spec, df, ordered))  # doctest: +SKIP
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors or {}
    scale = ordinal_reference_scales(spec, data)
    _, q, pairs, F = _layout(spec, data)
    frows = spec.free_rows()
    coef_ids, sd_ids, corr_ids = [], [], []
    for pid, kind in enumerate(spec.free_kind):
        if kind == "coef":
            if spec.bounds[pid]:
                raise ModelError(Problem("sign constraints ('label > 0') are not supported with ordered "
                                         "items yet; expected no inequality constraint",
                                         **model_location(spec.model, frows[pid][0].line), field=frows[pid][0].label))
            coef_ids.append(pid)
        elif kind == "sd":
            sd_ids.append(pid)
        else:
            corr_ids.append(pid)
    lat_var0 = {v: 0.5 * scale[v] ** 2 for v in spec.latents}
    for r in spec.rows:
        if r.op == "~~" and r.lhs == r.rhs and r.lhs in lat_var0 and r.fixed is not None:
            lat_var0[r.lhs] = max(float(r.fixed), 1e-6)

    def coef_prior(pid: int) -> tuple[float, float]:
        for r in frows[pid]:
            pr = prior_for(r, priors)
            if pr is not None:
                return pr.mean, pr.sd
        return 0.0, VAGUE_COEF_SD

    def coef_init(pid: int) -> float:
        # a free loading starts where its factor explains a quarter of the item's variance
        r = frows[pid][0]
        return 0.5 * scale[r.rhs] / np.sqrt(lat_var0[r.lhs]) if r.op == "=~" else 0.0

    # Heywood boundary: where a derived residual variance is positive exactly inside a box of the
    # loadings and latent sds, sample in that box (an interval transform: no hard edge inside the
    # sampler's space). The density is unchanged: prior x indicator, as the -inf potential gives.
    lam_box, sd_up = heywood_boxes(spec, data.target_var) if boxes else ({}, {})
    coords = {"param": [r.key for r in spec.rows]}
    with pm.Model(coords=coords) as model:
        free = pt.zeros((spec.n_free,))
        sd_of: dict[str, object] = {}
        for r in spec.rows:
            if r.op == "~~" and r.lhs == r.rhs and r.lhs in spec.latents and r.fixed is not None:
                sd_of[r.lhs] = float(np.sqrt(max(float(r.fixed), 0.0)))
        for name, grp in (("sd", [i for i in sd_ids if i not in sd_up]), ("sd_box", [i for i in sd_ids if i in sd_up])):
            if not grp:
                continue
            s = np.array([scale[frows[i][0].lhs] for i in grp])
            rv = latent_sd_prior(name, s, np.array([sd_up[i] for i in grp]) if name == "sd_box" else None)
            free = pt.set_subtensor(free[np.array(grp)], rv)
            for k, i in enumerate(grp):
                sd_of[frows[i][0].lhs] = rv[k]
        for name, grp in (("coef", [i for i in coef_ids if i not in lam_box]),
                          ("coef_box", [i for i in coef_ids if i in lam_box])):
            if not grp:
                continue
            mu = np.array([coef_prior(i)[0] for i in grp])
            sg = np.array([coef_prior(i)[1] for i in grp])
            init = np.array([coef_init(i) for i in grp])
            if name == "coef":
                rv = pm.Normal(name, mu=mu, sigma=sg, shape=len(grp), initval=init)
            else:
                b = pt.stack([pt.min(pt.stack([t / sd_of[f] for f, t in lam_box[i]])) for i in grp])
                rv = pm.Truncated(name, pm.Normal.dist(mu=mu, sigma=sg, shape=len(grp)), lower=-b, upper=b,
                                  initval=init)
                # Truncated renormalises by P(|x| < b), which depends on sd_f: add it back so the
                # density stays the Normal prior times the indicator
                pm.Potential(f"{name}_unnormalise", pt.sum(pt.log(
                    pt.sub(0.5 * pt.erfc(-(b - mu) / (sg * np.sqrt(2.0))), 0.5 * pt.erfc(-(-b - mu) / (sg * np.sqrt(2.0)))))))
            free = pt.set_subtensor(free[np.array(grp)], rv)
        lkj = latent_corr_block(spec) if boxes else []
        if lkj:
            k = round((1 + np.sqrt(1 + 8 * len(lkj))) / 2)
            rv = pm.Uniform("corr_pd", lower=-1.0, upper=1.0, shape=len(lkj), initval=np.zeros(len(lkj)),
                            default_transform=cpc_transform(k))
            free = pt.set_subtensor(free[np.array(lkj)], rv)
        rest = [i for i in corr_ids if i not in set(lkj)]
        if rest:
            rv = pm.Uniform("corr", lower=-1.0, upper=1.0, shape=len(rest), initval=np.zeros(len(rest)))
            free = pt.set_subtensor(free[np.array(rest)], rv)
        values, loglik, _ = ordinal_loglik_pt(spec, data, free)
        pm.Deterministic("param_value", values, dims="param")
        pm.Potential("correlations", loglik)
    return model


def ordinal_loglik_pt(spec: SemSpec, data: OrdinalSemData, free, *, target_var=None, latent_mean=None,
                      tau: Mapping[str, object] | None = None, resid_var=None, resid_items: Sequence[str] = ()):
    """Stage-2 log-likelihood of one group (PyTensor): the single-group and the multi-group
    ordinal models both use it.

    Parameters
    ----------
    spec : SemSpec
        From :func:`specify_ordinal`.
    data : OrdinalSemData
        The group's stage-1 summaries.
    free : TensorVariable
        ``(n_free,)`` free parameters on the sampler's scale (a standard deviation for a
        variance row, a correlation for a covariance row).
    target_var : TensorVariable or ndarray, optional
        ``(p,)`` total variance of each observed variable's latent response (default
        ``data.target_var``: 1 for ordered items, the sample variance otherwise). A multi-group
        model with equal thresholds passes ``sigma*^2`` (``1 / Delta^2``) for the ordered items
        of later groups.
    latent_mean : TensorVariable, optional
        ``(len(spec.latents),)`` means of the latents in this group (default 0); used only by
        the threshold term.
    tau : mapping, optional
        Per ordered item, its ``(K - 1,)`` latent-response thresholds (shared across groups).
        When given, the stage-1 thresholds enter the likelihood as
        ``tau_hat ~ N((tau - mu*) / sigma*, tau_acov)`` with ``mu* = (A (alpha + Gamma xbar))[F]``
        and ``sigma*^2`` the total variance; without it the thresholds are saturated and only the
        correlations inform the structural parameters.
    resid_var, resid_items : TensorVariable, sequence of str, optional
        Residual variances given for these observed variables (their total variance then follows
        from the model instead of ``target_var``): a later group's items with a free scaling
        factor, parameterised by their residual variance so that it stays positive.

    Returns
    -------
    values : TensorVariable
        ``(R,)`` value of every table row (derived residual variances included).
    loglik : TensorVariable
        Scalar; ``-inf`` where a derived residual variance is not positive or the disturbance
        correlation matrix is not positive definite.
    total_var : TensorVariable
        ``(p,)`` total variance of each observed variable's latent response (``sigma*^2``).

    Examples
    --------
    >>> import numpy as np, pandas as pd, pytensor.tensor as pt
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400)
    >>> df = pd.DataFrame({f"y{i}": (f + rng.normal(size=400) > 0).astype(int) for i in range(3)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), list(df.columns))
    >>> d = prepare_ordinal_data(spec, df, list(df.columns))
    >>> values, ll, total = ordinal_loglik_pt(spec, d, pt.as_tensor(np.array([1.0, 1.0, 0.7])))
    >>> [round(float(v), 2) for v in values.eval()[3:6]], bool(np.isfinite(ll.eval()))
    ([0.51, 0.51, 0.51], True)
    """
    import pytensor.tensor as pt

    _, q, pairs, F = _layout(spec, data)
    Sxx = data.base.x_cov if q else np.zeros((0, 0))
    r_w, Linv = whiten_correlations(data.stats, data.lik_pairs)
    obs_pos = {v: i for i, v in enumerate(spec.observed)}
    derived = [i for i, r in enumerate(spec.rows) if _is_derived(r)]
    der_obs = np.array([obs_pos[spec.rows[i].lhs] for i in derived], dtype=int)
    obs_cov = [i for i, r in enumerate(spec.rows)
               if r.op == "~~" and r.lhs != r.rhs and r.lhs in obs_pos and r.fixed is None]
    tvar = data.target_var if target_var is None else target_var
    # pass 1: every row except derived variances and observed-observed covariances (held at 0)
    vals = row_values_pt(spec, free, derived + obs_cov, stacked=False)
    B, G, Psi_L, _ = matrices_pt(spec, pt.stack(vals))
    N = len(spec.nodes)
    A = algebra.equilibrium_matrix(B, xp="pytensor")
    AF = A[F]
    expl = pt.sum(pt.dot(AF, Psi_L) * AF, axis=1)
    if q:
        AGF = pt.dot(AF, G)
        expl = expl + pt.sum(pt.dot(AGF, Sxx) * AGF, axis=1)
    M = (AF * AF)[:, F]
    if len(resid_items):
        S = np.array([obs_pos[c] for c in resid_items], dtype=int)
        D = np.array([i for i in range(len(F)) if i not in set(S.tolist())], dtype=int)
        theta = pt.set_subtensor(pt.zeros((len(F),))[S], resid_var)
        if len(D):
            rhs = pt.as_tensor(tvar)[D] - expl[D] - pt.dot(M[D][:, S], resid_var)
            theta = pt.set_subtensor(theta[D], pt.linalg.solve(M[D][:, D], rhs))
        total = expl + pt.dot(M, theta)
    else:
        theta = pt.linalg.solve(M, tvar - expl)
        total = pt.as_tensor(tvar)
    theta_ok = pt.all(pt.gt(theta, 1e-6))
    theta_safe = pt.switch(pt.gt(theta, 1e-6), theta, 1e-6)
    for k, i in enumerate(derived):
        vals[i] = theta_safe[der_obs[k]]
    for i in obs_cov:
        r = spec.rows[i]
        vals[i] = free[r.pid] * pt.sqrt(theta_safe[obs_pos[r.lhs]] * theta_safe[obs_pos[r.rhs]])
    values = pt.stack(vals)
    _, _, Psi, _ = matrices_pt(spec, values)
    Syy = pt.dot(pt.dot(AF, Psi), AF.T)
    if q:
        AGF = pt.dot(AF, G)
        Syy = Syy + pt.dot(pt.dot(AGF, Sxx), AGF.T)
        Syx = pt.dot(AGF, Sxx)
        top = pt.concatenate([Syy, Syx], axis=1)
        bot = pt.concatenate([Syx.T, pt.as_tensor(Sxx)], axis=1)
        C = pt.concatenate([top, bot], axis=0)
    else:
        C = Syy
    d = pt.sqrt(pt.clip(pt.diagonal(C), 1e-12, np.inf))
    rho = C[pairs[:, 0], pairs[:, 1]] / (d[pairs[:, 0]] * d[pairs[:, 1]])
    if tau is None:
        ll = -0.5 * pt.sum((r_w - pt.dot(Linv, rho)) ** 2)
    else:
        lat_idx = np.array([spec.node_index[v] for v in spec.latents], dtype=int)
        alpha = pt.zeros((N,))
        if latent_mean is not None and len(lat_idx):
            alpha = pt.set_subtensor(alpha[lat_idx], latent_mean)
        if q:
            xbar = np.array([data.base.mean[c] for c in spec.covariates])
            alpha = alpha + pt.dot(G, xbar)
        mu = pt.dot(AF, alpha)
        sig = pt.sqrt(pt.clip(total, 1e-12, np.inf))
        t_model = pt.concatenate([(tau[c] - mu[obs_pos[c]]) / sig[obs_pos[c]] for c in data.ordered])
        # (thresholds, correlations) jointly: one Gaussian with their full asymptotic covariance
        e_hat, Lj = _joint_whitener(data)
        ll = -0.5 * pt.sum((e_hat - pt.dot(Lj, pt.concatenate([t_model, rho]))) ** 2)
    ok = theta_ok
    if "corr" in spec.free_kind:
        dp = pt.sqrt(pt.clip(pt.diagonal(Psi), 1e-300, np.inf))
        Rpsi = Psi / dp[:, None] / dp[None, :]
        Lp = pt.linalg.cholesky(Rpsi + 1e-10 * pt.eye(N), on_error="nan")
        dl = pt.diagonal(Lp)
        ok = ok & pt.all(pt.isfinite(dl)) & pt.all(pt.gt(dl, 0.0))
    return values, pt.switch(ok, ll, -np.inf), total


def _joint_covariance(data: OrdinalSemData) -> tuple[np.ndarray, np.ndarray]:
    """Stacked stage-1 estimates ``(tau_hat, r_hat)`` and their joint asymptotic covariance (a
    relative ridge on each diagonal block, as :func:`whiten_correlations`)."""
    t_hat = np.concatenate([data.stats.thresholds[data.stats.names.index(c)] for c in data.ordered])
    lik = data.lik_pairs
    r_hat = data.stats.r[lik]
    Vtt = data.tau_acov + 1e-9 * np.trace(data.tau_acov) / len(t_hat) * np.eye(len(t_hat))
    Vrr = data.stats.acov[np.ix_(lik, lik)]
    Vrr = Vrr + 1e-9 * np.trace(Vrr) / max(len(lik), 1) * np.eye(len(lik))
    Vtr = np.zeros((len(t_hat), len(lik))) if data.tau_r_acov is None else data.tau_r_acov
    return np.concatenate([t_hat, r_hat]), np.block([[Vtt, Vtr], [Vtr.T, Vrr]])


def _joint_whitener(data: OrdinalSemData) -> tuple[np.ndarray, np.ndarray]:
    """``L^-1 e_hat`` and ``L^-1`` for the joint covariance ``L L'`` of :func:`_joint_covariance`."""
    e_hat, V = _joint_covariance(data)
    return cholesky_whitener(e_hat, V, "thresholds and correlations")


def implied_correlations_np(spec: SemSpec, data: OrdinalSemData, values: np.ndarray) -> np.ndarray:
    """Implied correlations of the likelihood's pairs at one set of table-row values (NumPy).

    An independent route to ``rho(theta)`` for tests: ``Sigma = F A Psi A' F'`` built from the
    table rows (derived variances included), plus the covariates' block. ``values`` may also be
    ``(S, R)`` (S draws): the result is then ``(S, s)``.

    Examples
    --------
    >>> fit = fit_sem_ordinal(model, df, "y1,y2,y3", draws=100, tune=100)  # doctest: +SKIP
    >>> implied_correlations_np(fit.spec, fit.ordinal, fit.row_values()[0, 0])  # doctest: +SKIP
    """
    from veerkracht_bayes.sem.lavaan_model import implied_matrices

    _, q, pairs, F = _layout(spec, data)
    values = np.asarray(values, dtype=float)
    one = values.ndim == 1
    m = implied_matrices(spec, values[None] if one else values)
    A = np.linalg.inv(np.eye(len(spec.nodes))[None] - m["B"])
    AF = A[:, F]
    AFt = np.swapaxes(AF, 1, 2)
    Syy = AF @ m["Psi"] @ AFt
    if q:
        AG = AF @ m["Gamma"]
        Sxx = data.base.x_cov
        Syx = AG @ Sxx
        C = np.concatenate([np.concatenate([Syy + Syx @ np.swapaxes(AG, 1, 2), Syx], axis=2),
                            np.concatenate([np.swapaxes(Syx, 1, 2),
                                            np.broadcast_to(Sxx, (len(AF), *Sxx.shape))], axis=2)], axis=1)
    else:
        C = Syy
    d = np.sqrt(np.diagonal(C, axis1=1, axis2=2))
    rho = C[:, pairs[:, 0], pairs[:, 1]] / (d[:, pairs[:, 0]] * d[:, pairs[:, 1]])
    return rho[0] if one else rho


# --------------------------------------------------------------------------- fit
@dataclass
class OrdinalSemFit(SemFit):
    """A fitted lavaan model with ordered items: :class:`SemFit` plus stage 1 and threshold draws.

    ``data`` is the complete-case :class:`SemData` (for ``structural_view``); ``ordinal`` the
    stage-1 summaries; ``tau_draws`` per ordered item ``(chains, draws, K - 1)``.

    Examples
    --------
    Returned by :func:`fit_sem_ordinal`; here with hand-made draws in place of a posterior:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400)
    >>> df = pd.DataFrame({f"y{i}": (f + rng.normal(size=400) > 0).astype(int) + 1 for i in range(3)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), list(df.columns))
    >>> d = prepare_ordinal_data(spec, df, list(df.columns))
    >>> post = xr.Dataset({"param_value": (("chain", "draw", "param"),
    ...                                    rng.normal(0.7, 0.05, (2, 50, len(spec.rows))))})
    >>> tau = {v: rng.normal(0.0, 0.05, (2, 50, 1)) for v in d.ordered}
    >>> fit = OrdinalSemFit(spec, d.base, {"posterior": post}, ordinal=d, tau_draws=tau)
    >>> table = fit.table()
    >>> table.loc[table.op == "|", ["lhs", "rhs"]].values.tolist()
    [['y0', 't1'], ['y1', 't1'], ['y2', 't1']]
    """

    ordinal: OrdinalSemData | None = None
    tau_draws: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """The parameter table with lavaan's ``|`` threshold rows after the model's own rows.

        Derived residual variances of observed variables have ``free = 0`` and their posterior
        summaries (lavaan prints their value without a standard error).
        """
        t = parameter_table(self, prob)
        if not self.tau_draws:
            return t
        from arviz_stats.base import array_stats

        a = (1 - prob) / 2
        recs = []
        k = int(t["free"].max()) if len(t) else 0
        for item, dr in self.tau_draws.items():
            for j in range(dr.shape[-1]):
                arr = dr[:, :, j]
                x = arr.ravel()
                k += 1
                rhat = float(array_stats.rhat(arr)) if arr.shape[0] > 1 else float("nan")
                recs.append((item, "|", f"t{j + 1}", "", k, x.mean(), x.std(ddof=1), np.median(x),
                             np.quantile(x, a), np.quantile(x, 1 - a), rhat,
                             float(array_stats.ess(arr, method="bulk")),
                             float(array_stats.ess(arr, method="tail", prob=(a, 1 - a)))))
        th = pd.DataFrame.from_records(recs, columns=list(TABLE_COLUMNS))
        user = [i for i, r in enumerate(self.spec.rows) if r.user]
        cut = (max(user) + 1) if user else 0
        return pd.concat([t.iloc[:cut], th, t.iloc[cut:]], ignore_index=True)


def fit_sem_ordinal(
    model: LavaanModel,
    df: pd.DataFrame,
    ordered: str | Sequence[str],
    *,
    priors: Mapping[str, SemPrior] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 2023,
    sampler: str = "numpyro",
    target_accept: float = 0.9,
    progressbar: bool = False,
    source: str | None = None,
) -> OrdinalSemFit:
    """Fit a lavaan model whose ``ordered`` items are ordinal/binary (two-stage, WLSMV analogue).

    Steps: :func:`specify_ordinal` -> :func:`prepare_ordinal_data` (stage 1) ->
    :func:`~veerkracht_bayes.sem.lavaan_model.check_identification` and a t-rule on the
    correlations -> :func:`build_ordinal_sem_model` -> chains started at the posterior mode ->
    NUTS (``pm.sample``); thresholds drawn from their stage-1 sampling distribution.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0); f = rng.normal(size=500)
    >>> df = pd.DataFrame({f"y{i}": (0.7 * f + rng.normal(0, .7, 500) > 0).astype(int) for i in range(3)})
    >>> fit = fit_sem_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), df, "y0,y1,y2",
    ...                       draws=100, tune=100)  # doctest: +SKIP
    >>> fit.table()[["lhs", "op", "rhs"]].iloc[3].tolist()  # doctest: +SKIP
    ['y0', '|', 't1']
    """
    from veerkracht_bayes.runtime import ensure_cpu_devices, release_compiled_programs_if_needed

    ensure_cpu_devices()
    release_compiled_programs_if_needed()  # PyMC's JAX sampler compiles new programs for each fit

    if sampler not in ("numpyro", "pymc", "nutpie", "blackjax"):
        raise ModelError(Problem(f"unknown sampler {sampler!r} (expected numpyro, pymc, nutpie or blackjax)",
                                 field="sampler", value=sampler))
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if int(v) < lo:
            raise ModelError(Problem(f"{name} must be >= {lo}, got {v}", field=name, value=v))
    ordered = parse_ordered(ordered)
    spec = specify_ordinal(model, list(map(str, df.columns)), ordered)
    data = prepare_ordinal_data(spec, df, ordered, source)
    if not data.ordered:
        raise ModelError(Problem("none of the --ordered variables is a modelled (endogenous or indicator) "
                                 f"variable of the model (got {list(ordered)}); expected at least one",
                                 field="ordered"))
    priors = dict(priors or {})
    check_identification(spec, priors)
    n_mom = len(data.lik_pairs)
    if spec.n_free > n_mom:
        raise ModelError(Problem(f"the model has {spec.n_free} free parameters but only {n_mom} correlations "
                                 "inform them: the t-rule fails", file=model.path))
    pm_model = build_ordinal_sem_model(spec, data, priors)
    idata = sample_sem_model(pm_model, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                             target_accept=target_accept, progressbar=progressbar)
    vals = np.asarray(idata.posterior["param_value"].transpose("chain", "draw", "param").values)
    rho = implied_correlations_np(spec, data, vals.reshape(-1, vals.shape[-1]))
    tau_draws = draw_thresholds(data, vals.shape[0], vals.shape[1], seed + 7919, rho=rho)
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed, "sampler": sampler,
                "target_accept": target_accept, "n": data.n, "n_dropped": data.n_dropped,
                "ordered": list(data.ordered), "estimator": "two-stage polychoric (WLSMV analogue)"}
    import json

    idata.attrs["sem_settings"] = json.dumps(settings)
    idata.attrs["lavaan_model"] = model.to_lavaan()
    div = count_divergences(idata)
    if div:
        log.warning("%d divergent transition(s) after tuning; check the parameter table's r_hat and ess", div)
    return OrdinalSemFit(spec=spec, data=data.base, idata=idata, priors=priors, settings=settings,
                         ordinal=data, tau_draws=tau_draws)


def draw_thresholds(data: OrdinalSemData, chains: int, draws: int, seed: int, *,
                    rho: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Posterior draws of saturated thresholds: per ordered item ``(chains, draws, K - 1)``.

    Thresholds and correlations are one Gaussian block, ``(tau_hat, r_hat) ~ N((tau, rho),
    V)``, with a flat prior on ``tau``. Given the structural draws' implied correlations ``rho``
    (``(chains, draws, s)``, the likelihood's pairs, e.g. from :func:`implied_correlations_np`),
    each draw is from the conditional ``N(tau_hat - V_tr V_rr^-1 (r_hat - rho), V_tt - V_tr
    V_rr^-1 V_rt)``: the joint posterior of thresholds and structural parameters (at the mode
    this is lavaan's WLS threshold estimate; the structural posterior itself does not change,
    a saturated block marginalises out exactly). Without ``rho`` (or without the cross block)
    the draws are ``N(tau_hat, tau_cov)`` per item, independent of the structural draws.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400)
    >>> df = pd.DataFrame({f"y{i}": (f + rng.normal(size=400) > 0).astype(int) for i in range(3)})
    >>> spec = specify_ordinal(parse_lavaan("f =~ y0 + y1 + y2"), list(df.columns), list(df.columns))
    >>> draw_thresholds(prepare_ordinal_data(spec, df, list(df.columns)), 2, 50, 1)["y0"].shape
    (2, 50, 1)
    """
    rng = np.random.default_rng(seed)
    out = {}
    if rho is not None and data.tau_r_acov is not None:
        e_hat, V = _joint_covariance(data)
        t = len(e_hat) - len(data.lik_pairs)
        K = np.linalg.solve(V[t:, t:], V[t:, :t]).T  # V_tr V_rr^-1
        cond = V[:t, :t] - K @ V[t:, :t]
        L = np.linalg.cholesky(0.5 * (cond + cond.T))
        rho = np.asarray(rho, dtype=float).reshape(chains, draws, len(data.lik_pairs))
        mean = e_hat[:t] - (e_hat[t:] - rho) @ K.T
        tau = mean + rng.standard_normal((chains, draws, t)) @ L.T
        k0 = 0
        for c in data.ordered:
            k = len(data.stats.thresholds[data.stats.names.index(c)])
            out[c] = tau[:, :, k0:k0 + k]
            k0 += k
        return out
    for c in data.ordered:
        j = data.stats.names.index(c)
        out[c] = rng.multivariate_normal(data.stats.thresholds[j], data.tau_cov[c], size=(chains, draws),
                                         method="cholesky")
    return out


def ordinal_map_estimate(spec: SemSpec, data: OrdinalSemData,
                         priors: Mapping[str, SemPrior] | None = None) -> np.ndarray:
    """Posterior mode of stage 2 (every table row's value), the chains' start; used by tests.

    Examples
    --------
    >>> values = ordinal_map_estimate(spec, prepare_ordinal_data(spec, df, ordered))  # doctest: +SKIP
    """
    _, values = ml_start(build_ordinal_sem_model(spec, data, priors), 1, 0, with_values=True)
    return values

