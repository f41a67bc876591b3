"""Fitting the exact ordinal path (:mod:`veerkracht_bayes.sem.ordinal`) with NUTS.

The model itself (latent scores, ordered-probit items, guided coordinates) lives in
:mod:`veerkracht_bayes.sem.ordinal`; this module draws its prior, picks starting points and runs
the sampler (numpyro through :mod:`veerkracht_bayes.inference.jax_nuts`, or PyMC's own NUTS).
"""

from __future__ import annotations

import json
import os

import numpy as np
import xarray as xr

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem.model_builder import ModelLayout
from veerkracht_bayes.sem.ordinal import (OrdinalData, OrdinalSettings, build_ordinal_model, likelihood_psi,
                                          ordinal_data_from_survey, standardised_items)

__all__ = ["fit_ordinal", "ordinal_prior_draws"]


def ordinal_prior_draws(layout: ModelLayout, graph: CausalGraph, n: int, seed: int,
                        x_cov: np.ndarray | None = None) -> xr.Dataset:
    """Forward prior draws of the structural quantities (NumPy/SciPy: nothing is compiled).

    The model's barriers are applied by rejection, so the draws follow the prior density the
    sampler uses: the smooth stability and standardisation barriers of the full system and the
    hard ``psi > 1e-4`` of the full and the likelihood systems. ``x_cov`` is the covariates'
    covariance (:attr:`OrdinalData.x_cov`), which enters psi.

    Returns
    -------
    xarray.Dataset
        ``beta``, ``psi``, ``alpha`` and ``rho_abs_bound`` with dims ``(chain=1, draw=n, ...)``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> g = load_graph("marvel")
    >>> _, layout = build_model(g, None)
    >>> prior = ordinal_prior_draws(layout, g, 50, seed=1)
    >>> sorted(prior.data_vars), prior.sizes["draw"]
    (['alpha', 'beta', 'psi', 'rho_abs_bound'], 50)
    """
    from dataclasses import replace

    from veerkracht_bayes.inference.sampling import draw_prior

    q = len(layout.covariates)
    x_cov = np.zeros((q, q)) if x_cov is None else np.asarray(x_cov, dtype=float)
    structural = replace(layout, items=(), free_items=())  # measurement priors are not drawn here

    def lik_ok(det: dict[str, np.ndarray]) -> np.ndarray:
        return (likelihood_psi(layout, graph, det["beta"], x_cov) > 1e-4).all(axis=1)

    draws = draw_prior(None, structural, graph, n, seed, x_cov, accept=lik_ok if layout.lik_latent else None)
    return draws[["beta", "psi", "alpha", "rho_abs_bound"]]


