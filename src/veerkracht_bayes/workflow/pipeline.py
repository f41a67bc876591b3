"""The reproducible run: one config in, a folder of numbers, figures and a brief out.

:func:`run` goes through the stages in order::

    validate every input (run_config.validate_inputs)  -- fails before any sampling
    -> model data from the survey -> fit (or prior-only) -> diagnose
    -> structural draws (edge classes from the diagnostics) -> do-query of every policy
       (subgroup targeting with weighted survey prevalences; small cells suppressed)
    -> effect summaries (evidence classes per link from the fit, the priors and the
       diagnostics), pairwise P(A beats B), P(best), assumption sensitivity
    -> trajectories -> loop gains
    -> write_outputs (atomic: a temporary folder next to the target, renamed at the end)

If the diagnostics fail, the numbers are still written but no brief is produced unless
``force=True``; the :class:`RunResult` then has ``forced=True`` so page one can say so.

Outputs (see ``docs/pipeline.md``): ``posterior.nc`` (an ArviZ DataTree: :data:`POSTERIOR_GROUPS`;
the log-likelihood per missingness pattern, never per respondent), ``effects.csv``/``effects.parquet``,
``sensitivity.csv``, ``pairwise.csv``, ``loops.csv``, ``trajectories.csv``, ``subgroups.csv``, ``diagnostics.json``,
``provenance.json``, ``config.toml`` (a copy), ``tornado.csv`` (each link's and dose's share of each
effect's linearised variance), ``structure.csv`` + ``robustness.csv`` (with ``[structure]``),
``voi.csv`` (with ``[voi]``), ``neighbourhoods.json`` + ``neighbourhood_effects.csv`` +
``neighbourhood_links.csv`` (with ``[neighbourhoods]``; :mod:`veerkracht_bayes.workflow.neighbourhoods`) and, when :mod:`veerkracht_bayes.report.brief` is
installed, ``brief.md``/``brief.html`` with figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.resources import package_data_path, shipped_root
from veerkracht_bayes.errors import ConfigError, Problem
from veerkracht_bayes.workflow.config import RunConfig, ValidatedInputs, fast_settings, load_config, validate_inputs

__all__ = ["RunResult", "run", "write_outputs", "sweep_stale_staging", "subgroup_infos",
           "trajectory_table", "POSTERIOR_GROUPS", "EXIT_DIAGNOSTICS_FAILED", "CLEANUP_SIGNALS",
           "write_posterior", "is_interactive", "StepProgress", "resolve_run_measurement"]

log = logging.getLogger(__name__)

#: Groups of the fit's DataTree written to ``posterior.nc``. ``log_likelihood`` is written per
#: missingness pattern (the sum over the pattern's respondents), never per respondent;
#: ``observed_data`` holds weighted item summaries per pattern, never respondent rows.
POSTERIOR_GROUPS = ("posterior", "prior", "sample_stats", "log_prior", "log_likelihood",
                    "observed_data", "constant_data")
#: Exit code of the CLI when diagnostics fail and ``--force`` was not given.
EXIT_DIAGNOSTICS_FAILED = 3


@dataclass
class RunResult:
    """Everything a run produced (the brief renderer reads these fields by name).

    Examples
    --------
    :func:`run` returns one; a prior-only run of the MARVEL diagram (it samples the prior: some
    seconds, so not run here; ``tests/workflow/test_pipeline.py`` runs it):

    >>> import dataclasses, tempfile
    >>> from veerkracht_bayes.workflow.config import parse_config
    >>> cfg = parse_config({"inputs": {"prior_only": True}, "sampler": {"prior_draws": 100},
    ...                     "output": {"dir": tempfile.mkdtemp() + "/run"}})
    >>> result = run(cfg, write=False, progress=False)  # doctest: +SKIP
    >>> result.prior_only, result.diagnostics_passed, "p_meaningful" in result.effects.columns  # doctest: +SKIP
    (True, True, True)
    >>> [f.name for f in dataclasses.fields(RunResult)][:4]
    ['config', 'config_path', 'graph', 'priors']
    """

    config: RunConfig
    config_path: Path | None
    graph: Any
    priors: Any
    survey_report: Any
    fit: Any
    diagnostics: Any
    policies: Any
    do_result: Any
    effects: pd.DataFrame
    pairwise: dict[str, pd.DataFrame]
    p_best: pd.DataFrame
    trajectories: pd.DataFrame
    loop_gains: pd.DataFrame
    loop_amplification: pd.DataFrame
    subgroup_sizes: pd.DataFrame
    provenance: dict[str, Any]
    forced: bool = False
    prior_only: bool = False
    warnings: list[str] = field(default_factory=list)
    fast: bool = False
    out_dir: Path | None = None
    brief_written: bool = False
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)
    edge_evidence: dict[str, str] = field(default_factory=dict)
    tornado: pd.DataFrame = field(default_factory=pd.DataFrame)
    structure: Any = None  # workflow.uncertainty.StructureResult when [structure] is set
    heterogeneity: pd.DataFrame | None = None  # heterogeneity.csv when [model] groups is set
    group_links: pd.DataFrame | None = None  # group_links.csv (group deviations of the pooled links)
    group_fits: list[Any] = field(default_factory=list)  # workflow.for_whom.GroupingFit per grouping
    thresholds: pd.DataFrame | None = None  # thresholds.csv when [[query.thresholds]] is set
    voi: pd.DataFrame | None = None  # voi.csv when [voi] is set
    neighbourhoods: Any = None  # workflow.neighbourhoods.NeighbourhoodResult when [neighbourhoods] is set

    @property
    def diagnostics_passed(self) -> bool:
        """Whether the convergence diagnostics passed."""
        return bool(getattr(self.diagnostics, "passed", False))


# ----------------------------------------------------------------------------- progress
def is_interactive() -> bool:
    """True on a terminal (stderr is a TTY) and in a Jupyter kernel: where progress bars are seen.

    Examples
    --------
    >>> isinstance(is_interactive(), bool)
    True
    """
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no IPython: not interactive
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class StepProgress:
    """A progress bar over the run's steps (``tqdm.auto``: a terminal, or a Jupyter cell: a widget
    with ipywidgets, else text); silent when ``enabled`` is False or nobody can see it.

    Examples
    --------
    >>> with StepProgress(2, enabled=False) as steps:
    ...     steps.step("reading the survey")
    ...     steps.done()
    """

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = bool(enabled) and is_interactive()
        self.total = total
        self._bar = None

    def __enter__(self) -> StepProgress:
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc="starting", unit="step", leave=False, file=sys.stderr,
                             bar_format="{desc:<40.40} {bar} {n_fmt}/{total_fmt} [{elapsed}]")
        return self

    def step(self, description: str) -> None:
        log.info("%s", description)
        if self._bar is not None:
            self._bar.set_description_str(description)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


# ----------------------------------------------------------------------------- diagnostics
def _diagnose(fit: Any, cfg: RunConfig) -> Any:
    """Call :func:`veerkracht_bayes.inference.diagnostics.diagnose` with the configured thresholds."""
    try:
        mod = importlib.import_module("veerkracht_bayes.inference.diagnostics")
    except ModuleNotFoundError as exc:
        if exc.name != "veerkracht_bayes.inference.diagnostics":
            raise
        log.warning("veerkracht_bayes.inference.diagnostics is not installed; using the built-in minimal "
                    "checks (R-hat, ESS) and no edge classification")
        return _MinimalDiagnostics.compute(fit, cfg)
    thresholds = {**cfg.diagnostics.model_dump(), "seed": cfg.sampler.seed}
    params = inspect.signature(mod.diagnose).parameters
    ignored = sorted(k for k in thresholds if k not in params)
    if ignored:
        log.warning("diagnose() does not take the thresholds %s; ignored", ignored)
    return mod.diagnose(fit, **{k: v for k, v in thresholds.items() if k in params})


@dataclass
class _MinimalDiagnostics:
    """Stand-in with the Diagnostics contract when the diagnostics module is absent."""

    passed: bool
    problems: list[str]
    edge_class: dict[str, str] | None
    edge_table: pd.DataFrame
    summary: dict[str, Any]

    @classmethod
    def compute(cls, fit: Any, cfg: RunConfig) -> "_MinimalDiagnostics":
        th = cfg.diagnostics
        summary: dict[str, Any] = {"prior_only": fit.prior_only}
        problems: list[str] = []
        if not fit.prior_only:
            import arviz as az

            post = fit.idata["posterior"].to_dataset()[["beta"]]
            rhat = float(np.nanmax(az.rhat(post)["beta"].values))
            ess_b = float(np.nanmin(az.ess(post, method="bulk")["beta"].values))
            ess_t = float(np.nanmin(az.ess(post, method="tail")["beta"].values))
            summary.update(rhat_max=rhat, ess_bulk_min=ess_b, ess_tail_min=ess_t)
            if rhat > th.rhat_max:
                problems.append(f"max R-hat {rhat:.3f} > {th.rhat_max}")
            if min(ess_b, ess_t) < th.ess_min:
                problems.append(f"min ESS {min(ess_b, ess_t):.0f} < {th.ess_min:.0f}")
        return cls(passed=not problems, problems=problems, edge_class=None,
                   edge_table=pd.DataFrame(), summary=summary)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "problems": self.problems, "summary": self.summary,
                "edge_class": self.edge_class, "minimal": True}

    def to_markdown(self) -> str:
        head = "Diagnostics passed." if self.passed else "Diagnostics FAILED:"
        return "\n".join([head] + [f"- {p}" for p in self.problems])


# ----------------------------------------------------------------------------- helpers
def subgroup_infos(vi: ValidatedInputs) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """SubgroupInfo per subgroup (weighted prevalence, n) and the subgroup size table.

    Subgroups are the configured ones plus every subgroup a selected policy targets. The table
    (``subgroup, n, weighted_n, prevalence, below_min_cell_size, suppressed, reason``) holds
    counts only, never respondent-level values.

    Examples
    --------
    Without a survey the prevalences come from ``[query] prevalence`` (a share of 1 where none is
    given) and ``n`` is unknown:

    >>> import tempfile
    >>> from veerkracht_bayes.workflow.config import parse_config, validate_inputs
    >>> cfg = parse_config({"inputs": {"prior_only": True},
    ...                     "query": {"prevalence": {"single_parent": 0.06}},
    ...                     "output": {"dir": tempfile.mkdtemp() + "/run"}})
    >>> infos, table, warnings = subgroup_infos(validate_inputs(cfg))
    >>> infos["single_parent"].prevalence, infos["single_parent"].n, bool(table["suppressed"].any())
    (0.06, None, False)
    """
    from veerkracht_bayes.causal.do import SubgroupInfo

    warnings: list[str] = []
    names = list(dict.fromkeys(list(vi.subgroups) + [iv.subgroup for iv in vi.interventions
                                                     if iv.subgroup is not None]))
    infos: dict[str, Any] = {}
    rows = []
    prev_cfg = vi.config.query.prevalence
    for g in names:
        if vi.survey is not None:
            mask = vi.survey.subgroup_mask(g)
            w = vi.survey.weights
            n = int(mask.sum())
            wn = float(w[mask].sum())
            prev = wn / float(w.sum())
        else:
            n, wn = None, float("nan")
            prev = float(prev_cfg.get(g, 1.0))
        below = n is not None and n < vi.min_cell_size
        reason = (f"n={n} below the minimum cell size {vi.min_cell_size}" if below else "")
        if prev <= 0.0:
            warnings.append(f"subgroup {g!r} is empty in the survey; its estimates are suppressed")
            prev = 1.0
        infos[g] = SubgroupInfo(prevalence=min(prev, 1.0), n=n)
        rows.append({"subgroup": g, "n": n, "weighted_n": wn, "prevalence": prev,
                     "below_min_cell_size": below, "suppressed": below, "reason": reason})
    table = pd.DataFrame(rows, columns=["subgroup", "n", "weighted_n", "prevalence",
                                        "below_min_cell_size", "suppressed", "reason"])
    return infos, table, warnings


def trajectory_table(traj: Any, ci_prob: float) -> pd.DataFrame:
    """Tidy population-scope trajectories: ``policy, outcome, t, mean, lower, upper``.

    Examples
    --------
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.dynamics import simulate_trajectories
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "ab",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("a", "b")],
    ...     "edges": [{"source": "a", "target": "b", "sign": "+", "evidence": "t"}]}))
    >>> draws = StructuralDraws.from_arrays(g, [[0.5], [0.4]], [0.0, 0.0])
    >>> tr = simulate_trajectories(draws, [Intervention(name="a up", parts=[Shift(node="a", delta=1.0)])],
    ...                            outcomes=["b"], horizon=5)
    >>> tab = trajectory_table(tr, 0.9)
    >>> len(tab) > 0, "mean" in tab.columns
    (True, True)
    """
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    frames = []
    for o in traj.outcomes:
        x = traj.outcome(o.name, scope="population")  # (I, S, T+1)
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            mean = np.nanmean(x, axis=1)
            lower = np.nanquantile(x, lo_q, axis=1)
            upper = np.nanquantile(x, hi_q, axis=1)
        for i, name in enumerate(traj.names):
            frames.append(pd.DataFrame({"policy": name, "outcome": o.name, "t": traj.times,
                                        "mean": mean[i], "lower": lower[i], "upper": upper[i]}))
    cols = ["policy", "outcome", "t", "mean", "lower", "upper"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        yield


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- run
def run(config_path_or_model: str | Path | RunConfig, *, overwrite: bool = False,
        force: bool = False, fast: bool = False, progress: bool = True,
        out_dir: str | Path | None = None, write: bool = True) -> RunResult:
    """Run the whole pipeline from a config and write its outputs.

    Parameters
    ----------
    config_path_or_model
        A TOML file or a :class:`RunConfig` (relative paths resolve against its ``base_dir``).
    overwrite
        Replace an existing non-empty output folder.
    force
        Write the brief even when the diagnostics fail (``RunResult.forced`` is then True).
    fast
        Short chains and scaled diagnostics thresholds (:func:`run_config.fast_settings`).
    progress
        Show progress bars (on a terminal and in Jupyter): the run's steps and the sampler's
        iterations. ``False`` (the CLI's ``--quiet``) shows none.
    out_dir
        Override ``[output] dir`` (relative to the current folder).
    write
        Write the outputs (:func:`write_outputs`); False returns the result only.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        (and other :class:`~veerkracht_bayes.errors.VeerkrachtError`) for bad inputs, before any
        sampling.

    Examples
    --------
    Runs the whole analysis (it samples: minutes, so not run here):

    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import package_data_path
    >>> result = vb.run(package_data_path("demo.toml"), fast=True, out_dir="out")  # doctest: +SKIP
    >>> result.passed  # doctest: +SKIP
    True
    """
    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.dynamics import simulate_trajectories
    from veerkracht_bayes.causal.summaries import p_best, pairwise_beats, summarise_effects
    from veerkracht_bayes.causal.evidence import edge_evidence
    from veerkracht_bayes.causal.sensitivity import assumption_sensitivity
    from veerkracht_bayes.causal.loops import loop_amplification, loop_gain_summary
    from veerkracht_bayes.inference.provenance import collect_provenance
    from veerkracht_bayes.inference.sampling import SamplerSettings, fit
    from veerkracht_bayes.causal.draws import StructuralDraws
    from veerkracht_bayes.survey.statistics import model_data_from_survey

    cfg = load_config(config_path_or_model) if not isinstance(config_path_or_model, RunConfig) \
        else config_path_or_model
    if out_dir is not None:
        cfg = cfg.model_copy(deep=True).with_base(cfg.base_dir, cfg.path)
        cfg.output.dir = str(Path(out_dir).resolve())
    if fast:
        cfg = fast_settings(cfg)
    if write:
        sweep_stale_staging(cfg.out_dir)  # debris of interrupted runs of dead processes
    with StepProgress(10, progress) as steps:
        steps.step("validating inputs")
        vi = validate_inputs(cfg, overwrite=overwrite)
        warnings: list[str] = list(vi.warnings)
        steps.done()
        q, s = cfg.query, cfg.sampler
        prior_only = cfg.inputs.prior_only
        cfg, choice = resolve_run_measurement(cfg, None if prior_only else vi.survey, vi.graph)
        polychoric = cfg.model.measurement == "polychoric" and not prior_only
        if polychoric:
            check_polychoric_config(cfg)
            warnings += polychoric_skips(cfg)
        data = None
        steps.step("preparing model data")
        if not prior_only:
            data = model_data_from_survey(vi.survey, vi.graph, missing=cfg.model.missing)
            if data.n_excluded:
                warnings.append(f"{data.n_excluded} respondents excluded from the fit: "
                                f"{data.exclusion_reasons}")
        steps.done()
        steps.step("prior-only sampling" if prior_only else
                   f"sampling ({s.chains} chains x {s.tune}+{s.draws})")
        settings = SamplerSettings(sampler=s.sampler, chains=s.chains, draws=s.draws, tune=s.tune,
                                   target_accept=s.target_accept, random_seed=s.seed,
                                   progressbar=bool(progress) and is_interactive(),
                                   prior_draws=s.prior_draws)
        if polychoric:
            fitted = fit_main_polychoric(cfg, vi, settings)
        else:
            from veerkracht_bayes.survey.codebook import continuous_path_reliabilities

            fitted = fit(vi.graph, data, vi.priors, settings=settings,
                         vague=cfg.inputs.priors == "vague", reliability=cfg.model.reliability,
                         item_reliability=(None if vi.survey is None else
                                           continuous_path_reliabilities(vi.survey, vi.graph,
                                                                         cfg.model.reliability) or None),
                         files={k: v for k, v in vi.files.items() if k != "config"},
                         pointwise=not prior_only, prior_only=prior_only)
        for k, v in choice.to_dict().items():
            fitted.idata.attrs[k] = v
        steps.done()
        steps.step("diagnostics")
        diag = _diagnose(fitted, cfg)
        if not diag.passed:
            probs = [str(p) for p in diag.problems]
            more = f"; ... ({len(probs) - 3} more, see diagnostics.json)" if len(probs) > 3 else ""
            warnings.append(f"diagnostics failed ({len(probs)} problems): "
                            + "; ".join(probs[:3]) + more)
        steps.done()
        steps.step("policy queries")
        draws = StructuralDraws.from_posterior(fitted.idata, vi.graph,
                                               edge_class=getattr(diag, "edge_class", None))
        infos, sizes, w = subgroup_infos(vi)
        warnings += w
        do_res = do_query(draws, vi.interventions, vi.outcomes, subgroups=infos,
                          min_cell_size=vi.min_cell_size, seed=q.dose_seed)
        for name, reason in zip(do_res.names, do_res.suppressed):
            if reason:
                warnings.append(f"policy {name}: {reason}")
        steps.done()
        steps.step("effect summaries")
        ev = edge_evidence(vi.graph, vi.priors, fit=fitted,
                           edge_class=getattr(diag, "edge_class", None))
        effects = summarise_effects(do_res, vi.outcomes, ci_prob=q.ci_prob,
                                    min_relevant_change=q.min_relevant_change, edge_evidence=ev)
        sens = assumption_sensitivity(draws, vi.interventions, vi.outcomes, graph=vi.graph,
                                      base=do_res, min_relevant_change=q.min_relevant_change,
                                      seed=q.dose_seed, subgroups=infos,
                                      min_cell_size=vi.min_cell_size)
        tornado, struct, voi = _uncertainty(cfg, fitted, draws, do_res, vi, infos, ev)
        pairwise = {o.name: pairwise_beats(do_res, o, scope="population") for o in vi.outcomes}
        pbest = pd.DataFrame({o.name: p_best(do_res, o, scope="population") for o in vi.outcomes})
        pbest.index.name = "policy"
        steps.done()
        steps.step("trajectories")
        traj = simulate_trajectories(draws, vi.interventions, vi.outcomes, horizon=q.horizon,
                                     subgroups=infos, min_cell_size=vi.min_cell_size,
                                     seed=q.dose_seed)
        trajectories = trajectory_table(traj, q.ci_prob)
        steps.done()
        steps.step("feedback loops")
        gains = loop_gain_summary(draws, vi.graph, ci_prob=q.ci_prob)
        amp = loop_amplification(draws, vi.graph, vi.interventions, vi.outcomes,
                                 ci_prob=q.ci_prob, subgroups=infos, seed=q.dose_seed)
        steps.done()
        steps.step("for whom: groups, thresholds, neighbourhoods")
        fw = _for_whom(cfg, vi, data, fitted, do_res, infos, prior_only=prior_only,
                       progress=bool(progress) and is_interactive())
        warnings += fw.pop("warnings")
        nbh = _neighbourhoods(cfg, vi, do_res, ev, prior_only=prior_only,
                              progress=bool(progress) and is_interactive())
        if nbh is not None and not nbh.passed:
            warnings.append("neighbourhoods: the two-level fit's diagnostics failed ("
                            + "; ".join(nbh.diagnostics.get("problems") or []) + "); read "
                            "neighbourhood_effects.csv with care")
        steps.done()
        prov = _provenance(cfg, vi, data, collect_provenance, prior_only=prior_only, fast=fast,
                           force=force)
        prov.update(choice.to_dict())
        forced = bool(force and not diag.passed)
        result = RunResult(
            config=cfg, config_path=cfg.path, graph=vi.graph, priors=vi.priors,
            survey_report=None if vi.survey is None else vi.survey.report, fit=fitted,
            diagnostics=diag, policies=vi.policies, do_result=do_res, effects=effects,
            pairwise=pairwise, p_best=pbest, trajectories=trajectories, loop_gains=gains,
            loop_amplification=amp, subgroup_sizes=sizes, provenance=prov, forced=forced,
            prior_only=prior_only, warnings=warnings, fast=fast, sensitivity=sens,
            edge_evidence=ev, tornado=tornado, structure=struct, voi=voi, neighbourhoods=nbh, **fw)
        for msg in warnings:
            log.warning("%s", msg)
        steps.step("writing outputs")
        if write:
            write_outputs(result, cfg.out_dir, overwrite=overwrite)
        steps.done()
    return result


def _provenance(cfg: RunConfig, vi: ValidatedInputs, data: Any, collect: Any, *,
                prior_only: bool, fast: bool, force: bool) -> dict[str, Any]:
    files = {k: v for k, v in vi.files.items() if v is not None}
    settings = {"sampler": cfg.sampler.model_dump(), "model": cfg.model.model_dump(),
                "query": cfg.query.model_dump(), "diagnostics": cfg.diagnostics.model_dump(),
                "inputs": cfg.inputs.model_dump(), "prior_only": prior_only, "fast": fast,
                "force": force}
    if getattr(cfg, "neighbourhoods", None) is not None:
        settings["neighbourhoods"] = cfg.neighbourhoods.model_dump()
    prov = collect(seed=cfg.sampler.seed, files=files,
                   hashes={"data": None if data is None else data.data_hash}, settings=settings)
    # Paths are recorded relative to the config folder when possible (no home folders leaked).
    for entry in prov["inputs"].values():
        if isinstance(entry, dict) and "path" in entry:
            entry["path"] = _relpath(Path(entry["path"]), cfg.base_dir)
    prov["command_line"] = list(sys.argv)
    prov["dose_seed"] = cfg.query.dose_seed
    prov["config_sha256"] = (prov["inputs"].get("config") or {}).get("sha256") or _sha256_text(
        cfg.model_dump_json())
    return prov


def _relpath(p: Path, base: Path) -> str:
    """``p`` relative to the config folder, else to the repository/package root, else as is."""
    p = p.resolve()
    roots = [base.resolve(), shipped_root("data").parent, package_data_path().parent]
    for root in roots:
        if p.is_relative_to(root):
            return p.relative_to(root).as_posix()
    return str(p)


# ----------------------------------------------------------------------------- outputs
def _posterior_tree(fitted: Any) -> Any:
    import xarray as xr

    groups = {}
    for g in POSTERIOR_GROUPS:
        if g in fitted.idata.children:
            ds = fitted.idata[g].to_dataset()
            bad = [d for d in ds.dims if d in ("respondent", "obs", "row")]
            if bad:  # never respondent-level values
                ds = ds.drop_dims(bad)
            groups[g] = ds
    tree = xr.DataTree.from_dict(groups)
    tree.attrs["prior_only"] = int(fitted.prior_only)
    return tree


def write_posterior(fitted: Any, tmp: Path) -> str:
    """Write the fit as an ArviZ DataTree (``posterior.nc``): the groups of :data:`POSTERIOR_GROUPS`,
    the per-respondent log-likelihood summed per missingness pattern (``az.loo`` on the file is
    then leave-one-pattern-out), and the provenance in the root's attributes.

    Parameters
    ----------
    fitted
        A :class:`~veerkracht_bayes.inference.sampling.FitResult` (``vb.fit(...).result``).
    tmp
        The folder to write into.

    Returns
    -------
    str
        The file's name (``"posterior.nc"``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_posterior(f.result, folder)
    'posterior.nc'
    """
    import json

    import xarray as xr

    from veerkracht_bayes.inference.provenance import package_versions
    from veerkracht_bayes.inference.sampling import log_likelihood_by_pattern

    ll = None
    if "log_likelihood" in fitted.idata.children and getattr(fitted, "data", None) is not None:
        ll = log_likelihood_by_pattern(fitted.idata["log_likelihood"].to_dataset(), fitted.data)
    tree = _posterior_tree(fitted)
    if ll is not None:
        tree["log_likelihood"] = xr.DataTree(ll)
    for key, value in fitted.idata.attrs.items():
        tree.attrs.setdefault(key, value)
    prov = json.loads(tree.attrs.get("provenance", "{}") or "{}")
    tree.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    tree.attrs["created_by"] = f"veerkracht_bayes {package_versions().get('veerkracht-bayes', 'unknown')}"
    tree.attrs["log_likelihood"] = ("per missingness pattern: variable y on dim pattern is the sum of the "
                                    "weighted per-respondent log-likelihood over the pattern's respondents")
    if fitted.idata.attrs.get("likelihood") == "polychoric":
        tree.attrs["log_likelihood"] = ("none: the polychoric route's likelihood is on the polychoric "
                                        "correlations, not per respondent (no LOO)")
    for engine in ("h5netcdf", "netcdf4"):
        try:
            importlib.import_module("h5netcdf" if engine == "h5netcdf" else "netCDF4")
            if engine == "h5netcdf":
                importlib.import_module("h5py")
        except ImportError:
            continue
        tree.to_netcdf(tmp / "posterior.nc", engine=engine)
        return "posterior.nc"
    log.warning("no netCDF engine (h5netcdf or netCDF4) installed; writing posterior.zarr instead")
    tree.to_zarr(tmp / "posterior.zarr")
    return "posterior.zarr"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _dump_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default,
                               ensure_ascii=False) + "\n", encoding="utf-8")


def _diagnostics_dict(diag: Any) -> dict[str, Any]:
    d = diag.to_dict() if hasattr(diag, "to_dict") else {"passed": bool(diag.passed)}
    d.setdefault("passed", bool(diag.passed))
    return d


def write_outputs(result: RunResult, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a run's outputs atomically into ``out_dir``.

    Everything is written into a staging folder ``.NAME.tmp-PID-*`` next to ``out_dir`` and renamed
    into place at the end; on any error, and on SIGTERM, SIGINT or SIGHUP while writing, the staging
    folder is removed and an existing ``out_dir`` is left as it was (the signal is then delivered
    as usual, so the process still ends the way the sender asked). Staging folders that dead
    processes left behind are swept first (:func:`sweep_stale_staging`). An existing non-empty
    ``out_dir`` is replaced only with ``overwrite=True``.

    Returns
    -------
    Path
        The output folder.

    Examples
    --------
    A non-empty folder is refused before anything is written:

    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "keep.txt").write_text("mine")
    >>> write_outputs(None, d)
    Traceback (most recent call last):
    ...
    veerkracht_bayes.errors.ConfigError: output folder ... exists and is not empty; refusing to overwrite it (use --overwrite)
    >>> (d / "keep.txt").read_text()
    'mine'

    With ``overwrite=True`` the result of a run replaces it (the run samples, so not run here;
    ``tests/workflow/test_pipeline.py`` writes prior-only runs this way):

    >>> from veerkracht_bayes.workflow.config import parse_config
    >>> cfg = parse_config({"inputs": {"prior_only": True}, "output": {"dir": str(d)}})
    >>> result = run(cfg, write=False, progress=False)  # doctest: +SKIP
    >>> out = write_outputs(result, d, overwrite=True)  # doctest: +SKIP
    >>> (out / "effects.csv").is_file(), (out / "keep.txt").exists()  # doctest: +SKIP
    (True, False)
    """
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ConfigError(Problem(f"output folder {str(out)!r} exists and is not empty; refusing "
                                  "to overwrite it (use --overwrite)", field="output.dir",
                                  value=str(out)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(out)
    with _SignalCleanup() as guard:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
        guard.paths.append(tmp)
        try:
            _write_all(result, tmp)
            with guard.deferred():  # the swap is never cut in half by a signal
                if out.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-",
                                                dir=out.parent))
                    os.replace(out, old / out.name)
                    os.replace(tmp, out)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    result.out_dir = out
    log.info("wrote %s", out)
    return out


#: Signals during which a half-written staging folder is removed before the process ends.
CLEANUP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP")
                        if hasattr(signal, n))


