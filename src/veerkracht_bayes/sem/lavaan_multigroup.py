"""Multi-group generic lavaan models, like lavaan's ``sem(..., group = "COLUMN")``.

Configural (the default, as lavaan): every group has its own parameters. The groups' likelihoods
and priors are independent, so the joint posterior is the product of the per-group posteriors.
The fit is therefore one :func:`~veerkracht_bayes.sem.lavaan_model.fit_sem` per group on that
group's rows. The parameter table is lavaan's, with a leading ``group`` column holding the group
labels as they appear in the data (in order of first appearance, like lavaan's group order).

``group_equal`` (lavaan's ``group.equal``) constrains parameter types equal across groups and
``group_pool`` (our extension) partially pools them; both need one joint model over all groups
(:func:`build_sem_multigroup_model`). lavaan's conventions:

* types: ``loadings`` (``=~``), ``intercepts`` (``~1`` of observed variables), ``regressions``
  (``~``), ``residuals`` (residual variances of observed variables), ``residual.covariances``,
  ``lv.variances``, ``lv.covariances``, ``means`` (latent means);
* with equal ``intercepts`` the model gets a mean structure (every observed intercept) and the
  latent means of the groups after the first are free (the first group's are 0); with ``means``
  also equal, latent means stay 0 in every group;
* with equal ``loadings`` the latent variances stay free in every group (the scale is set by the
  marker loading, fixed at 1 in every group);
* a label written in the model (``a*x2``) names one parameter shared by all groups (lavaan: one
  label for all groups means equality across groups).

Covariances are parameterised as ``r * sd_i * sd_j``; equal covariances are therefore available
only together with equal variances of the same kind (``lv.covariances`` with ``lv.variances``,
``residual.covariances`` with ``residuals``), else a clear error.

Partial pooling (``group_pool``: ``loadings``, ``intercepts``, ``regressions``): every pooled
parameter has a population value ``theta`` and group deviations::

    theta_g = theta + delta_g,   delta_g = tau * z_g,   z_g ~ Normal(0, 1),
    tau ~ HalfNormal(tau_sd * s)

one ``tau`` per pooled parameter. ``s`` makes ``tau_sd`` a standardised scale: ``sd(y) / sd(x)``
for a regression ``y ~ x`` or a loading ``f =~ y`` (``sd`` of a latent = that of its marker
indicator), ``sd(y)`` for an intercept (sample sds averaged over the groups). The default
``tau_sd = 0.1`` (as the MARVEL multi-group model, :mod:`veerkracht_bayes.sem.multigroup`) says
that group values usually differ from the population value by less than 0.1-0.2 standardised
units; strong data override it. ``theta`` gets the parameter's usual (vague) prior. With pooled
intercepts the latent means stay 0 (the intercept deviations carry the group differences).

Ordered items (lavaan's ``ordered =`` with ``group =``; the two-stage route of
:mod:`veerkracht_bayes.sem.lavaan_ordinal`, delta parameterisation). Stage 1 runs in every group
on that group's complete cases: its thresholds, its polychoric/polyserial correlations and their
own asymptotic covariance. Stage 2 is one joint model whose log-likelihood is the sum over groups
of :func:`~veerkracht_bayes.sem.lavaan_ordinal.ordinal_loglik_pt`. Identification, as lavaan
(0.6-14, the version our cross-check ran) for the delta parameterisation:

* thresholds free across groups (the default, and whenever ``thresholds`` is not in
  ``group_equal``): every group's latent responses have total variance 1 (scaling factors
  ``Delta = 1``), latent means 0, and the thresholds are saturated (drawn given each structural
  draw from their conditional given the correlations, as in one group); configural
  models without labels are one :func:`~veerkracht_bayes.sem.lavaan_ordinal.fit_sem_ordinal`
  per group;
* ``thresholds`` in ``group_equal``: one set of thresholds ``tau`` for all groups, and the
  stage-1 thresholds of group ``g`` enter the likelihood as
  ``tau_hat_g ~ N((tau - mu*_g) / sigma*_g, V_g)`` jointly with the group's correlations (one
  Gaussian with the full asymptotic covariance of thresholds and correlations, cross block
  included: lavaan's ``WLS`` discrepancy); in the first group ``Delta = 1`` and the
  latent means are 0; in every later group the latent means are free (unless ``means`` is also in
  ``group_equal``) and the scaling factors ``Delta_gj = 1 / sigma*_gj`` of items with three or more
  categories are free; those items are sampled through their residual variances (kept positive),
  and ``sigma*^2 = explained + theta`` gives ``Delta``. Binary items keep ``Delta = 1`` in every group: their one
  threshold cannot separate a location from a scale when the loadings differ. lavaan 0.6-14
  frees binary items' ``Delta`` too (our check against it fixes them, ``y ~*~ c(1, 1)*y``); the
  lavaan development source (0.6-20) fixes them as we do, and with equal thresholds frees the
  latent-response intercepts in place of the latent means unless ``intercepts`` is equal too;
* latent variances are free in every group (marker-indicator scaling), loadings are free per group
  unless ``loadings`` is in ``group_equal``;
* ``intercepts`` (equal or pooled) is refused: the intercepts of ordered items are fixed at 0 and
  the thresholds take their place.

The table then has, per group, the model's rows (derived residual variances with
``across_groups = derived``), ``|`` threshold rows (``equal`` thresholds share one ``free`` number
and a ``.tI.K.`` label), and with equal thresholds ``f ~1`` latent-mean rows and ``y ~*~ y``
scaling-factor rows (fixed or free). Every category of an ordered item must
occur in every group when thresholds are equal (a located error names the item, the category and
the group).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from veerkracht_bayes.errors import ModelError, Problem, did_you_mean
from veerkracht_bayes.graph.lavaan_syntax import LavaanModel, LavaanRow
from veerkracht_bayes.sem.lavaan_model import (
    VAGUE_COEF_SD,
    VAGUE_LATENT_INTERCEPT_SD,
    VAGUE_SD_RATE,
    ParamRow,
    SemData,
    SemFit,
    SemPrior,
    SemSpec,
    check_identification,
    coef_prior,
    coef_rv,
    coef_start,
    count_divergences,
    fit_sem,
    ml_start,
    prepare_sem_data,
    reference_scales,
    row_values_pt,
    sample_sem_model,
    sem_loglik_pt,
    specify,
)
from veerkracht_bayes.sem.lavaan_ordinal import (
    OrdinalSemData,
    cpc_transform,
    draw_thresholds,
    fit_sem_ordinal,
    heywood_boxes,
    implied_correlations_np,
    latent_corr_block,
    latent_sd_prior,
    ordinal_loglik_pt,
    ordinal_reference_scales,
    parse_ordered,
    prepare_ordinal_data,
    specify_ordinal,
)

__all__ = [
    "DEFAULT_POOL_TAU_SD",
    "GROUP_TYPES",
    "POOL_TYPES",
    "POPULATION",
    "JointMultiGroupSemFit",
    "MultiGroupLayout",
    "MultiGroupSemFit",
    "build_sem_multigroup_model",
    "fit_sem_multigroup",
    "multigroup_layout",
    "multigroup_map",
    "parse_group_types",
]

log = logging.getLogger(__name__)

#: Parameter types that ``group_equal`` may name (lavaan's ``group.equal`` names).
GROUP_TYPES = ("loadings", "intercepts", "regressions", "residuals", "residual.covariances",
               "lv.variances", "lv.covariances", "means", "thresholds")
#: Parameter types that ``group_pool`` may name.
POOL_TYPES = ("loadings", "intercepts", "regressions")
#: Default scale of the HalfNormal prior of each pooled parameter's between-group sd (standardised).
DEFAULT_POOL_TAU_SD = 0.1
#: ``group`` value of the population rows (``theta``, ``tau``) of pooled parameters.
POPULATION = "(population)"


def parse_group_types(value: str | Sequence[str] | None, option: str,
                      allowed: Sequence[str] = GROUP_TYPES) -> tuple[str, ...]:
    """``"loadings,intercepts"`` -> ``("loadings", "intercepts")``, every entry checked.

    Examples
    --------
    >>> parse_group_types("loadings, regressions", "--group-equal")
    ('loadings', 'regressions')
    """
    if value is None:
        return ()
    parts = [p.strip() for p in (value.split(",") if isinstance(value, str) else value)]
    out = []
    for p in parts:
        if not p:
            continue
        if p not in allowed:
            extra = ""
            if p in GROUP_TYPES:
                extra = f"; {p!r} can be constrained equal (--group-equal) but not pooled"
            raise ModelError(Problem(f"{option}: unknown parameter type {p!r}{did_you_mean(p, allowed)} "
                                     f"(expected a comma-separated list of {', '.join(allowed)}){extra}",
                                     field=option.lstrip("-"), value=p))
        out.append(p)
    return tuple(dict.fromkeys(out))


def _summaries(arr: np.ndarray, prob: float) -> tuple[float, ...]:
    """mean, sd, median, lower, upper, r_hat, ess_bulk, ess_tail of ``(chains, draws)`` draws."""
    from arviz_stats.base import array_stats

    a = (1 - prob) / 2
    x = arr.ravel()
    rhat = float(array_stats.rhat(arr)) if arr.shape[0] > 1 else float("nan")
    eb = float(array_stats.ess(arr, method="bulk"))
    et = float(array_stats.ess(arr, method="tail", prob=(a, 1 - a)))
    return (float(x.mean()), float(x.std(ddof=1)), float(np.median(x)), float(np.quantile(x, a)),
            float(np.quantile(x, 1 - a)), rhat, eb, et)


class MultiGroupSemFit:
    """Per-group fits of a configural multi-group model.

    Returned by :func:`fit_sem_multigroup` when nothing is equal or pooled across groups: one
    :class:`~veerkracht_bayes.sem.lavaan_model.SemFit` per group label.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> from veerkracht_bayes.sem.lavaan_model import SemFit, prepare_sem_data, specify
    >>> rng = np.random.default_rng(0)
    >>> spec = specify(parse_lavaan("y ~ x"), ["x", "y"])
    >>> # hand-made draws (chain, draw, row) stand in for each group's posterior
    >>> post = xr.Dataset({"param_value": (("chain", "draw", "param"), rng.normal(0.5, 0.1, (2, 50, 2)))})
    >>> fits = {g: SemFit(spec, prepare_sem_data(spec, pd.DataFrame(rng.normal(size=(40, 2)),
    ...                                                            columns=["x", "y"])), {"posterior": post})
    ...         for g in ("a", "b")}
    >>> mg = MultiGroupSemFit("school", fits)
    >>> mg.labels, mg.n
    (('a', 'b'), {'a': 40, 'b': 40})
    >>> mg.table()[["group", "lhs", "op", "rhs", "across_groups"]].values.tolist()
    [['a', 'y', '~', 'x', 'free'], ['a', 'y', '~~', 'y', 'free'], ['b', 'y', '~', 'x', 'free'], ['b', 'y', '~~', 'y', 'free']]
    """

    def __init__(self, group: str, fits: dict[str, SemFit]) -> None:
        self.group = group
        self.fits = fits

    @property
    def labels(self) -> tuple[str, ...]:
        """Group labels, in order of first appearance in the data."""
        return tuple(self.fits)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """lavaan's parameter table with a leading ``group`` column and an ``across_groups``
        column (``free``, ``fixed``, or ``derived`` for the residual variances of ordered items:
        configural)."""
        parts = []
        for lab, fit in self.fits.items():
            t = fit.table(prob)
            t.insert(0, "group", lab)
            # a row with free = 0 but a posterior (a derived residual variance of an ordered item)
            t["across_groups"] = np.where(t["free"] > 0, "free", np.where(t["sd"].notna(), "derived", "fixed"))
            parts.append(t)
        return pd.concat(parts, ignore_index=True)

    @property
    def n(self) -> dict[str, int]:
        """Complete cases per group."""
        return {lab: f.data.n for lab, f in self.fits.items()}

    @property
    def n_dropped(self) -> int:
        """Rows excluded (a missing value in a modelled column), all groups."""
        return sum(f.data.n_dropped for f in self.fits.values())


# --------------------------------------------------------------------------- joint model layout
def _row_type(r: ParamRow, latents: frozenset[str]) -> str:
    if r.op == "=~":
        return "loadings"
    if r.op == "~":
        return "regressions"
    if r.op == "~1":
        return "means" if r.lhs in latents else "intercepts"
    lat = r.lhs in latents and r.rhs in latents
    if r.lhs == r.rhs:
        return "lv.variances" if lat else "residuals"
    return "lv.covariances" if lat else "residual.covariances"


@dataclass(frozen=True)
class MultiGroupLayout:
    """How the per-group parameters of a joint multi-group model are built.

    Attributes
    ----------
    spec
        The per-group specification (the same model in every group).
    labels
        Group labels.
    data
        Per-group sufficient statistics.
    kind
        Per joint parameter: ``coef``, ``sd`` or ``corr``.
    owner
        Per joint parameter: ``(pid, group index or -1 for shared)``.
    index
        ``(G, n_free)`` joint parameter of each group's free parameter (``n_joint``: fixed at 0).
    mode
        Per free parameter of ``spec``: ``free``, ``equal`` or ``pooled``.
    pooled
        Free parameters (pids) that are partially pooled, in order.
    tau_scale
        Per pooled parameter: the scale of its ``tau`` prior (``tau_sd * s``).
    zero
        ``(group, pid)`` pairs fixed at 0 (the first group's latent means under equal intercepts).
    group_equal, group_pool
        The requested types.
    ordinal
        With ordered items: per group the stage-1 summaries (:class:`OrdinalSemData`); empty
        otherwise.
    tau_equal
        Thresholds equal across groups (``group_equal`` names ``thresholds``).
    lv_mean_free
        Latent means free in the groups after the first (equal thresholds, ``means`` not equal).
    scale_free
        Ordered items whose scaling factor ``Delta`` is free in the groups after the first
        (equal thresholds; items with 3 or more categories).

    Examples
    --------
    Made by :func:`multigroup_layout`; with equal regressions both groups' ``y ~ x`` is joint
    parameter 0, and each group has its own residual sd:

    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=50), "y": rng.normal(size=50)}) for _ in range(2)]
    >>> lay = multigroup_layout(parse_lavaan("y ~ x"), frames, ["a", "b"], group_equal=["regressions"])
    >>> lay.labels, lay.kind, lay.mode, lay.index.tolist()
    (('a', 'b'), ('coef', 'sd', 'sd'), ('equal', 'free'), [[0, 1], [0, 2]])
    """

    spec: SemSpec
    labels: tuple[str, ...]
    data: tuple[SemData, ...]
    kind: tuple[str, ...]
    owner: tuple[tuple[int, int], ...]
    index: np.ndarray
    mode: tuple[str, ...]
    pooled: tuple[int, ...]
    tau_scale: np.ndarray
    zero: frozenset[tuple[int, int]]
    group_equal: tuple[str, ...]
    group_pool: tuple[str, ...]
    tau_sd: float
    bounds: tuple[str | None, ...] = ()
    ordinal: tuple[OrdinalSemData, ...] = ()
    tau_equal: bool = False
    lv_mean_free: bool = False
    scale_free: tuple[str, ...] = ()

    @property
    def tau_items(self) -> tuple[str, ...]:
        """Ordered items (empty without ``ordered``), in the order of the model's observed variables."""
        return self.ordinal[0].ordered if self.ordinal else ()

    @property
    def n_joint(self) -> int:
        """Number of joint free parameters (pooled deviations not counted)."""
        return len(self.kind)

    def pid_type(self, pid: int) -> str:
        """lavaan type of a free parameter (that of its first row)."""
        lat = frozenset(self.spec.latents)
        return _row_type(self.spec.free_rows()[pid][0], lat)


