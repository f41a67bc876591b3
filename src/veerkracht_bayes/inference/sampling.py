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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.sem.implied_moments import implied_moments, pointwise_loglik, structural_matrices
from veerkracht_bayes.sem.model_builder import ModelLayout, build_model, perron_upper_bound
from veerkracht_bayes.inference.provenance import collect_provenance
from veerkracht_bayes.survey.statistics import ModelData

__all__ = ["SamplerSettings", "FitResult", "fit", "enable_compilation_cache", "initial_values"]

log = logging.getLogger(__name__)

Sampler = Literal["numpyro", "blackjax", "nutpie", "pymc"]


def enable_compilation_cache(path: str | Path | None = None) -> None:
    """Turn on JAX's persistent compilation cache (reused across processes).

    The location is :func:`veerkracht_bayes.runtime.compilation_cache_dir` (documented there);
    ``vb.configure(compilation_cache=False)`` turns it off.
    """
    import jax

    from veerkracht_bayes.runtime import compilation_cache_dir

    path = Path(path) if path is not None else compilation_cache_dir()
    if path is None:
        return
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


def _truncnorm_draws(mu: np.ndarray, sd: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Truncated normal draws by inversion of the CDF, on the side of the tail (exact).

    With standardised bounds ``a < b``: where ``a > 0`` both bounds lie in the upper tail and the
    draw is mirrored (``-X`` with bounds ``(-b, -a)``), so the CDF is always inverted where it is
    not close to 1 and stays accurate far into the tail (``ndtr``/``ndtri``; the bounds may be
    infinite). The same law as ``scipy.stats.truncnorm``, about 50 times faster.
    """
    from scipy.special import ndtr, ndtri

    a = (np.asarray(lo, dtype=float) - mu) / sd
    b = (np.asarray(hi, dtype=float) - mu) / sd
    flip = a > 0
    a2, b2 = np.where(flip, -b, a), np.where(flip, -a, b)
    pa, pb = ndtr(a2), ndtr(b2)
    u = rng.random(size)
    z = ndtri(pa + u * (pb - pa))
    z = np.clip(z, a2, b2)
    z = np.where(flip, -z, z)
    return mu + sd * z


def _group_prior_arrays(layout: ModelLayout, keys: list[str], idx: list[int]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``mu, sd, lower, upper, nu`` of the edge priors of one group (bounds +-inf where open)."""
    p = [layout.edge_priors[keys[i]] for i in idx]
    return (np.array([q.mean for q in p]), np.array([q.sd for q in p]),
            np.array([-np.inf if q.lower is None else q.lower for q in p]),
            np.array([np.inf if q.upper is None else q.upper for q in p]),
            np.array([q.nu or 4.0 for q in p]))


def _draw_free(layout: ModelLayout, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Forward draws of the model's free random variables (NumPy/SciPy, no compilation)."""
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.edge_keys)
    out: dict[str, np.ndarray] = {}
    for name, dist, idx in edge_groups(layout.edge_priors, keys):
        mu, sd, lo, hi, nu = _group_prior_arrays(layout, keys, idx)
        if dist == "truncated_normal":
            out[name] = _truncnorm_draws(mu, sd, lo, hi, (n, len(idx)), rng)
        elif dist == "normal":
            out[name] = rng.normal(mu, sd, size=(n, len(idx)))
        else:  # student_t
            out[name] = mu + sd * rng.standard_t(nu, size=(n, len(idx)))
    mp = layout.measurement_priors
    n_free = int(sum(layout.free_items))
    if n_free:
        out["loading"] = _truncnorm_draws(np.full(n_free, mp["loading_mu"]), np.full(n_free, mp["loading_sd"]),
                                          np.zeros(n_free), np.full(n_free, np.inf), (n, n_free), rng)
        out["residual_var"] = np.exp(rng.normal(mp["theta_logmean"], mp["theta_logsd"], size=(n, n_free)))
    if layout.items:
        out["nu"] = rng.normal(0.0, mp["nu_sd"], size=(n, len(layout.items)))
    return out


def _deterministics(layout: ModelLayout, graph: CausalGraph, free: dict[str, np.ndarray],
                    x_cov: np.ndarray) -> dict[str, np.ndarray]:
    """The model's deterministic quantities from free draws (NumPy twin of build_model)."""
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.edge_keys)
    n = next(iter(free.values())).shape[0]
    beta = np.zeros((n, len(keys)))
    for name, _, idx in edge_groups(layout.edge_priors, keys):
        beta[:, idx] = free[name]
    B, G = structural_matrices(layout, graph, beta)
    pl = B.shape[1]
    A = np.linalg.inv(np.eye(pl)[None] - B)
    if G.shape[2]:
        AG = np.einsum("sij,sjk->sik", A, G)
        dx = np.einsum("sik,kl,sil->si", AG, x_cov, AG)
    else:
        dx = np.zeros((n, pl))
    psi_lat = np.linalg.solve(A * A, (1.0 - dx)[..., None])[..., 0]
    psi = np.zeros((n, len(graph.nodes)))
    psi[:, [graph.node_index[k] for k in layout.latent]] = psi_lat
    if layout.covariates:
        psi[:, [graph.node_index[k] for k in layout.covariates]] = np.diag(x_cov)
    rho = perron_upper_bound(np.abs(B), layout.stability.power_iterations)
    det = {"beta": beta, "psi": psi, "alpha": np.zeros((n, len(graph.nodes))), "rho_abs_bound": rho,
           "_psi_lat": psi_lat}
    if layout.items and ("loading" in free or not any(layout.free_items)):
        free_mask = np.array(layout.free_items, dtype=bool)
        lam = np.full((n, len(layout.items)), np.sqrt(layout.reliability))
        th = np.full((n, len(layout.items)), 1.0 - layout.reliability)
        if free_mask.any():
            lam[:, free_mask] = free["loading"]
            th[:, free_mask] = free["residual_var"]
        det["lambda"], det["theta"] = lam, th
    return det


