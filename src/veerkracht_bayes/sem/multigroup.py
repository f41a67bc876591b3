"""Multi-group structural model with partially pooled links (continuous-item path).

For groups ``g = 1..G`` (a codebook subgroup or any categorical column) every pooled link gets a
group deviation::

    beta_g = beta + delta_g,    delta_g[k] ~ Normal(0, tau_k),    tau_k ~ HalfNormal(tau_sd)

(non-centred: ``delta_g = tau * z_g``, ``z_g ~ Normal(0, 1)``). ``beta`` is the population link
with the usual literature / sign-constrained prior; ``tau_sd`` (default 0.1 on the standardised
scale) says that group links usually differ from the population link by less than about 0.1-0.2
standardised units. When a group's data are thin, its deviation is pulled to zero, i.e. to the
population link (partial pooling); see docs/model.md, "Multi-group model".

Structural part of group ``g`` on the pooled standardised scale::

    eta = B_g eta + Gamma_g x + alpha_g + zeta,   zeta ~ N(0, diag(psi_g))
    psi_g = psi * exp(omega_g)

``psi`` standardises the *population* system (links ``beta``, pooled covariate covariance) so that
latents have variance 1 in the pooled population, exactly as in
:mod:`~veerkracht_bayes.sem.model_builder`. Groups differ in their latent intercepts ``alpha_g``
and in a log-scale factor ``omega_g`` on their disturbance variances; both are centred (weighted by
the groups' weight shares) to zero, so that a shift of all group means or scales is not confused
with the items' intercepts or loadings. Links are therefore comparable across groups: a
standardised unit is the pooled population's standard deviation in every group.

Measurement part: invariant by default (equal loadings ``lambda``, intercepts ``nu`` and residual
variances ``theta`` across groups, on items standardised in the pooled population).
``free_loadings`` / ``free_intercepts`` name items whose loading / intercept is estimated per group
(partial invariance). A single-item construct's loading is fixed in every group at
``sqrt(reliability)`` of its item, with the item's own value where ``item_reliability`` gives one
(the codebook's, on the observed scale: :func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`),
exactly as in the single-group model
(:func:`~veerkracht_bayes.sem.model_builder.fixed_item_reliability`).

Likelihood: each group's per-missingness-pattern weighted sufficient statistics
(:func:`~veerkracht_bayes.survey.statistics.pattern_stats`), with the same Woodbury-form Gaussian
log-likelihood as the single-group model, so the cost is flat in ``N`` (``G`` times that of one
group). Each group's system gets its own stability barrier. Links that touch unmeasured constructs
(the cut) are not in the likelihood; they are shared by all groups (no deviation) and completed
from their priors by the fitting code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from veerkracht_bayes.errors import ModelError, Problem
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.model_builder import (
    ModelLayout,
    StabilitySettings,
    build_model,
    data_container,
    edge_rvs,
    fixed_item_reliability,
    measurement_parameters,
    pattern_loglik_tensor,
    standardisation_wall,
)
from veerkracht_bayes.survey.statistics import (
    ModelData,
    PatternStats,
    pattern_stats,
    prepare_model_data,
    survey_columns,
)

__all__ = [
    "DEFAULT_TAU_SD",
    "GroupData",
    "MultiGroupLayout",
    "build_multigroup_model",
    "prepare_group_data",
    "split_model_data",
    "within_group_constant",
]

#: Default scale of the HalfNormal prior on each link's between-group SD ``tau`` (standardised units).
DEFAULT_TAU_SD = 0.1


@dataclass(frozen=True)
class GroupData:
    """Pooled model data plus per-group sufficient statistics (on the pooled standardisation).

    Attributes
    ----------
    pooled
        The :class:`~veerkracht_bayes.survey.statistics.ModelData` of everyone (items standardised
        and covariates centred in the pooled population).
    labels
        Group labels, as they appear in the data.
    group_of_row
        ``(n,)`` index into ``labels`` of each row of ``pooled.y``.
    stats
        One :class:`~veerkracht_bayes.survey.statistics.PatternStats` per group.
    share
        ``(G,)`` weighted share of each group (sums to 1).
    counts
        Respondents per group.
    x_mean
        ``(G, q)`` weighted covariate means per group (pooled-centred scale).
    dropped_covariates
        Covariates left out of the model because they are constant within every group (e.g. the
        grouping's own indicator): their effect is not separable from the groups' latent mean
        differences, so their out-links are carried by the priors only. Names, in order.

    Examples
    --------
    Built by :func:`prepare_group_data` (or :func:`split_model_data`):

    >>> import numpy as np
    >>> gd = prepare_group_data(np.random.default_rng(0).normal(size=(80, 2)), ["a1", "b1"], ["a", "b"],
    ...                         ["u", "v"] * 40)
    >>> isinstance(gd, GroupData), gd.labels, gd.counts, gd.share.tolist()
    (True, ('u', 'v'), (40, 40), [0.5, 0.5])
    """

    pooled: ModelData
    labels: tuple[str, ...]
    group_of_row: np.ndarray
    stats: tuple[PatternStats, ...]
    share: np.ndarray
    counts: tuple[int, ...]
    x_mean: np.ndarray
    dropped_covariates: tuple[str, ...] = ()

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``."""
        return len(self.labels)


def split_model_data(data: ModelData, groups: Sequence[object], *, min_group_size: int = 10) -> GroupData:
    """Per-group sufficient statistics of prepared model data.

    Parameters
    ----------
    data
        Prepared pooled data (:func:`~veerkracht_bayes.survey.statistics.prepare_model_data`).
    groups
        One label per row of ``data.y`` (after its exclusions; use :func:`prepare_group_data` to
        start from raw rows).
    min_group_size
        Groups with fewer respondents are refused (a located error).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> rng = np.random.default_rng(1)
    >>> md = prepare_model_data(rng.normal(size=(40, 2)), ["y1", "y2"], ["a", "a"])
    >>> gd = split_model_data(md, ["u"] * 20 + ["v"] * 20)
    >>> gd.labels, gd.counts
    (('u', 'v'), (20, 20))
    """
    lab = np.asarray([str(g) for g in groups], dtype=object)
    if lab.shape[0] != data.n:
        raise ModelError(Problem(f"{lab.shape[0]} group labels for {data.n} rows of model data (expected one label per row)",
                                 field="groups"))
    if data.n and data.y.shape[0] == 0:
        raise ModelError("statistics-only (out-of-core) data cannot be split into groups")
    labels = tuple(dict.fromkeys(sorted(set(lab.tolist()))))
    if len(labels) < 2:
        raise ModelError(Problem(f"a multi-group model needs at least 2 groups; found {list(labels)}",
                                 field="groups"))
    idx = np.array([labels.index(v) for v in lab], dtype=int) if len(lab) else np.zeros(0, int)
    counts = tuple(int((idx == g).sum()) for g in range(len(labels)))
    small = [f"{labels[g]!r} ({c})" for g, c in enumerate(counts) if c < min_group_size]
    if small:
        raise ModelError(Problem(f"groups with fewer than {min_group_size} respondents: {', '.join(small)}",
                                 field="groups"))
    u = np.concatenate([np.ones((data.n, 1)), data.x], axis=1)
    stats, share, xm = [], [], []
    w = data.weights
    for g in range(len(labels)):
        sel = idx == g
        stats.append(pattern_stats(data.y[sel], u[sel], w[sel]))
        share.append(w[sel].sum())
        xm.append((w[sel] @ data.x[sel]) / w[sel].sum() if data.x.shape[1] else np.zeros(0))
    share = np.asarray(share) / np.sum(share)
    return GroupData(data, labels, idx, tuple(stats), share, counts, np.asarray(xm).reshape(len(labels), -1))


def prepare_group_data(items: np.ndarray, item_names: Sequence[str], item_construct: Sequence[str],
                       groups: Sequence[object], *, weights: np.ndarray | None = None,
                       covariates: np.ndarray | None = None, covariate_names: Sequence[str] = (),
                       min_group_size: int = 10, **kwargs: object) -> GroupData:
    """:func:`~veerkracht_bayes.survey.statistics.prepare_model_data` on the pooled rows, then
    :func:`split_model_data`.

    Rows without a group label (None, NaN or empty) are excluded and counted; so are the rows
    ``prepare_model_data`` excludes (missing covariate, no item observed).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> y = rng.normal(size=(60, 2)); y[0] = np.nan
    >>> gd = prepare_group_data(y, ["y1", "y2"], ["a", "a"], ["u", "v", None] * 20)
    >>> gd.counts, gd.pooled.n_excluded
    ((19, 20), 21)
    """
    y = np.asarray(items, dtype=float)
    n = y.shape[0]
    lab = list(groups)
    if len(lab) != n:
        raise ModelError(Problem(f"{len(lab)} group labels for {n} rows (expected one label per row)",
                                 field="groups"))
    ok_group = np.array([not (v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "")
                         for v in lab], dtype=bool)
    x = None if covariates is None else np.asarray(covariates, dtype=float).reshape(n, -1)
    keep = ok_group & ~np.isnan(y).all(axis=1)
    if x is not None and x.shape[1]:
        keep &= ~np.isnan(x).any(axis=1)
    w = None if weights is None else np.asarray(weights, dtype=float)[keep]
    md = prepare_model_data(y[keep], item_names, item_construct, weights=w,
                            covariates=None if x is None else x[keep], covariate_names=covariate_names,
                            **kwargs)
    reasons = dict(md.exclusion_reasons)
    if (~ok_group).any():
        reasons["no group label"] = int((~ok_group).sum())
    other = int((~keep & ok_group).sum())
    if other:
        reasons["missing covariate or no item observed"] = other
    from dataclasses import replace

    md = replace(md, n_excluded=int((~keep).sum()), exclusion_reasons=reasons)
    return split_model_data(md, [lab[i] for i in np.flatnonzero(keep)], min_group_size=min_group_size)


def group_labels_from_survey(survey: object, by: str) -> list[object]:
    """One group label per survey row, from a codebook subgroup or a categorical column.

    A codebook subgroup ``g`` gives two groups, ``g`` and ``"not g"``. Any other name must be a
    column of the survey data: its values are the labels, and missing values give no label (the row
    is excluded by :func:`prepare_group_data`).

    Raises
    ------
    ModelError
        ``by`` is neither a subgroup nor a column (with a did-you-mean suggestion).
    """
    from veerkracht_bayes.errors import SurveyError, did_you_mean

    try:
        m = survey.subgroup_mask(by)
    except SurveyError:
        m = None
    if m is not None:
        return [by if v else f"not {by}" for v in m]
    df = survey.data
    if by not in df.columns:
        known = [str(c) for c in df.columns]
        raise ModelError(Problem(f"group {by!r} is neither a codebook subgroup nor a column of the survey"
                                 f"{did_you_mean(by, known)}", field="groups", value=by))
    col = df[by]
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else
            (str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v))
            for v in col.tolist()]