def _augment(model: LavaanModel, spec: SemSpec, eq: tuple[str, ...], pool: tuple[str, ...]
             ) -> tuple[LavaanModel, set[str]]:
    """Add the rows a multi-group model with equal / pooled intercepts needs (lavaan's
    ``meanstructure = TRUE``): every observed intercept, and latent means when intercepts are
    equal (and means are not). Returns the model and the latents whose mean row was added."""
    need_means = "intercepts" in eq or "intercepts" in pool or "means" in eq
    if not need_means:
        return model, set()
    have = {r.lhs for r in model.intercepts()}
    extra = [LavaanRow(v, "~1", "") for v in spec.observed if v not in have]
    added_lat: set[str] = set()
    if "intercepts" in eq and "means" not in eq:
        for f in spec.latents:
            if f not in have:
                extra.append(LavaanRow(f, "~1", ""))
                added_lat.add(f)
    return LavaanModel(rows=tuple(model.rows) + tuple(extra), path=model.path), added_lat


def multigroup_layout(model: LavaanModel, frames: Sequence[pd.DataFrame], labels: Sequence[str], *,
                      group_equal: Sequence[str] = (), group_pool: Sequence[str] = (),
                      tau_sd: float = DEFAULT_POOL_TAU_SD, priors: Mapping[str, SemPrior] | None = None,
                      source: str | None = None, ordered: str | Sequence[str] | None = None
                      ) -> MultiGroupLayout:
    """Specify the model, summarise each group's data and lay out the joint parameters.

    Parameters
    ----------
    model
        Parsed lavaan model.
    frames
        One data frame per group (the group column removed).
    labels
        Group labels, in the order of ``frames``.
    group_equal, group_pool
        Parameter types equal / partially pooled across groups (see the module docstring).
    tau_sd
        Scale of the HalfNormal prior of each pooled parameter's ``tau`` (standardised units).
    priors
        Priors by row key or label (identification check).
    source
        Data file name for error messages.
    ordered
        Ordinal/binary items (lavaan's ``ordered=``): each group's stage-1 summaries
        (module docstring, "Ordered items").

    Returns
    -------
    MultiGroupLayout

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=50), "y": rng.normal(size=50)}) for _ in range(2)]
    >>> lay = multigroup_layout(parse_lavaan("y ~ x"), frames, ["a", "b"], group_pool=["regressions"])
    >>> lay.mode, lay.n_joint
    (('pooled', 'free'), 3)
    """
    eq, pool = tuple(group_equal), tuple(group_pool)
    if not tau_sd > 0 or not np.isfinite(tau_sd):
        raise ModelError(Problem(f"tau_sd must be a positive number, got {tau_sd}", field="pool-tau-sd",
                                 value=tau_sd))
    cols = list(map(str, frames[0].columns))
    ordered = parse_ordered(ordered)
    if "thresholds" in eq and not ordered:
        raise ModelError(Problem("--group-equal thresholds needs ordered items (--ordered x1,x2,...); expected "
                                 "ordered items or no 'thresholds'", field="group-equal", value="thresholds"))
    if ordered:
        bad = [t for t in ("intercepts",) if t in eq or t in pool]
        if bad:
            raise ModelError(Problem(
                "--group-equal/--group-pool intercepts is not available with ordered items: their intercepts are "
                "fixed at 0 and the thresholds take their place (expected --group-equal thresholds, which also "
                "frees the latent means of the groups after the first)", field="group-equal", value="intercepts"))
        spec = specify_ordinal(model, cols, ordered)
        added_lat: set[str] = set()
    else:
        spec0 = specify(model, cols)
        model2, added_lat = _augment(model, spec0, eq, pool)
        spec = specify(model2, cols) if model2 is not model else spec0
    for need, what in (("lv.covariances", "lv.variances"), ("residual.covariances", "residuals")):
        if need in eq and what not in eq:
            raise ModelError(Problem(
                f"--group-equal {need} needs {what} equal too: covariances are parameterised as "
                f"correlation x sd x sd, so equal covariances with unequal variances are not available "
                f"(expected --group-equal ...,{what},{need}, or leave {need} out)", field="group-equal",
                value=need))
    check_identification(spec, priors)
    G = len(labels)
    ordinal: tuple[OrdinalSemData, ...] = ()
    if ordered:
        ordinal = _ordinal_group_data(spec, frames, labels, ordered, "thresholds" in eq, source)
        data = tuple(d.base for d in ordinal)
    else:
        data = tuple(prepare_sem_data(spec, df, source) for df in frames)
    lat = frozenset(spec.latents)
    frows = spec.free_rows()
    mode: list[str] = []
    for pid in range(spec.n_free):
        rows = frows[pid]
        t = _row_type(rows[0], lat)
        if any(r.label for r in rows) or t in eq:
            mode.append("equal")
        elif t in pool:
            mode.append("pooled")
        else:
            mode.append("free")
    zero = frozenset((0, pid) for pid in range(spec.n_free)
                     if frows[pid][0].op == "~1" and frows[pid][0].lhs in added_lat)
    kind: list[str] = []
    owner: list[tuple[int, int]] = []
    index = np.zeros((G, spec.n_free), dtype=int)
    for pid in range(spec.n_free):
        if mode[pid] in ("equal", "pooled"):
            index[:, pid] = len(kind)
            kind.append(spec.free_kind[pid])
            owner.append((pid, -1))
        else:
            for g in range(G):
                if (g, pid) in zero:
                    continue
                index[g, pid] = len(kind)
                kind.append(spec.free_kind[pid])
                owner.append((pid, g))
    for g, pid in zero:
        index[g, pid] = len(kind)  # the constant-0 slot after the joint parameters
    tau_equal = "thresholds" in eq
    lv_mean_free = bool(tau_equal and "means" not in eq and spec.latents)
    scale_free: tuple[str, ...] = ()
    n_extra = 0
    if ordered:
        t_moments = sum(len(d.lik_pairs) for d in ordinal)
        if tau_equal:
            scale_free = tuple(c for c in ordinal[0].ordered if len(ordinal[0].categories[c]) > 2)
            n_tau = sum(len(ordinal[0].categories[c]) - 1 for c in ordinal[0].ordered)
            t_moments += G * n_tau
            n_extra = n_tau + (G - 1) * (len(scale_free) + (len(spec.latents) if lv_mean_free else 0))
    else:
        t_moments = G * spec.n_moments()
    n_par = len(kind) + n_extra + G * sum(m == "pooled" for m in mode)
    if len(kind) + n_extra > t_moments:
        raise ModelError(Problem(f"the multi-group model has {len(kind) + n_extra} free parameters but the data "
                                 f"give only {t_moments} sample moments over {G} groups: the t-rule fails",
                                 file=model.path))
    pooled = tuple(pid for pid in range(spec.n_free) if mode[pid] == "pooled")
    scales = ([ordinal_reference_scales(spec, d) for d in ordinal] if ordinal
              else [reference_scales(spec, d) for d in data])

    def sd_of(v: str) -> float:
        return float(np.mean([sc[v] if v in sc else d.sd.get(v, 1.0) for sc, d in zip(scales, data)]))

    tau_scale = []
    for pid in pooled:
        r = frows[pid][0]
        if r.op == "~1":
            s = sd_of(r.lhs)
        elif r.op == "=~":
            s = sd_of(r.rhs) / sd_of(r.lhs)
        else:
            s = sd_of(r.lhs) / sd_of(r.rhs)
        tau_scale.append(tau_sd * s)
    log.info("multi-group model: %d groups, %d joint parameters (+%d thresholds, latent means and scaling "
             "factors, +%d pooled deviations); equal: %s; pooled: %s", G, len(kind), n_extra,
             n_par - len(kind) - n_extra, ", ".join(eq) or "-", ", ".join(pool) or "-")
    return MultiGroupLayout(spec=spec, labels=tuple(labels), data=data, kind=tuple(kind),
                            owner=tuple(owner), index=index, mode=tuple(mode), pooled=pooled,
                            tau_scale=np.asarray(tau_scale, dtype=float), zero=zero, group_equal=eq,
                            group_pool=pool, tau_sd=float(tau_sd), bounds=spec.bounds, ordinal=ordinal,
                            tau_equal=tau_equal and bool(ordinal), lv_mean_free=lv_mean_free and bool(ordinal),
                            scale_free=scale_free)