def _prior_draws(model, layout: ModelLayout, graph: CausalGraph, n: int, seed: int,
                 x_cov: np.ndarray | None = None,
                 accept: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> xr.Dataset:
    """Forward draws from the priors; the model's smooth barriers (stability, positive
    disturbance variances) applied by rejection, so the result follows the prior density the
    sampler uses. Pure NumPy/SciPy: nothing is compiled. ``accept`` maps the draws'
    deterministics (``beta``, ``psi``...) to a boolean mask: a further hard barrier of the model
    (the ordinal path's likelihood system)."""
    rng = np.random.default_rng(seed)
    x_cov = np.zeros((len(layout.covariates),) * 2) if x_cov is None else x_cov
    st = layout.stability
    kept: dict[str, list[np.ndarray]] = {}
    total = 0
    for _ in range(50):
        m = max(2 * n, 200)
        free = _draw_free(layout, m, rng)
        det = _deterministics(layout, graph, free, x_cov)
        psi_lat = det.pop("_psi_lat")
        log_acc = -np.logaddexp(0.0, -(st.rho_max - det["rho_abs_bound"]) / st.width)
        log_acc += np.sum(-np.logaddexp(0.0, -(psi_lat - 0.02) / 0.01), axis=1)
        keep = (psi_lat > 1e-4).all(axis=1) & (np.log(rng.random(m)) < log_acc)
        if accept is not None:
            keep &= accept(det)
        for k, v in {**free, **det}.items():
            kept.setdefault(k, []).append(v[keep])
        total += int(keep.sum())
        if total >= n:
            break
    if total < n:
        raise ModelError(f"only {total} of {n} prior draws have a stable, standardisable system; "
                         "the priors put most mass on unstable cycles (reduce the prior means)")
    dims = {"beta": ("edge",), "psi": ("node",), "alpha": ("node",), "rho_abs_bound": (),
            "lambda": ("item",), "theta": ("item",), "nu": ("item",)}
    coords = {"chain": [0], "draw": np.arange(n), "edge": list(layout.edge_keys),
              "node": list(graph.nodes)}
    if layout.items:
        coords["item"] = list(layout.items)
    data_vars = {}
    for k, parts in kept.items():
        arr = np.concatenate(parts)[:n][None]
        d = dims.get(k, (f"{k}_dim_0",) if arr.ndim == 3 else ())
        data_vars[k] = (("chain", "draw") + tuple(d), arr)
    return xr.Dataset(data_vars, coords=coords)


def _norm_logpdf(x: np.ndarray, mu: object, sd: object) -> np.ndarray:
    z = (np.asarray(x) - mu) / sd
    return -0.5 * z * z - np.log(sd) - 0.5 * np.log(2 * np.pi)


def _truncnorm_logpdf(x: np.ndarray, mu: object, sd: object, lo: object, hi: object) -> np.ndarray:
    """Normal log-density renormalised to ``[lo, hi]`` (``-inf`` outside), as ``scipy.stats.truncnorm``."""
    from scipy.special import log_ndtr

    a = (np.asarray(lo, dtype=float) - mu) / sd
    b = (np.asarray(hi, dtype=float) - mu) / sd
    upper = a > 0  # both bounds in the upper tail: use the mirrored interval for precision
    la = np.where(upper, log_ndtr(-b), log_ndtr(a))
    lb = np.where(upper, log_ndtr(-a), log_ndtr(b))
    with np.errstate(divide="ignore"):
        log_mass = lb + np.log1p(-np.exp(la - lb))
    x = np.asarray(x, dtype=float)
    inside = (x >= lo) & (x <= hi)
    return np.where(inside, _norm_logpdf(x, mu, sd) - log_mass, -np.inf)


def _t_logpdf(x: np.ndarray, nu: object, mu: object, sd: object) -> np.ndarray:
    from scipy.special import gammaln

    nu = np.asarray(nu, dtype=float)
    z = (np.asarray(x) - mu) / sd
    return (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi) - np.log(sd)
            - (nu + 1) / 2 * np.log1p(z * z / nu))