def group_data_from_survey(survey: object, graph: CausalGraph, by: str, *,
                           covariates: Sequence[str] | None = None, missing: str = "auto",
                           min_group_size: int = 10) -> GroupData:
    """:class:`GroupData` from a validated survey, grouped by a codebook subgroup or a column.

    Items, covariates and weights are chosen as in
    :func:`~veerkracht_bayes.survey.statistics.model_data_from_survey`: observed exogenous single-item
    nodes become covariates, binary covariates stay 0/1 and the others are standardised.
    Standardisation and centring use the pooled population (docs/model.md, section 9).
    """
    labels = group_labels_from_survey(survey, by)
    sc = survey_columns(survey, graph, covariates)
    keep = sc.item_positions
    dropped = within_group_constant(sc.x, labels, sc.covariates)
    cov_keep = [j for j, name in enumerate(sc.covariates) if name not in dropped]
    names = [sc.covariates[j] for j in cov_keep]
    gd = prepare_group_data(
        sc.values[:, keep], [sc.columns[j] for j in keep], [sc.column_node[sc.columns[j]] for j in keep], labels,
        weights=sc.weights, covariates=sc.x[:, cov_keep] if names else None, covariate_names=names,
        min_group_size=min_group_size, data_hash=survey.sha256, source=str(survey.source), missing=missing)
    from dataclasses import replace

    return replace(gd, dropped_covariates=tuple(dropped)) if dropped else gd