def _in_group(err: ModelError, label: str) -> ModelError:
    """The same problems, each message prefixed with the group it was found in."""
    return ModelError([dataclasses.replace(p, message=f"group {label!r}: {p.message}",
                                           location=p.location or f"group {label}") for p in err.problems])


def _ordinal_group_data(spec: SemSpec, frames: Sequence[pd.DataFrame], labels: Sequence[str],
                        ordered: Sequence[str], tau_equal: bool, source: str | None
                        ) -> tuple[OrdinalSemData, ...]:
    """Stage 1 per group; with equal thresholds every group is coded on the pooled categories and
    a category absent from a group is a located error."""
    cats = None
    if tau_equal:
        used = list(spec.observed) + list(spec.covariates)
        seen: list[dict[str, set[float]]] = []
        for df in frames:
            num = pd.DataFrame({c: pd.to_numeric(df[c].astype(float) if df[c].dtype == bool else df[c],
                                                 errors="coerce") for c in used})
            num = num[np.isfinite(num.to_numpy(float)).all(axis=1)]
            seen.append({c: set(num[c].unique().tolist()) for c in ordered if c in spec.observed})
        cats = {c: sorted(set().union(*(s[c] for s in seen))) for c in seen[0]}
        probs = []
        for lab, s_g in zip(labels, seen):
            for c, vals in cats.items():
                for v in vals:
                    if v not in s_g[c]:
                        probs.append(Problem(
                            f"ordered item {c!r} has no response in category {v:g} in group {lab!r}, but "
                            "--group-equal thresholds needs every category in every group (the thresholds "
                            "are shared); expected each category observed in each group (merge sparse "
                            "categories, or leave 'thresholds' out of --group-equal)", file=source,
                            location=f"group {lab}", field=c, value=v))
        if probs:
            raise ModelError(probs)
    out = []
    for lab, df in zip(labels, frames):
        try:
            out.append(prepare_ordinal_data(spec, df, ordered, source, categories=cats))
        except ModelError as err:
            raise _in_group(err, lab) from None
    if not out[0].ordered:
        raise ModelError(Problem("none of the --ordered variables is a modelled (endogenous or indicator) "
                                 f"variable of the model (got {list(ordered)}); expected at least one",
                                 field="ordered"))
    return tuple(out)


