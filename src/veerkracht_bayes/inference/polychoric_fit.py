"""Fitting the polychoric route (:mod:`veerkracht_bayes.sem.polychoric_likelihood`) with NUTS.

Stage 1 (:func:`veerkracht_bayes.survey.polychoric.polychoric`) reduces the survey to thresholds,
latent-response correlations and their asymptotic covariance; stage 2 samples the structural
model given those with the package's JAX NUTS driver
(:func:`veerkracht_bayes.inference.jax_nuts.sample_nuts`). The sampler's cost does not depend on
the number of respondents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem.model_builder import ModelLayout
from veerkracht_bayes.sem.polychoric_likelihood import (
    STANDARDISED_LINKS,
    PolychoricData,
    PolychoricSettings,
    build_polychoric_model,
    fit_sandwich_weight,
    link_to_standard,
    polychoric_data,
    standardised_link_keys,
)

__all__ = ["fit_polychoric", "polychoric_data_from_survey", "with_codebook_reliabilities"]


def with_codebook_reliabilities(polychoric: PolychoricSettings | None, survey: object,
                                data: PolychoricData) -> PolychoricSettings:
    """Settings whose ``item_reliability`` holds the codebook's per-item ``reliability`` fields.

    The codebook's values (items of ``data`` only; a covariate's is not used) come first, the
    settings' own ``item_reliability`` overrides them item by item; single items without either
    keep the global ``reliability``.

    Parameters
    ----------
    polychoric
        The settings (None: the defaults).
    survey
        An object with a ``codebook`` (:class:`~veerkracht_bayes.survey.codebook.Codebook`), e.g. a
        :class:`~veerkracht_bayes.survey.reading.SurveyData`.
    data
        The stage-1 summaries (their ``item_names`` bound the codebook's values).

    Returns
    -------
    PolychoricSettings

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.survey.codebook import Codebook, ConstructSpec, ItemSpec
    >>> from veerkracht_bayes.survey.polychoric import polychoric
    >>> cb = Codebook(id_column="id", constructs={"A": ConstructSpec(items=[ItemSpec(column="a", scale="binary",
    ...     reliability=0.42)]), "B": ConstructSpec(items=[ItemSpec(column="b", scale="binary")])})
    >>> y = np.random.default_rng(1).integers(0, 2, (200, 2)).astype(float)
    >>> data = polychoric_data(polychoric(y, ["ordinal"] * 2, names=["a", "b"]), {"a": "A", "b": "B"})
    >>> with_codebook_reliabilities(None, SimpleNamespace(codebook=cb), data).item_reliability
    {'a': 0.42}
    >>> with_codebook_reliabilities(PolychoricSettings(item_reliability={"a": 0.5}),
    ...                             SimpleNamespace(codebook=cb), data).item_reliability
    {'a': 0.5}
    """
    import dataclasses

    from veerkracht_bayes.survey.codebook import declared_item_reliabilities

    st = polychoric or PolychoricSettings()
    return dataclasses.replace(st, item_reliability=declared_item_reliabilities(
        getattr(survey, "codebook", None), data.item_names, st.item_reliability))


def polychoric_data_from_survey(survey: object, graph: CausalGraph, *, covariates: Sequence[str] | None = None,
                                max_categories: int = 7, acov: str = "full") -> PolychoricData:
    """Stage 1 on a :class:`~veerkracht_bayes.survey.reading.SurveyData`, arranged for stage 2.

    Items follow the codebook: binary items and Likert items with at most ``max_categories``
    categories are ordinal (their codes, reverse-keyed where the codebook says so); every other
    item is continuous (after its codebook ``transform``, when the survey applies one). Covariates
    are the exogenous single-item root nodes, as on the other paths, and enter on their observed
    scale (standardised; a binary covariate as its 0/1 indicator, so its links are per SD of the
    indicator as on the continuous path); rows with no item observed
    are used only where they have data (pairwise available cases).

    Examples
    --------
    >>> import veerkracht_bayes as vb  # doctest: +SKIP
    >>> pd_ = polychoric_data_from_survey(vb.read_survey("survey.csv", "codebook.yaml"), graph)  # doctest: +SKIP
    """
    from veerkracht_bayes.survey.polychoric import polychoric

    y_all, cols = survey.item_matrix(reverse=True)  # type: ignore[attr-defined]
    codes_all = survey.ordinal_codes(reverse=True)  # type: ignore[attr-defined]
    constructs = survey.constructs  # type: ignore[attr-defined]
    col_node = {c: node for node, items in constructs.items() for c in items}
    specs = {it.column: it for _, it in survey.codebook.item_specs()}  # type: ignore[attr-defined]
    if covariates is None:
        covariates = [node for node, items in constructs.items()
                      if graph.has_node(node) and not graph.parents(node)
                      and graph.node(node).role == "exogenous" and len(items) == 1]
    covariates = list(covariates)
    xcols = {constructs[node][0] for node in covariates}
    kinds, data_cols = [], []
    for j, c in enumerate(cols):
        it = specs[c]
        if c in xcols:
            # a covariate is conditioned on, on its observed scale (as on the continuous path):
            # a binary one as its standardised 0/1 indicator, not a latent response
            data_cols.append(y_all[:, j])
            kinds.append("continuous")
        elif it.scale == "binary":
            v = y_all[:, j]
            lo = np.nanmin(v) if np.isfinite(v).any() else 0.0
            data_cols.append(v - lo)
            kinds.append("ordinal")
        elif it.scale == "likert" and int(it.categories) <= max_categories:
            cd = np.asarray(codes_all[c], dtype=float)
            data_cols.append(np.where(cd < 0, np.nan, cd))
            kinds.append("ordinal")
        else:
            data_cols.append(y_all[:, j])
            kinds.append("continuous")
    data = np.column_stack(data_cols)
    stats = polychoric(data, kinds, weights=survey.weights, names=cols, acov=acov)  # type: ignore[attr-defined]
    xmap = {node: constructs[node][0] for node in covariates}
    ic = {c: col_node[c] for c in cols if col_node[c] not in xmap and graph.has_node(col_node[c])}
    return polychoric_data(stats, ic, covariates=xmap, data_hash=getattr(survey, "sha256", None))


def fit_polychoric(graph: CausalGraph, survey: object, priors: object | None = None, *,
                   settings: object | None = None, polychoric: PolychoricSettings | None = None,
                   item_construct: dict[str, str] | None = None):
    """Fit the polychoric route: stage 1 (if needed) then NUTS on stage 2.

    Parameters
    ----------
    graph
        The diagram.
    survey
        A :class:`~veerkracht_bayes.survey.reading.SurveyData`, a
        :class:`~veerkracht_bayes.sem.polychoric_likelihood.PolychoricData`, or a
        :class:`~veerkracht_bayes.survey.polychoric.PolychoricResult` with ``item_construct``.
    priors
        PriorSet-like (``for_edge``) or None for the sign-constrained defaults.
    settings
        :class:`~veerkracht_bayes.inference.sampling.SamplerSettings` (sampler ``numpyro``).
    polychoric
        Loading priors, the single-item (latent-response) reliability, ``unmeasured``
        (``"cut"`` or ``"joint"``) and the stage-2 ``weight`` (with ``"sandwich"`` the pilot
        of :func:`~veerkracht_bayes.sem.polychoric_likelihood.fit_sandwich_weight` starts from
        the chains' starting points). With a survey, the codebook's per-item ``reliability``
        fields fill ``item_reliability`` where the settings do not name the item
        (:func:`with_codebook_reliabilities`); ``reliability`` stays the fallback.
    item_construct
        Variable -> node, when ``survey`` is a bare stage-1 result.

    Returns
    -------
    FitResult
        ``idata`` with ``posterior`` (``beta`` on ``edge``, ``psi``/``alpha`` on ``node``,
        ``lambda`` on ``item`` (correlation scale), ``loading``), ``prior``, ``sample_stats``;
        ``attrs["likelihood"] == "polychoric"``, ``attrs["stage2_weight"]`` and, for the
        sandwich, ``attrs["sandwich_pilot_seconds"]``, ``["sandwich_rank"]``,
        ``["sandwich_pilot_converged"]``. ``FitResult.data`` is the ``PolychoricData``.

    Examples
    --------
    >>> fit = fit_polychoric(graph, survey)  # doctest: +SKIP
    """
    from veerkracht_bayes.runtime import ensure_cpu_devices

    ensure_cpu_devices()
    from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, sample_nuts
    from veerkracht_bayes.inference.ordinal_fit import ordinal_prior_draws
    from veerkracht_bayes.inference.provenance import collect_provenance
    from veerkracht_bayes.inference.sampling import (
        JAX_DRIVER_SAMPLERS,
        FitResult,
        SamplerSettings,
        enable_compilation_cache,
    )
    from veerkracht_bayes.sem.preconditioning import reciprocal_log_pairs
    from veerkracht_bayes.survey.polychoric import PolychoricResult

    settings = settings or SamplerSettings()
    if settings.sampler not in JAX_DRIVER_SAMPLERS:  # type: ignore[attr-defined]
        raise ModelError(f"the polychoric route samples with the JAX driver (sampler "  # type: ignore[attr-defined]
                         f"{' or '.join(JAX_DRIVER_SAMPLERS)}), got sampler {settings.sampler!r}")  # type: ignore[attr-defined]
    if isinstance(survey, PolychoricData):
        data = survey
    elif isinstance(survey, PolychoricResult):
        if item_construct is None:
            raise ModelError("item_construct is needed with a bare stage-1 result")
        data = polychoric_data(survey, item_construct)
    else:
        data = polychoric_data_from_survey(survey, graph)
        polychoric = with_codebook_reliabilities(polychoric, survey, data)
    enable_compilation_cache()  # before the sandwich pilot's program is compiled
    pst = polychoric or PolychoricSettings()
    model, layout = build_polychoric_model(graph, data, priors, settings=polychoric, pilot=False)
    prior = ordinal_prior_draws(layout, graph, settings.prior_draws, settings.random_seed,  # type: ignore[attr-defined]
                         _x_cov(data, layout))
    rng = np.random.default_rng(settings.random_seed)  # type: ignore[attr-defined]
    picks = rng.choice(prior.sizes["draw"], size=settings.chains, replace=False)  # type: ignore[attr-defined]
    std_keys = standardised_link_keys(layout, pst.prior_links)
    initvals = _initvals(model, layout, prior, picks, std_keys)
    pilot = None
    if pst.weight == "sandwich":
        from veerkracht_bayes.inference.jax_nuts import model_fingerprint

        pilot = fit_sandwich_weight(model, initvals, cache_key=model_fingerprint(model, JaxNutsSettings()))
    jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,  # type: ignore[attr-defined]
                           target_accept=settings.target_accept, dense_mass=settings.dense_mass,  # type: ignore[attr-defined]
                           max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,  # type: ignore[attr-defined]
                           chain_method="parallel" if settings.chains > 1 else "sequential",  # type: ignore[attr-defined]
                           log_pairs=reciprocal_log_pairs(_grouped(layout, std_keys)),
                           kernel=settings.sampler)  # type: ignore[attr-defined]
    # joint systems: start at the prior draws themselves (the sampler's move towards the curvature
    # scale point can leave the standardisation region when prior-only loops enter the system)
    scale_points = initvals if layout.unmeasured == "cut" else []
    post, stats, seconds = sample_nuts(model, initvals, jset, settings.random_seed, scale_points)  # type: ignore[attr-defined]
    names = [rv.name for rv in model.free_RVs] + [d.name for d in model.deterministics]
    post = post[[k for k in names if k in post]]
    idata = xr.DataTree.from_dict({"posterior": post, "prior": prior, "sample_stats": stats})
    prov = collect_provenance(seed=settings.random_seed, files={}, hashes={"data": data.data_hash},  # type: ignore[attr-defined]
                              settings={**settings.__dict__, "path": "polychoric",
                                        **(polychoric or PolychoricSettings()).__dict__})
    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    idata.attrs["prior_only"] = 0
    idata.attrs["likelihood"] = "polychoric"
    idata.attrs["sampling_seconds"] = float(seconds)
    idata.attrs["stage2_weight"] = pst.weight
    if pilot is not None:
        idata.attrs["sandwich_pilot_seconds"] = float(pilot.seconds)
        idata.attrs["sandwich_rank"] = int(pilot.rank)
        idata.attrs["sandwich_pilot_converged"] = int(pilot.converged)
    return FitResult(idata=idata, layout=layout, graph=graph, data=data, settings=settings)  # type: ignore[arg-type]


def _x_cov(data: PolychoricData, layout: ModelLayout) -> np.ndarray:
    """Covariate correlation matrix in the layout's covariate order."""
    if not layout.covariates:
        return np.zeros((0, 0))
    idx = [data.x_names.index(c) for c in layout.covariates]
    return data.x_cov[np.ix_(idx, idx)]


def _grouped(layout: ModelLayout, std_keys: Sequence[str]) -> object:
    """The layout as the grouped edge variables see it: without the standardised links."""
    from types import SimpleNamespace

    keys = [k for k in (layout.sampled_edges or layout.edge_keys) if k not in set(std_keys)]
    return SimpleNamespace(sampled_edges=tuple(keys), edge_keys=layout.edge_keys, edge_priors=layout.edge_priors)


def _initvals(model, layout: ModelLayout, prior: xr.Dataset, picks: np.ndarray,
              std_keys: Sequence[str] = ()) -> list[dict]:
    """Per chain: grouped edge RVs at a prior draw (the standardised links at the same draw, in
    their coordinates), loadings at 1 (correlation-scale 0.71)."""
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.edge_keys)
    std = list(std_keys)
    rest = [keys.index(k) for k in keys if k not in set(std)]
    groups = [(name, np.array(rest)[idx]) for name, _, idx in edge_groups(layout.edge_priors, [keys[i] for i in rest])]
    sidx = np.array([keys.index(k) for k in std], dtype=int)
    out = []
    for i in picks:
        b = prior["beta"].isel(chain=0, draw=int(i)).values  # type: ignore[index]
        d = {name: b[idx] for name, idx in groups if name in model.named_vars}
        if std:
            d[STANDARDISED_LINKS] = link_to_standard(b[sidx], layout.edge_priors, std)
        out.append(d)
    if "loading" in model.named_vars:
        for d in out:
            d["loading"] = np.ones(tuple(int(s) for s in model["loading"].shape.eval()))
    return out