def within_group_constant(x: np.ndarray, groups: Sequence[object], names: Sequence[str]) -> list[str]:
    """The covariates that take one value within every group (among rows with a group label).

    Such a covariate (typically the grouping's own indicator, e.g. ``single_parent`` when grouping
    by the ``single_parent`` subgroup) is collinear with the group intercepts: in a multi-group model
    its coefficient cannot be told apart from the groups' latent mean differences, and the per-group
    design matrix is singular.

    Parameters
    ----------
    x
        ``(n, q)`` covariate values (NaN = missing; ignored).
    groups
        One label per row; None, NaN or an empty string means no label.
    names
        The ``q`` covariate names.

    Returns
    -------
    list of str
        The names of the covariates that are constant within each group, in order.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.3], [1.0, 0.1], [0.0, 0.2], [0.0, 0.5]])
    >>> within_group_constant(x, ["a", "a", "b", "b"], ["indicator", "age"])
    ['indicator']
    """
    x = np.asarray(x, dtype=float).reshape(len(groups), -1)
    lab = np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" else str(v)
                    for v in groups], dtype=object)
    labelled = lab != None  # noqa: E711 - element-wise comparison on an object array
    out = []
    for j, name in enumerate(names):
        constant = True
        for g in set(lab[labelled].tolist()):
            v = x[(lab == g) & ~np.isnan(x[:, j]), j]
            if v.size and np.ptp(v) > 0:
                constant = False
                break
        if constant:
            out.append(str(name))
    return out