# --------------------------------------------------------------------------- joint PyMC model
def build_sem_multigroup_model(layout: MultiGroupLayout, priors: Mapping[str, SemPrior] | None = None, *,
                               boxes: bool = True):
    """Build the joint PyMC model of a multi-group lavaan model.

    Priors as :func:`~veerkracht_bayes.sem.lavaan_model.build_sem_model` (vague unless ``priors``);
    a shared sd's Gamma prior uses the groups' average sample sd. Pooled parameters: see the
    module docstring.

    Returns
    -------
    pm.Model
        Free variables ``coef`` (``coef_pos``/``coef_neg``), ``sd``, ``corr`` (dim ``joint_*``),
        ``pool_z`` and ``tau`` when pooling; with ordered items and ``boxes`` (default) also
        ``coef_box``, ``sd_box`` and ``corr_pd_<g>``: the same parameters sampled inside the region
        where the derived residual variances are positive and the latent correlation matrices
        positive definite (:func:`~veerkracht_bayes.sem.lavaan_ordinal.heywood_boxes`,
        :func:`~veerkracht_bayes.sem.lavaan_ordinal.cpc_transform`; the density is unchanged); deterministics ``param_value`` (dims ``group``,
        ``param``), and when pooling ``theta`` (population values), ``delta`` (``group``, ``pooled``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=50), "y": rng.normal(size=50)}) for _ in range(2)]
    >>> lay = multigroup_layout(parse_lavaan("y ~ x"), frames, ["a", "b"], group_equal=["regressions"])
    >>> model = build_sem_multigroup_model(lay)
    >>> sorted(rv.name for rv in model.free_RVs), model.named_vars_to_dims["param_value"]
    (['coef', 'sd'], ('group', 'param'))
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors or {}
    spec = layout.spec
    frows = spec.free_rows()
    G = len(layout.labels)
    ordl = layout.ordinal
    scales = ([ordinal_reference_scales(spec, d) for d in ordl] if ordl
              else [reference_scales(spec, d) for d in layout.data])

    def start(j: int) -> float:
        pid, g = layout.owner[j]
        r = frows[pid][0]
        if ordl and r.op == "=~":
            # as the single-group ordinal model: the factor explains a quarter of the item's variance
            sc = scales[max(g, 0)]
            var0 = next((max(float(x.fixed), 1e-6) for x in spec.rows if x.op == "~~" and x.lhs == x.rhs == r.lhs
                         and x.fixed is not None), 0.5 * sc[r.lhs] ** 2)
            return 0.5 * sc[r.rhs] / np.sqrt(var0)
        return coef_start(r, layout.data[max(g, 0)])

    ids: dict[str, list[int]] = {"free": [], "pos": [], "neg": [], "sd": [], "corr": []}
    for j, (k, (pid, _g)) in enumerate(zip(layout.kind, layout.owner)):
        if k == "coef":
            ids[layout.bounds[pid] or "free"].append(j)
        else:
            ids[k].append(j)
    coords = {"param": [r.key for r in spec.rows], "group": list(layout.labels)}
    if layout.pooled:
        coords["pooled"] = [frows[p][0].key for p in layout.pooled]
    lam_box, sd_box, cpc = _boundary_free(layout) if boxes else ({}, {}, [])
    with pm.Model(coords=coords) as model:
        J = pt.zeros((layout.n_joint + 1,))

        def add_sds(J):
            sd_js = [j for j in ids["sd"] if j not in sd_box]
            for name, js in (("sd", sd_js), ("sd_box", [j for j in ids["sd"] if j in sd_box])):
                if not js:
                    continue
                s = []
                for j in js:
                    pid, g = layout.owner[j]
                    v = frows[pid][0].lhs
                    s.append(float(np.mean([sc[v] for sc in scales])) if g < 0 else scales[g][v])
                # in the box, the marker's derived residual variance stays positive
                rv = latent_sd_prior(name, np.array(s),
                                     np.array([sd_box[j] for j in js]) if name == "sd_box" else None)
                J = pt.set_subtensor(J[np.array(js)], rv)
            return J

        if lam_box or sd_box:  # the boxes' bounds use the sds: create them first
            J = add_sds(J)
        for grp in ("free", "pos", "neg"):
            js = [j for j in ids[grp] if grp != "free" or j not in lam_box]
            if not js:
                continue
            mu = np.array([coef_prior(spec, layout.owner[j][0], priors)[0] for j in js])
            sg = np.array([coef_prior(spec, layout.owner[j][0], priors)[1] for j in js])
            init = np.array([start(j) for j in js])
            rv = coef_rv("coef" if grp == "free" else f"coef_{grp}", grp, mu, sg, init)
            J = pt.set_subtensor(J[np.array(js)], rv)
        if not (lam_box or sd_box):  # the original order (coefficients, then sds)
            J = add_sds(J)
        js = [j for j in ids["free"] if j in lam_box]
        if js:
            # loadings inside the box that keeps the derived residual variances positive
            # (heywood_boxes): a truncated Normal with its normalising constant added back, so the
            # density is the Normal prior times the indicator, as the -inf potential gave
            mu = np.array([coef_prior(spec, layout.owner[j][0], priors)[0] for j in js])
            sg = np.array([coef_prior(spec, layout.owner[j][0], priors)[1] for j in js])
            b = pt.stack([pt.min(pt.stack([t / J[sd_j] if sd_j >= 0 else t / fixed_sd for sd_j, fixed_sd, t in lam_box[j]]))
                          for j in js])
            init = np.array([start(j) for j in js])
            rv = pm.Truncated("coef_box", pm.Normal.dist(mu=mu, sigma=sg, shape=len(js)), lower=-b, upper=b,
                              initval=init)
            pm.Potential("coef_box_unnormalise", pt.sum(pt.log(
                0.5 * pt.erfc(-(b - mu) / (sg * np.sqrt(2.0))) - 0.5 * pt.erfc(-(-b - mu) / (sg * np.sqrt(2.0))))))
            J = pt.set_subtensor(J[np.array(js)], rv)
        corr_rest = [j for j in ids["corr"] if not any(j in blk for blk in cpc)]
        for q, blk in enumerate(cpc):  # each group's latent correlations on the PD set directly
            k = round((1 + np.sqrt(1 + 8 * len(blk))) / 2)
            rv = pm.Uniform(f"corr_pd_{q}", lower=-1.0, upper=1.0, shape=len(blk), initval=np.zeros(len(blk)),
                            default_transform=cpc_transform(k))
            J = pt.set_subtensor(J[np.array(blk)], rv)
        if corr_rest:
            rv = pm.Uniform("corr", lower=-1.0, upper=1.0, shape=len(corr_rest),
                            initval=np.zeros(len(corr_rest)))
            J = pt.set_subtensor(J[np.array(corr_rest)], rv)
        delta = None
        if layout.pooled:
            P = len(layout.pooled)
            tau = pm.HalfNormal("tau", sigma=layout.tau_scale, dims="pooled",
                                initval=0.5 * layout.tau_scale)
            z = pm.Normal("pool_z", 0.0, 1.0, dims=("group", "pooled"), initval=np.zeros((G, P)))
            delta = pm.Deterministic("delta", z * tau[None, :], dims=("group", "pooled"))
            pm.Deterministic("theta", J[layout.index[0, list(layout.pooled)]], dims="pooled")
        vals = []
        total = 0.0
        # the disturbance covariance's positive definiteness counts wherever Psi has covariances
        check_psi = "corr" in spec.free_kind or any(r.kind == "cov" for r in spec.rows)
        pool_idx = np.array(layout.pooled, dtype=int)
        tau, lv_mean, resid_sd = _ordinal_extras(layout)
        obs_pos = {v: i for i, v in enumerate(spec.observed)}
        sc_idx = np.array([obs_pos[c] for c in layout.scale_free], dtype=int)
        lr_sd = []
        for g in range(G):
            free_g = J[layout.index[g]]
            if delta is not None:
                free_g = pt.inc_subtensor(free_g[pool_idx], delta[g])
            if ordl:
                mean_g, rv_g, items_g = None, None, ()
                if g > 0 and resid_sd is not None:
                    rv_g, items_g = resid_sd[g - 1] ** 2, layout.scale_free
                if g > 0 and lv_mean is not None:
                    mean_g = lv_mean[g - 1]
                v, ll, tot = ordinal_loglik_pt(spec, ordl[g], free_g, latent_mean=mean_g, tau=tau, resid_var=rv_g,
                                               resid_items=items_g)
                if g > 0 and resid_sd is not None:
                    lr_sd.append(pt.sqrt(tot[sc_idx]))
                vals.append(v)
                total = total + ll
                continue
            v = row_values_pt(spec, free_g)
            vals.append(v)
            ll, psi_ok = sem_loglik_pt(spec, layout.data[g], v)
            total = total + (pt.switch(psi_ok, ll, -np.inf) if check_psi else ll)
        pm.Deterministic("param_value", pt.stack(vals), dims=("group", "param"))
        if lr_sd:
            pm.Deterministic("lr_sd", pt.stack(lr_sd))  # sigma* = 1 / Delta of the free scaling factors
        pm.Potential("loglik", total)
    return model


def _boundary_free(layout: MultiGroupLayout):
    """Where the hard edges of a multi-group ordinal model can be moved out of the sampler's space:
    ``(lam_box, sd_box, cpc)``. ``lam_box[j]``: a joint loading whose derived residual variances
    are positive exactly inside ``|lambda| < min sqrt(T) / sd_f`` (:func:`heywood_boxes` in the
    only group where those residual variances are derived; items with a free scaling factor in
    later groups have sampled residual variances) as ``(joint sd index or -1, fixed sd, sqrt(T))``;
    ``sd_box[j]``: the upper bound of a joint latent sd; ``cpc``: per group the joint indices of a
    latent correlation block (:func:`latent_corr_block`). Pooled models get none."""
    if not layout.ordinal or layout.pooled:
        return {}, {}, []
    spec = layout.spec
    G = len(layout.labels)
    frows = spec.free_rows()
    free_resid = set(layout.scale_free) if layout.tau_equal else set()

    def derived_in(item: str) -> list[int]:
        return [g for g in range(G) if g == 0 or item not in free_resid]

    sd_row = {r.lhs: r for r in spec.rows if r.op == "~~" and r.lhs == r.rhs and r.lhs in spec.latents}
    lam_box, sd_box = {}, {}
    for j, (pid, g) in enumerate(layout.owner):
        kind = layout.kind[j]
        if kind not in ("coef", "sd") or (kind == "coef" and layout.bounds[pid]):
            continue
        groups = [g] if g >= 0 else list(range(G))
        items = [r.rhs for r in frows[pid] if r.op == "=~"] if kind == "coef" else \
            [r.rhs for r in spec.rows if r.op == "=~" and r.lhs == frows[pid][0].lhs and r.pid < 0 and r.fixed]
        hit = sorted({h for it in items for h in derived_in(it)} & set(groups))
        if len(hit) != 1:
            continue
        h = hit[0]
        lam, sd_up = heywood_boxes(spec, layout.ordinal[h].target_var)
        if kind == "sd" and pid in sd_up:
            sd_box[j] = sd_up[pid]
        elif kind == "coef" and pid in lam:
            entries = []
            for f, t in lam[pid]:
                r = sd_row[f]
                if r.pid >= 0:
                    entries.append((int(layout.index[h, r.pid]), 0.0, t))
                elif r.fixed is not None and float(r.fixed) > 0:
                    entries.append((-1, float(np.sqrt(float(r.fixed))), t))
            if len(entries) == len(lam[pid]) and all(e[0] < 0 or layout.kind[e[0]] == "sd" for e in entries):
                lam_box[j] = entries
    blk = latent_corr_block(spec)
    cpc = []
    if blk:
        for g in range(G):
            js = [int(layout.index[g, p]) for p in blk]
            if all(layout.owner[j] == (p, g) for j, p in zip(js, blk)):
                cpc.append(js)
    return lam_box, sd_box, cpc


def _ordinal_extras(layout: MultiGroupLayout):
    """Free variables of a multi-group ordinal model beyond the table's rows (inside a PyMC model):
    the shared thresholds (one ordered vector per item, Normal(0, 10) prior), the latent means of
    the groups after the first (Normal(0, 10)) and, for the items with a free scaling factor in
    the groups after the first, their residual sds (the vague sd prior at scale 1; the scaling
    factor ``Delta = 1 / sigma*`` follows, ``sigma*^2`` = explained + residual variance, which keeps
    the residual variance positive without a boundary in the sampler's space).
    ``(None, None, None)`` without equal thresholds."""
    import pymc as pm

    if not (layout.ordinal and layout.tau_equal):
        return None, None, None
    G = len(layout.labels)
    tau = {}
    for k, c in enumerate(layout.tau_items):
        init = np.mean([d.stats.thresholds[d.stats.names.index(c)] for d in layout.ordinal], axis=0)
        kw = {"transform": pm.distributions.transforms.ordered} if len(init) > 1 else {}
        tau[c] = pm.Normal(f"threshold_{k}", 0.0, VAGUE_COEF_SD, shape=len(init), initval=np.sort(init), **kw)
    lv_mean = None
    if layout.lv_mean_free:
        lv_mean = pm.Normal("lv_mean", 0.0, VAGUE_LATENT_INTERCEPT_SD, shape=(G - 1, len(layout.spec.latents)),
                            initval=np.zeros((G - 1, len(layout.spec.latents))))
    resid_sd = None
    if layout.scale_free:
        resid_sd = pm.Gamma("resid_sd", alpha=1.0, beta=VAGUE_SD_RATE, shape=(G - 1, len(layout.scale_free)),
                            initval=np.full((G - 1, len(layout.scale_free)), np.sqrt(0.5)))
    return tau, lv_mean, resid_sd


def multigroup_map(layout: MultiGroupLayout, priors: Mapping[str, SemPrior] | None = None) -> np.ndarray:
    """Posterior mode (the ML fit under the vague priors): ``(G, R)`` value of every table row.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=400); y = 0.5 * x + rng.normal(size=400)
    >>> frames = [pd.DataFrame({"x": x[:200], "y": y[:200]}), pd.DataFrame({"x": x[200:], "y": y[200:]})]
    >>> lay = multigroup_layout(parse_lavaan("y ~ x"), frames, ["a", "b"], group_equal=["regressions"])
    >>> v = multigroup_map(lay)
    >>> bool(v[0, 0] == v[1, 0])
    True
    """
    pm_model = build_sem_multigroup_model(layout, priors)
    _, values = ml_start(pm_model, 1, 0, with_values=True)
    return values


# --------------------------------------------------------------------------- joint fit
@dataclass
class JointMultiGroupSemFit:
    """A joint multi-group fit (``group_equal`` / ``group_pool`` / labels shared across groups).

    Returned by :func:`fit_sem_multigroup` when some parameters are equal or pooled across
    groups; ``idata`` holds ``param_value`` (dims ``chain, draw, group, param``).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=50), "y": rng.normal(size=50)}) for _ in range(2)]
    >>> lay = multigroup_layout(parse_lavaan("y ~ x"), frames, ["a", "b"], group_equal=["regressions"])
    >>> # hand-made draws (chain, draw, group, row) stand in for the joint posterior
    >>> dims = ("chain", "draw", "group", "param")
    >>> post = xr.Dataset({"param_value": (dims, rng.normal(0.5, 0.1, (2, 50, 2, 2)))})
    >>> fit = JointMultiGroupSemFit("school", lay, {"posterior": post})
    >>> fit.labels, fit.n, fit.row_values().shape
    (('a', 'b'), {'a': 50, 'b': 50}, (2, 50, 2, 2))
    >>> fit.table()[["group", "op", "label", "free", "across_groups"]].values.tolist()
    [['a', '~', '.p1.', 1, 'equal'], ['a', '~~', '', 2, 'free'], ['b', '~', '.p1.', 1, 'equal'], ['b', '~~', '', 3, 'free']]
    """

    group: str
    layout: MultiGroupLayout
    idata: object
    settings: dict = field(default_factory=dict)
    tau_draws: tuple[dict[str, np.ndarray], ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """Group labels, in order of first appearance in the data."""
        return self.layout.labels

    @property
    def n(self) -> dict[str, int]:
        """Complete cases per group."""
        return {lab: d.n for lab, d in zip(self.layout.labels, self.layout.data)}

    @property
    def n_dropped(self) -> int:
        """Rows excluded (a missing value in a modelled column), all groups."""
        return sum(d.n_dropped for d in self.layout.data)

    def _post(self):
        post = self.idata["posterior"]
        return post.to_dataset() if hasattr(post, "to_dataset") else post

    def row_values(self) -> np.ndarray:
        """``(chains, draws, G, R)`` posterior draws of every group's parameter-table rows."""
        return np.asarray(self._post()["param_value"].transpose("chain", "draw", "group", "param").values)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """lavaan's parameter table with a leading ``group`` column.

        One block of rows per group (lavaan's rows; ``free`` is the joint parameter's 1-based
        index, shared by equal rows, which also share a lavaan-style label ``.pN.`` where ``N`` is
        the row's position in the first group's block, unless the model labels them). The column
        ``across_groups`` says ``fixed``, ``free`` (this group's own), ``equal``, or ``pooled``
        (``theta_g``). Pooled parameters add rows of their own: per group a ``delta`` row
        (``delta_g``), then in group ``(population)`` a ``population`` row (``theta``) and a
        ``tau`` row (the between-group sd). Same interval and diagnostics columns as the
        single-group table.
        """
        lay = self.layout
        spec = lay.spec
        vals = self.row_values()
        recs = []
        nan8 = (np.nan,) * 3
        pool_pos = {pid: k for k, pid in enumerate(lay.pooled)}
        first_row = {}
        for i, r in enumerate(spec.rows):
            if r.pid >= 0:
                first_row.setdefault(r.pid, i)
        post = self._post()
        user = [i for i, r in enumerate(spec.rows) if r.user]
        cut = (max(user) + 1) if user else 0
        nxt = lay.n_joint  # free numbers of the ordinal rows follow the joint parameters
        tau_free0 = {}
        if lay.tau_equal:
            for c in lay.tau_items:
                k = len(lay.ordinal[0].categories[c]) - 1
                tau_free0[c] = nxt
                nxt += k
        for g, lab in enumerate(lay.labels):
            grp = []
            for i, r in enumerate(spec.rows):
                if r.pid < 0 and r.fixed is None:  # derived residual variance (ordered items)
                    grp.append((lab, r.lhs, r.op, r.rhs, r.label, 0, *_summaries(vals[:, :, g, i], prob),
                                "derived"))
                    continue
                fixed = r.pid < 0 or (g, r.pid) in lay.zero
                if fixed:
                    v = float(r.fixed) if r.pid < 0 else 0.0
                    grp.append((lab, r.lhs, r.op, r.rhs, r.label, 0, v, np.nan, v, v, v, *nan8, "fixed"))
                    continue
                m = lay.mode[r.pid]
                label = r.label or (f".p{first_row[r.pid] + 1}." if m == "equal" else "")
                grp.append((lab, r.lhs, r.op, r.rhs, label, int(lay.index[g, r.pid]) + 1,
                            *_summaries(vals[:, :, g, i], prob), m))
            extra = []
            if lay.ordinal:
                th = []
                for k, c in enumerate(lay.tau_items):
                    if lay.tau_equal:
                        dr = np.asarray(post[f"threshold_{k}"].transpose("chain", "draw", ...).values)
                    else:
                        dr = self.tau_draws[g][c]
                    for j in range(dr.shape[-1]):
                        if lay.tau_equal:
                            num, lbl, how = tau_free0[c] + j + 1, f".t{k + 1}.{j + 1}.", "equal"
                        else:
                            nxt += 1
                            num, lbl, how = nxt, "", "free"
                        th.append((lab, c, "|", f"t{j + 1}", lbl, num, *_summaries(dr[:, :, j], prob), how))
                grp = grp[:cut] + th + grp[cut:]
                if lay.tau_equal:
                    for k, f in enumerate(spec.latents):
                        if g > 0 and lay.lv_mean_free:
                            nxt += 1
                            dr = np.asarray(post["lv_mean"].transpose("chain", "draw", ...).values)[:, :, g - 1, k]
                            extra.append((lab, f, "~1", "", "", nxt, *_summaries(dr, prob), "free"))
                        else:
                            extra.append((lab, f, "~1", "", "", 0, 0.0, np.nan, 0.0, 0.0, 0.0, *nan8, "fixed"))
                    for c in lay.tau_items:
                        if g > 0 and c in lay.scale_free:
                            nxt += 1
                            sd = np.asarray(post["lr_sd"].transpose("chain", "draw", ...).values)
                            dr = 1.0 / sd[:, :, g - 1, lay.scale_free.index(c)]
                            extra.append((lab, c, "~*~", c, "", nxt, *_summaries(dr, prob), "free"))
                        else:
                            extra.append((lab, c, "~*~", c, "", 0, 1.0, np.nan, 1.0, 1.0, 1.0, *nan8, "fixed"))
            recs += grp + extra
            if lay.pooled:
                d = np.asarray(post["delta"].transpose("chain", "draw", "group", "pooled").values)
                for pid in lay.pooled:
                    r = spec.rows[first_row[pid]]
                    recs.append((lab, r.lhs, r.op, r.rhs, "", 0, *_summaries(d[:, :, g, pool_pos[pid]], prob),
                                 "delta"))
        if lay.pooled:
            th = np.asarray(post["theta"].transpose("chain", "draw", "pooled").values)
            tau = np.asarray(post["tau"].transpose("chain", "draw", "pooled").values)
            for pid in lay.pooled:
                r = spec.rows[first_row[pid]]
                k = pool_pos[pid]
                recs.append((POPULATION, r.lhs, r.op, r.rhs, "", int(lay.index[0, pid]) + 1,
                             *_summaries(th[:, :, k], prob), "population"))
                recs.append((POPULATION, r.lhs, r.op, r.rhs, "", 0, *_summaries(tau[:, :, k], prob), "tau"))
        from veerkracht_bayes.sem.lavaan_model import TABLE_COLUMNS

        return pd.DataFrame.from_records(recs, columns=["group", *TABLE_COLUMNS, "across_groups"])