def log_prior_numpy(post: xr.Dataset, layout: ModelLayout) -> xr.Dataset:
    """Log prior density of each free variable at each draw (NumPy/SciPy, nothing compiled).

    The same numbers, names and dims as PyMC's ``compute_log_prior`` on the model of
    :func:`~veerkracht_bayes.sem.model_builder.build_model` (densities of the constrained values,
    no Jacobians, no potentials): the raw edge groups ``beta_<dist>[_pos|_neg]``, ``loading``,
    ``residual_var`` and ``nu``. Used by the prior-sensitivity diagnostics.
    """
    from scipy import stats

    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.sampled_edges)
    beta = post["beta"]
    out: dict[str, xr.DataArray] = {}
    for name, dist, idx in edge_groups(layout.edge_priors, keys):
        mu, sd, lo, hi, nu = _group_prior_arrays(layout, keys, idx)
        vals = beta.sel(edge=[keys[i] for i in idx]).transpose("chain", "draw", "edge").values
        if dist == "truncated_normal":
            lp = _truncnorm_logpdf(vals, mu, sd, lo, hi)
        elif dist == "normal":
            lp = _norm_logpdf(vals, mu, sd)
        else:
            lp = _t_logpdf(vals, nu, mu, sd)
        out[name] = xr.DataArray(lp, dims=("chain", "draw", f"{name}_dim_0"))
    mp = layout.measurement_priors
    free = np.array(layout.free_items, dtype=bool)
    if layout.items and free.any() and "lambda" in post:
        lam = post["lambda"].transpose("chain", "draw", "item").values[..., free]
        th = post["theta"].transpose("chain", "draw", "item").values[..., free]
        out["loading"] = xr.DataArray(_truncnorm_logpdf(lam, mp["loading_mu"], mp["loading_sd"], 0.0, np.inf),
                                      dims=("chain", "draw", "loading_dim_0"))
        with np.errstate(divide="ignore", invalid="ignore"):
            lth = np.log(th)
            lp_th = _norm_logpdf(lth, mp["theta_logmean"], mp["theta_logsd"]) - lth
        out["residual_var"] = xr.DataArray(np.where(th > 0, lp_th, -np.inf),
                                           dims=("chain", "draw", "residual_var_dim_0"))
    if layout.items and "nu" in post:
        nu = post["nu"].transpose("chain", "draw", "item")
        out["nu"] = xr.DataArray(_norm_logpdf(nu.values, 0.0, mp["nu_sd"]), dims=("chain", "draw", "item"),
                                 coords={"item": nu["item"].values})
    return xr.Dataset(out, coords={"chain": post["chain"].values, "draw": post["draw"].values})