def fit_ordinal(graph: CausalGraph, survey: object, priors: object | None = None, *,
                settings: object | None = None, ordinal: OrdinalSettings | None = None,
                chain_method: str = "vectorized", keep_eta: bool = False,
                coordinates: str = "guided"):  # noqa: ANN201 - FitResult
    """Fit the exact ordinal path with NUTS (numpyro by default).

    Parameters
    ----------
    graph
        The diagram.
    survey
        A :class:`~veerkracht_bayes.survey.reading.SurveyData` or an :class:`OrdinalData`.
    priors
        PriorSet-like (``for_edge``) or None for the sign-constrained defaults.
    settings
        :class:`~veerkracht_bayes.inference.sampling.SamplerSettings` (sampler ``numpyro``, ``nutpie``,
        ``blackjax`` or ``pymc``).
    ordinal
        Measurement priors and single-item reliability.
    chain_method
        numpyro ``"vectorized"`` (all chains on one device; use on a GPU), ``"parallel"``
        (one device per chain) or ``"sequential"``.
    keep_eta
        Keep the ``(chain, draw, respondent, lik_latent)`` latent scores in the posterior
        (large: off by default).
    coordinates
        ``"guided"`` (default) or ``"noncentred"`` latent coordinates (see
        :func:`build_ordinal_model`; same posterior). With ``"guided"`` and numpyro the chains
        run on :func:`veerkracht_bayes.inference.jax_nuts.sample_nuts`: data-based starts for the loadings
        and thresholds (:func:`~veerkracht_bayes.sem.preconditioning.ordinal_start`) and links
        (:func:`~veerkracht_bayes.sem.preconditioning.link_estimate`), chains started within two
        curvature scales of that point, the latent coordinates at independent ``N(0, 1)`` draws
        (they are close to ``N(0, I)`` a posteriori), and the data as arguments of the compiled
        program (a refit on data of the same shape compiles nothing).

    Returns
    -------
    FitResult
        ``idata`` has ``posterior`` (``beta`` on ``edge``, ``psi``/``alpha`` on ``node``,
        ``lambda``, ``thresholds``...), ``prior``, ``sample_stats`` and provenance; no
        ``log_likelihood`` group (LOO on this path would need the marginal over eta).
        ``FitResult.data`` is the :class:`OrdinalData`.

    Examples
    --------
    It samples (tens of seconds), so not run here:

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.inference.sampling import SamplerSettings
    >>> from veerkracht_bayes.sem.ordinal import OrdinalData
    >>> codes = np.random.default_rng(0).integers(0, 3, size=(300, 2))
    >>> od = OrdinalData(item_names=("a1", "b1"), item_construct=("a", "b"), n_categories=np.array([3, 3]),
    ...                  codes=codes)
    >>> fit = fit_ordinal(graph_from_lavaan("b ~ a"), od, settings=SamplerSettings(
    ...     chains=2, draws=200, tune=500, progressbar=False, random_seed=5))  # doctest: +SKIP
    >>> fit.idata["posterior"]["beta"].dims  # doctest: +SKIP
    ('chain', 'draw', 'edge')
    """
    from veerkracht_bayes.runtime import ensure_cpu_devices

    ensure_cpu_devices()
    import pymc as pm

    from veerkracht_bayes.inference.provenance import collect_provenance
    from veerkracht_bayes.inference.sampling import (
        JAX_DRIVER_SAMPLERS,
        FitResult,
        SamplerSettings,
        enable_compilation_cache,
    )

    settings = settings or SamplerSettings()
    if chain_method not in ("vectorized", "parallel", "sequential"):
        raise ModelError(f"chain_method must be 'vectorized', 'parallel' or 'sequential', got {chain_method!r}")
    if coordinates not in ("guided", "noncentred"):
        raise ModelError(f"coordinates must be 'guided' or 'noncentred', got {coordinates!r}")
    data = survey if isinstance(survey, OrdinalData) else ordinal_data_from_survey(survey, graph)
    ordinal = _with_codebook_reliabilities(ordinal, survey, data)
    model, layout = build_ordinal_model(graph, data, priors, settings=ordinal, keep_eta=keep_eta,
                                        coordinates=coordinates)
    prior = ordinal_prior_draws(layout, graph, settings.prior_draws, settings.random_seed, data.x_cov)
    if settings.sampler in ("numpyro", "blackjax"):
        enable_compilation_cache()
    # start: each chain at a different stability-truncated prior draw of B, latent coordinates at 0
    picks = np.random.default_rng(settings.random_seed).choice(prior.sizes["draw"], size=settings.chains,
                                                               replace=False)
    initvals = _beta_initvals(model, layout, prior, picks)
    if settings.sampler in JAX_DRIVER_SAMPLERS and coordinates == "guided":
        post, stats = _sample_guided(model, layout, data, initvals, settings, ordinal or OrdinalSettings(),
                                     chain_method)
        idata = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    else:
        nuts: dict[str, object] = {"target_accept": settings.target_accept}
        if settings.sampler == "numpyro":
            nuts.update(chain_method=chain_method, dense_mass=settings.dense_mass,
                        max_tree_depth=settings.max_treedepth)
        kwargs: dict[str, object] = {"nuts": nuts, "initvals": initvals}
        if settings.sampler in ("numpyro", "blackjax"):
            nuts["jitter"] = False
        with model:
            idata = pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                              cores=min(settings.chains, os.cpu_count() or 1), random_seed=settings.random_seed,
                              progressbar=settings.progressbar, nuts_sampler=settings.sampler,
                              compute_convergence_checks=False, idata_kwargs={"log_likelihood": False},
                              var_names=_posterior_names(model), **kwargs)
    post = idata["posterior"].to_dataset()
    idata = _native_ordinal_tree(post, prior, idata["sample_stats"].to_dataset(), layout, graph)
    prov = collect_provenance(seed=settings.random_seed, files={}, hashes={"data": data.data_hash},
                              settings={**settings.__dict__, "path": "ordinal", "chain_method": chain_method,
                                        "coordinates": coordinates,
                                        **(ordinal or OrdinalSettings()).__dict__})
    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    idata.attrs["prior_only"] = 0
    idata.attrs["likelihood"] = "ordinal"
    return FitResult(idata=idata, layout=layout, graph=graph, data=data, settings=settings)  # type: ignore[arg-type]


def _with_codebook_reliabilities(ordinal: OrdinalSettings | None, survey: object,
                                 data: OrdinalData) -> OrdinalSettings | None:
    """The codebook's per-item ``reliability`` fields (latent-response scale, the exact ordinal
    path's own scale) for the items of ``data``, under the settings' own ``item_reliability``
    (which wins item by item). An :class:`OrdinalData` has no codebook: settings unchanged."""
    import dataclasses

    from veerkracht_bayes.survey.codebook import declared_item_reliabilities

    codebook = getattr(survey, "codebook", None)
    if codebook is None:
        return ordinal
    st = ordinal or OrdinalSettings()
    return dataclasses.replace(st, item_reliability=declared_item_reliabilities(
        codebook, tuple(data.item_names) + tuple(data.cont_names), st.item_reliability))