def _label(v: object) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def fit_sem_multigroup(model: LavaanModel, df: pd.DataFrame, group: str, *,
                       group_equal: str | Sequence[str] | None = None,
                       group_pool: str | Sequence[str] | None = None,
                       tau_sd: float = DEFAULT_POOL_TAU_SD,
                       seed: int = 2023, source: str | None = None,
                       ordered: str | Sequence[str] | None = None, **kwargs: object
                       ) -> MultiGroupSemFit | JointMultiGroupSemFit:
    """Fit a multi-group lavaan model (module docstring).

    Parameters
    ----------
    model
        Parsed lavaan model.
    df
        Data with the group column.
    group
        Name of the group column; rows with a missing group are excluded (logged).
    group_equal
        Parameter types constrained equal across groups (:data:`GROUP_TYPES`, lavaan's
        ``group.equal``), a comma-separated string or a sequence.
    group_pool
        Parameter types partially pooled across groups (:data:`POOL_TYPES`).
    tau_sd
        Scale of the HalfNormal prior of each pooled parameter's between-group sd, in
        standardised units (default :data:`DEFAULT_POOL_TAU_SD`).
    seed
        Seed; configural: group ``k`` (0-based) uses ``seed + k``.
    source
        Data file name for error messages.
    ordered
        Ordinal/binary items (lavaan's ``ordered=``; module docstring, "Ordered items"):
        configural, one :func:`~veerkracht_bayes.sem.lavaan_ordinal.fit_sem_ordinal` per group;
        with ``group_equal`` (``thresholds`` among the types) one joint model.
    kwargs
        ``priors``, ``draws``, ``tune``, ``chains``, ``sampler``, ``target_accept``,
        ``progressbar`` as :func:`~veerkracht_bayes.sem.lavaan_model.fit_sem`.

    Returns
    -------
    MultiGroupSemFit
        Configural without shared labels: one fit per group.
    JointMultiGroupSemFit
        With ``group_equal``, ``group_pool`` or a label in the model (one parameter shared by
        all groups, as lavaan): one joint fit.

    Raises
    ------
    ModelError
        Unknown group column, fewer than two groups, an unknown parameter type, a type both equal
        and pooled, equal covariances without equal variances.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": ["a", "b"] * 50, "x": rng.normal(size=100)})
    >>> df["y"] = 0.5 * df.x + rng.normal(size=100)
    >>> fit = fit_sem_multigroup(parse_lavaan("y ~ x"), df, "g", group_equal="regressions",
    ...                          draws=50, tune=50, chains=1)  # doctest: +SKIP
    >>> fit.table()[["group", "lhs", "op", "rhs", "label", "across_groups"]]  # doctest: +SKIP
    """
    cols = list(map(str, df.columns))
    if group not in cols:
        raise ModelError(Problem(f"group column {group!r} is not in the data{did_you_mean(group, cols)}",
                                 file=source, field="group", value=group))
    eq = parse_group_types(group_equal, "--group-equal")
    pool = parse_group_types(group_pool, "--group-pool", POOL_TYPES)
    both = sorted(set(eq) & set(pool))
    if both:
        raise ModelError(Problem(f"{', '.join(both)} named in both --group-equal and --group-pool; a parameter "
                                 "type is either equal across groups or partially pooled (expected it in "
                                 "one of them)", field="group-pool", value=both))
    g = df[group]
    missing = g.isna()
    if missing.any():
        log.warning("%d row(s) have no value in group column %r and are excluded", int(missing.sum()), group)
    labels = list(dict.fromkeys(_label(v) for v in g[~missing]))
    if len(labels) < 2:
        raise ModelError(Problem(f"group column {group!r} has {len(labels)} group(s) {labels}; expected at least 2",
                                 file=source, field="group"))
    lab_col = g.map(lambda v: None if pd.isna(v) else _label(v))
    rest = df.drop(columns=[group])
    frames = []
    for lab in labels:
        sub = rest[(lab_col == lab).to_numpy()].reset_index(drop=True)
        log.info("group %r: %d row(s)", lab, len(sub))
        frames.append(sub)
    has_labels = any(r.label for r in model.rows if r.op in ("=~", "~", "~~", "~1"))
    ordered = parse_ordered(ordered)
    if "thresholds" in eq and not ordered:
        raise ModelError(Problem("--group-equal thresholds needs ordered items (--ordered x1,x2,...); expected "
                                 "ordered items or no 'thresholds'", field="group-equal", value="thresholds"))
    if not eq and not pool and not has_labels:
        fits = {}
        for k, (lab, sub) in enumerate(zip(labels, frames)):
            if ordered:
                try:
                    fits[lab] = fit_sem_ordinal(model, sub, ordered, seed=seed + k, source=source,
                                                **kwargs)  # type: ignore[arg-type]
                except ModelError as err:
                    raise _in_group(err, lab) from None
            else:
                fits[lab] = fit_sem(model, sub, seed=seed + k, source=source, **kwargs)  # type: ignore[arg-type]
        return MultiGroupSemFit(group, fits)
    return _fit_joint(model, frames, labels, group, eq, pool, tau_sd, seed, source, ordered=ordered, **kwargs)