def _cut_completion(post: xr.Dataset, layout: ModelLayout, graph: CausalGraph, x_cov: np.ndarray,
                    seed: int) -> tuple[xr.Dataset, int]:
    """Apply the full system's barriers to the prior-only links of a cut posterior.

    In the cut posterior the links that touch unmeasured constructs are independent of the
    data; NUTS draws them from their priors. Their conditional target given the
    data-informed links is prior × barrier(full system), sampled here exactly by
    accept/redraw: each draw is kept with probability barrier(full), otherwise its prior-only
    links are redrawn from the prior. Returns the completed posterior and the number of redraws.
    """
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.edge_keys)
    po_idx = np.array([i for i, k in enumerate(keys) if layout.edge_kind[k] in ("prior_only", "absent")],
                      dtype=int)
    beta = post["beta"].transpose("chain", "draw", "edge").values
    nc, nd, ne = beta.shape
    flat = beta.reshape(-1, ne).copy()
    rng = np.random.default_rng(seed + 7919)
    st = layout.stability
    # the prior-only links were not sampled (zeros): draw them from their priors first
    if len(po_idx):
        fresh = _draw_free(layout, flat.shape[0], rng)
        init = np.zeros_like(flat)
        for name, _, idx in edge_groups(layout.edge_priors, keys):
            init[:, idx] = fresh[name]
        flat[:, po_idx] = init[:, po_idx]
    pending = np.arange(flat.shape[0])
    redraws = 0
    for _ in range(200):
        det = _deterministics(layout, graph, {n: flat[pending][:, idx] for n, _, idx in
                                              edge_groups(layout.edge_priors, keys)}, x_cov)
        psi_lat = det["_psi_lat"]
        log_acc = -np.logaddexp(0.0, -(st.rho_max - det["rho_abs_bound"]) / st.width)
        log_acc += np.sum(-np.logaddexp(0.0, -(psi_lat - 0.02) / 0.01), axis=1)
        ok = (psi_lat > 1e-4).all(axis=1) & (np.log(rng.random(len(pending))) < log_acc)
        pending = pending[~ok]
        if len(pending) == 0 or len(po_idx) == 0:
            break
        fresh = _draw_free(layout, len(pending), rng)
        new_beta = np.zeros((len(pending), ne))
        for name, _, idx in edge_groups(layout.edge_priors, keys):
            new_beta[:, idx] = fresh[name]
        flat[np.ix_(pending, po_idx)] = new_beta[:, po_idx]
        redraws += len(pending)
    if len(pending):
        raise ModelError(f"{len(pending)} posterior draws have no stable, standardisable completion "
                         "of the prior-only links (the data-informed system is close to unstable)")
    free = {n: flat[:, idx] for n, _, idx in edge_groups(layout.edge_priors, keys)}
    det = _deterministics(layout, graph, free, x_cov)
    post = post.copy()
    post["beta"] = (("chain", "draw", "edge"), flat.reshape(nc, nd, ne))
    post["psi"] = (("chain", "draw", "node"), det["psi"].reshape(nc, nd, -1))
    post["rho_abs_bound"] = (("chain", "draw"), det["rho_abs_bound"].reshape(nc, nd))
    return post, redraws


