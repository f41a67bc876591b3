"""Sampling: the `fit` entry point (NUTS via numpyro, blackjax, nutpie or PyMC).

`fit` returns an ArviZ DataTree with groups ``posterior``, ``prior`` (forward draws
from the priors; the model's smooth barriers — stability and positive disturbance
variances — applied by rejection, so the prior group is exactly the prior the sampler uses), ``log_likelihood``
(variable ``y``, one value per respondent and draw: the weighted pseudo-log-likelihood,
so LOO works), ``log_prior`` (for power-scaling sensitivity), ``sample_stats`` and
provenance attributes on the root. Prior-only mode (``data=None``) returns the prior
draws as the posterior, so do-queries can run before any data arrive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from .causal_graph import CausalGraph
from .errors import ModelError
from .implied_moments import implied_moments, pointwise_loglik, structural_matrices
from .model_builder import ModelLayout, build_model, perron_upper_bound
from .provenance import collect_provenance
from .sufficient_stats import ModelData

__all__ = ["SamplerSettings", "FitResult", "fit", "enable_compilation_cache"]

log = logging.getLogger(__name__)

Sampler = Literal["numpyro", "blackjax", "nutpie", "pymc"]


def enable_compilation_cache(path: str | Path | None = None) -> None:
    """Turn on JAX's persistent compilation cache (reused across processes)."""
    import jax

    path = Path(path or os.environ.get("VEERKRACHT_JAX_CACHE", Path.home() / ".cache" / "veerkracht_bayes" / "jax"))
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings (all recorded in provenance)."""

    sampler: Sampler = "numpyro"
    chains: int = 2
    draws: int = 500
    tune: int = 500
    target_accept: float = 0.9
    random_seed: int = 2023
    progressbar: bool = True
    prior_draws: int = 1000
    dense_mass: bool = False
    max_treedepth: int = 10


@dataclass
class FitResult:
    """A fitted model: the DataTree plus what is needed to interpret it."""

    idata: xr.DataTree
    layout: ModelLayout
    graph: CausalGraph
    data: ModelData | None
    settings: SamplerSettings

    @property
    def prior_only(self) -> bool:
        """True when no data informed the posterior."""
        return self.data is None


def _flat(ds: xr.Dataset, name: str) -> np.ndarray:
    da = ds[name]
    other = [d for d in da.dims if d not in ("chain", "draw")]
    arr = da.transpose("chain", "draw", *other).values
    return arr.reshape((-1,) + arr.shape[2:])


def _perron(absB: np.ndarray) -> np.ndarray:
    if absB.shape[-1] == 0:
        return np.zeros(absB.shape[0])
    return np.max(np.abs(np.linalg.eigvals(absB)), axis=-1)


def _prior_draws(model, layout: ModelLayout, graph: CausalGraph, n: int, seed: int) -> xr.Dataset:
    """Forward draws from the priors; stability barrier and psi > 0 applied by rejection."""
    import pymc as pm

    names = [v for v in ("beta", "lambda", "theta", "nu", "psi", "alpha", "rho_abs_bound")
             if v in model.named_vars] + [rv.name for rv in model.free_RVs if rv.name != "nu"]
    rng = np.random.default_rng(seed)
    kept: list[xr.Dataset] = []
    total = 0
    attempts = 0
    while total < n and attempts < 20:
        attempts += 1
        pp = pm.sample_prior_predictive(draws=max(2 * n, 200), model=model, var_names=names,
                                        random_seed=rng.integers(2**31))
        prior = pp["prior"].to_dataset() if hasattr(pp["prior"], "to_dataset") else pp["prior"]
        beta = _flat(prior, "beta")
        psi = _flat(prior, "psi")
        B, _ = structural_matrices(layout, graph, beta)
        rho = perron_upper_bound(np.abs(B), layout.stability.power_iterations)
        lat_pos = [graph.node_index[k] for k in layout.latent]
        psi_lat = psi[:, lat_pos]
        ok_psi = (psi_lat > 1e-4).all(axis=1)
        st = layout.stability
        # acceptance = the model's smooth barriers (stability, positive disturbance variances)
        log_acc = -np.logaddexp(0.0, -(st.rho_max - rho) / st.width)
        log_acc += np.sum(-np.logaddexp(0.0, -(psi_lat - 0.02) / 0.01), axis=1)
        accept_p = np.exp(log_acc)
        keep = ok_psi & (rng.random(len(rho)) < accept_p)
        idx = np.flatnonzero(keep)
        sel = prior.stack(sample=("chain", "draw")).isel(sample=idx)
        kept.append(sel.drop_vars(["sample", "chain", "draw"]))
        total += len(idx)
    if total < n:
        raise ModelError(f"only {total} of {n} prior draws have a stable, standardisable system; "
                         "the priors put most mass on unstable cycles (reduce the prior means)")
    allp = xr.concat(kept, dim="sample").isel(sample=slice(0, n))
    allp = allp.assign_coords(sample=np.arange(n)).rename(sample="draw").expand_dims(chain=[0])
    return allp.transpose("chain", "draw", ...)


def fit(
    graph: CausalGraph,
    data: ModelData | None = None,
    priors: object | None = None,
    *,
    settings: SamplerSettings | None = None,
    vague: bool = False,
    reliability: float = 0.8,
    files: Mapping[str, str | Path | None] | None = None,
    pointwise: bool = True,
    **overrides: object,
) -> FitResult:
    """Fit the structural model (or sample the priors only when ``data`` is None).

    Parameters
    ----------
    graph
        The diagram.
    data
        Prepared survey data, or None for prior-only mode.
    priors
        PriorSet (literature priors) or None for the sign-constrained defaults.
    settings
        Sampler settings; keyword ``overrides`` (``draws=...``, ``sampler=...``) replace fields.
    vague
        Vague unconstrained edge priors when ``priors`` is None (generic models).
    reliability
        Assumed reliability of single-item constructs.
    files
        Input files to hash into the provenance (graph, priors, survey, codebook).
    pointwise
        Compute the per-respondent log-likelihood group (needed for LOO).

    Returns
    -------
    FitResult
    """
    import pymc as pm
    from pymc.stats.log_density import compute_log_prior

    settings = settings or SamplerSettings()
    if overrides:
        settings = SamplerSettings(**{**settings.__dict__, **overrides})
    if settings.sampler not in ("numpyro", "blackjax", "nutpie", "pymc"):
        raise ModelError(f"unknown sampler {settings.sampler!r} (expected numpyro, blackjax, nutpie or pymc)")
    model, layout = build_model(graph, data, priors, vague=vague, reliability=reliability)
    prior = _prior_draws(model, layout, graph, settings.prior_draws, settings.random_seed)
    if data is None:
        post = prior.copy()
        idata = xr.DataTree.from_dict({"posterior": post, "prior": prior})
    else:
        if settings.sampler in ("numpyro", "blackjax"):
            enable_compilation_cache()
        kwargs: dict[str, object] = {}
        # Start each chain at a different draw from the (stability-truncated) prior, which is
        # a valid point (stable system, positive disturbance variances); no further jitter.
        free = [rv.name for rv in model.free_RVs]
        init_rng = np.random.default_rng(settings.random_seed)
        picks = init_rng.choice(prior.sizes["draw"], size=settings.chains, replace=False)
        initvals = [{k: prior[k].isel(chain=0, draw=int(i)).values for k in free} for i in picks]
        nuts: dict[str, object] = {"target_accept": settings.target_accept}
        if settings.sampler in ("numpyro", "blackjax"):
            nuts["jitter"] = False
        if settings.sampler == "numpyro":
            nuts["chain_method"] = "parallel" if settings.chains > 1 else "sequential"
            nuts["dense_mass"] = settings.dense_mass
            nuts["max_tree_depth"] = settings.max_treedepth
        kwargs["nuts"] = nuts
        kwargs["initvals"] = initvals if settings.sampler != "pymc" else initvals
        if settings.sampler == "pymc":
            kwargs["init"] = "adapt_diag"
        log.info("sampling %d chains x (%d tune + %d draws) with %s", settings.chains, settings.tune,
                 settings.draws, settings.sampler)
        with model:
            idata = pm.sample(
                draws=settings.draws, tune=settings.tune, chains=settings.chains,
                cores=min(settings.chains, os.cpu_count() or 1),
                random_seed=settings.random_seed,
                progressbar=settings.progressbar, nuts_sampler=settings.sampler,
                compute_convergence_checks=False, idata_kwargs={"log_likelihood": False}, **kwargs,
            )
        keep = ["posterior", "sample_stats"]
        idata = xr.DataTree.from_dict({g: idata[g].to_dataset() for g in keep if g in idata.children})
        idata["prior"] = xr.DataTree(prior)
        try:
            lp = compute_log_prior(idata, model=model, extend_inferencedata=False, progressbar=False)
            lp_ds = lp["log_prior"].to_dataset() if "log_prior" in getattr(lp, "children", {}) else lp
            idata["log_prior"] = xr.DataTree(lp_ds)
        except Exception as exc:  # pragma: no cover - reported, not hidden
            log.warning("log_prior could not be computed: %s", exc)
        if pointwise:
            post = idata["posterior"].to_dataset()
            draws = {k: _flat(post, k) for k in ("beta", "lambda", "theta", "nu", "psi")}
            Sigma, M = implied_moments(layout, graph, data, draws)
            ll = pointwise_loglik(Sigma, M, data)
            nc = post.sizes["chain"]
            ll = ll.reshape(nc, -1, data.n)
            idata["log_likelihood"] = xr.DataTree(xr.Dataset(
                {"y": (("chain", "draw", "respondent"), ll)},
                coords={"chain": post["chain"].values, "draw": post["draw"].values,
                        "respondent": np.arange(data.n)}))
    prov = collect_provenance(
        seed=settings.random_seed, files=dict(files or {}),
        hashes={"data": None if data is None else data.data_hash},
        settings={**settings.__dict__, "vague": vague, "reliability": reliability,
                  "prior_only": data is None},
    )
    import json

    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    idata.attrs["prior_only"] = int(data is None)
    return FitResult(idata=idata, layout=layout, graph=graph, data=data, settings=settings)