class _StagingInterrupted(BaseException):
    """Raised inside :func:`write_outputs` by a cleanup signal handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class _SignalCleanup:
    """Turn SIGTERM/SIGINT/SIGHUP into an exception while staging, then re-deliver the signal.

    Handlers are only installed in the main thread, and never for a signal the process ignores.
    Inside :meth:`deferred` a signal is held until the block ends (the final rename).
    """

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self._old: dict[int, Any] = {}
        self._defer = False
        self._pending: int | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self._defer:
            self._pending = signum
            return
        raise _StagingInterrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
        if self._pending is not None:
            raise _StagingInterrupted(self._pending)

    def __enter__(self) -> _SignalCleanup:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in CLEANUP_SIGNALS:
                try:
                    prev = signal.getsignal(sig)
                    if prev is signal.SIG_IGN or prev is None:
                        continue
                    signal.signal(sig, self._handler)
                    self._old[sig] = prev
                except (ValueError, OSError):  # pragma: no cover - not allowed here
                    continue
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        for sig, prev in self._old.items():
            signal.signal(sig, prev)
        for p in self.paths:
            if p.exists() and exc is not None:
                shutil.rmtree(p, ignore_errors=True)
        if isinstance(exc, _StagingInterrupted):
            log.warning("interrupted by signal %d while writing outputs; the staging folder was "
                        "removed", exc.signum)
            signal.raise_signal(exc.signum)  # the handler the process had before (default: end)
            raise SystemExit(128 + exc.signum) from None  # a handler that returned
        return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale_staging(out_dir: str | Path, *, before: float | None = None) -> list[Path]:
    """Remove staging folders of ``out_dir`` that interrupted runs of dead processes left behind.

    Staging folders are ``.NAME.tmp-PID-*`` (and ``.NAME.old-PID-*`` during the final swap) next
    to ``out_dir``. A folder is stale when its process is no longer alive; a folder without a
    process id (older versions) is stale when it was last modified before ``before`` (default:
    now, the start of this run). A stale ``.old-`` folder that still holds the previous output
    while ``out_dir`` is missing is renamed back into place instead of removed.

    Returns
    -------
    list of Path
        The folders removed or restored.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".out.tmp-abc").mkdir()
    >>> [p.name for p in sweep_stale_staging(d / "out", before=float("inf"))]
    ['.out.tmp-abc']
    """
    import re
    import time

    out = Path(out_dir).resolve()
    if not out.parent.is_dir():
        return []
    limit = time.time() if before is None else before
    pat = re.compile(r"^\." + re.escape(out.name) + r"\.(tmp|old)-(?:(\d+)-)?")
    swept = []
    for p in sorted(out.parent.iterdir()):
        m = pat.match(p.name)
        if m is None or not p.is_dir():
            continue
        pid = int(m.group(2)) if m.group(2) else None
        if pid is not None:
            if pid == os.getpid() or _pid_alive(pid):
                continue  # a run in progress (this process or another)
        else:
            try:
                if p.stat().st_mtime >= limit:
                    continue
            except OSError:
                continue
        if m.group(1) == "old" and (p / out.name).is_dir() and not out.exists():
            os.replace(p / out.name, out)  # the previous output, interrupted mid-swap
            log.warning("restored %s from an interrupted write (%s)", out, p.name)
        else:
            log.warning("removing %s, left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)
        swept.append(p)
    return swept


def _uncertainty(cfg: RunConfig, fitted: Any, draws: Any, do_res: Any, vi: Any, infos: Any,
                 ev: dict[str, str]) -> tuple[pd.DataFrame, Any, pd.DataFrame | None]:
    """Tornado of every policy x outcome; structural uncertainty and value of information when
    the config has ``[structure]`` / ``[voi]`` (see :mod:`veerkracht_bayes.workflow.uncertainty`)."""
    import time

    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.tornado import tornado_table
    from veerkracht_bayes.workflow.uncertainty import structure_from_fit, voi_from_fit, wave_refit

    tornado = tornado_table(do_res, vi.outcomes, scope="population", top=10)
    struct = voi = None
    sc, vc = getattr(cfg, "structure", None), getattr(cfg, "voi", None)
    t0 = time.perf_counter()
    if sc is not None:
        struct = structure_from_fit(fitted, draws, vi.interventions, vi.outcomes, edge_evidence=ev,
                                    subgroups=infos, variants=sc.variants,
                                    prior_inclusion=sc.prior_inclusion,
                                    n_structures=sc.n_structures,
                                    draws_per_structure=sc.draws_per_structure, seed=sc.seed,
                                    min_cell_size=vi.min_cell_size)
    t1 = time.perf_counter()
    if vc is not None:
        res = do_res if any(o.name == vc.outcome for o in do_res.outcomes) else do_query(
            draws, vi.interventions, [vc.outcome], subgroups=infos,
            min_cell_size=vi.min_cell_size, seed=cfg.query.dose_seed)
        refit = wave_refit(fitted, vi.interventions, vc.outcome, priors=vi.priors,
                           subgroups=infos, items=vc.items, reliability=vc.reliability,
                           max_refits=vc.max_refits, seed=vc.seed,
                           min_cell_size=vi.min_cell_size) \
            if vc.max_refits and cfg.model.measurement != "polychoric" else None
        voi = voi_from_fit(fitted, res, outcome=vc.outcome, candidates=vc.candidates, n=vc.n,
                           items=vc.items, reliability=vc.reliability, seed=vc.seed,
                           method=vc.method, outer_draws=vc.outer_draws, refit=refit)
    log.info("structure: %.1f s, value of information: %.1f s", t1 - t0, time.perf_counter() - t1)
    return tornado, struct, voi


def resolve_run_measurement(cfg: RunConfig, survey: Any, graph: Any = None) -> tuple[RunConfig, Any]:
    """Resolve ``[model] measurement = "auto"`` (the default) for a run.

    The codebook of the survey decides (:func:`~veerkracht_bayes.survey.codebook.resolve_measurement`):
    the polychoric route with ``unmeasured = "joint"`` (unless ``[model] unmeasured`` says otherwise)
    when any model item is binary or Likert with at most 7 categories, else the continuous path.
    A prior-only run (``survey=None``) is continuous; so is a run the polychoric route cannot take
    (``[sampler] sampler`` other than numpyro or blackjax, ``[inputs] priors = "vague"``), with that reason.
    An explicit ``measurement`` is kept (``unmeasured`` unset then means ``"cut"``).

    Returns
    -------
    (RunConfig, MeasurementChoice)
        A copy of ``cfg`` whose ``[model] measurement`` / ``unmeasured`` are the resolved ones, and
        the choice (its ``to_dict()`` goes into ``provenance.json``: ``measurement_requested``,
        ``measurement_resolved``, ``measurement_reason``, ``unmeasured_resolved``).

    Examples
    --------
    >>> from veerkracht_bayes.workflow.config import RunConfig
    >>> cfg = RunConfig(inputs={"prior_only": True})
    >>> resolved, choice = resolve_run_measurement(cfg, None)
    >>> resolved.model.measurement, choice.requested, choice.reason.startswith("prior only")
    ('continuous', 'auto', True)
    """
    from veerkracht_bayes.inference.sampling import JAX_DRIVER_SAMPLERS
    from veerkracht_bayes.survey.codebook import MeasurementChoice, resolve_measurement

    m = cfg.model
    if survey is None:
        used = "continuous" if m.measurement == "auto" else m.measurement
        choice = MeasurementChoice(m.measurement, used, m.unmeasured or "cut",
                                   "prior only: no survey data, so every measurement gives the same prior")
    else:
        blocked = None
        if cfg.sampler.sampler not in JAX_DRIVER_SAMPLERS:
            blocked = (f"[sampler] sampler = {cfg.sampler.sampler!r} (the polychoric route samples with the JAX "
                       f"driver: {' or '.join(JAX_DRIVER_SAMPLERS)})")
        elif cfg.inputs.priors == "vague":
            blocked = "[inputs] priors = 'vague' (the polychoric route takes sign-constrained priors)"
        choice = resolve_measurement(getattr(survey, "codebook", None), graph, measurement=m.measurement,
                                     unmeasured=m.unmeasured, blocked=blocked)
    out = cfg.model_copy(deep=True).with_base(cfg.base_dir, cfg.path)
    out.model = m.model_copy(update={"measurement": choice.measurement, "unmeasured": choice.unmeasured})
    return out, choice


def check_polychoric_config(cfg: RunConfig) -> None:
    """Raise a located :class:`~veerkracht_bayes.errors.ConfigError` when ``[model] measurement =
    "polychoric"`` meets a setting that route cannot take (a sampler other than numpyro, vague priors).

    Examples
    --------
    >>> from veerkracht_bayes.workflow.config import RunConfig
    >>> inputs = {"survey": "survey.csv", "codebook": "codebook.yaml"}
    >>> check_polychoric_config(RunConfig(inputs=inputs, model={"measurement": "polychoric"}))
    >>> from veerkracht_bayes.errors import ConfigError
    >>> try:
    ...     check_polychoric_config(RunConfig(inputs=inputs, model={"measurement": "polychoric"},
    ...                                       sampler={"sampler": "pymc"}))
    ... except ConfigError as exc:
    ...     print(exc.problems[0].location)
    sampler.sampler
    """
    from veerkracht_bayes.errors import ConfigError, Problem

    path = None if cfg.path is None else str(cfg.path)
    if cfg.sampler.sampler != "numpyro":
        raise ConfigError(Problem(f"[model] measurement = 'polychoric' samples with numpyro; got sampler = "
                                  f"{cfg.sampler.sampler!r} (expected 'numpyro')", file=path,
                                  location="sampler.sampler", field="sampler", value=cfg.sampler.sampler))
    if cfg.inputs.priors == "vague":
        raise ConfigError(Problem("[model] measurement = 'polychoric' takes sign-constrained priors ('marvel', "
                                  "'default' or a priors file), not 'vague'", file=path,
                                  location="inputs.priors", field="priors", value="vague"))


def polychoric_skips(cfg: RunConfig) -> list[str]:
    """The run's stated skips under ``[model] measurement = "polychoric"`` (one line each).

    The polychoric fit's likelihood is on the correlation summaries, not on respondents, so
    ``posterior.nc`` has no ``log_likelihood`` group (no LOO); ``[model] groups`` (heterogeneity.csv,
    and the group rows of thresholds.csv) and ``[neighbourhoods]`` are fits of their own on the
    continuous path, stated as such. Threshold outcomes of the population and of targeted groups
    come from the polychoric posterior (:func:`veerkracht_bayes.causal.thresholds.score_shift`).

    Examples
    --------
    >>> from veerkracht_bayes.workflow.config import RunConfig
    >>> cfg = RunConfig(inputs={"survey": "survey.csv", "codebook": "codebook.yaml"},
    ...                 model={"measurement": "polychoric"})
    >>> polychoric_skips(cfg)[0][:40]
    'measurement = polychoric: posterior.nc h'
    """
    out = ["measurement = polychoric: posterior.nc has no log_likelihood group (the likelihood is on the "
           "polychoric correlations, not per respondent), so LOO / model comparison is not available"]
    if cfg.query.thresholds and cfg.model.groups:
        out.append("measurement = polychoric: in thresholds.csv the rows of [model] groups (scope 'group') come "
                   "from those continuous-path multi-group fits; the population and target-group rows from the "
                   "polychoric posterior (the ordinal items' latent responses)")
    if cfg.model.groups:
        out.append("measurement = polychoric: [model] groups (heterogeneity.csv, group_links.csv) are separate "
                   "multi-group fits on the continuous measurement path, not the polychoric posterior")
    if getattr(cfg, "voi", None) is not None and cfg.voi.max_refits:
        out.append("measurement = polychoric: [voi] uses the importance reweighting only (the refit fallback "
                   "refits the continuous path); candidates whose reweighting is unreliable stay flagged")
    if getattr(cfg, "neighbourhoods", None) is not None:
        out.append("measurement = polychoric: [neighbourhoods] is a separate two-level fit on the continuous "
                   "measurement path, not the polychoric posterior")
    return out


def fit_main_polychoric(cfg: RunConfig, vi: Any, settings: Any) -> Any:
    """The run's main fit on the polychoric route (:func:`~veerkracht_bayes.inference.polychoric_fit.
    fit_polychoric`) with ``[model] reliability`` (fallback), the codebook's per-item ``reliability``
    fields and ``[model] unmeasured``.

    Examples
    --------
    >>> fitted = fit_main_polychoric(cfg, vi, settings)  # doctest: +SKIP

    (made by ``tests/workflow/test_pipeline_polychoric.py``.)
    """
    from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
    from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings

    return fit_polychoric(vi.graph, vi.survey, vi.priors, settings=settings,
                          polychoric=PolychoricSettings(reliability=cfg.model.reliability,
                                                        unmeasured=cfg.model.unmeasured or "cut"))


def _for_whom(cfg: RunConfig, vi: Any, data: Any, fitted: Any, do_res: Any, infos: Any, *,
              prior_only: bool, progress: bool) -> dict[str, Any]:
    """Multi-group fits and per-group do-queries (``[model] groups``) and threshold outcomes
    (``[[query.thresholds]]``); see :mod:`veerkracht_bayes.workflow.for_whom`."""
    from veerkracht_bayes.workflow import for_whom as fw

    q, m, s = cfg.query, cfg.model, cfg.sampler
    out: dict[str, Any] = {"warnings": []}
    groupings: list[Any] = []
    results: dict[str, Any] = {}
    if m.groups and not prior_only:
        draws = m.group_draws if m.group_draws is not None else s.draws
        tune = m.group_tune if m.group_tune is not None else s.tune
        groupings, w = fw.fit_groupings(cfg, vi, draws=draws, tune=tune, progressbar=progress)
        out["warnings"] += w
        outcomes = list(vi.outcomes)
        names = {getattr(o, "name", o) for o in outcomes}
        extra = [o for o in dict.fromkeys(th.outcome for th in q.thresholds) if o not in names]
        results = fw.group_effects(groupings, vi.interventions, outcomes + extra, seed=q.dose_seed)
        out["heterogeneity"] = fw.heterogeneity_rows(groupings, results, outcomes,
                                                     min_cell_size=vi.min_cell_size, ci_prob=q.ci_prob,
                                                     mrc=q.min_relevant_change)
        out["group_links"] = fw.group_links_table(groupings, prob=q.ci_prob)
        out["group_fits"] = groupings
    if q.thresholds:
        if prior_only or data is None:
            out["warnings"].append("threshold outcomes need a fit to survey data (prior_only): "
                                   "thresholds.csv not written")
        else:
            out["thresholds"] = fw.threshold_rows(
                q.thresholds, survey=vi.survey, data=data, fitted=fitted, do_res=do_res, subgroups=infos,
                groupings=groupings, group_results=results, min_cell_size=vi.min_cell_size,
                ci_prob=q.ci_prob, mrc_pp=q.threshold_min_change_pp)
    return out


def _neighbourhoods(cfg: RunConfig, vi: Any, do_res: Any, ev: dict[str, str], *, prior_only: bool,
                    progress: bool) -> Any:
    """The two-level neighbourhood fit and neighbourhood-level policies (``[neighbourhoods]``); see
    :mod:`veerkracht_bayes.workflow.neighbourhoods`."""
    if getattr(cfg, "neighbourhoods", None) is None or prior_only or vi.neighbourhoods is None:
        return None
    from veerkracht_bayes.workflow import neighbourhoods as nbm

    res = nbm.run_neighbourhoods(cfg, vi, do_res, edge_evidence=ev, progressbar=progress)
    log.info("neighbourhoods: two-level fit in %.1f s", res.diagnostics.get("seconds", float("nan")))
    return res


def _write_neighbourhoods(result: RunResult, tmp: Path) -> list[str]:
    """``neighbourhoods.json``, ``neighbourhood_effects.csv`` and ``neighbourhood_links.csv`` (when
    computed); returns the names written."""
    nbh = getattr(result, "neighbourhoods", None)
    if nbh is None:
        return []
    _dump_json(nbh.to_dict(), tmp / "neighbourhoods.json")
    nbh.effects.to_csv(tmp / "neighbourhood_effects.csv", index=False)
    nbh.links.to_csv(tmp / "neighbourhood_links.csv", index=False)
    return ["neighbourhoods.json", "neighbourhood_effects.csv", "neighbourhood_links.csv"]


def _write_for_whom(result: RunResult, tmp: Path) -> list[str]:
    """``heterogeneity.csv``, ``group_links.csv``, ``group_fits.json`` and ``thresholds.csv`` (when
    computed); returns the names written."""
    out: list[str] = []
    het = getattr(result, "heterogeneity", None)
    if het is not None:
        het.to_csv(tmp / "heterogeneity.csv", index=False)
        out.append("heterogeneity.csv")
        links = getattr(result, "group_links", None)
        if links is not None:
            links.to_csv(tmp / "group_links.csv", index=False)
            out.append("group_links.csv")
        _dump_json([gf.to_dict() for gf in getattr(result, "group_fits", [])], tmp / "group_fits.json")
        out.append("group_fits.json")
    th = getattr(result, "thresholds", None)
    if th is not None:
        th.to_csv(tmp / "thresholds.csv", index=False)
        out.append("thresholds.csv")
    return out


def _write_uncertainty(result: RunResult, tmp: Path) -> list[str]:
    """``tornado.csv`` (always), ``structure.csv`` + ``robustness.csv`` and ``voi.csv`` (when
    computed); returns the names written."""
    out: list[str] = []
    tornado = getattr(result, "tornado", None)
    if tornado is not None and len(tornado.columns):
        tornado.to_csv(tmp / "tornado.csv", index=False)
        out.append("tornado.csv")
    struct = getattr(result, "structure", None)
    if struct is not None:
        struct.links.to_csv(tmp / "structure.csv", index=False)
        struct.robustness.to_csv(tmp / "robustness.csv", index=False)
        out += ["structure.csv", "robustness.csv"]
    voi = getattr(result, "voi", None)
    if voi is not None:
        voi.to_csv(tmp / "voi.csv", index=False)
        out.append("voi.csv")
    return out


def _write_all(result: RunResult, tmp: Path) -> None:
    cfg = result.config
    formats = set(cfg.output.formats)
    written: list[str] = []
    if "netcdf" in formats:
        written.append(write_posterior(result.fit, tmp))
    eff = result.effects
    if "csv" in formats:
        eff.to_csv(tmp / "effects.csv", index=False)
        if result.sensitivity is not None and len(result.sensitivity.columns):
            result.sensitivity.to_csv(tmp / "sensitivity.csv", index=False)
            written.append("sensitivity.csv")
        written += _write_uncertainty(result, tmp)
        written += _write_for_whom(result, tmp)
        written += _write_neighbourhoods(result, tmp)
        pw = []
        for outcome, m in result.pairwise.items():
            long = m.stack().rename("p_beats").reset_index()
            long.insert(0, "outcome", outcome)
            pw.append(long)
        pd.concat(pw, ignore_index=True).to_csv(tmp / "pairwise.csv", index=False)
        result.p_best.to_csv(tmp / "p_best.csv")
        loops = result.loop_gains.copy()
        loops.to_csv(tmp / "loops.csv", index=False)
        result.loop_amplification.to_csv(tmp / "loop_amplification.csv", index=False)
        result.trajectories.to_csv(tmp / "trajectories.csv", index=False)
        result.subgroup_sizes.to_csv(tmp / "subgroups.csv", index=False)
        written += ["effects.csv", "pairwise.csv", "p_best.csv", "loops.csv",
                    "loop_amplification.csv", "trajectories.csv", "subgroups.csv"]
    if "parquet" in formats:
        eff.to_parquet(tmp / "effects.parquet", index=False)
        written.append("effects.parquet")
    _dump_json(_diagnostics_dict(result.diagnostics), tmp / "diagnostics.json")
    if result.config_path is not None and Path(result.config_path).is_file():
        shutil.copyfile(result.config_path, tmp / "config.toml")
    brief = False
    if "brief" in formats:
        if result.diagnostics_passed or result.forced:
            brief = _write_brief(result, tmp)
        else:
            msg = ("diagnostics failed: no brief written (numbers are written; rerun with --force "
                   "to write a brief that says so on page one)")
            log.warning("%s", msg)
            if msg not in result.warnings:
                result.warnings.append(msg)
    result.brief_written = brief
    prov = dict(result.provenance)
    prov["outputs"] = sorted(p.name for p in tmp.iterdir()) + ["provenance.json"]
    prov["diagnostics_passed"] = result.diagnostics_passed
    prov["forced"] = result.forced
    prov["brief_written"] = brief
    prov["warnings"] = list(result.warnings)
    result.provenance = prov
    _dump_json(prov, tmp / "provenance.json")


def _write_brief(result: RunResult, tmp: Path) -> bool:
    try:
        mod = importlib.import_module("veerkracht_bayes.report.brief")
    except ModuleNotFoundError as exc:
        if exc.name != "veerkracht_bayes.report.brief":
            raise
        log.warning("veerkracht_bayes.report.brief is not installed; skipping brief.md/brief.html")
        return False
    mod.write_brief(result, tmp)
    return True