def _fit_joint(model: LavaanModel, frames: list[pd.DataFrame], labels: list[str], group: str,
               eq: tuple[str, ...], pool: tuple[str, ...], tau_sd: float, seed: int, source: str | None, *,
               priors: Mapping[str, SemPrior] | None = None, draws: int = 1000, tune: int = 1000,
               chains: int = 2, sampler: str = "numpyro", target_accept: float = 0.9,
               progressbar: bool = False, ordered: Sequence[str] = ()) -> JointMultiGroupSemFit:
    from veerkracht_bayes.runtime import ensure_cpu_devices, release_compiled_programs_if_needed

    ensure_cpu_devices()
    release_compiled_programs_if_needed()  # PyMC's JAX sampler compiles new programs for each fit

    samplers = ["numpyro", "pymc", "nutpie", "blackjax"]
    if sampler not in samplers:
        raise ModelError(Problem(f"unknown sampler {sampler!r}{did_you_mean(str(sampler), samplers)} "
                                 f"(expected one of {', '.join(samplers)})", field="sampler", value=sampler))
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if int(v) < lo:
            raise ModelError(Problem(f"{name} must be >= {lo}, got {v}", field=name, value=v))
    priors = dict(priors or {})
    layout = multigroup_layout(model, frames, labels, group_equal=eq, group_pool=pool, tau_sd=tau_sd,
                               priors=priors, source=source, ordered=ordered)
    pm_model = build_sem_multigroup_model(layout, priors)
    log.info("sampling %d chains x (%d tune + %d draws) with %s (joint multi-group model)", chains, tune,
             draws, sampler)
    idata = sample_sem_model(pm_model, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                             target_accept=target_accept, progressbar=progressbar)
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed, "sampler": sampler,
                "target_accept": target_accept, "group": group, "group_equal": list(eq),
                "group_pool": list(pool), "tau_sd": tau_sd, "n": {l: d.n for l, d in zip(labels, layout.data)}}
    tau_draws: tuple[dict[str, np.ndarray], ...] = ()
    if layout.ordinal:
        settings["ordered"] = list(layout.tau_items)
        settings["estimator"] = "two-stage polychoric (WLSMV analogue), multi-group"
        if not layout.tau_equal:
            # free thresholds are saturated per group: drawn given each structural draw (their
            # cross-covariance with the correlations, :func:`draw_thresholds`)
            pv = np.asarray(idata.posterior["param_value"].transpose("chain", "draw", "group", "param").values)
            tau_draws = tuple(
                draw_thresholds(d, pv.shape[0], pv.shape[1], seed + 7919 + g,
                                rho=implied_correlations_np(layout.spec, d, pv[:, :, g].reshape(-1, pv.shape[-1])))
                for g, d in enumerate(layout.ordinal))
    try:
        idata.attrs["sem_settings"] = json.dumps(settings)
        idata.attrs["lavaan_model"] = model.to_lavaan()
    except (AttributeError, TypeError):  # pragma: no cover - attrs are a convenience
        log.debug("could not record the settings in the posterior's attributes")
    div = count_divergences(idata)
    if div:
        log.warning("%d divergent transition(s) after tuning; check the parameter table's r_hat and ess "
                    "columns", div)
    return JointMultiGroupSemFit(group=group, layout=layout, idata=idata, settings=settings, tau_draws=tau_draws)