@dataclass(frozen=True)
class MultiGroupLayout:
    """How the multi-group model's arrays map onto groups, links and items.

    Examples
    --------
    Returned by :func:`build_multigroup_model`:

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> y = np.random.default_rng(0).normal(size=(80, 4))
    >>> gd = prepare_group_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["u", "v"] * 40)
    >>> _, layout = build_multigroup_model(graph_from_lavaan("b ~ a"), gd)
    >>> layout.labels, layout.pooled_edges, layout.tau_sd
    (('u', 'v'), ('a->b',), 0.1)
    """

    base: ModelLayout
    labels: tuple[str, ...]
    share: tuple[float, ...]
    pooled_edges: tuple[str, ...]
    tau_sd: float
    free_loadings: tuple[str, ...]
    free_intercepts: tuple[str, ...]
    mean_sd: float
    log_scale_sd: float
    x_mean: np.ndarray


def _check_items(names: Sequence[str], items: Sequence[str], what: str, fixed: Sequence[str] = ()) -> tuple[str, ...]:
    from veerkracht_bayes.errors import did_you_mean

    out = tuple(dict.fromkeys(str(s) for s in names))
    for s in out:
        if s not in items:
            raise ModelError(Problem(f"{what}: {s!r} is not an item of the model{did_you_mean(s, list(items))}",
                                     field=what, value=s))
        if s in fixed:
            raise ModelError(Problem(f"{what}: {s!r} is the single item of its construct; its loading is "
                                     "fixed by its reliability", field=what, value=s))
    return out