def initial_values(model, layout: ModelLayout, prior: xr.Dataset, chains: int,  # noqa: ANN001 - pm.Model
                   seed: int) -> list[dict[str, np.ndarray]]:
    """Starting values, one dict per chain: different draws from the (barrier-truncated) prior.

    Each is a valid point (stable system, positive disturbance variances), so no jitter is
    needed. Edge groups hold only the links the model samples (all links, or in cut mode the
    data-informed ones).
    """
    from veerkracht_bayes.sem.preconditioning import edge_groups

    free = [rv.name for rv in model.free_RVs]
    picks = np.random.default_rng(seed).choice(prior.sizes["draw"], size=chains, replace=False)
    keys_all = list(layout.edge_keys)
    sampled = list(layout.sampled_edges or keys_all)
    groups = edge_groups(layout.edge_priors, sampled)
    prior_beta = prior["beta"].isel(chain=0).values
    out = []
    for i in picks:
        iv = {k: prior[k].isel(chain=0, draw=int(i)).values for k in free if not k.startswith("beta_")}
        for name, _, idx in groups:
            iv[name] = prior_beta[int(i), [keys_all.index(sampled[j]) for j in idx]]
        out.append(iv)
    return out


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
    prior_only: bool = False,
    **overrides: object,
) -> FitResult:
    """Fit the structural model (or sample the priors only, when asked with ``prior_only=True``).

    Parameters
    ----------
    graph
        The diagram.
    data
        Prepared survey data; ``None`` only together with ``prior_only=True``.
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
    prior_only
        Sample the priors and return them as the "posterior" (no data). Without data and
        without this flag, ``fit`` refuses: a prior is never returned as a posterior unasked.

    Returns
    -------
    FitResult

    Raises
    ------
    ModelError
        When ``data`` is None and ``prior_only`` is not set, or both are given.
    """
    import pymc as pm

    from veerkracht_bayes.runtime import ensure_cpu_devices

    if data is None and not prior_only:
        raise ModelError("fit() got no data: pass survey data, or prior_only=True to sample the priors alone")
    if data is not None and prior_only:
        raise ModelError("fit() got data and prior_only=True: drop one of them")
    ensure_cpu_devices()

    settings = settings or SamplerSettings()
    if overrides:
        settings = SamplerSettings(**{**settings.__dict__, **overrides})
    if settings.sampler not in ("numpyro", "blackjax", "nutpie", "pymc"):
        raise ModelError(f"unknown sampler {settings.sampler!r} (expected numpyro, blackjax, nutpie or pymc)")
    model, layout = build_model(graph, data, priors, vague=vague, reliability=reliability)
    prior = _prior_draws(model, layout, graph, settings.prior_draws, settings.random_seed,
                         None if data is None else data.x_cov)
    if data is None:
        post = prior.copy()
        idata = xr.DataTree.from_dict({"posterior": post, "prior": prior})
    else:
        if settings.sampler in ("numpyro", "blackjax"):
            enable_compilation_cache()
        kwargs: dict[str, object] = {}
        initvals = initial_values(model, layout, prior, settings.chains, settings.random_seed)
        nuts: dict[str, object] = {"target_accept": settings.target_accept}
        if settings.sampler in ("numpyro", "blackjax"):
            nuts["jitter"] = False
        if settings.sampler == "numpyro":
            nuts["chain_method"] = "parallel" if settings.chains > 1 else "sequential"
            nuts["dense_mass"] = settings.dense_mass
            nuts["max_tree_depth"] = settings.max_treedepth
        kwargs["nuts"] = nuts
        # nutpie takes one start dict for all chains; the others one per chain
        kwargs["initvals"] = initvals[0] if settings.sampler == "nutpie" else initvals
        if settings.sampler == "pymc":
            kwargs["init"] = "adapt_diag"
        log.info("sampling %d chains x (%d tune + %d draws) with %s", settings.chains, settings.tune,
                 settings.draws, settings.sampler)
        if settings.sampler == "numpyro":
            # our JAX driver: the data statistics are arguments of the compiled program, so
            # it is compiled once per model shape (and found in the persistent cache)
            from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, sample_nuts
            from veerkracht_bayes.sem.preconditioning import link_estimate, measurement_start, reciprocal_log_pairs

            scale_points: list[dict[str, np.ndarray]] = []
            if layout.items:
                # data-based starts for the measurement part; links keep their prior-draw starts
                free = {rv.name for rv in model.free_RVs}
                starts = measurement_start(data.stats, layout.item_construct, layout.free_items,
                                           settings.chains, settings.random_seed)
                initvals = [{**iv, **{k: v for k, v in st.items() if k in free}}
                            for iv, st in zip(initvals, starts)]
                links = link_estimate(data.stats, layout, tuple(data.x_names))
                scale_points = [{**initvals[0], **{k: v * f for k, v in links.items() if k in free}}
                                for f in (1.0, 0.5, 0.25)]
            jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                                   target_accept=settings.target_accept, dense_mass=settings.dense_mass,
                                   max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,
                                   chain_method="parallel" if settings.chains > 1 else "sequential",
                                   log_pairs=reciprocal_log_pairs(layout))
            post, stats, _ = sample_nuts(model, initvals, jset, settings.random_seed, scale_points)
            idata = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
        else:
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
        if layout.cut_active:
            post, redraws = _cut_completion(idata["posterior"].to_dataset(), layout, graph,
                                            data.x_cov, settings.random_seed)
            idata["posterior"] = xr.DataTree(post)
            idata.attrs["cut_redraws"] = int(redraws)
            log.info("cut posterior: %d prior-only redraws to satisfy the full system's barriers", redraws)
        lp_ds = log_prior_numpy(idata["posterior"].to_dataset(), layout)
        if set(lp_ds.data_vars) != {rv.name for rv in model.free_RVs}:  # a model this twin does not know
            from pymc.stats.log_density import compute_log_prior

            lp = compute_log_prior(idata, model=model, extend_inferencedata=False, progressbar=False)
            lp_ds = lp["log_prior"].to_dataset() if "log_prior" in getattr(lp, "children", {}) else lp
        idata["log_prior"] = xr.DataTree(lp_ds)
        if pointwise and data.y.shape[0] == 0:
            log.info("statistics-only data (out of core): no per-respondent log-likelihood")
        elif pointwise:
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
