"""For whom: the run's multi-group fits, per-group do-queries and threshold outcomes.

With ``[model] groups`` the pipeline fits, *after* the single-group fit, one multi-group model
(:mod:`veerkracht_bayes.sem.multigroup`) per grouping: a codebook subgroup gives two groups (members
and ``not <subgroup>``), a categorical survey column one group per value. Every data-informed link
gets partially pooled group deviations (``[model] group_pool``); loadings and intercepts are equal
across groups unless single items are freed. A single-item construct's loading is fixed in every
group by the same reliability as in the single-group fit: the codebook's per-item ``reliability:``
on the observed scale (:func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`),
else ``[model] reliability``; ``group_fits.json`` records both (``settings``). Each group's links give its own do-queries, so a
policy's effect in a group differs from the population's by more than prevalence.

Why after and not instead of the single-group fit: the population effects (``effects.csv``, the
ranking, the trajectories) stay exactly what they are without groups, so adding a grouping never
moves a population number, and two groupings never give two population answers. The multi-group
fits answer only the question they are for: does the policy work better in this group than in the
population?

The population reference of a grouping is the share-weighted average of its groups' effects, draw
by draw (the mean effect in the pooled population when everyone receives the dose: in this linear
model the population mean change is the share-weighted mean of the groups' changes). It is *not*
the effect under the hierarchical centre ``beta`` of the group links: with two groups of unequal
size ``beta`` sits about halfway between them, whatever their shares.

Threshold outcomes (``[[query.thresholds]]``, :mod:`veerkracht_bayes.causal.thresholds`): the share
of the (sub)population beyond a cut-off on an observed scale. The baseline share and the score's
spread are the observed weighted ones (data); the model supplies the shift of the score's mean,
``L e`` (the measurement slope ``L`` times the do-query's latent effect ``e``), per posterior draw.
Population rows use the single-group fit (the effects of ``effects.csv``), group rows the
multi-group fit of their grouping. On the polychoric route the single-group fit's shift of the
score is :func:`~veerkracht_bayes.causal.thresholds.score_shift` (each ordinal item through its
categories, from the cell's observed margins and the posterior's correlation-scale loadings); the
group rows still come from the continuous-path multi-group fits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome, do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.summaries import desirable_direction
from veerkracht_bayes.causal.thresholds import (
    ItemMargin,
    ThresholdSpec,
    calibrated_shares,
    item_margin,
    scale_moments,
    score_shift,
    threshold_shares,
)
from veerkracht_bayes.errors import InterventionError, Problem, VeerkrachtError, did_you_mean

# fit_groupings and threshold_rows (the pipeline's entry points; they need a validated survey and a
# fit) are reached as module attributes.
__all__ = ["GroupingFit", "HETEROGENEITY_COLUMNS", "THRESHOLD_COLUMNS", "GROUP_LINK_COLUMNS",
           "two_stage_groups", "group_effects", "heterogeneity_rows", "group_links_table", "observed_scale"]

log = logging.getLogger(__name__)

#: Columns of ``heterogeneity.csv``, in order.
HETEROGENEITY_COLUMNS = (
    "policy", "outcome", "group", "mean", "lower", "upper", "p_meaningful", "p_larger_than_population",
    "n_group", "grouping", "share", "population_mean", "difference_mean", "difference_lower",
    "difference_upper", "reachable", "p_stable", "n_used", "suppressed", "reason",
)
#: Columns of ``thresholds.csv``, in order.
THRESHOLD_COLUMNS = (
    "policy", "threshold", "outcome", "scope", "group", "baseline_share", "effect_pp", "lower", "upper",
    "p_meaningful", "mrc_pp", "desirable", "grouping", "n_group", "p_stable", "n_used", "suppressed",
    "reason",
)
#: Observed shares closer than this to 0 or 1 give no threshold effect (NaN): the (sub)group lies
#: entirely on one side of the cut-off (e.g. a subgroup defined by the same scale).
SHARE_EPS = 1e-6
#: Convergence tolerance of the per-group EM (largest change of the saturated mean and covariance,
#: standardised scale).
EM_TOL = 1e-6
#: Most EM sweeps per group. Measured on the demo: "low_income" converges in a few seconds, while
#: "single_parent" had not reached 1e-6 after 2,000 sweeps (82 s CPU); a group that stops here is
#: reported (``group_fits.json``: ``em``) and named in the run's warnings.
EM_MAX_ITER = 300
#: Columns of ``group_links.csv``, in order.
GROUP_LINK_COLUMNS = ("grouping", "group", "link", "delta_mean", "delta_sd", "delta_lower", "delta_upper",
                      "beta_group_mean", "beta_group_lower", "beta_group_upper", "tau_mean")


@dataclass
class GroupingFit:
    """One grouping of ``[model] groups`` and its multi-group fit (``fit`` None when not fitted).

    Attributes
    ----------
    by
        The grouping's name (codebook subgroup or survey column).
    labels, counts, share
        Group labels, respondents used per group and weighted shares (sum 1).
    fit
        The :class:`~veerkracht_bayes.inference.multigroup_fit.MultiGroupFit`, or None.
    draws
        ``label -> StructuralDraws`` of each group's links.
    diagnostics
        R-hat, ESS and divergences of the fit (:func:`_diagnose_multigroup`), ``passed``.
    seconds
        Wall time of the fit.
    reason
        Why the grouping was not fitted (``fit`` None).
    settings
        The fit's measurement settings: ``reliability`` (the global fallback) and
        ``item_reliability`` (single items' own observed-scale values).

    Examples
    --------
    >>> GroupingFit("youth", reason="not fitted: too small").to_dict()["fitted"]
    False
    """

    by: str
    labels: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    share: tuple[float, ...] = ()
    fit: Any = None
    draws: dict[str, StructuralDraws] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    seconds: float = float("nan")
    reason: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``group_fits.json``)."""
        return {"grouping": self.by, "fitted": self.fit is not None, "reason": self.reason,
                "groups": list(self.labels), "n": [int(c) for c in self.counts],
                "share": [float(s) for s in self.share], "seconds": round(float(self.seconds), 1)
                if np.isfinite(self.seconds) else None, "diagnostics": self.diagnostics,
                "settings": self.settings}


def _flat(ds: Any, name: str) -> np.ndarray:
    da = ds[name]
    other = [d for d in da.dims if d not in ("chain", "draw")]
    arr = da.transpose("chain", "draw", *other).values
    return arr.reshape((-1,) + arr.shape[2:])


def _diagnose_multigroup(fit: Any, *, rhat_max: float, ess_min: float) -> dict[str, Any]:
    """Split R-hat, bulk and tail ESS of the sampled quantities and the divergences of a multi-group fit."""
    import arviz as az

    post = fit.posterior
    base = fit.layout.base
    sampled = list(base.sampled_edges or base.edge_keys)
    # The quantities the outputs rest on: each group's links (``beta_group``), the between-group
    # SDs ``tau`` and the measurement and group parameters. The population link ``beta`` and the
    # deviations ``delta`` are not checked here: with few groups they are separated from each
    # other only by the prior (``beta_group = beta + delta`` fixes their sum), a ridge along
    # which they mix slowly while ``beta_group`` does not; their smallest ESS is recorded
    # (``ess_bulk_min_population``) but does not fail the fit. heterogeneity.csv compares groups
    # with the share-weighted population effect, not with ``beta``.
    parts = {"beta_group": post["beta_group"].sel(edge=sampled)} if "beta_group" in post \
        else {"beta": post["beta"].sel(edge=sampled)}
    for v in ("tau", "alpha_group", "psi_group", "lambda", "nu"):
        if v in post:
            parts[v] = post[v]
    ds = __import__("xarray").Dataset(parts)
    out: dict[str, Any] = {"rhat_max": 0.0, "ess_bulk_min": np.inf, "ess_tail_min": np.inf}
    from veerkracht_bayes.inference.diagnostics import constant_entries_quiet

    for name in ds.data_vars:
        da = ds[[name]]
        with constant_entries_quiet():
            r = np.asarray(az.rhat(da)[name].values, dtype=float)
            eb = np.asarray(az.ess(da, method="bulk")[name].values, dtype=float)
            et = np.asarray(az.ess(da, method="tail")[name].values, dtype=float)
        # constant entries (the cut's shared links, centred intercepts of a single group) give NaN
        if np.isfinite(r).any():
            out["rhat_max"] = max(out["rhat_max"], float(np.nanmax(r)))
        for kind, ess in (("bulk", eb), ("tail", et)):
            if np.isfinite(ess).any() and float(np.nanmin(ess)) < out[f"ess_{kind}_min"]:
                out[f"ess_{kind}_min"] = float(np.nanmin(ess))
                # which quantity: the variable and the coordinates of its worst entry
                pos = np.unravel_index(int(np.nanargmin(ess)), ess.shape) if ess.ndim else ()
                coords = [str(da[name][d].values[i]) if d in da[name].coords else str(i)
                          for d, i in zip(da[name].dims[2:], pos, strict=False)]
                out[f"ess_{kind}_worst"] = f"{name}[{', '.join(coords)}]" if coords else str(name)
    if "beta_group" in post:
        with constant_entries_quiet():
            pop = [np.asarray(az.ess(post[[v]], method="bulk")[v].values, dtype=float)
                   for v in ("beta", "delta") if v in post]
        pop = [x[np.isfinite(x)] for x in pop]
        out["ess_bulk_min_population"] = (float(min(x.min() for x in pop if x.size))
                                          if any(x.size for x in pop) else None)
    ss = fit.idata["sample_stats"].to_dataset()
    out["divergences"] = int(np.sum(ss["diverging"].values)) if "diverging" in ss else None
    out["n_draws"] = int(post.sizes["draw"])
    out["n_chains"] = int(post.sizes["chain"])
    problems = []
    if out["rhat_max"] > rhat_max:
        problems.append(f"max R-hat {out['rhat_max']:.3f} > {rhat_max}")
    if min(out["ess_bulk_min"], out["ess_tail_min"]) < ess_min:
        kind = "bulk" if out["ess_bulk_min"] <= out["ess_tail_min"] else "tail"
        problems.append(f"min ESS {out[f'ess_{kind}_min']:.0f} < {ess_min:.0f} "
                        f"({kind}, {out.get(f'ess_{kind}_worst', '?')})")
    if out["divergences"]:
        problems.append(f"{out['divergences']} divergent transitions")
    out["problems"] = problems
    out["passed"] = not problems
    out["thresholds"] = {"rhat_max": rhat_max, "ess_min": ess_min}
    for k in ("ess_bulk_min", "ess_tail_min"):
        if not np.isfinite(out[k]):
            out[k] = None
    return out


def fit_groupings(cfg: Any, vi: Any, *, draws: int, tune: int, progressbar: bool = False,
                  ) -> tuple[list[GroupingFit], list[str]]:
    """Fit the multi-group model of every ``[model] groups`` entry.

    Parameters
    ----------
    cfg, vi
        The run config and its :class:`~veerkracht_bayes.workflow.config.ValidatedInputs`
        (``vi.groupings`` holds the labels).
    draws, tune
        Draws and tuning steps per chain (chains, seed, target acceptance from ``[sampler]``).
    progressbar
        Show the sampler's progress.

    Returns
    -------
    (list of GroupingFit, warnings)
        A grouping with a group of fewer than
        :data:`~veerkracht_bayes.workflow.config.MIN_GROUP_FIT` respondents, or whose fit fails with
        a model error, is not fitted (``fit`` None, ``reason`` set) and named in the warnings.

    Examples
    --------
    A small synthetic survey grouped by a codebook subgroup (the multi-group fit samples:
    minutes, so not run here; ``tests/workflow/test_for_whom_run.py`` runs it through the
    pipeline):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from veerkracht_bayes.datasets.synthetic import write_synthetic
    >>> from veerkracht_bayes.workflow.config import parse_config, validate_inputs
    >>> d = Path(tempfile.mkdtemp())
    >>> files = write_synthetic(d, n=300, seed=2)
    >>> cfg = parse_config({"inputs": {"survey": str(files["data"]), "codebook": str(files["codebook"])},
    ...                     "model": {"groups": ["refugee"]}, "output": {"dir": str(d / "out")}})
    >>> vi = validate_inputs(cfg)
    >>> sorted(vi.groupings)
    ['refugee']
    >>> fits, warnings = fit_groupings(cfg, vi, draws=100, tune=100)  # doctest: +SKIP
    >>> fits[0].labels, fits[0].counts  # doctest: +SKIP
    (('not refugee', 'refugee'), (285, 15))
    """
    from veerkracht_bayes.inference.multigroup_fit import fit_multigroup
    from veerkracht_bayes.inference.sampling import JAX_DRIVER_SAMPLERS, SamplerSettings
    from veerkracht_bayes.sem.multigroup import group_data_from_survey
    from veerkracht_bayes.survey.codebook import continuous_path_reliabilities
    from veerkracht_bayes.workflow.config import MIN_GROUP_FIT

    m, s = cfg.model, cfg.sampler
    out: list[GroupingFit] = []
    warnings: list[str] = []
    # the single-group fit's single-item reliabilities (codebook values on the observed scale; the
    # items are standardised in the pooled population in both fits, so the values carry over)
    item_rel = continuous_path_reliabilities(vi.survey, vi.graph, m.reliability) if m.groups else {}
    # the ESS a summary needs does not depend on how many draws were taken: the configured
    # threshold as it stands (``--fast`` has already scaled it), not rescaled by group_draws
    ess_min = cfg.diagnostics.ess_min
    for k, by in enumerate(m.groups):
        gf = GroupingFit(by)
        try:
            # exact per-pattern statistics first (cheap); two_stage_groups then applies the run's
            # missing-data route per group (the pooled EM of the main fit is not redone)
            gd = group_data_from_survey(vi.survey, vi.graph, by, missing="fiml", min_group_size=MIN_GROUP_FIT)
        except VeerkrachtError as exc:
            gf.reason = f"not fitted: {exc}"
            warnings.append(f"grouping {by!r} {gf.reason}")
            out.append(gf)
            continue
        if gd.dropped_covariates:
            warnings.append(f"grouping {by!r}: covariate(s) " + ", ".join(gd.dropped_covariates)
                            + " take one value within each group, so their effect cannot be told apart "
                              "from the groups' latent mean differences; they are left out of this "
                              "multi-group fit and their links rest on the priors there")
        em_report: list[dict[str, Any]] = []
        gd = two_stage_groups(gd, missing=m.missing, report=em_report)
        if any(not r["em_converged"] for r in em_report):
            warnings.append(f"grouping {by!r}: the per-group EM of the two-stage statistics stopped after "
                            f"{EM_MAX_ITER} sweeps without reaching {EM_TOL:g} for "
                            + ", ".join(r["group"] for r in em_report if not r["em_converged"])
                            + " (approximate group statistics)")
        gf.labels, gf.counts = tuple(gd.labels), tuple(int(c) for c in gd.counts)
        gf.share = tuple(float(x) for x in gd.share)
        # the multi-group model needs the JAX driver: [sampler] sampler when it names one, else numpyro
        driver = s.sampler if s.sampler in JAX_DRIVER_SAMPLERS else "numpyro"
        settings = SamplerSettings(sampler=driver, chains=s.chains, draws=draws, tune=tune,
                                   target_accept=s.target_accept, random_seed=s.seed + 1 + k,
                                   progressbar=progressbar)
        rel_g = {it: v for it, v in item_rel.items() if it in gd.pooled.item_names}
        gf.settings = {"reliability": float(m.reliability), "item_reliability": dict(rel_g)}
        t0 = time.perf_counter()
        try:
            fit = fit_multigroup(vi.graph, gd, vi.priors, settings=settings, tau_sd=m.group_tau_sd,
                                 pooled_links=m.pooled_links, free_loadings=m.group_free_loadings,
                                 free_intercepts=m.group_free_intercepts,
                                 vague=cfg.inputs.priors == "vague", reliability=m.reliability,
                                 item_reliability=rel_g or None)
        except VeerkrachtError as exc:
            gf.reason = f"not fitted: {exc}"
            warnings.append(f"grouping {by!r} {gf.reason}")
            out.append(gf)
            continue
        gf.seconds = time.perf_counter() - t0
        gf.fit = fit
        gf.draws = {lab: StructuralDraws.from_arrays(vi.graph, **fit.group_arrays(lab)) for lab in gd.labels}
        gf.diagnostics = _diagnose_multigroup(fit, rhat_max=cfg.diagnostics.rhat_max, ess_min=ess_min)
        gf.diagnostics["em"] = em_report
        gf.diagnostics["dropped_covariates"] = list(gd.dropped_covariates)
        if not gf.diagnostics["passed"]:
            warnings.append(f"multi-group fit by {by!r} failed its diagnostics ("
                            + "; ".join(gf.diagnostics["problems"]) + "): heterogeneity.csv is unreliable")
        log.info("multi-group fit by %r: %d groups, %.0f s", by, len(gd.labels), gf.seconds)
        out.append(gf)
    return out, warnings


def two_stage_groups(gd: Any, missing: str = "auto", max_fiml_patterns: int = 200,
                     report: list[dict[str, Any]] | None = None) -> Any:
    """Replace each group's per-pattern statistics by the two-stage (EM) complete-data statistics
    when the run's missing-data route is two-stage: ``missing = "two_stage"``, or ``"auto"`` with
    more than ``max_fiml_patterns`` missingness patterns in the pooled data (the rule of
    :func:`~veerkracht_bayes.survey.statistics.prepare_model_data`).

    The multi-group model takes exact per-pattern statistics per group; with thousands of patterns
    (the synthetic survey has about 5,800) every gradient then costs thousands of small solves per
    group. As in the single-group fit (docs/model.md, section 5), the saturated mean and covariance
    of each group's items given its covariates are estimated by EM on the pooled standardised scale
    and enter as one complete pattern. Groups are kept as they are when the pooled data are complete
    or would use exact FIML.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.sem.multigroup import prepare_group_data
    >>> y = np.random.default_rng(0).normal(size=(60, 2))
    >>> gd = prepare_group_data(y, ["y1", "y2"], ["a", "a"], ["u", "v"] * 30)
    >>> two_stage_groups(gd) is gd  # complete data: kept as it is
    True
    """
    from dataclasses import replace

    from veerkracht_bayes.survey.missing_data import em_saturated
    from veerkracht_bayes.survey.statistics import PatternStats

    pooled = gd.pooled
    if pooled.y.size == 0 or not np.isnan(pooled.y).any():
        return gd
    n_pat = len({row.tobytes() for row in np.isnan(pooled.y)})
    if not (missing == "two_stage" or (missing == "auto" and n_pat > max_fiml_patterns)):
        return gd
    u = np.concatenate([np.ones((pooled.n, 1)), pooled.x], axis=1)
    m = pooled.y.shape[1]
    stats = []
    for g in range(gd.n_groups):
        sel = gd.group_of_row == g
        # tol 1e-6 on the standardised scale: far below the sampling error of a group's moments
        # (about 1/sqrt(n)), and fewer EM sweeps over the group's thousands of patterns
        em = em_saturated(pooled.y[sel], u[sel], pooled.weights[sel], tol=EM_TOL, max_iter=EM_MAX_ITER)
        if report is not None:
            report.append({"group": gd.labels[g], "em_iterations": int(em.iterations),
                           "em_converged": bool(em.converged)})
        stats.append(PatternStats(np.ones((1, m), dtype=bool), np.array([em.W]), em.Syy[None], em.Suy[None],
                                  em.Suu[None], np.zeros(int(sel.sum()), dtype=np.int64)))
    return replace(gd, stats=tuple(stats))


def _untargeted(interventions: Sequence[Any]) -> list[Any]:
    """The interventions with their subgroup targeting removed (the group is the target)."""
    return [iv.model_copy(update={"subgroup": None}) if getattr(iv, "subgroup", None) is not None else iv
            for iv in interventions]


def group_effects(groupings: Sequence[GroupingFit], interventions: Sequence[Any],
                  outcomes: Sequence[str | Outcome], *, seed: int = 0) -> dict[str, dict[str, DoResult]]:
    """Per grouping, the do-query of every (untargeted) intervention in every group, same dose draws.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> g = graph_from_lavaan("b ~ a")
    >>> d = {k: StructuralDraws.from_arrays(g, np.array([[v]]), np.zeros((1, 2))) for k, v in (("u", 0.2), ("v", 0.5))}
    >>> gf = GroupingFit("by", labels=("u", "v"), counts=(60, 40), share=(0.6, 0.4), fit=object(), draws=d)
    >>> iv = Intervention(name="up", parts=[Shift(node="a", delta=1.0)], subgroup="v")
    >>> res = group_effects([gf], [iv], ["b"])
    >>> float(res["by"]["v"].outcome_effect("b")[0, 0])  # targeting dropped: the group is the target
    0.5
    """
    ivs = _untargeted(interventions)
    out: dict[str, dict[str, DoResult]] = {}
    for gf in groupings:
        if gf.fit is None:
            continue
        out[gf.by] = {lab: do_query(d, ivs, list(outcomes), seed=seed) for lab, d in gf.draws.items()}
    return out


def _display_groups(gf: GroupingFit, subgroups: Sequence[str]) -> list[str]:
    return list(gf.labels)


def heterogeneity_rows(groupings: Sequence[GroupingFit], results: Mapping[str, Mapping[str, DoResult]],
                       outcomes: Sequence[str | Outcome], *, min_cell_size: int, ci_prob: float = 0.9,
                       mrc: float = 0.05) -> pd.DataFrame:
    """``heterogeneity.csv``: per policy x outcome x grouping, the population reference and every group.

    The population row of a grouping is the share-weighted mean of its groups' effects per draw;
    ``p_larger_than_population`` = P(direction x (effect_g - population) > 0) over the draws usable
    in every group of the grouping. Groups with fewer than ``min_cell_size`` respondents are
    suppressed (NaN numbers, a reason). Groupings that were not fitted give suppressed rows.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> g = graph_from_lavaan("b ~ a")
    >>> d = {k: StructuralDraws.from_arrays(g, np.array([[v]]), np.zeros((1, 2))) for k, v in (("u", 0.2), ("v", 0.5))}
    >>> gf = GroupingFit("by", labels=("u", "v"), counts=(60, 40), share=(0.6, 0.4), fit=object(), draws=d)
    >>> res = group_effects([gf], [Intervention(name="up", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> t = heterogeneity_rows([gf], res, ["b"], min_cell_size=10).set_index("group")
    >>> round(float(t.loc["population", "mean"]), 2), float(t.loc["v", "p_larger_than_population"])
    (0.32, 1.0)
    """
    a = (1 - ci_prob) / 2
    rows: list[dict[str, Any]] = []
    nan = float("nan")

    def stats(x: np.ndarray) -> tuple[float, float, float]:
        if x.size == 0:
            return nan, nan, nan
        lo, hi = np.quantile(x, [a, 1 - a])
        return float(x.mean()), float(lo), float(hi)

    for gf in groupings:
        res = results.get(gf.by)
        if gf.fit is None or res is None:
            for o in outcomes:
                name = o.name if isinstance(o, Outcome) else str(o)
                rows.append({"policy": "*", "outcome": name, "group": "*", "grouping": gf.by,
                             "suppressed": True, "reason": gf.reason or "not fitted"})
            continue
        labels = list(gf.labels)
        share = np.asarray(gf.share, dtype=float)
        first = res[labels[0]]
        for o in outcomes:
            name = o.name if isinstance(o, Outcome) else str(o)
            d = desirable_direction(o)
            eff = {lab: res[lab].outcome_effect(o) for lab in labels}
            ok = np.logical_and.reduce([res[lab].usable() for lab in labels])
            reach = first.is_reachable(o)
            for i, pid in enumerate(first.names):
                u = ok[i]
                stack = np.stack([eff[lab][i][u] for lab in labels])  # (G, S_used)
                pop = share @ stack if stack.size else np.zeros(0)
                m, lo, hi = stats(pop)
                base = {"policy": pid, "outcome": name, "grouping": gf.by, "reachable": bool(reach[i]),
                        "p_stable": float(u.mean()), "n_used": int(u.sum()), "population_mean": m}
                rows.append({**base, "group": "population", "mean": m, "lower": lo, "upper": hi,
                             "p_meaningful": float(np.mean(d * pop > mrc)) if pop.size else nan,
                             "p_larger_than_population": nan, "n_group": int(sum(gf.counts)), "share": 1.0,
                             "suppressed": False, "reason": ""})
                for g, lab in enumerate(labels):
                    n = int(gf.counts[g])
                    row = {**base, "group": lab, "n_group": n, "share": float(share[g])}
                    if n < min_cell_size:
                        rows.append({**row, "suppressed": True,
                                     "reason": f"group below the minimum cell size {min_cell_size}"})
                        continue
                    x = stack[g]
                    gm, glo, ghi = stats(x)
                    dm, dlo, dhi = stats(x - pop)
                    p_larger = float(np.mean(d * (x - pop) > 0)) if (x.size and reach[i]) else nan
                    rows.append({**row, "mean": gm, "lower": glo, "upper": ghi,
                                 "p_meaningful": float(np.mean(d * x > mrc)) if x.size else nan,
                                 "p_larger_than_population": p_larger, "difference_mean": dm,
                                 "difference_lower": dlo, "difference_upper": dhi, "suppressed": False,
                                 "reason": ""})
    df = pd.DataFrame(rows, columns=list(HETEROGENEITY_COLUMNS))
    # suppressed cells never carry numbers
    num = ["mean", "lower", "upper", "p_meaningful", "p_larger_than_population", "population_mean",
           "difference_mean", "difference_lower", "difference_upper"]
    df.loc[df["suppressed"].astype(bool), num] = np.nan
    return df


def group_links_table(groupings: Sequence[GroupingFit], prob: float = 0.9) -> pd.DataFrame:
    """``group_links.csv``: the group deviations of every pooled link (``MultiGroupFit.deviation_table``).

    Examples
    --------
    >>> group_links_table([GroupingFit("youth")]).empty  # nothing fitted
    True
    """
    frames = []
    for gf in groupings:
        if gf.fit is None:
            continue
        t = gf.fit.deviation_table(prob=prob)
        t.insert(0, "grouping", gf.by)
        frames.append(t)
    if not frames:
        return pd.DataFrame(columns=list(GROUP_LINK_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(GROUP_LINK_COLUMNS)]


# ----------------------------------------------------------------------------- thresholds
def observed_scale(spec: ThresholdSpec, survey: Any, mask: np.ndarray | None = None) -> tuple[float, float, int]:
    """Weighted observed share beyond the cut-off, the score's weighted SD and the number of
    respondents with every item of the scale answered (within ``mask``).

    Items are read in the model's coding (reverse-coded items reversed:
    ``survey.item_matrix(reverse=True)``).

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> y = np.array([[1.0, 2.0], [3.0, 3.0], [np.nan, 1.0]])
    >>> sv = SimpleNamespace(item_matrix=lambda reverse=True: (y, ["q1", "q2"]), weights=np.ones(3))
    >>> spec = ThresholdSpec(name="low", outcome="x", items=["q1", "q2"], cutoff=4.0)
    >>> observed_scale(spec, sv)
    (0.5, 1.5, 2)
    """
    y, cols = survey.item_matrix(reverse=True)
    idx = [cols.index(it) for it in spec.items]
    w_items = np.ones(len(idx)) if spec.weights is None else np.asarray(spec.weights, dtype=float)
    x = y[:, idx]
    keep = ~np.isnan(x).any(axis=1)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    if not keep.any():
        return float("nan"), float("nan"), 0
    score = spec.offset + x[keep] @ w_items
    w = survey.weights[keep]
    beyond = score <= spec.cutoff if spec.direction == "below" else score > spec.cutoff
    return float(w @ beyond / w.sum()), _weighted_sd(score, w), int(keep.sum())


def _weighted_sd(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted SD of ``x`` (weights normalised to sum 1; the population form, no df correction)."""
    w = w / w.sum()
    return float(np.sqrt(w @ (x - w @ x) ** 2))


def _measurement(posterior: Any, layout: Any, constant: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, m)`` loadings, residual variances and intercepts of a single-group fit, in ``layout.items`` order."""
    items = list(layout.items)
    S = posterior.sizes["chain"] * posterior.sizes["draw"]
    lam = np.full((S, len(items)), np.nan)
    th = np.full((S, len(items)), np.nan)
    if "lambda" in posterior:
        lam = _flat(posterior, "lambda")
        th = _flat(posterior, "theta")
    else:
        if "loading" in posterior:
            free = [str(v) for v in posterior["free_item"].values]
            fl, ft = _flat(posterior, "loading"), _flat(posterior, "residual_var")
            for j, it in enumerate(free):
                lam[:, items.index(it)] = fl[:, j]
                th[:, items.index(it)] = ft[:, j]
        from veerkracht_bayes.sem.model_builder import fixed_item_reliability

        rel = fixed_item_reliability(layout)
        for j, (it, c) in enumerate(zip(items, layout.item_construct)):
            if c in layout.single_item_constructs:
                lam[:, j], th[:, j] = np.sqrt(rel[j]), 1.0 - rel[j]
    nu = _flat(posterior, "nu")
    return lam, th, nu


def _threshold_cell(spec: ThresholdSpec, intercept: np.ndarray, slope: np.ndarray, err: np.ndarray,
                    effect: np.ndarray, ok: np.ndarray, p_obs: float, sd_obs: float) -> tuple[dict[str, Any], Any]:
    """One threshold cell on the continuous measurement model (:func:`_cell`): the score moves by ``L e``."""
    def change() -> np.ndarray:
        L = slope[ok]
        # the score's spread is the observed one: the latent variance that makes L^2 v + error = sd_obs^2
        v = np.clip((sd_obs**2 - err[ok]) / np.maximum(L**2, 1e-300), 0.0, None)
        return threshold_shares(spec, intercept[ok], L, err[ok], latent_var=v, effect=effect[ok],
                                observed_share=p_obs).effect_pp

    return _cell(ok, p_obs, sd_obs, change)


def _cell(ok: np.ndarray, p_obs: float, sd_obs: float, change: Any) -> tuple[dict[str, Any], Any]:
    """The observed baseline of one threshold cell and its change in pp per usable draw (``change()``),
    or None where no probit shift applies: a share of (almost) 0% or 100% (a group defined by the
    threshold itself), no spread, or no usable draw."""
    out: dict[str, Any] = {"baseline_share": 100.0 * p_obs if np.isfinite(p_obs) else float("nan"),
                           "p_stable": float(ok.mean()) if ok.size else float("nan"), "n_used": int(ok.sum())}
    if not (np.isfinite(p_obs) and SHARE_EPS < p_obs < 1.0 - SHARE_EPS) or not ok.any() \
            or not (np.isfinite(sd_obs) and sd_obs > 0):
        return out, None
    return out, change()


def _row(cell: tuple[dict[str, Any], Any], *, scale: float, ci_prob: float, mrc_pp: float,
         sign: int) -> dict[str, Any]:
    """A cell's row: the change in pp times ``scale`` summarised (:func:`_pp_summary`)."""
    out, pp = cell
    if pp is None:
        nan = float("nan")
        return {**out, "effect_pp": nan, "lower": nan, "upper": nan, "p_meaningful": nan}
    return _pp_summary(out, scale * pp, ci_prob, mrc_pp, sign)


def _pp_summary(out: dict[str, Any], pp: np.ndarray, ci_prob: float, mrc_pp: float, sign: int) -> dict[str, Any]:
    """Mean, central interval and P(a desirable change beyond ``mrc_pp``) of a change in pp."""
    a = (1 - ci_prob) / 2
    lo, hi = np.quantile(pp, [a, 1 - a])
    return {**out, "effect_pp": float(pp.mean()), "lower": float(lo), "upper": float(hi),
            "p_meaningful": float(np.mean(sign * pp > mrc_pp))}


def threshold_rows(specs: Sequence[ThresholdSpec], *, survey: Any, data: Any, fitted: Any, do_res: DoResult,
                   subgroups: Mapping[str, Any], groupings: Sequence[GroupingFit],
                   group_results: Mapping[str, Mapping[str, DoResult]], min_cell_size: int,
                   ci_prob: float = 0.9, mrc_pp: float = 1.0) -> pd.DataFrame:
    """``thresholds.csv``: per threshold x policy, the population, the policy's target group and
    every group of every grouping (module docstring).

    Parameters
    ----------
    specs
        The ``[[query.thresholds]]`` entries.
    survey, data, fitted, do_res
        The validated survey, the single-group model data, its fit and the run's do-query.
    subgroups
        ``name -> SubgroupInfo`` of the run (targeted policies).
    groupings, group_results
        :func:`fit_groupings` and :func:`group_effects`.
    min_cell_size
        Cells with fewer respondents are suppressed.
    ci_prob, mrc_pp
        Interval probability; minimal relevant change of a share in percentage points.

    Examples
    --------
    The MHI-5 cut-off (a score of 60 or less) on a small synthetic survey; the single-group fit
    samples (a minute), so it and what follows are not run here
    (``tests/workflow/test_for_whom_run.py`` runs the same call through the pipeline):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from veerkracht_bayes.causal.thresholds import ThresholdSpec
    >>> spec = ThresholdSpec(name="psychisch_ongezond", outcome="mental_problems",
    ...                      items=["mhi1", "mhi2", "mhi3", "mhi4", "mhi5"], weights=[-4.0] * 5,
    ...                      offset=120.0, cutoff=60.0)
    >>> spec.direction
    'below'
    >>> from veerkracht_bayes.datasets.synthetic import write_synthetic
    >>> from veerkracht_bayes.inference.sampling import SamplerSettings, fit
    >>> from veerkracht_bayes.survey.statistics import model_data_from_survey
    >>> from veerkracht_bayes.workflow.config import parse_config, validate_inputs
    >>> from veerkracht_bayes.workflow.pipeline import subgroup_infos
    >>> d = Path(tempfile.mkdtemp())
    >>> files = write_synthetic(d, n=300, seed=2)  # doctest: +SKIP
    >>> cfg = parse_config({"inputs": {"survey": str(files["data"]), "codebook": str(files["codebook"])},
    ...                     "query": {"policies": ["P01", "P03"], "outcomes": ["mental_problems"]},
    ...                     "output": {"dir": str(d / "out")}})  # doctest: +SKIP
    >>> vi = validate_inputs(cfg)  # doctest: +SKIP
    >>> data = model_data_from_survey(vi.survey, vi.graph, missing="fiml")  # doctest: +SKIP
    >>> fitted = fit(vi.graph, data, vi.priors,
    ...              settings=SamplerSettings(chains=1, draws=50, tune=50, progressbar=False))  # doctest: +SKIP
    >>> infos, _, _ = subgroup_infos(vi)  # doctest: +SKIP
    >>> do_res = do_query(StructuralDraws.from_posterior(fitted.idata, vi.graph), vi.interventions,
    ...                   vi.outcomes, subgroups=infos, min_cell_size=vi.min_cell_size)  # doctest: +SKIP
    >>> tab = threshold_rows([spec], survey=vi.survey, data=data, fitted=fitted, do_res=do_res,
    ...                      subgroups=infos, groupings=[], group_results={},
    ...                      min_cell_size=vi.min_cell_size)  # doctest: +SKIP
    >>> list(tab.columns) == list(THRESHOLD_COLUMNS)  # doctest: +SKIP
    True
    >>> tab[["policy", "scope", "suppressed"]].values.tolist()  # P01's target group is below 50  # doctest: +SKIP
    [['P01', 'population', True], ['P03', 'population', False]]
    """
    polychoric = fitted.idata.attrs.get("likelihood") == "polychoric"
    post = fitted.idata["posterior"].to_dataset()
    if not polychoric:
        lam, th, nu = _measurement(post, fitted.layout)
        items = list(fitted.layout.items)
        centre, scale_ = _native(data, items)
    usable = do_res.usable()
    rows: list[dict[str, Any]] = []
    for spec in specs:
        eff_within = do_res.outcome_effect(spec.outcome)
        if polychoric:
            score = _PolychoricScore(spec, fitted, survey)
            L_sign = int(np.sign(np.nanmean(score.shift(None, 1.0)))) or 1

            def cell(i: int, mask: np.ndarray | None, p: float, sd: float) -> tuple[dict[str, Any], Any]:
                return _cell(usable[i], p, sd, lambda: calibrated_shares(
                    spec, p, sd, score.shift(mask, eff_within[i])[usable[i]]).effect_pp)
        else:
            inter, slope, err = scale_moments(spec, items, lam, th, nu, centre, scale_)
            L_sign = int(np.sign(np.nanmean(slope))) or 1

            def cell(i: int, mask: np.ndarray | None, p: float, sd: float) -> tuple[dict[str, Any], Any]:
                return _threshold_cell(spec, inter, slope, err, eff_within[i], usable[i], p, sd)
        d = desirable_direction(spec.outcome)
        # desirable sign of the change of the share: the score moves with the construct (L_sign);
        # "below" shrinks as it rises
        sign = (-1 if spec.direction == "below" else 1) * L_sign * d
        desirable = "decrease" if sign < 0 else "increase"
        base = {"threshold": spec.name, "outcome": spec.outcome, "mrc_pp": mrc_pp, "desirable": desirable}
        summary = {"ci_prob": ci_prob, "mrc_pp": mrc_pp, "sign": sign}
        rows += _policy_threshold_rows(spec, survey, do_res, subgroups, base=base, cell=cell, summary=summary,
                                       min_cell_size=min_cell_size)
        rows += _grouping_threshold_rows(spec, survey, groupings, group_results, base=base, sign=sign,
                                         min_cell_size=min_cell_size, ci_prob=ci_prob, mrc_pp=mrc_pp)
    return _threshold_frame(rows)


def _policy_threshold_rows(spec: ThresholdSpec, survey: Any, do_res: DoResult, subgroups: Mapping[str, Any], *,
                           base: dict[str, Any], cell: Any, summary: dict[str, Any],
                           min_cell_size: int) -> list[dict[str, Any]]:
    """Rows of the single-group fit's do-query: the population, and a targeted policy's group.

    ``cell(i, mask, p_obs, sd_obs)`` is policy ``i``'s cell (:func:`_cell`) in the respondents of
    ``mask`` (None: everyone) given the observed share and SD there; ``summary`` the keywords of
    :func:`_row`.
    """
    rows: list[dict[str, Any]] = []
    p_pop, sd_pop, n_pop = observed_scale(spec, survey)
    for i, pid in enumerate(do_res.names):
        g = do_res.subgroups[i]
        reason = do_res.suppressed[i]
        common = {**base, "policy": pid}
        if reason:
            rows.append({**common, "scope": "population", "group": "population", "grouping": "",
                         "n_group": n_pop, "suppressed": True, "reason": str(reason)})
            continue
        if g is None:
            r = _row(cell(i, None, p_pop, sd_pop), scale=1.0, **summary)
            rows.append({**common, **r, "scope": "population", "group": "population", "grouping": "",
                         "n_group": n_pop, "suppressed": False, "reason": ""})
            continue
        # targeted: the share changes only inside the target group; the population change is its
        # weighted prevalence times the change there
        mask = survey.subgroup_mask(g)
        p_g, sd_g, n_g = observed_scale(spec, survey, mask)
        prev = float(subgroups[g].prevalence) if g in subgroups else float("nan")
        c = cell(i, mask, p_g, sd_g)
        r_in, r_pop = _row(c, scale=1.0, **summary), _row(c, scale=prev, **summary)
        r_pop["baseline_share"] = 100.0 * p_pop
        rows.append({**common, **r_pop, "scope": "population", "group": "population", "grouping": "",
                     "n_group": n_pop, "suppressed": False, "reason": ""})
        small = n_g < min_cell_size
        rows.append({**common, **r_in, "scope": "target", "group": g, "grouping": "", "n_group": n_g,
                     "suppressed": small, "reason": f"target group below the minimum cell size "
                     f"{min_cell_size}" if small else ""})
    return rows


class _PolychoricScore:
    """A threshold scale on the polychoric route: its items' loadings and margins per cell.

    ``shift(mask, effect)`` is the score's change of mean per draw (:func:`score_shift`), with the
    ordinal items' margins of the respondents in ``mask`` who answered every item of the scale (the
    same respondents as :func:`observed_scale`), and a continuous item's SD over all who answered it.
    """

    def __init__(self, spec: ThresholdSpec, fitted: Any, survey: Any) -> None:
        data = fitted.data
        items = list(data.item_names)
        for it in spec.items:
            if it not in items:
                raise InterventionError(Problem(
                    f"threshold {spec.name!r}: item {it!r} is not an item of the polychoric fit"
                    f"{did_you_mean(it, items)}", field="items", value=it))
        lam = fitted.idata["posterior"]["lambda"].sel(item=list(spec.items))
        self.loadings = lam.transpose("chain", "draw", "item").values.reshape(-1, len(spec.items))
        self.weights = np.ones(len(spec.items)) if spec.weights is None else np.asarray(spec.weights, dtype=float)
        y, cols = survey.item_matrix(reverse=True)
        self.x = y[:, [cols.index(it) for it in spec.items]]
        self.w = np.asarray(survey.weights, dtype=float)
        kinds = dict(zip(data.stats.names, data.stats.kinds))
        self.ordinal = [kinds[it] == "ordinal" for it in spec.items]
        self.values = [np.unique(col[np.isfinite(col)]) for col in self.x.T]
        self.sd = [_weighted_sd(col[np.isfinite(col)], self.w[np.isfinite(col)]) for col in self.x.T]
        self.complete = ~np.isnan(self.x).any(axis=1)

    def shift(self, mask: np.ndarray | None, effect: np.ndarray | float) -> np.ndarray:
        keep = self.complete if mask is None else self.complete & np.asarray(mask, dtype=bool)
        if not keep.any():
            return np.full(self.loadings.shape[0], np.nan)
        margins = [item_margin(self.x[keep, j], self.w[keep], values=self.values[j]) if o else self.sd[j]
                   for j, o in enumerate(self.ordinal)]
        return score_shift(self.weights, self.loadings, effect, margins)


def _grouping_threshold_rows(spec: ThresholdSpec, survey: Any, groupings: Sequence[GroupingFit],
                             group_results: Mapping[str, Mapping[str, DoResult]], *, base: dict[str, Any],
                             sign: int, min_cell_size: int, ci_prob: float, mrc_pp: float) -> list[dict[str, Any]]:
    """Rows of the groups of the multi-group fits (the policy's dose given to everyone in the group)."""
    rows: list[dict[str, Any]] = []
    for gf in groupings:
        res = group_results.get(gf.by)
        if gf.fit is None or res is None:
            continue
        gpost = gf.fit.posterior
        glam, gth, gnu = _flat(gpost, "lambda_group"), _flat(gpost, "theta"), _flat(gpost, "nu_group")
        gitems = list(gf.fit.layout.base.items)
        gcentre, gscale = _native(gf.fit.data.pooled, gitems)
        labels_row = np.asarray([None if v is None else str(v) for v in _row_labels(survey, gf.by)],
                                dtype=object)
        for k, lab in enumerate(gf.labels):
            gi, gs, ge = scale_moments(spec, gitems, glam[:, k], gth, gnu[:, k], gcentre, gscale)
            p_g, sd_g, n_g = observed_scale(spec, survey, labels_row == lab)
            rg = res[lab]
            e_g = rg.outcome_effect(spec.outcome)
            u_g = rg.usable()
            for i, pid in enumerate(rg.names):
                common = {**base, "policy": pid, "scope": "group", "group": lab, "grouping": gf.by,
                          "n_group": int(gf.counts[k])}
                if gf.counts[k] < min_cell_size:
                    rows.append({**common, "baseline_share": float("nan"), "suppressed": True,
                                 "reason": f"group below the minimum cell size {min_cell_size}"})
                    continue
                r = _row(_threshold_cell(spec, gi, gs, ge, e_g[i], u_g[i], p_g, sd_g), scale=1.0,
                         ci_prob=ci_prob, mrc_pp=mrc_pp, sign=sign)
                rows.append({**common, **r, "suppressed": False, "reason": ""})
    return rows


def _threshold_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``thresholds.csv``'s frame: suppressed cells blanked, a row without a number says why."""
    df = pd.DataFrame(rows, columns=list(THRESHOLD_COLUMNS))
    num = ["baseline_share", "effect_pp", "lower", "upper", "p_meaningful"]
    df.loc[df["suppressed"].astype(bool), num] = np.nan
    # a row without a number says why: a target group that lies entirely on one side of the
    # cut-off (e.g. a group defined by the same scale) has no spread there to place the cut-off in
    nonum = ~df["suppressed"].astype(bool) & df["effect_pp"].isna() & (df["reason"].fillna("") == "")
    df.loc[nonum, "reason"] = ("no number: the target group lies (almost) entirely on one side of the "
                               "cut-off, so the normal approximation of its score cannot place the "
                               "cut-off in it")
    return df


def _native(data: Any, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Native centre and scale of ``items`` (in that order) from model data."""
    names = list(data.item_names)
    idx = [names.index(it) for it in items]
    return np.asarray(data.item_center, dtype=float)[idx], np.asarray(data.item_scale, dtype=float)[idx]


def _row_labels(survey: Any, by: str) -> list[Any]:
    from veerkracht_bayes.sem.multigroup import group_labels_from_survey

    return group_labels_from_survey(survey, by)