def build_multigroup_model(
    graph: CausalGraph,
    data: GroupData,
    priors: object | None = None,
    *,
    vague: bool = False,
    reliability: float = 0.8,
    stability: StabilitySettings | None = None,
    tau_sd: float = DEFAULT_TAU_SD,
    pooled_links: Sequence[str] | None = None,
    free_loadings: Sequence[str] = (),
    free_intercepts: Sequence[str] = (),
    mean_sd: float = 1.0,
    log_scale_sd: float = 0.5,
    measurement_priors: Mapping[str, float] | None = None,
    unmeasured: str = "cut",
    item_reliability: Mapping[str, float] | None = None,
) -> tuple[pm.Model, MultiGroupLayout]:
    """Build the PyMC model of the multi-group structural model (module docstring).

    Parameters
    ----------
    graph, priors, vague, reliability, stability, measurement_priors, unmeasured, item_reliability
        As :func:`~veerkracht_bayes.sem.model_builder.build_model` (the population links' priors;
        ``item_reliability``: single items with their own observed-scale reliability, which fixes
        their loading in every group; ``layout.base.item_reliability`` keeps them).
    data
        :class:`GroupData` (:func:`split_model_data` / :func:`prepare_group_data`).
    tau_sd
        Scale of the HalfNormal prior of every pooled link's between-group SD ``tau``.
    pooled_links
        Links (``"a->b"``) that get group deviations; default every data-informed link (latent and
        covariate links in the likelihood). Others are equal across groups.
    free_loadings, free_intercepts
        Items whose loading / intercept differs by group (measurement invariance relaxed).
    mean_sd, log_scale_sd
        Prior SDs of the (centred) group latent intercepts and log disturbance-variance factors.

    Returns
    -------
    (pm.Model, MultiGroupLayout)
        Posterior variables: ``beta`` (edge; population), ``tau`` (pooled_edge), ``delta``
        (group, pooled_edge), ``beta_group`` (group, edge), ``alpha_group`` (group, node),
        ``psi_group`` (group, node), ``psi`` (node; population), ``lambda``/``theta``/``nu``
        (item), ``lambda_group``/``nu_group`` (group, item), ``rho_group`` (group).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> y = np.random.default_rng(0).normal(size=(80, 4))
    >>> gd = prepare_group_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["u", "v"] * 40)
    >>> model, layout = build_multigroup_model(graph_from_lavaan("b ~ a"), gd)
    >>> {"beta", "delta", "beta_group", "rho_group"} <= set(model.named_vars)
    True

    A single item with its own reliability (here ``b1`` of a one-item construct ``b``):

    >>> gd1 = prepare_group_data(y[:, :3], ["a1", "a2", "b1"], ["a", "a", "b"], ["u", "v"] * 40)
    >>> model, layout = build_multigroup_model(graph_from_lavaan("b ~ a"), gd1, item_reliability={"b1": 0.3})
    >>> layout.base.item_reliability, model["lambda_group"].eval()[:, 2].round(4).tolist()
    ({'b1': 0.3}, [0.5477, 0.5477])
    """
    stability = stability or StabilitySettings()
    if not tau_sd > 0:
        raise ModelError(Problem(f"tau_sd must be positive, got {tau_sd}", field="tau_sd", value=tau_sd))
    pooled = data.pooled
    _, base = build_model(graph, pooled, priors, vague=vague, reliability=reliability, stability=stability,
                          measurement_priors=measurement_priors, unmeasured=unmeasured, whiten_intercepts=False,
                          report_identification=False,  # the same classification as the pooled fit's
                          item_reliability=item_reliability)  # validated there (single items only)
    keys = list(base.edge_keys)
    sampled = list(base.sampled_edges)
    if pooled_links is None:
        pool = [k for k in sampled if base.edge_kind[k] in ("latent", "covariate")]
    else:
        pool = []
        for k in pooled_links:
            if k not in keys:
                from veerkracht_bayes.errors import did_you_mean

                raise ModelError(Problem(f"pooled link {k!r} is not a link of the graph{did_you_mean(k, keys)}",
                                         field="pooled_links", value=k))
            if k not in sampled or base.edge_kind[k] not in ("latent", "covariate"):
                raise ModelError(Problem(f"pooled link {k!r} is not in the likelihood (kind "
                                         f"{base.edge_kind[k]!r}): it has no data to differ by group",
                                         field="pooled_links", value=k))
            pool.append(k)
    items = list(base.items)
    single_items = [it for it, c in zip(items, base.item_construct) if c in base.single_item_constructs]
    fl = _check_items(free_loadings, items, "free_loadings", single_items)
    fi = _check_items(free_intercepts, items, "free_intercepts")
    mp = dict(base.measurement_priors)
    G = data.n_groups
    lik = list(base.lik_latent)
    plk = len(lik)
    lli = {n: i for i, n in enumerate(lik)}
    covs = list(base.covariates)
    q = len(covs)
    share = np.asarray(data.share, dtype=float)
    eps = base.edge_priors
    pool_idx = np.array([keys.index(k) for k in pool], dtype=int)
    node_pos = np.array([graph.node_index[n] for n in lik], dtype=int)
    cov_pos = np.array([graph.node_index[n] for n in covs], dtype=int)

    def blocks(beta_vec: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """``B`` and ``Gamma`` of the likelihood system (as in the single-group model)."""
        return algebra.structural_matrices(beta_vec, graph.edges, base.edge_kind, lik, covs, ("latent",),
                                           xp="pytensor")

    coords = {"edge": keys, "node": list(graph.nodes), "item": items, "group": list(data.labels),
              "pooled_edge": pool, "lik_latent": lik}
    x_cov = pooled.x_cov if q else np.zeros((0, 0))
    c_idx = np.array([lli[c] for c in base.item_construct], dtype=int)
    free = np.array(base.free_items, dtype=bool)
    with pm.Model(coords=coords) as model:
        if len(sampled) == len(keys):
            beta_t = edge_rvs(eps, keys)
        else:
            beta_t = pt.zeros((len(keys),))
            if sampled:
                sub = edge_rvs(eps, sampled)
                beta_t = pt.set_subtensor(beta_t[np.array([keys.index(k) for k in sampled], dtype=int)], sub)
        beta = pm.Deterministic("beta", beta_t, dims="edge")
        xc = data_container("x_cov", x_cov) if q else None
        # population system: standardisation (Var(eta) = 1 in the pooled population)
        B0, G0 = blocks(beta)
        A0 = algebra.equilibrium_matrix(B0, xp="pytensor")
        psi_lat = algebra.standardised_psi(A0, pt.dot(A0, G0) if q else None, xc, xp="pytensor")
        psi_safe = standardisation_wall(psi_lat)
        pm.Potential("standardisation_soft", algebra.standardisation_barrier(
            psi_lat, floor=stability.psi_floor, width=stability.psi_width, xp="pytensor"))
        iters = stability.power_iterations
        rho0 = algebra.perron_bound(pt.abs(B0), iters, xp="pytensor") if plk else pt.constant(0.0)
        pm.Potential("stability", algebra.stability_barrier(rho0, stability.rho_max, stability.width,
                                                            xp="pytensor"))
        psi_node = pt.zeros((len(graph.nodes),))
        psi_node = pt.set_subtensor(psi_node[node_pos], psi_lat)
        if q:
            psi_node = pt.set_subtensor(psi_node[cov_pos], pt.diagonal(xc))
        pm.Deterministic("psi", psi_node, dims="node")
        # group deviations (non-centred)
        if len(pool):
            tau = pm.HalfNormal("tau", sigma=tau_sd, dims="pooled_edge")
            z = pm.Normal("delta_z", 0.0, 1.0, dims=("group", "pooled_edge"))
            delta = pm.Deterministic("delta", z * tau[None, :], dims=("group", "pooled_edge"))
            beta_g = pt.set_subtensor(pt.repeat(beta[None, :], G, axis=0)[:, pool_idx],
                                      beta[None, pool_idx] + delta)
        else:
            beta_g = pt.repeat(beta[None, :], G, axis=0)
        pm.Deterministic("beta_group", beta_g, dims=("group", "edge"))
        # group latent intercepts and disturbance scales, centred (weighted) across groups
        a_raw = pm.Normal("alpha_raw", 0.0, mean_sd, shape=(G, plk))
        alpha_g = a_raw - pt.sum(share[:, None] * a_raw, axis=0)[None, :]
        w_raw = pm.Normal("log_scale_raw", 0.0, log_scale_sd, shape=(G, plk))
        omega = w_raw - pt.sum(share[:, None] * w_raw, axis=0)[None, :]
        psi_g = psi_safe[None, :] * pt.exp(omega)
        al_node = pt.zeros((G, len(graph.nodes)))
        al_node = pt.set_subtensor(al_node[:, node_pos], alpha_g)
        if q:
            al_node = pt.set_subtensor(al_node[:, cov_pos], np.asarray(data.x_mean, float))
        pm.Deterministic("alpha_group", al_node, dims=("group", "node"))
        ps_node = pt.repeat(psi_node[None, :], G, axis=0)
        ps_node = pt.set_subtensor(ps_node[:, node_pos], psi_g)
        pm.Deterministic("psi_group", ps_node, dims=("group", "node"))
        # measurement part (invariant unless freed)
        # single items: their own reliability where given, else the global one (as the pooled fit)
        lam, theta = measurement_parameters(free, mp, fixed_item_reliability(base)[~free])
        nu = pm.Normal("nu", 0.0, mp["nu_sd"], dims="item")
        lam_g = pt.repeat(lam[None, :], G, axis=0)
        nu_g = pt.repeat(nu[None, :], G, axis=0)
        if fl:
            fl_idx = np.array([items.index(s) for s in fl], dtype=int)
            lg = pm.TruncatedNormal("loading_group", mu=mp["loading_mu"], sigma=mp["loading_sd"], lower=0.0,
                                    shape=(G, len(fl)))
            lam_g = pt.set_subtensor(lam_g[:, fl_idx], lg)
        if fi:
            fi_idx = np.array([items.index(s) for s in fi], dtype=int)
            ng = pm.Normal("nu_group_free", 0.0, mp["nu_sd"], shape=(G, len(fi)))
            nu_g = pt.set_subtensor(nu_g[:, fi_idx], ng)
        pm.Deterministic("lambda_group", lam_g, dims=("group", "item"))
        pm.Deterministic("nu_group", nu_g, dims=("group", "item"))
        rhos = []
        total = pt.constant(0.0)
        for g in range(G):
            Bg, Gg = blocks(beta_g[g])
            rg = algebra.perron_bound(pt.abs(Bg), iters, xp="pytensor") if plk else pt.constant(0.0)
            rhos.append(rg)
            total = total + algebra.stability_barrier(rg, stability.rho_max, stability.width, xp="pytensor")
            Ag = algebra.equilibrium_matrix(Bg, xp="pytensor")
            mean_lat = pt.dot(Ag, alpha_g[g])
            col0 = nu_g[g] + lam_g[g] * mean_lat[c_idx]
            if q:
                Pi = lam_g[g][:, None] * pt.dot(Ag, Gg)[c_idx]
                M = pt.concatenate([col0[:, None], Pi], axis=1)
            else:
                M = col0[:, None]
            st = data.stats[g]
            pre = f"g{g}_"
            D = data_container(pre + "masks", st.masks)
            W = data_container(pre + "W", st.W)
            Syy = data_container(pre + "Syy", st.Syy)
            Suy = data_container(pre + "Suy", st.Suy)
            Suu = data_container(pre + "Suu", st.Suu)
            ll = pattern_loglik_tensor(lam_g[g], theta, c_idx, plk, Bg, psi_g[g], M, D, W, Syy, Suy, Suu)
            total = total + pt.sum(ll)
        pm.Deterministic("rho_group", pt.stack(rhos), dims="group")
        pm.Potential("loglik_and_group_stability", total)
    layout = MultiGroupLayout(base=base, labels=tuple(data.labels), share=tuple(float(s) for s in share),
                              pooled_edges=tuple(pool), tau_sd=float(tau_sd), free_loadings=fl,
                              free_intercepts=fi, mean_sd=float(mean_sd), log_scale_sd=float(log_scale_sd),
                              x_mean=np.asarray(data.x_mean))
    return model, layout
