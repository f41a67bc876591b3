"""The public front doors: one ``fit``, one ``do``, and the short verbs around them.

They read like the analysis::

    import veerkracht_bayes as vb
    graph = vb.load_graph("marvel")
    survey = vb.read_survey("survey.csv", "codebook.yaml", graph=graph)
    fit = vb.fit(graph, survey, priors="marvel", draws=1000, chains=2, seed=1)
    fit.summary()                      # DataFrame of the links
    fit.idata                          # ArviZ DataTree
    eff = vb.do(fit, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing"],
                subgroup="single_parent")
    eff.summary()                      # mean, lower, upper, p_meaningful, p_positive, p_stable, evidence

``vb.fit`` also takes a lavaan model string with a DataFrame (the generic SEM path).
Everything here delegates to the subpackages; no statistics is written in this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome, SubgroupInfo, do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, MechanismChange, Set, Shift
from veerkracht_bayes.errors import ConfigError, ModelError, Problem
from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph

__all__ = ["Fit", "Effects", "fit", "compute_log_likelihood", "do", "trajectories", "brief", "draw", "structure", "voi"]

Part = Shift | Set | MechanismChange

#: tuning steps per chain of a polychoric-route fit whose ``tune`` is not given (at most ``draws``);
#: measured in docs/performance.md §7 (500 mixed as well as 1000 on the shipped survey)
POLYCHORIC_DEFAULT_TUNE = 500


# --------------------------------------------------------------------------------------- fit
@dataclass
class Fit:
    """A fitted model: the ArviZ DataTree plus what interpreting it needs.

    Attributes
    ----------
    result
        The engine's result (:class:`~veerkracht_bayes.inference.sampling.FitResult` for a
        diagram, :class:`~veerkracht_bayes.sem.lavaan_model.SemFit` for a lavaan model).
    kind
        ``"diagram"`` or ``"lavaan"``.
    survey
        The survey the model was fitted to (subgroups for ``vb.do``), or None.
    priors
        The :class:`~veerkracht_bayes.priors.spec.PriorSet` used (None: vague priors).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> f
    Fit(kind='diagram', prior_only=True)
    >>> f.summary().columns.tolist()[:5]
    ['link', 'mean', 'sd', 'lower', 'upper']
    """

    result: Any
    kind: str
    survey: Any = None
    priors: Any = None
    _evidence: dict[str, str] | None = field(default=None, repr=False)

    @property
    def idata(self) -> Any:
        """The ArviZ DataTree (posterior, prior, sample_stats, ...)."""
        return self.result.idata

    @property
    def graph(self) -> CausalGraph | None:
        """The diagram (None for a lavaan fit)."""
        return getattr(self.result, "graph", None)

    @property
    def prior_only(self) -> bool:
        """True when no data informed the posterior."""
        return bool(getattr(self.result, "prior_only", False))

    @property
    def edge_evidence(self) -> dict[str, str]:
        """Per link: ``"data"`` (in the likelihood), ``"literature"`` or ``"assumption"`` (prior only)."""
        if self._evidence is None:
            from veerkracht_bayes.causal.evidence import edge_evidence

            self._evidence = edge_evidence(self.result.graph, self.priors, fit=self.result)
        return self._evidence

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """One row per link (diagram) or parameter (lavaan): posterior mean, sd, interval, R-hat, ESS.

        Examples
        --------
        >>> import veerkracht_bayes as vb
        >>> f = vb.fit(vb.load_graph("marvel"), prior_only=True, priors="marvel", seed=1)  # doctest: +SKIP
        >>> f.summary().columns[:3].tolist()  # doctest: +SKIP
        ['link', 'mean', 'sd']
        """
        if self.kind == "lavaan":
            return self.result.table(prob=ci_prob)
        post = self.idata["posterior"]["beta"]
        x = post.stack(sample=("chain", "draw")).transpose("edge", "sample").values
        lo, hi = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
        df = pd.DataFrame({
            "link": [str(e) for e in post["edge"].values],
            "mean": x.mean(axis=1), "sd": x.std(axis=1, ddof=1),
            "lower": np.quantile(x, lo, axis=1), "upper": np.quantile(x, hi, axis=1),
        })
        df["evidence"] = [self.edge_evidence.get(k, "assumption") for k in df["link"]]
        if not self.prior_only and post.sizes.get("chain", 1) > 1:
            import arviz as az

            beta = self.idata["posterior"].to_dataset()[["beta"]]
            df["r_hat"] = np.asarray(az.rhat(beta)["beta"].values, dtype=float)
            df["ess_bulk"] = np.asarray(az.ess(beta, method="bulk")["beta"].values, dtype=float)
        return df

    def draws(self) -> StructuralDraws:
        """Posterior draws of the structural system (B, alpha, psi) for do-queries."""
        if self.kind != "diagram":
            from veerkracht_bayes.sem.lavaan_model import structural_view

            view = structural_view(self.result)
            return view.draws  # type: ignore[attr-defined]
        engine = {k: "data-informed" if v == "data" else "prior-dominated" for k, v in self.edge_evidence.items()}
        return StructuralDraws.from_posterior(self.idata, self.result.graph, edge_class=engine)

    def _repr_html_(self) -> str:
        head = (f"<b>veerkracht_bayes fit</b> ({self.kind}; "
                f"{'prior only' if self.prior_only else 'posterior'})")
        return head + self.summary().to_html(index=False, float_format=lambda v: f"{v:.3f}")

    def __repr__(self) -> str:
        return f"Fit(kind={self.kind!r}, prior_only={self.prior_only})"


def _is_lavaan_text(model: Any) -> bool:
    return isinstance(model, str) and ("~" in model) and "\n" in model or (
        isinstance(model, str) and ("=~" in model or " ~ " in model))


def fit(model: CausalGraph | str | Path, data: Any = None, *, priors: Any = "marvel", draws: int = 1000,
        tune: int | None = None, chains: int = 2, seed: int = 2023, prior_only: bool = False,
        sampler: str = "numpyro", progress: bool = True, reliability: float = 0.8,
        prior_draws: int = 1000, measurement: str = "auto", unmeasured: str | None = None,
        item_reliability: Mapping[str, float] | None = None,
        ordered: str | Sequence[str] | None = None, group: str | None = None,
        group_equal: str | Sequence[str] | None = None, group_pool: str | Sequence[str] | None = None,
        log_likelihood: bool = False) -> Fit:
    """Fit a diagram (or a lavaan model) to survey data with NUTS.

    Parameters
    ----------
    model
        A :class:`~veerkracht_bayes.graph.causal_graph.CausalGraph`, ``"marvel"``, a path to a
        YAML graph or lavaan file, or lavaan model syntax text (then ``data`` is a DataFrame).
    data
        A survey from :func:`veerkracht_bayes.read_survey` (or prepared
        :class:`~veerkracht_bayes.survey.statistics.ModelData`), or a DataFrame for a lavaan
        model. ``None`` only with ``prior_only=True``.
    priors
        ``"marvel"`` (the shipped literature priors; MARVEL diagram only), a path to a priors
        file, a :class:`~veerkracht_bayes.priors.spec.PriorSet`, ``"default"`` (the documented
        sign-constrained defaults) or ``"vague"``. For lavaan models: None (vague) or a mapping.
    draws, tune, chains, seed
        Sampler settings. ``tune`` defaults to ``draws``, except on the polychoric route
        (``measurement="auto"`` resolved to it, or named), where it defaults to
        ``min(draws, POLYCHORIC_DEFAULT_TUNE)`` = 500 tuning steps: on the shipped survey
        (2 chains x 1000 draws) 500 tuning steps mixed as well as 1000 (min bulk ESS of the links
        above 550, R-hat at most 1.009 in every run recorded in docs/performance.md §7) at about
        half the chains' CPU time, and 300 did not; the warm-up a posterior needs does not grow
        with the number of draws kept.
    prior_only
        Sample the priors only (no data).
    sampler
        ``"numpyro"`` (default) or ``"blackjax"``: the package's JAX driver (the survey's
        statistics are inputs of the compiled program) with that library's NUTS; ``"nutpie"`` or
        ``"pymc"``: ``pm.sample``. The two JAX kernels sample the same posterior in about the
        same wall time on MARVEL (docs/performance.md §7, "The NUTS kernel").
    progress
        Show progress bars.
    reliability
        Assumed reliability of single-item constructs: the fallback on every route; a single item
        whose codebook entry declares ``reliability`` (or that ``item_reliability`` names) gets its
        own.
    prior_draws
        Number of prior draws stored next to the posterior.
    measurement
        ``"auto"`` (default: the codebook decides, :func:`~veerkracht_bayes.survey.codebook.
        resolve_measurement`): if any item of the model's constructs (covariates aside) is binary
        or Likert with at most 7 categories, ``"polychoric"`` with ``unmeasured="joint"``, else
        ``"continuous"``. Data without a codebook (prepared ``ModelData``, prior-only fits) are
        ``"continuous"``, and so is a fit the polychoric route cannot take (sampler other than
        ``numpyro`` or ``blackjax``, ``priors="vague"``, ``log_likelihood=True``). The route used
        and the reason are in ``fit.idata.attrs["measurement_resolved"]`` and
        ``["measurement_reason"]``.
        Or explicitly ``"continuous"`` (every item standardised, the sufficient-statistics path) or
        ``"polychoric"`` (binary items and Likert items with at most 7 categories on their
        latent-response scale: polychoric / polyserial correlations and their asymptotic
        covariance as the likelihood; docs/model.md, "Ordinal and binary items: polychoric
        route"; diagrams with a survey only, sampler ``numpyro`` or ``blackjax``) or ``"ordinal"`` (the exact
        ordered-probit model on the respondents' answers,
        :func:`~veerkracht_bayes.inference.ordinal_fit.fit_ordinal`, with the same settings and
        the same :class:`Fit`; diagrams with a survey from :func:`read_survey` only; cost grows
        with the number of respondents; no ``log_likelihood`` group). Without data
        (``prior_only=True``) every measurement gives the same prior.
    unmeasured
        Polychoric route only: ``"cut"`` (default of an explicit ``measurement="polychoric"``;
        ``"auto"`` defaults to ``"joint"``: every link that touches a construct
        without items is left out of the implied correlations) or ``"joint"`` (those constructs
        stay in the model, their links sampled on their priors; the cut biases the measured links
        by the dropped paths, docs/performance.md §4b).
    item_reliability
        Item column -> reliability in (0, 1) of a single item, overriding the codebook's
        ``reliability`` field for that item, on the codebook's scale (the latent response's for
        binary and Likert items; the item's own for continuous ones). Every route uses it: the
        polychoric and exact ordinal routes as given, the continuous path converted to the observed
        scale (:func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`). Needs a
        survey from :func:`read_survey` (prepared ``ModelData`` has no codebook to convert with).
    ordered
        lavaan models only (lavaan's ``ordered=``): the ordinal/binary items, as names or
        ``"x1,x2"``; thresholds and polychoric correlations with a Gaussian likelihood on the
        correlations (:func:`~veerkracht_bayes.sem.lavaan_ordinal.fit_sem_ordinal`,
        docs/lavaan_models.md "Ordered items"); the summary gains ``|`` threshold rows.
    group, group_equal, group_pool
        lavaan models only (lavaan's ``group=`` and ``group.equal=``): a multi-group model over
        the data column ``group``
        (:func:`~veerkracht_bayes.sem.lavaan_multigroup.fit_sem_multigroup`; with ``ordered``
        per-group thresholds and polychoric correlations, ``group_equal`` may name
        ``"thresholds"``); the summary gains a ``group`` column.
    log_likelihood
        Also store the per-respondent log-likelihood (group ``log_likelihood``, variable ``y`` on
        ``respondent``), which LOO (``az.loo``) needs. Off by default, as in PyMC
        (``idata_kwargs={"log_likelihood": True}``): it costs O(respondents x draws) after the
        sampling. It can be added to a fitted result later with :func:`compute_log_likelihood`.
        Diagrams with ``measurement="continuous"`` only (the other routes have no per-respondent
        likelihood).

    Returns
    -------
    Fit

    Raises
    ------
    ModelError
        Without data unless ``prior_only=True``; for an unknown sampler.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> f.prior_only, f.kind
    (True, 'diagram')

    Ordinal and binary items on their latent-response scale, constructs without items kept in the
    model, single-item reliabilities from the codebook (minutes on MARVEL; the same call is made,
    with the sampler stubbed, by ``tests/inference/test_polychoric_settings_passthrough.py`` and,
    through the pipeline, by ``tests/workflow/test_pipeline_polychoric.py``):

    >>> from veerkracht_bayes.resources import shipped_path
    >>> survey = vb.read_survey(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"),
    ...                         shipped_path("data", "synthetic", "codebook_synthetic.yaml"))  # doctest: +SKIP
    >>> f = vb.fit("marvel", survey, measurement="polychoric", unmeasured="joint")  # doctest: +SKIP

    The default, ``measurement="auto"``, takes that same route here because the shipped codebook's
    items are Likert and binary (``tests/test_api_measurement.py`` makes the call with the sampler
    stubbed); the fit says which route it took and why:

    >>> f = vb.fit("marvel", survey)  # doctest: +SKIP
    >>> f.idata.attrs["measurement_resolved"], f.idata.attrs["unmeasured_resolved"]  # doctest: +SKIP
    ('polychoric', 'joint')
    """
    tune_asked, tune = tune, draws if tune is None else tune
    if _is_lavaan_text(model) or (isinstance(data, pd.DataFrame) and not isinstance(model, CausalGraph)
                                  and Path(str(model)).suffix.lower() in {".lav", ".lavaan", ".txt", ".model"}):
        if log_likelihood:
            raise ConfigError(Problem("log_likelihood=True applies to diagrams (a lavaan fit stores no "
                                      "per-respondent log-likelihood)", field="log_likelihood", value=True))
        return _fit_lavaan(model, data, priors=None if priors in ("marvel", "vague", "default") else priors,
                           draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, progress=progress,
                           ordered=ordered, group=group, group_equal=group_equal, group_pool=group_pool)
    if group is not None or group_equal or group_pool:
        raise ConfigError(Problem("group= applies to lavaan models; for a diagram use a codebook subgroup "
                                  "(vb.do(..., subgroup=...))", field="group", value=group))
    if ordered:
        raise ConfigError(Problem("ordered= applies to lavaan models; for a diagram use measurement='polychoric' "
                                  "(the codebook says which items are ordinal)", field="ordered", value=ordered))
    if measurement not in ("auto", "continuous", "polychoric", "ordinal"):
        raise ConfigError(Problem("measurement must be 'auto', 'continuous', 'polychoric' or 'ordinal', got "
                                  f"{measurement!r}", field="measurement", value=measurement))
    if unmeasured not in (None, "cut", "joint"):
        raise ConfigError(Problem(f"unmeasured must be 'cut' or 'joint', got {unmeasured!r}",
                                  field="unmeasured", value=unmeasured))
    if log_likelihood and measurement not in ("auto", "continuous"):
        raise ConfigError(Problem("log_likelihood=True needs measurement='continuous' (the polychoric and ordinal "
                                  "routes store no per-respondent log-likelihood)", field="log_likelihood",
                                  value=measurement))
    if measurement in ("continuous", "ordinal") and unmeasured not in (None, "cut"):
        raise ConfigError(Problem("unmeasured= applies to measurement='polychoric' "
                                  f"(got measurement={measurement!r})", field="measurement", value=measurement))
    graph = load_graph(model)
    prior_set, vague = _resolve_priors(priors, graph)
    choice = _measurement_choice(measurement, unmeasured, data, graph, prior_only=prior_only, sampler=sampler,
                                 vague=priors == "vague", log_likelihood=log_likelihood)
    measurement, unmeasured = choice.measurement, choice.unmeasured
    if measurement == "polychoric" and tune_asked is None:
        tune = min(draws, POLYCHORIC_DEFAULT_TUNE)
    return _record_measurement(_fit_diagram(graph, data, prior_set, vague, choice, draws=draws, tune=tune,
                                            chains=chains, seed=seed, prior_only=prior_only, sampler=sampler,
                                            progress=progress, reliability=reliability, prior_draws=prior_draws,
                                            item_reliability=item_reliability, log_likelihood=log_likelihood,
                                            priors=priors), choice)


def _measurement_choice(measurement: str, unmeasured: str | None, data: Any, graph: CausalGraph, *,
                        prior_only: bool, sampler: str, vague: bool, log_likelihood: bool) -> Any:
    """The measurement route of a diagram fit (``"auto"`` resolved from the survey's codebook)."""
    from veerkracht_bayes.inference.sampling import JAX_DRIVER_SAMPLERS
    from veerkracht_bayes.survey.codebook import MeasurementChoice, resolve_measurement

    if prior_only or data is None:
        used = "continuous" if measurement == "auto" else measurement
        return MeasurementChoice(measurement, used, unmeasured or "cut",
                                 "prior only: no survey data, so every measurement gives the same prior")
    blocked = None
    if sampler not in JAX_DRIVER_SAMPLERS:
        blocked = (f"sampler {sampler!r} was asked for (the polychoric route samples with the JAX driver: "
                   f"{' or '.join(JAX_DRIVER_SAMPLERS)})")
    elif vague:
        blocked = "priors = 'vague' was asked for (the polychoric route takes sign-constrained priors)"
    elif log_likelihood:
        blocked = "log_likelihood=True was asked for (the polychoric route has no per-respondent likelihood)"
    return resolve_measurement(getattr(data, "codebook", None), graph, measurement=measurement,
                               unmeasured=unmeasured, blocked=blocked)


def _record_measurement(f: Fit, choice: Any) -> Fit:
    """Write the resolved measurement route and its reason into the fit's attributes."""
    attrs = getattr(getattr(f.result, "idata", None), "attrs", None)
    if attrs is None:  # an engine result without a tree (stubbed engines in tests)
        return f
    for k, v in choice.to_dict().items():
        attrs[k] = v
    return f


def _fit_diagram(graph: CausalGraph, data: Any, prior_set: Any, vague: bool, choice: Any, *, draws: int,
                 tune: int, chains: int, seed: int, prior_only: bool, sampler: str, progress: bool,
                 reliability: float, prior_draws: int, item_reliability: Mapping[str, float] | None,
                 log_likelihood: bool, priors: Any) -> Fit:
    """The diagram fit on the resolved measurement route."""
    from veerkracht_bayes.inference.sampling import SamplerSettings
    from veerkracht_bayes.inference.sampling import fit as _fit
    from veerkracht_bayes.survey.statistics import ModelData, model_data_from_survey

    measurement, unmeasured = choice.measurement, choice.unmeasured
    survey = None
    observed_rel = None
    if data is None:
        md = None
    elif isinstance(data, ModelData):
        if measurement != "continuous" and not prior_only:
            raise ConfigError(Problem(f"measurement={measurement!r} needs the survey's answers: pass the survey "
                                      "from vb.read_survey, not prepared ModelData", field="data"))
        if item_reliability:
            raise ConfigError(Problem("item_reliability= needs the survey from vb.read_survey (its codebook gives "
                                      "each item's scale); prepared ModelData has none", field="item_reliability"))
        md = data
    elif isinstance(data, pd.DataFrame):
        raise ConfigError(Problem("vb.fit got a DataFrame with a diagram: read it with vb.read_survey(df, "
                                  "codebook, graph=graph) first (the codebook maps items to constructs)",
                                  field="data"))
    elif measurement == "polychoric" and not prior_only:
        from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
        from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings

        settings = SamplerSettings(sampler=sampler, chains=chains, draws=draws, tune=tune,  # type: ignore[arg-type]
                                   random_seed=seed, progressbar=progress, prior_draws=prior_draws)
        res = fit_polychoric(graph, data, prior_set, settings=settings,
                             polychoric=PolychoricSettings(
                                 reliability=reliability, unmeasured=unmeasured,
                                 item_reliability=dict(item_reliability) if item_reliability else None))
        return Fit(result=res, kind="diagram", survey=data, priors=prior_set)
    elif measurement == "ordinal" and not prior_only:
        from veerkracht_bayes.inference.ordinal_fit import fit_ordinal
        from veerkracht_bayes.sem.ordinal import OrdinalSettings

        if vague:
            raise ConfigError(Problem("measurement='ordinal' takes sign-constrained priors ('marvel', 'default', "
                                      "a priors file or a PriorSet), not 'vague'", field="priors", value=priors))
        settings = SamplerSettings(sampler=sampler, chains=chains, draws=draws, tune=tune,  # type: ignore[arg-type]
                                   random_seed=seed, progressbar=progress, prior_draws=prior_draws)
        res = fit_ordinal(graph, data, prior_set, settings=settings,
                          ordinal=OrdinalSettings(reliability=reliability,
                                                  item_reliability=dict(item_reliability) if item_reliability else None))
        return Fit(result=res, kind="diagram", survey=data, priors=prior_set)
    else:
        from veerkracht_bayes.survey.codebook import continuous_path_reliabilities

        survey = data
        md = model_data_from_survey(data, graph)
        observed_rel = continuous_path_reliabilities(data, graph, reliability, item_reliability) or None
    settings = SamplerSettings(sampler=sampler, chains=chains, draws=draws, tune=tune,  # type: ignore[arg-type]
                               random_seed=seed, progressbar=progress, prior_draws=prior_draws)
    res = _fit(graph, md, prior_set, settings=settings, vague=vague, reliability=reliability,
               item_reliability=observed_rel, prior_only=prior_only, pointwise=log_likelihood and md is not None)
    return Fit(result=res, kind="diagram", survey=survey, priors=prior_set)


def compute_log_likelihood(fit: Fit) -> Fit:
    """Add the per-respondent log-likelihood (for LOO) to a fit made without it.

    ``vb.fit`` leaves the ``log_likelihood`` group out unless ``log_likelihood=True`` is passed
    (it costs O(respondents x draws)); this adds the same group afterwards, as PyMC's
    ``pm.compute_log_likelihood`` does: variable ``y``, the weighted log-likelihood per respondent
    and draw, which ``az.loo`` reads. The fit is changed in place and returned.

    Parameters
    ----------
    fit
        A :class:`Fit` of a diagram on the continuous path (``measurement="continuous"``).

    Returns
    -------
    Fit
        ``fit``, whose ``idata`` now has a ``log_likelihood`` group.

    Raises
    ------
    ModelError
        For a lavaan fit, a prior-only fit, or a fit of the polychoric or ordinal routes.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import shipped_path
    >>> survey = vb.read_survey(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"),
    ...                         shipped_path("data", "synthetic", "codebook_synthetic.yaml"))  # doctest: +SKIP
    >>> f = vb.fit("marvel", survey, draws=500)  # doctest: +SKIP
    >>> "log_likelihood" in vb.compute_log_likelihood(f).idata.children  # doctest: +SKIP
    True

    (Sampling: skipped here; ``tests/inference/test_log_likelihood_opt_in.py`` makes the same calls
    on a small model.)
    """
    if fit.kind != "diagram":
        raise ModelError(f"compute_log_likelihood applies to diagram fits (got a {fit.kind} fit, which "
                         "stores no per-respondent log-likelihood)")
    from veerkracht_bayes.inference.sampling import compute_log_likelihood as add_group

    add_group(fit.result)
    return fit


def _resolve_priors(priors: Any, graph: CausalGraph) -> tuple[Any, bool]:
    from veerkracht_bayes.priors.spec import default_priors, load_priors

    if priors is None or priors == "default":
        return default_priors(graph), False
    if priors == "vague":
        return None, True
    if isinstance(priors, (str, Path)):
        return load_priors(priors, graph), False
    return priors, False


def _fit_lavaan(model: Any, df: Any, *, priors: Any, draws: int, tune: int, chains: int, seed: int,
                sampler: str, progress: bool, ordered: Any = None, group: str | None = None,
                group_equal: Any = None, group_pool: Any = None) -> Fit:
    from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan, read_lavaan
    from veerkracht_bayes.sem.lavaan_model import fit_sem

    if not isinstance(df, pd.DataFrame):
        raise ModelError("a lavaan model is fitted to a pandas DataFrame (columns named as in the model)")
    lav = parse_lavaan(model) if _is_lavaan_text(model) else read_lavaan(model)
    if group is None and (group_equal or group_pool):
        raise ConfigError(Problem("group_equal / group_pool need group= (the group column)", field="group"))
    if group is not None:
        from veerkracht_bayes.sem.lavaan_multigroup import fit_sem_multigroup

        mres = fit_sem_multigroup(lav, df, group, group_equal=group_equal, group_pool=group_pool, priors=priors,
                                  draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                                  progressbar=progress, ordered=ordered or None)
        return Fit(result=mres, kind="lavaan")
    if ordered:
        from veerkracht_bayes.sem.lavaan_ordinal import fit_sem_ordinal

        res = fit_sem_ordinal(lav, df, ordered, priors=priors, draws=draws, tune=tune, chains=chains,
                              seed=seed, sampler=sampler, progressbar=progress)
        return Fit(result=res, kind="lavaan")
    res = fit_sem(lav, df, priors=priors, draws=draws, tune=tune, chains=chains, seed=seed,
                  sampler=sampler, progressbar=progress)  # type: ignore[arg-type]
    return Fit(result=res, kind="lavaan")


# ---------------------------------------------------------------------------------------- do
@dataclass
class Effects:
    """Equilibrium effects of interventions, per draw, with their summary.

    Attributes
    ----------
    result
        The per-draw :class:`~veerkracht_bayes.causal.do.DoResult`.
    table
        The summary (see :meth:`summary`).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> eff = vb.do(f, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing"])
    >>> isinstance(eff, Effects), "p_meaningful" in eff.summary().columns
    (True, True)
    """

    result: DoResult
    table: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """One row per intervention x outcome x scope: ``mean, lower, upper, p_meaningful,
        p_positive, p_stable, evidence`` and the evidence shares."""
        return self.table

    def _repr_html_(self) -> str:
        cols = [c for c in ("policy", "outcome", "scope", "mean", "lower", "upper", "p_meaningful",
                            "p_positive", "p_stable", "evidence") if c in self.table]
        return self.table[cols].to_html(index=False, float_format=lambda v: f"{v:.3f}")


def _as_interventions(items: Sequence[Any], subgroup: str | None) -> list[Intervention]:
    out: list[Intervention] = []
    loose: list[Any] = []
    for it in items:
        if isinstance(it, Intervention):
            out.append(it if subgroup is None or it.subgroup else it.model_copy(update={"subgroup": subgroup}))
        elif isinstance(it, (Shift, Set, MechanismChange)):
            loose.append(it)
        elif isinstance(it, (list, tuple)):
            out += _as_interventions(it, subgroup)
        else:
            raise ConfigError(Problem(f"vb.do takes Shift, Set, MechanismChange or Intervention objects, not "
                                      f"{type(it).__name__}", field="interventions"))
    if loose:
        name = " + ".join(_part_name(p) for p in loose)
        out.insert(0, Intervention(name=name, parts=loose, subgroup=subgroup))
    if not out:
        raise ConfigError(Problem("vb.do needs at least one intervention", field="interventions"))
    return out


def _part_name(p: Any) -> str:
    if isinstance(p, MechanismChange):
        return f"change {p.source}->{p.target}"
    return f"{type(p).__name__.lower()} {p.node}"


def _subgroup_info(fit: Fit, names: Sequence[str], prevalence: Mapping[str, float] | None) -> dict[str, SubgroupInfo]:
    infos: dict[str, SubgroupInfo] = {}
    for g in names:
        if prevalence and g in prevalence:
            infos[g] = SubgroupInfo(prevalence=float(prevalence[g]))
        elif fit.survey is not None:
            mask = fit.survey.subgroup_mask(g)
            w = fit.survey.weights
            infos[g] = SubgroupInfo(prevalence=float(w[mask].sum() / w.sum()), n=int(mask.sum()))
        else:
            raise ConfigError(Problem(f"subgroup {g!r}: the fit has no survey to measure its prevalence; pass "
                                      f"prevalence={{{g!r}: share}}", field="subgroup", value=g))
    return infos


def do(fit: Fit, *interventions: Any, outcomes: Sequence[str | Outcome] | None = None,
       subgroup: str | None = None, prevalence: Mapping[str, float] | None = None,
       min_relevant_change: float = 0.05, ci_prob: float = 0.9, min_cell_size: int = 50,
       seed: int = 0) -> Effects:
    """Equilibrium effects of interventions on outcomes (the do-operator on the fitted system).

    Parameters
    ----------
    fit
        A :class:`Fit` from :func:`fit`.
    *interventions
        ``vb.Shift``, ``vb.Set`` or ``vb.MechanismChange`` parts (combined into one
        intervention) and/or named ``vb.Intervention`` objects.
    outcomes
        Outcome node ids (default: the diagram's default outcomes).
    subgroup
        Target the intervention at this codebook subgroup (within-group and population effects).
    prevalence
        Subgroup prevalences when the fit has no survey.
    min_relevant_change
        The minimal relevant change (SD) behind ``p_meaningful``.
    ci_prob
        Interval probability.
    min_cell_size
        Subgroups with fewer respondents are suppressed.
    seed
        Seed for dose draws.

    Returns
    -------
    Effects

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> eff = vb.do(f, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing"])
    >>> bool((eff.summary()["evidence"] == "data").any())
    False
    """
    from veerkracht_bayes.causal.summaries import summarise_effects

    if fit.kind != "diagram":
        raise ModelError("vb.do works on diagram fits; for a lavaan fit use its structural view "
                         "(veerkracht_bayes.sem.lavaan_model.structural_view)")
    ivs = _as_interventions(interventions, subgroup)
    groups = sorted({iv.subgroup for iv in ivs if iv.subgroup})
    infos = _subgroup_info(fit, groups, prevalence)
    res = do_query(fit.draws(), ivs, outcomes, subgroups=infos, min_cell_size=min_cell_size, seed=seed)
    table = summarise_effects(res, outcomes, ci_prob=ci_prob, min_relevant_change=min_relevant_change,
                              edge_evidence=fit.edge_evidence)
    return Effects(result=res, table=table)


def _policy_query(fit: Fit, policies: Any, outcomes: Sequence[str | Outcome] | None,
                  prevalence: Mapping[str, float] | None, seed: int) -> tuple[Any, Any, Any]:
    """The policies' interventions, their subgroup infos and the do-query on the fit's draws."""
    from veerkracht_bayes.causal.policies import PolicySet, load_policies

    if fit.kind != "diagram":
        raise ModelError("this verb works on diagram fits (vb.fit on a graph)")
    pol = policies if isinstance(policies, PolicySet) else load_policies(policies, graph=fit.graph)
    ivs = pol.to_interventions()
    infos = _subgroup_info(fit, sorted({iv.subgroup for iv in ivs if iv.subgroup}), prevalence)
    draws = fit.draws()
    return ivs, infos, do_query(draws, ivs, outcomes, subgroups=infos, min_cell_size=0, seed=seed)


def structure(fit: Fit, policies: Any = None, *, outcomes: Sequence[str | Outcome] | None = None,
              variants: str = "inferred", prior_inclusion: float = 0.5, n_structures: int = 200,
              draws_per_structure: int = 200, prevalence: Mapping[str, float] | None = None,
              seed: int = 0) -> Any:
    """How sure is the diagram? Inclusion probability per inferred link and the probability that
    each policy's rank and sign hold over the structural uncertainty.

    Parameters
    ----------
    fit
        A diagram :class:`Fit`.
    policies
        A policy file or :class:`~veerkracht_bayes.causal.policies.PolicySet` (default: shipped).
    outcomes
        Outcomes for the robustness table (default: the diagram's default outcomes).
    variants
        ``"inferred"`` (links marked inferred are uncertain) or ``"none"``.
    prior_inclusion
        Prior inclusion probability of an inferred link.
    n_structures, draws_per_structure
        Structures drawn and posterior draws per structure for the robustness table.
    prevalence
        Subgroup shares when the fit has no survey.
    seed
        Seed.

    Returns
    -------
    veerkracht_bayes.workflow.uncertainty.StructureResult
        ``.links`` (``structure.csv``: ``link``, ``inferred``, ``informed``, ``p_include``, ...) and
        ``.robustness`` (``robustness.csv``: ``policy``, ``outcome``, ``p_rank_holds``,
        ``p_sign_holds``, ...).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=60, seed=1)
    >>> prev = {g: 0.1 for g in ("single_parent", "pupils_and_parents", "mental_health_problems",
    ...                          "refugee", "bottom_labour_market")}
    >>> s = vb.structure(f, outcomes=["wellbeing"], n_structures=20, draws_per_structure=20,
    ...                  prevalence=prev)
    >>> sorted(set(s.links.loc[s.links["inferred"], "p_include"]))  # prior only: the prior
    [0.5]
    """
    from veerkracht_bayes.workflow.uncertainty import structure_from_fit

    ivs, infos, _ = _policy_query(fit, policies, outcomes, prevalence, seed)
    return structure_from_fit(fit.result, fit.draws(), ivs, outcomes, edge_evidence=fit.edge_evidence,
                              subgroups=infos, variants=variants, prior_inclusion=prior_inclusion,
                              n_structures=n_structures, draws_per_structure=draws_per_structure,
                              seed=seed)


def voi(fit: Fit, policies: Any = None, *, outcome: str = "wellbeing",
        candidates: str | Sequence[str] = "unmeasured", n: int | Sequence[int] = 2000,
        items: int = 3, reliability: float = 0.8, prevalence: Mapping[str, float] | None = None,
        seed: int = 0, method: str = "reweight", outer_draws: int = 400,
        max_refits: int = 0) -> pd.DataFrame:
    """What to measure next: EVSI of a survey wave per construct and wave size, and the EVPI of
    the decision "pick the policy with the best expected population effect on ``outcome``".

    Parameters
    ----------
    fit
        A diagram :class:`Fit` (with data: the measured constructs come from it).
    policies
        A policy file or set (default: shipped).
    outcome
        The decision's outcome.
    candidates
        ``"unmeasured"``, ``"all"`` or a list of constructs.
    n, items, reliability
        Wave size(s), items per construct, each item's reliability.
    prevalence
        Subgroup shares when the fit has no survey.
    seed
        Seed.
    method, outer_draws
        ``"reweight"`` (preposterior simulation of ``outer_draws`` waves, update by importance
        reweighting of the posterior draws) or ``"gaussian"`` (fast approximation).
    max_refits
        Short NUTS refits per candidate on a simulated wave whose importance weights
        degenerate (each costs a fit; 0: none, such waves are flagged in ``share_k_bad``).

    Returns
    -------
    pandas.DataFrame
        ``voi.csv``: ``construct``, ``n``, ``evsi``, ``evpi``, ``evsi_se``, ... ranked by EVSI.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=60, seed=1)
    >>> prev = {g: 0.1 for g in ("single_parent", "pupils_and_parents", "mental_health_problems",
    ...                          "refugee", "bottom_labour_market")}
    >>> t = vb.voi(f, n=[500, 2000], prevalence=prev)  # nothing measured yet: no single construct helps
    >>> float(t["evsi"].max())
    0.0
    """
    from veerkracht_bayes.workflow.uncertainty import voi_from_fit, wave_refit

    ivs, infos, res = _policy_query(fit, policies, [outcome], prevalence, seed)
    refit = wave_refit(fit.result, ivs, outcome, priors=fit.priors, subgroups=infos, items=items,
                       reliability=reliability, max_refits=max_refits,
                       seed=seed) if max_refits else None
    return voi_from_fit(fit.result, res, outcome=outcome, candidates=candidates, n=n, items=items,
                        reliability=reliability, seed=seed, method=method,
                        outer_draws=outer_draws, refit=refit)


# ------------------------------------------------------------------------------ other verbs
def trajectories(fit: Fit, *interventions: Any, outcomes: Sequence[str | Outcome] | None = None,
                 subgroup: str | None = None, horizon: int = 20, prevalence: Mapping[str, float] | None = None,
                 seed: int = 0) -> Any:
    """Time paths of the effects (years), per draw: the system relaxing to its new equilibrium.

    Parameters
    ----------
    fit
        A :class:`Fit`.
    *interventions
        As for :func:`do`.
    outcomes, subgroup, prevalence, seed
        As for :func:`do`.
    horizon
        Number of yearly steps.

    Returns
    -------
    veerkracht_bayes.causal.dynamics.Trajectories

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> tr = vb.trajectories(f, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing"], horizon=5)
    >>> tr.outcome("wellbeing").shape[-1]
    6
    """
    from veerkracht_bayes.causal.dynamics import simulate_trajectories

    ivs = _as_interventions(interventions, subgroup)
    infos = _subgroup_info(fit, sorted({iv.subgroup for iv in ivs if iv.subgroup}), prevalence)
    return simulate_trajectories(fit.draws(), ivs, outcomes, horizon=horizon, subgroups=infos, seed=seed)


def brief(run_result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write the policy brief of a run (``vb.run(...)``): ``brief.md``, ``brief.html``, figures.

    Parameters
    ----------
    run_result
        The result of :func:`veerkracht_bayes.run`.
    out_dir
        Output folder.

    Returns
    -------
    dict
        Paths written.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> res = vb.run("demo.toml", write=False)  # doctest: +SKIP
    >>> vb.brief(res, "out")  # doctest: +SKIP
    """
    from veerkracht_bayes.report.brief import write_brief

    return write_brief(run_result, out_dir)


def draw(graph: CausalGraph | str | Path = "marvel", out: str | Path | None = None, **kwargs: Any) -> Any:
    """Draw a diagram (Graphviz where present, else matplotlib); write it to ``out`` if given.

    Parameters
    ----------
    graph
        A diagram or anything :func:`veerkracht_bayes.load_graph` accepts.
    out
        File to write (``.svg``, ``.png``, ``.pdf``).
    **kwargs
        Passed to :func:`veerkracht_bayes.graph.drawing.draw_graph`.

    Returns
    -------
    object
        The drawing object.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> d = vb.draw("marvel")
    >>> d is not None
    True
    """
    from veerkracht_bayes.graph.drawing import draw_graph

    if out is not None:
        kwargs["out"] = out
    return draw_graph(load_graph(graph), **kwargs)