def _native_ordinal_tree(post: xr.Dataset, prior: xr.Dataset, stats: xr.Dataset, layout: ModelLayout,
                         graph: CausalGraph) -> xr.DataTree:
    """The ordinal fit's DataTree in ArviZ's layout, as the continuous path's
    (:func:`~veerkracht_bayes.inference.sampling.native_groups`) for the structural part: ``beta``
    on ``edge``, ``psi`` on ``latent`` and ``rho_abs_bound`` in ``posterior`` and ``prior``;
    ``alpha`` and the exogenous ``psi`` in ``constant_data``; the sampler's edge groups
    ``beta_<dist>...`` left out. The measurement variables (``lambda`` on ``item``,
    ``thresholds``...) stay in ``posterior`` under the model's names; ``loading`` and
    ``cont_loading`` (the sampled entries of ``lambda``) are not repeated."""
    from dataclasses import replace

    from veerkracht_bayes.inference.sampling import native_groups

    structural = replace(layout, items=(), free_items=())
    p_main, const = native_groups(post, structural, graph)
    pr_main, _ = native_groups(prior, structural, graph)
    skip = set(p_main.data_vars) | {"alpha", "psi", "loading", "cont_loading"}
    rest = [v for v in post.data_vars if v not in skip and not str(v).startswith("beta_")]
    p_main = xr.merge([p_main, post[rest]], combine_attrs="override")
    return xr.DataTree.from_dict({"posterior": p_main, "prior": pr_main, "sample_stats": stats,
                                  "constant_data": const})


def _sample_guided(model, layout: ModelLayout, data: OrdinalData, initvals: list[dict], settings: object,  # noqa: ANN001
                   ordinal: OrdinalSettings, chain_method: str) -> tuple[xr.Dataset, xr.Dataset]:
    """numpyro NUTS on the guided model through :func:`~veerkracht_bayes.inference.jax_nuts.sample_nuts`."""
    from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, sample_nuts
    from veerkracht_bayes.sem.preconditioning import link_estimate, ordinal_start, reciprocal_log_pairs
    from veerkracht_bayes.survey.statistics import pattern_stats

    y = standardised_items(data)
    items_c = tuple(data.item_construct) + tuple(data.cont_construct)
    own = dict(ordinal.item_reliability or {})
    rel = np.array([own.get(v, ordinal.reliability) for v in tuple(data.item_names) + tuple(data.cont_names)])
    start = ordinal_start(y, data.codes, data.n_categories, data.w, items_c, rel)
    m = len(data.item_names)
    counts = {c: items_c.count(c) for c in items_c}
    free = np.array([counts[c] > 1 for c in items_c], bool)
    meas: dict[str, np.ndarray] = {"threshold_std": start["threshold_std"]}
    if free[:m].any():
        meas["loading"] = start["lambda_all"][:m][free[:m]]
    if free[m:].any():
        meas["cont_loading"] = start["lambda_all"][m:][free[m:]]
        meas["residual_var"] = start["residual_var"][free[m:]]
    if len(data.cont_names):
        meas["nu"] = np.zeros(len(data.cont_names))
    names = set(model.named_vars)
    meas = {k: v for k, v in meas.items() if k in names}
    rng = np.random.default_rng(settings.random_seed)  # type: ignore[attr-defined]
    u_shape = tuple(int(s_) for s_ in model["u"].shape.eval())
    initvals = [{**iv, **meas, "u": rng.standard_normal(u_shape)} for iv in initvals]
    stats = pattern_stats(y, np.column_stack([np.ones(data.n), data.xm]), data.w)
    links = link_estimate(stats, layout, tuple(data.x_names))
    scale_points = [{**initvals[0], **{k: v * f for k, v in links.items() if k in names}, "u": np.zeros(u_shape)}
                    for f in (1.0, 0.5, 0.25)]
    # the batched curvature gradient holds per-answer intermediates: bound its memory
    cells = max(data.n * max(m, 1) * int(np.max(data.n_categories)) if m else data.n, 1)
    jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,  # type: ignore[attr-defined]
                           target_accept=settings.target_accept, dense_mass=settings.dense_mass,  # type: ignore[attr-defined]
                           max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,  # type: ignore[attr-defined]
                           chain_method=chain_method if settings.chains > 1 else "sequential",  # type: ignore[attr-defined]
                           log_pairs=reciprocal_log_pairs(layout), unit_scale=("u",), exclude=("u",),
                           grad_chunk=int(np.clip(4_000_000 // cells, 1, 32)),
                           kernel=settings.sampler)  # type: ignore[attr-defined]
    post, stats_ds, _ = sample_nuts(model, initvals, jset, settings.random_seed, scale_points)  # type: ignore[attr-defined]
    keep = [k for k in _posterior_names(model) if k in post]
    return post[keep], stats_ds


def _posterior_names(model) -> list[str]:  # noqa: ANN001
    skip = {"z", "u"}  # eta is a Deterministic only when keep_eta
    names = [rv.name for rv in model.free_RVs if rv.name not in skip]
    return names + [d.name for d in model.deterministics]


def _beta_initvals(model, layout: ModelLayout, prior: xr.Dataset, picks: np.ndarray) -> list[dict]:  # noqa: ANN001
    """Initial values per chain: the grouped edge RVs at a prior draw, eta at 0."""
    from veerkracht_bayes.inference.sampling import edge_starts

    lat = "u" if "u" in model.named_vars else "z"
    out = edge_starts(model, layout, prior, picks)
    for d in out:
        d[lat] = np.zeros(tuple(int(s) for s in model[lat].shape.eval()))
    return out
