"""Sampling: the `fit` entry point (NUTS: numpyro or blackjax in the package's JAX driver, nutpie, PyMC).

`fit` returns an ArviZ DataTree (:func:`native_groups` lists the variables and dims) with groups
``posterior`` and ``prior`` (the same variables, named dims and coordinates; the prior: forward
draws from the priors with the model's smooth barriers — stability and positive disturbance
variances — applied by rejection, so it is exactly the prior the sampler uses),
``constant_data`` (the fixed quantities: intercepts, exogenous variances, fixed loadings),
``observed_data`` (:func:`observed_summaries`: weighted item summaries per missingness pattern,
no respondent rows), ``log_likelihood`` (variable ``y``, one value per respondent and draw: the
weighted pseudo-log-likelihood, so LOO works; per missingness pattern for statistics-only
data), ``log_prior`` (for power-scaling sensitivity), ``sample_stats`` and provenance
attributes on the root. The sampler's internal variables (the edge groups
``beta_<dist>[_pos|_neg]``) are not in it. Prior-only mode returns the prior draws as the
posterior, so do-queries can run before any data arrive.
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
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.inference.jax_nuts import KERNELS
from veerkracht_bayes.sem.model_builder import ModelLayout, build_model, fixed_item_reliability
from veerkracht_bayes.inference.provenance import collect_provenance
from veerkracht_bayes.survey.statistics import ModelData

__all__ = ["SamplerSettings", "FitResult", "fit", "compute_log_likelihood", "enable_compilation_cache", "initial_values", "edge_starts",
           "native_groups", "observed_summaries", "pattern_loglik", "log_likelihood_by_pattern",
           "measurement_draws", "MIN_PATTERN_SIZE", "draw_prior", "cut_completion", "truncnorm_draws",
           "norm_logpdf", "truncnorm_logpdf", "t_logpdf"]

log = logging.getLogger(__name__)

Sampler = Literal["numpyro", "blackjax", "nutpie", "pymc"]
#: samplers run by the package's JAX driver (:func:`veerkracht_bayes.inference.jax_nuts.sample_nuts`,
#: data as program inputs): the driver's NUTS kernels, by library name; nutpie and pymc go
#: through ``pm.sample``
JAX_DRIVER_SAMPLERS = KERNELS


def enable_compilation_cache(path: str | Path | None = None) -> None:
    """Turn on JAX's persistent compilation cache (reused across processes).

    The location is :func:`veerkracht_bayes.runtime.compilation_cache_dir` (documented there);
    ``vb.configure(compilation_cache=False)`` turns it off.

    Examples
    --------
    Every fit calls it; with no ``path`` it uses the configured folder (nothing when turned off):

    >>> import jax
    >>> from veerkracht_bayes.runtime import compilation_cache_dir
    >>> enable_compilation_cache()
    >>> d = compilation_cache_dir()
    >>> d is None or jax.config.jax_compilation_cache_dir == str(d)
    True
    """
    import jax

    from veerkracht_bayes.runtime import compilation_cache_dir

    path = Path(path) if path is not None else compilation_cache_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program: a MARVEL fit compiles 57 (numpyro's set-up, random keys, slices, the
    # curvature, the outputs, the chains), and with a 0.5 s floor only 3 were kept, so a warm
    # cache still compiled the other 54 (benchmarks/run.py, first_result; docs/performance.md §7)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # a size cap turns on JAX's LRU mode, whose reads and writes hold a file lock: without it two
    # processes (xdist workers, parallel runs) that compile the same program write the same file
    # with no lock and no atomic rename, and a reader can see it half written. (The "Failed to
    # materialize symbols" errors first blamed on this came from the memory-mapping cap:
    # runtime.release_compiled_programs_if_needed, docs/performance.md §1b.)
    jax.config.update("jax_compilation_cache_max_size", 4 * 2**30)


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings (all recorded in provenance).

    Examples
    --------
    >>> s = SamplerSettings(draws=500, chains=2, random_seed=1)
    >>> s.sampler, s.tune
    ('numpyro', 500)
    """

    #: ``"numpyro"`` or ``"blackjax"``: the package's JAX driver with that NUTS implementation
    #: (:data:`JAX_DRIVER_SAMPLERS`); ``"nutpie"`` or ``"pymc"``: ``pm.sample``
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
    """A fitted model: the DataTree plus what is needed to interpret it.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> res = fit(load_graph("marvel"), None, prior_only=True, prior_draws=50, random_seed=1)
    >>> isinstance(res, FitResult), res.prior_only, res.data is None
    (True, True, True)
    """

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


def truncnorm_draws(mu: np.ndarray, sd: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Truncated normal draws by inversion of the CDF, on the side of the tail (exact).

    With standardised bounds ``a < b``: where ``a > 0`` both bounds lie in the upper tail and the
    draw is mirrored (``-X`` with bounds ``(-b, -a)``), so the CDF is always inverted where it is
    not close to 1 and stays accurate far into the tail (``ndtr``/``ndtri``; the bounds may be
    infinite). The same law as ``scipy.stats.truncnorm``, about 50 times faster.

    Parameters
    ----------
    mu, sd, lo, hi
        Location, scale and bounds of each column (broadcast against ``size``).
    size
        ``(n, k)``: ``n`` draws of ``k`` columns.
    rng
        The random generator.

    Returns
    -------
    numpy.ndarray
        ``(n, k)`` draws, inside ``[lo, hi]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = truncnorm_draws(np.array([0.2]), np.array([0.1]), np.array([0.0]), np.array([np.inf]),
    ...                     (1000, 1), np.random.default_rng(1))
    >>> x.shape, bool((x >= 0).all())
    ((1000, 1), True)
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
            out[name] = truncnorm_draws(mu, sd, lo, hi, (n, len(idx)), rng)
        elif dist == "normal":
            out[name] = rng.normal(mu, sd, size=(n, len(idx)))
        else:  # student_t
            out[name] = mu + sd * rng.standard_t(nu, size=(n, len(idx)))
    mp = layout.measurement_priors
    n_free = int(sum(layout.free_items))
    if n_free:
        out["loading"] = truncnorm_draws(np.full(n_free, mp["loading_mu"]), np.full(n_free, mp["loading_sd"]),
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
    A = algebra.equilibrium_matrix(B)
    psi_lat = algebra.standardised_psi(A, A @ G, x_cov)
    psi = np.zeros((n, len(graph.nodes)))
    psi[:, [graph.node_index[k] for k in layout.latent]] = psi_lat
    if layout.covariates:
        psi[:, [graph.node_index[k] for k in layout.covariates]] = np.diag(x_cov)
    rho = algebra.perron_bound(np.abs(B), layout.stability.power_iterations)
    det = {"beta": beta, "psi": psi, "alpha": np.zeros((n, len(graph.nodes))), "rho_abs_bound": rho,
           "_psi_lat": psi_lat}
    if layout.items and ("loading" in free or not any(layout.free_items)):
        free_mask = np.array(layout.free_items, dtype=bool)
        rel_items = fixed_item_reliability(layout)
        lam = np.tile(np.sqrt(rel_items), (n, 1))
        th = np.tile(1.0 - rel_items, (n, 1))
        if free_mask.any():
            lam[:, free_mask] = free["loading"]
            th[:, free_mask] = free["residual_var"]
        det["lambda"], det["theta"] = lam, th
    return det


def draw_prior(model, layout: ModelLayout, graph: CausalGraph, n: int, seed: int,
                 x_cov: np.ndarray | None = None,
                 accept: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> xr.Dataset:
    """Forward draws from the model's prior, its barriers applied by rejection.

    The smooth barriers of the model (stability, positive disturbance variances) are imposed
    by accepting each forward draw with probability barrier, so the result follows the prior
    density the sampler uses. Pure NumPy/SciPy: nothing is compiled. Shared by the continuous,
    ordinal, polychoric and multi-group fits (the draws they store as the prior and start
    their chains from).

    Parameters
    ----------
    model
        The PyMC model (unused: the layout carries everything; kept for the callers' symmetry).
    layout
        The model's layout (edge priors, classes, stability settings).
    graph
        The diagram.
    n
        Number of draws.
    seed
        Seed of the NumPy generator.
    x_cov
        Covariance of the covariates (default: zeros).
    accept
        Maps the draws' deterministics (``beta``, ``psi``...) to a boolean mask: a further
        hard barrier of the model (the ordinal path's likelihood system).

    Returns
    -------
    xarray.Dataset
        One chain of ``n`` draws: ``beta`` (edge), ``psi``, ``alpha`` (node),
        ``rho_abs_bound`` and the measurement parameters.

    Raises
    ------
    ModelError
        When fewer than ``n`` of 50 rounds of draws pass the barriers.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> g = graph_from_lavaan("b ~ a\\na ~ b")  # a positive feedback loop
    >>> model, layout = build_model(g, None)
    >>> ds = draw_prior(model, layout, g, 100, seed=1)
    >>> bool((ds["beta"] >= 0).all()), bool((ds["rho_abs_bound"] < 1).all())
    (True, True)
    """
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
        log_acc = (algebra.stability_barrier(det["rho_abs_bound"], st.rho_max, st.width)
                   + algebra.standardisation_barrier(psi_lat, floor=st.psi_floor, width=st.psi_width))
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


def norm_logpdf(x: np.ndarray, mu: object, sd: object) -> np.ndarray:
    """Normal log-density, element-wise (NumPy broadcasting), as ``scipy.stats.norm.logpdf``.

    Examples
    --------
    >>> round(float(norm_logpdf(0.0, 0.0, 1.0)), 6)
    -0.918939
    """
    z = (np.asarray(x) - mu) / sd
    return -0.5 * z * z - np.log(sd) - 0.5 * np.log(2 * np.pi)


def truncnorm_logpdf(x: np.ndarray, mu: object, sd: object, lo: object, hi: object) -> np.ndarray:
    """Normal log-density renormalised to ``[lo, hi]`` (``-inf`` outside), as ``scipy.stats.truncnorm``.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(truncnorm_logpdf(0.5, 0.0, 1.0, 0.0, np.inf)), 6)  # half-normal: log(2) + normal
    -0.350791
    >>> float(truncnorm_logpdf(-0.1, 0.0, 1.0, 0.0, np.inf))
    -inf
    """
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
    return np.where(inside, norm_logpdf(x, mu, sd) - log_mass, -np.inf)


def t_logpdf(x: np.ndarray, nu: object, mu: object, sd: object) -> np.ndarray:
    """Student-t log-density with ``nu`` degrees of freedom, location ``mu`` and scale ``sd``, as
    ``scipy.stats.t.logpdf``.

    Examples
    --------
    >>> round(float(t_logpdf(0.0, 1.0, 0.0, 1.0)), 6)  # Cauchy at 0: -log(pi)
    -1.14473
    """
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
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.sampled_edges)
    beta = post["beta"]
    out: dict[str, xr.DataArray] = {}
    for name, dist, idx in edge_groups(layout.edge_priors, keys):
        mu, sd, lo, hi, nu = _group_prior_arrays(layout, keys, idx)
        vals = beta.sel(edge=[keys[i] for i in idx]).transpose("chain", "draw", "edge").values
        if dist == "truncated_normal":
            lp = truncnorm_logpdf(vals, mu, sd, lo, hi)
        elif dist == "normal":
            lp = norm_logpdf(vals, mu, sd)
        else:
            lp = t_logpdf(vals, nu, mu, sd)
        out[name] = xr.DataArray(lp, dims=("chain", "draw", f"{name}_dim_0"))
    mp = layout.measurement_priors
    free = np.array(layout.free_items, dtype=bool)
    if layout.items and free.any() and "lambda" in post:
        lam = post["lambda"].transpose("chain", "draw", "item").values[..., free]
        th = post["theta"].transpose("chain", "draw", "item").values[..., free]
        out["loading"] = xr.DataArray(truncnorm_logpdf(lam, mp["loading_mu"], mp["loading_sd"], 0.0, np.inf),
                                      dims=("chain", "draw", "loading_dim_0"))
        with np.errstate(divide="ignore", invalid="ignore"):
            lth = np.log(th)
            lp_th = norm_logpdf(lth, mp["theta_logmean"], mp["theta_logsd"]) - lth
        out["residual_var"] = xr.DataArray(np.where(th > 0, lp_th, -np.inf),
                                           dims=("chain", "draw", "residual_var_dim_0"))
    if layout.items and "nu" in post:
        nu = post["nu"].transpose("chain", "draw", "item")
        out["nu"] = xr.DataArray(norm_logpdf(nu.values, 0.0, mp["nu_sd"]), dims=("chain", "draw", "item"),
                                 coords={"item": nu["item"].values})
    return xr.Dataset(out, coords={"chain": post["chain"].values, "draw": post["draw"].values})


def cut_completion(post: xr.Dataset, layout: ModelLayout, graph: CausalGraph, x_cov: np.ndarray,
                    seed: int) -> tuple[xr.Dataset, int]:
    """Apply the full system's barriers to the prior-only links of a cut posterior.

    In the cut posterior the links that touch unmeasured constructs are independent of the
    data; NUTS draws them from their priors. Their conditional target given the
    data-informed links is prior × barrier(full system), sampled here exactly by
    accept/redraw: each draw is kept with probability barrier(full), otherwise its prior-only
    links are redrawn from the prior. Shared by the continuous and multi-group fits.

    Parameters
    ----------
    post
        Posterior with ``beta`` (chain, draw, edge); the prior-only links may be zeros.
    layout, graph
        The model's layout and diagram.
    x_cov
        Covariance of the covariates.
    seed
        Seed (the generator uses ``seed + 7919``, apart from the sampler's).

    Returns
    -------
    (xarray.Dataset, int)
        The completed posterior (``beta`` and the deterministics recomputed) and the number
        of redraws.

    Raises
    ------
    ModelError
        When some draw has no stable, standardisable completion after 200 rounds.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> g = graph_from_lavaan("b ~ a")
    >>> model, layout = build_model(g, None)
    >>> post = draw_prior(model, layout, g, 20, seed=2)
    >>> done, redraws = cut_completion(post, layout, g, np.zeros((0, 0)), seed=2)
    >>> done["beta"].shape, redraws
    ((1, 20, 1), 0)
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
        log_acc = (algebra.stability_barrier(det["rho_abs_bound"], st.rho_max, st.width)
                   + algebra.standardisation_barrier(psi_lat, floor=st.psi_floor, width=st.psi_width))
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


# ----------------------------------------------------------------------------- ArviZ-native tree
#: Smallest missingness pattern whose item means and covariances are stored in ``observed_data``;
#: the moments of smaller patterns are left out (NaN), so the file never holds values from which a
#: single respondent's answers could be read back.
MIN_PATTERN_SIZE = 10


def free_fixed_items(layout: ModelLayout) -> tuple[list[str], list[str]]:
    """Items with a sampled loading (constructs with several items) and with a fixed one."""
    free = [it for it, f in zip(layout.items, layout.free_items) if f]
    fixed = [it for it, f in zip(layout.items, layout.free_items) if not f]
    return free, fixed


def _sample_da(ds: xr.Dataset, name: str, dim: str, labels: list[str]) -> xr.DataArray:
    """Variable ``name`` of ``ds`` as ``(chain, draw, dim)`` with coordinate ``labels``."""
    da = ds[name]
    other = [d for d in da.dims if d not in ("chain", "draw")]
    vals = da.transpose("chain", "draw", *other).values
    return xr.DataArray(vals.reshape(vals.shape[:2] + (len(labels),)), dims=("chain", "draw", dim),
                        coords={dim: list(labels)})


def native_groups(ds: xr.Dataset, layout: ModelLayout, graph: CausalGraph) -> tuple[xr.Dataset, xr.Dataset]:
    """Split raw model draws into the ArviZ ``posterior``/``prior`` variables and ``constant_data``.

    Every returned variable has named dims with coordinates: ``beta`` on ``edge`` (edge keys
    ``source->target``), ``psi`` on ``latent`` (the latent constructs with a cause in the model,
    whose disturbance variance follows from the standardisation), ``rho_abs_bound`` (scalar), ``loading`` and
    ``residual_var`` on ``free_item`` (items of constructs with several items), ``nu`` on
    ``item``. The sampler's internal variables (the edge groups ``beta_<dist>[_pos|_neg]``) and
    the duplicates ``lambda``/``theta`` are dropped. The constants go to the second dataset:
    ``alpha`` on ``node`` (intercepts, 0 by the centring), ``psi`` on ``exogenous`` (covariates:
    their observed variance; policy levers and other absent nodes: 0; latent constructs without
    a cause among the latent constructs and covariates: 1), ``loading`` and
    ``residual_var`` on ``fixed_item`` (single-item constructs: ``sqrt(reliability)`` and
    ``1 - reliability``).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> y[:10, 3] = np.nan  # two missingness patterns
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 20, 1, md.x_cov)
    >>> post, const = native_groups(prior, layout, g)
    >>> list(post.data_vars), post["beta"].dims, list(const.data_vars)
    (['beta', 'psi', 'rho_abs_bound', 'loading', 'residual_var', 'nu'], ('chain', 'draw', 'edge'), ['psi', 'alpha'])
    """
    coords = {"chain": ds["chain"].values, "draw": ds["draw"].values}
    out: dict[str, xr.DataArray] = {}
    const: dict[str, xr.DataArray] = {}
    nodes = list(graph.nodes)
    # a latent construct without causes among the latent constructs and covariates has psi = 1
    # (all its variance is its own): a constant, like the psi of exogenous nodes
    causes = set(layout.latent) | set(layout.covariates)
    caused = {e.target for e in graph.edges if e.source in causes}
    latent = [n for n in nodes if n in set(layout.latent) and n in caused]
    exo = [n for n in nodes if n not in set(latent)]
    if "beta" in ds:
        out["beta"] = ds["beta"].sel(edge=list(graph.edge_keys)).transpose("chain", "draw", "edge")
    if "psi" in ds:
        psi = ds["psi"].sel(node=nodes)
        out["psi"] = psi.sel(node=latent).rename(node="latent").transpose("chain", "draw", "latent")
        if exo:
            const["psi"] = psi.sel(node=exo).isel(chain=0, draw=0, drop=True).rename(node="exogenous")
    if "alpha" in ds:
        const["alpha"] = ds["alpha"].sel(node=nodes).isel(chain=0, draw=0, drop=True)
    if "rho_abs_bound" in ds:
        out["rho_abs_bound"] = ds["rho_abs_bound"]
    free, fixed = free_fixed_items(layout)
    if free and "loading" in ds:
        out["loading"] = _sample_da(ds, "loading", "free_item", free)
        out["residual_var"] = _sample_da(ds, "residual_var", "free_item", free)
    elif free and "lambda" in ds:
        out["loading"] = ds["lambda"].sel(item=free).rename(item="free_item")
        out["residual_var"] = ds["theta"].sel(item=free).rename(item="free_item")
    if fixed:
        rel_items = dict(zip(layout.items, fixed_item_reliability(layout)))
        rel = np.array([rel_items[it] for it in fixed], dtype=float)
        const["loading"] = xr.DataArray(np.sqrt(rel), dims=("fixed_item",), coords={"fixed_item": fixed})
        const["residual_var"] = xr.DataArray(1.0 - rel, dims=("fixed_item",), coords={"fixed_item": fixed})
    if "nu" in ds:
        out["nu"] = ds["nu"].transpose("chain", "draw", "item")
    main = xr.Dataset(out).assign_coords(coords)
    main.attrs.update(ds.attrs)
    return main, xr.Dataset(const)


def native_log_prior(lp: xr.Dataset, layout: ModelLayout) -> xr.Dataset:
    """The ``log_prior`` group under the posterior's names and dims.

    The edge groups ``beta_<dist>[_pos|_neg]`` of :func:`log_prior_numpy` become one ``beta`` on
    ``edge`` (the sampled links: in cut mode the data-informed ones), ``loading`` and
    ``residual_var`` lie on ``free_item``. Variables this does not know are kept as they are.
    """
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.sampled_edges or layout.edge_keys)
    groups = [(name, idx) for name, _, idx in edge_groups(layout.edge_priors, keys) if name in lp]
    out: dict[str, xr.DataArray] = {}
    if groups:
        order = [i for _, idx in groups for i in idx]
        vals = np.concatenate([lp[name].transpose("chain", "draw", ...).values for name, _ in groups], axis=-1)
        perm = np.argsort(order)
        out["beta"] = xr.DataArray(vals[..., perm], dims=("chain", "draw", "edge"),
                                   coords={"edge": [keys[i] for i in sorted(order)]})
    free, _ = free_fixed_items(layout)
    for name in ("loading", "residual_var"):
        if name in lp and free and lp[name].shape[-1] == len(free):
            out[name] = _sample_da(lp, name, "free_item", free)
    done = {name for name, _ in groups} | set(out)
    for name in lp.data_vars:
        if name not in done:
            out[str(name)] = lp[name]
    return xr.Dataset(out).assign_coords(chain=lp["chain"].values, draw=lp["draw"].values)


def observed_summaries(data: ModelData, min_pattern_size: int = MIN_PATTERN_SIZE) -> xr.Dataset:
    """The ``observed_data`` group: weighted item summaries per missingness pattern (no microdata).

    ``n_respondents`` and ``weight`` (summed normalised weights) per ``pattern``;
    ``observed`` (pattern x item, 1 where the pattern answers the item); ``item_mean`` and
    ``item_cov`` (weighted, on the standardised item scale) per pattern, NaN for unanswered items
    and for patterns with fewer than ``min_pattern_size`` respondents; ``covariate_cov`` (the
    covariates' weighted covariance); ``item_center`` and ``item_scale`` (the standardisation).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> md = prepare_model_data(np.random.default_rng(0).normal(size=(60, 2)), ["a1", "b1"], ["a", "b"])
    >>> ds = observed_summaries(md)
    >>> sorted(ds.data_vars)[:3]
    ['item_center', 'item_cov', 'item_mean']
    """
    st = data.stats
    items = list(data.item_names)
    n_pat = st.n_patterns
    counts = np.bincount(np.asarray(st.pattern_of_row, dtype=int), minlength=n_pat)
    W = np.asarray(st.W, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = st.Suy[:, 0, :] / W[:, None]
        cov = st.Syy / W[:, None, None] - mean[:, :, None] * mean[:, None, :]
    obs = np.asarray(st.masks, dtype=bool)
    small = counts < min_pattern_size
    mean = np.where(obs & ~small[:, None], mean, np.nan)
    both = obs[:, :, None] & obs[:, None, :] & ~small[:, None, None]
    cov = np.where(both, cov, np.nan)
    pats = np.arange(n_pat)
    ds = xr.Dataset(
        {"n_respondents": (("pattern",), counts.astype(np.int64)),
         "weight": (("pattern",), W),
         "observed": (("pattern", "item"), obs.astype(np.int8)),
         "item_mean": (("pattern", "item"), mean),
         "item_cov": (("pattern", "item", "item_b"), cov),
         "item_center": (("item",), np.asarray(data.item_center, dtype=float)),
         "item_scale": (("item",), np.asarray(data.item_scale, dtype=float))},
        coords={"pattern": pats, "item": items, "item_b": items})
    if len(data.x_names):
        xn = list(data.x_names)
        ds["covariate_cov"] = xr.DataArray(np.asarray(data.x_cov, dtype=float), dims=("covariate", "covariate_b"),
                                           coords={"covariate": xn, "covariate_b": xn})
    ds.attrs["min_pattern_size"] = int(min_pattern_size)
    return ds


def pattern_loglik(Sigma: np.ndarray, M: np.ndarray, data: ModelData) -> np.ndarray:
    """Weighted log-likelihood per missingness pattern ``(S, n_patterns)``, from the statistics alone.

    For pattern ``p`` with observed items ``o``:
    ``-1/2 [W_p (log|Sigma_oo| + |o| log 2 pi) + tr(Sigma_oo^-1 R_p)]`` with the weighted residual
    cross-product ``R_p = Syy - M_o Suy - Suy' M_o' + M_o Suu M_o'``; the sum over patterns is the
    model's log-likelihood, and each term is the sum of the weighted per-respondent terms of
    :func:`~veerkracht_bayes.sem.implied_moments.pointwise_loglik` over the pattern's respondents.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> y[:10, 3] = np.nan  # two missingness patterns
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 20, 1, md.x_cov)
    >>> import xarray as xr
    >>> from veerkracht_bayes.sem.implied_moments import implied_moments
    >>> post, const = native_groups(prior, layout, g)
    >>> lam_theta = measurement_draws(xr.DataTree.from_dict({"posterior": post, "constant_data": const}), layout)
    >>> draws = {"beta": prior["beta"].values[0], "nu": prior["nu"].values[0], **lam_theta}
    >>> Sigma, M = implied_moments(layout, g, md, draws)
    >>> from veerkracht_bayes.sem.implied_moments import pointwise_loglik
    >>> ll = pattern_loglik(Sigma, M, md)
    >>> ll.shape, bool(np.allclose(ll.sum(axis=1), pointwise_loglik(Sigma, M, md).sum(axis=1)))
    ((20, 2), True)
    """
    st = data.stats
    out = np.empty((Sigma.shape[0], st.n_patterns))
    for p in range(st.n_patterns):
        o = np.flatnonzero(st.masks[p])
        if o.size == 0:
            out[:, p] = 0.0
            continue
        S_oo = Sigma[:, o][:, :, o]
        Mo = M[:, o, :]
        Suy = st.Suy[p][:, o]  # (k, |o|)
        R = (st.Syy[p][np.ix_(o, o)][None] - np.einsum("sik,kj->sij", Mo, Suy)
             - np.einsum("ki,sjk->sij", Suy, Mo) + np.einsum("sik,kl,sjl->sij", Mo, st.Suu[p], Mo))
        L = np.linalg.cholesky(S_oo)
        logdet = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        tr = np.trace(np.linalg.solve(S_oo, R), axis1=1, axis2=2)
        out[:, p] = -0.5 * (st.W[p] * (logdet + o.size * np.log(2 * np.pi)) + tr)
    return out


def measurement_draws(idata: xr.DataTree, layout: ModelLayout) -> dict[str, np.ndarray]:
    """Flattened draws ``(S, m)`` of the loadings ``lambda`` and residual variances ``theta`` of
    every item (layout order): sampled ones from ``posterior``, fixed ones from ``constant_data``.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> y[:10, 3] = np.nan  # two missingness patterns
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 20, 1, md.x_cov)
    >>> import xarray as xr
    >>> post, const = native_groups(prior, layout, g)
    >>> m = measurement_draws(xr.DataTree.from_dict({"posterior": post, "constant_data": const}), layout)
    >>> {k: v.shape for k, v in m.items()}
    {'lambda': (20, 4), 'theta': (20, 4)}
    """
    post = idata["posterior"].to_dataset() if hasattr(idata["posterior"], "to_dataset") else idata["posterior"]
    n = post.sizes["chain"] * post.sizes["draw"]
    rel_items = fixed_item_reliability(layout)
    lam = np.tile(np.sqrt(rel_items), (n, 1))
    th = np.tile(1.0 - rel_items, (n, 1))
    free, _ = free_fixed_items(layout)
    if free:
        pos = [list(layout.items).index(it) for it in free]
        lam[:, pos] = _flat(post.sel(free_item=free), "loading")
        th[:, pos] = _flat(post.sel(free_item=free), "residual_var")
    return {"lambda": lam, "theta": th}


def _native_tree(post: xr.Dataset, prior: xr.Dataset, layout: ModelLayout, graph: CausalGraph,
                 extra: Mapping[str, xr.Dataset]) -> xr.DataTree:
    """The fit's DataTree: native ``posterior``/``prior``, ``constant_data`` and ``extra`` groups."""
    p_main, const = native_groups(post, layout, graph)
    pr_main, _ = native_groups(prior, layout, graph)
    groups = {"posterior": p_main, "prior": pr_main, **extra}
    if const.data_vars:
        groups["constant_data"] = const
    return xr.DataTree.from_dict(groups)


def initial_values(model, layout: ModelLayout, prior: xr.Dataset, chains: int,  # noqa: ANN001 - pm.Model
                   seed: int) -> list[dict[str, np.ndarray]]:
    """Starting values, one dict per chain: different draws from the (barrier-truncated) prior.

    Each is a valid point (stable system, positive disturbance variances), so no jitter is
    needed. Edge groups hold only the links the model samples (all links, or in cut mode the
    data-informed ones).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> y[:10, 3] = np.nan  # two missingness patterns
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 20, 1, md.x_cov)
    >>> starts = initial_values(model, layout, prior, chains=2, seed=1)
    >>> len(starts), sorted(starts[0])
    (2, ['beta_truncated_normal_pos', 'loading', 'nu', 'residual_var'])
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


def log_likelihood_by_pattern(ll: xr.Dataset, data: ModelData) -> xr.Dataset:
    """A ``log_likelihood`` group per missingness pattern: ``y`` on ``pattern``.

    A per-respondent group (``y`` on ``respondent``) is summed over each pattern's respondents
    (no respondent-level values remain); a per-pattern group is returned as it is. LOO on the
    result leaves one missingness pattern out at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> y[:10, 3] = np.nan  # two missingness patterns
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 20, 1, md.x_cov)
    >>> import xarray as xr
    >>> from veerkracht_bayes.sem.implied_moments import implied_moments
    >>> post, const = native_groups(prior, layout, g)
    >>> lam_theta = measurement_draws(xr.DataTree.from_dict({"posterior": post, "constant_data": const}), layout)
    >>> draws = {"beta": prior["beta"].values[0], "nu": prior["nu"].values[0], **lam_theta}
    >>> Sigma, M = implied_moments(layout, g, md, draws)
    >>> from veerkracht_bayes.sem.implied_moments import pointwise_loglik
    >>> ll = xr.Dataset({"y": (("chain", "draw", "respondent"), pointwise_loglik(Sigma, M, md)[None])})
    >>> by_pattern = log_likelihood_by_pattern(ll, md)
    >>> by_pattern["y"].dims, bool(np.allclose(by_pattern["y"].values[0], pattern_loglik(Sigma, M, md)))
    (('chain', 'draw', 'pattern'), True)
    """
    if "pattern" in ll["y"].dims:
        return ll
    st = data.stats
    y = ll["y"].transpose("chain", "draw", "respondent").values
    rows = np.asarray(st.pattern_of_row, dtype=int)
    order = np.argsort(rows, kind="stable")
    starts = np.searchsorted(rows[order], np.arange(st.n_patterns))
    out = np.add.reduceat(y[..., order], starts, axis=-1)  # every pattern has a respondent
    return xr.Dataset({"y": (("chain", "draw", "pattern"), out)},
                      coords={"chain": ll["chain"].values, "draw": ll["draw"].values,
                              "pattern": np.arange(st.n_patterns)})


def _log_likelihood(post: xr.Dataset, layout: ModelLayout, graph: CausalGraph, data: ModelData) -> xr.Dataset:
    """The ``log_likelihood`` group: variable ``y``, the weighted log-likelihood per respondent
    (dim ``respondent``) and draw; for statistics-only data (out of core, no rows) per
    missingness pattern (dim ``pattern``, the sum over the pattern's respondents)."""
    draws = {k: _flat(post, k) for k in ("beta", "lambda", "theta", "nu", "psi")}
    return _log_likelihood_from(draws, post, layout, graph, data)


def compute_log_likelihood(result: FitResult) -> FitResult:
    """Add the ``log_likelihood`` group to a fitted result that was made without it.

    The same values as ``fit(..., pointwise=True)`` stores (variable ``y``: the weighted
    observed-data log-likelihood per respondent and draw; per missingness pattern for
    statistics-only data), computed from the result's ``posterior`` (and ``constant_data``)
    groups. This is what LOO (``az.loo``) needs; it costs O(respondents x draws), which is why
    the front door :func:`veerkracht_bayes.fit` leaves it out unless asked
    (``log_likelihood=True``), like PyMC's ``pm.compute_log_likelihood``. The group is added
    in place and the result returned; a result that already has it is returned unchanged.

    Parameters
    ----------
    result
        A :class:`FitResult` of :func:`fit` on the continuous (sufficient-statistics) path.

    Returns
    -------
    FitResult
        ``result``, with ``result.idata["log_likelihood"]``.

    Raises
    ------
    ModelError
        For a prior-only result (no data), or a result of the polychoric or ordinal routes
        (no per-respondent likelihood of the item vectors).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> y = np.random.default_rng(0).normal(size=(60, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> res = fit(graph_from_lavaan("b ~ a"), md, draws=50, tune=50, chains=1,
    ...           pointwise=False, progressbar=False)  # doctest: +SKIP
    >>> compute_log_likelihood(res).idata["log_likelihood"]["y"].dims  # doctest: +SKIP
    ('chain', 'draw', 'respondent')

    (The skipped lines sample; ``tests/inference/test_log_likelihood_opt_in.py`` makes the same
    calls and compares the values with ``fit(..., pointwise=True)``.)
    """
    if "log_likelihood" in result.idata.children:
        return result
    if result.data is None:
        raise ModelError("compute_log_likelihood got a prior-only result: there is no data to evaluate")
    route = result.idata.attrs.get("likelihood")
    if route in ("polychoric", "ordinal"):
        raise ModelError(f"compute_log_likelihood: the {route} route has no per-respondent log-likelihood "
                         "(expected a result of the continuous path)")
    post = result.idata["posterior"].to_dataset()
    layout = result.layout
    draws = {"beta": _flat(post.sel(edge=list(layout.edge_keys)), "beta"),
             "nu": _flat(post.sel(item=list(layout.items)), "nu"),
             **measurement_draws(result.idata, layout)}
    result.idata["log_likelihood"] = xr.DataTree(_log_likelihood_from(draws, post, layout, result.graph,
                                                                      result.data))
    return result


def _log_likelihood_from(draws: Mapping[str, np.ndarray], post: xr.Dataset, layout: ModelLayout,
                         graph: CausalGraph, data: ModelData) -> xr.Dataset:
    """The ``log_likelihood`` group from flattened draws (``beta``, ``nu``, ``lambda``, ``theta``)."""
    Sigma, M = implied_moments(layout, graph, data, dict(draws))
    nc = post.sizes["chain"]
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    if data.y.shape[0] == 0:
        log.info("statistics-only data (out of core): log-likelihood per missingness pattern")
        ll = pattern_loglik(Sigma, M, data).reshape(nc, -1, data.stats.n_patterns)
        return xr.Dataset({"y": (("chain", "draw", "pattern"), ll)},
                          coords={**coords, "pattern": np.arange(data.stats.n_patterns)})
    ll = pointwise_loglik(Sigma, M, data).reshape(nc, -1, data.n)
    return xr.Dataset({"y": (("chain", "draw", "respondent"), ll)},
                      coords={**coords, "respondent": np.arange(data.n)})


def fit(
    graph: CausalGraph,
    data: ModelData | None = None,
    priors: object | None = None,
    *,
    settings: SamplerSettings | None = None,
    vague: bool = False,
    reliability: float = 0.8,
    item_reliability: Mapping[str, float] | None = None,
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
    item_reliability
        Item column -> reliability of that single item on the observed (continuous-path) scale,
        overriding ``reliability`` for it (e.g. from
        :func:`veerkracht_bayes.survey.codebook.continuous_path_reliabilities`). Only the sole
        item of a construct may be named.
    files
        Input files to hash into the provenance (graph, priors, survey, codebook).
    pointwise
        Compute the per-respondent log-likelihood group (needed for LOO; O(respondents x
        draws) after the sampling). Without it, :func:`compute_log_likelihood` adds it later.
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

    Examples
    --------
    Without data, the prior (no sampling, nothing compiled):

    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> res = fit(load_graph("marvel"), None, prior_only=True, prior_draws=50, random_seed=1)
    >>> res.idata["posterior"]["beta"].sizes["draw"]
    50
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
    model, layout = build_model(graph, data, priors, vague=vague, reliability=reliability,
                                item_reliability=item_reliability)
    prior = draw_prior(model, layout, graph, settings.prior_draws, settings.random_seed,
                         None if data is None else data.x_cov)
    if data is None:
        idata = _native_tree(prior.copy(), prior, layout, graph, {})
    else:
        if settings.sampler in JAX_DRIVER_SAMPLERS:
            enable_compilation_cache()
        kwargs: dict[str, object] = {}
        initvals = initial_values(model, layout, prior, settings.chains, settings.random_seed)
        kwargs["nuts"] = {"target_accept": settings.target_accept}
        # nutpie takes one start dict for all chains; PyMC one per chain
        kwargs["initvals"] = initvals[0] if settings.sampler == "nutpie" else initvals
        if settings.sampler == "pymc":
            kwargs["init"] = "adapt_diag"
        log.info("sampling %d chains x (%d tune + %d draws) with %s", settings.chains, settings.tune,
                 settings.draws, settings.sampler)
        if settings.sampler in JAX_DRIVER_SAMPLERS:
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
                links = link_estimate(data.stats, layout, tuple(data.x_names),
                                      item_reliability=fixed_item_reliability(layout))
                scale_points = [{**initvals[0], **{k: v * f for k, v in links.items() if k in free}}
                                for f in (1.0, 0.5, 0.25)]
            jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                                   target_accept=settings.target_accept, dense_mass=settings.dense_mass,
                                   max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,
                                   chain_method="parallel" if settings.chains > 1 else "sequential",
                                   log_pairs=reciprocal_log_pairs(layout), kernel=settings.sampler)
            post, stats, _ = sample_nuts(model, initvals, jset, settings.random_seed, scale_points)
        else:
            with model:
                idata = pm.sample(
                    draws=settings.draws, tune=settings.tune, chains=settings.chains,
                    cores=min(settings.chains, os.cpu_count() or 1),
                    random_seed=settings.random_seed,
                    progressbar=settings.progressbar, nuts_sampler=settings.sampler,
                    compute_convergence_checks=False, idata_kwargs={"log_likelihood": False}, **kwargs,
                )
            post = idata["posterior"].to_dataset()
            stats = idata["sample_stats"].to_dataset()
        attrs: dict[str, int] = {}
        if layout.cut_active:
            post, redraws = cut_completion(post, layout, graph, data.x_cov, settings.random_seed)
            attrs["cut_redraws"] = int(redraws)
            log.info("cut posterior: %d prior-only redraws to satisfy the full system's barriers", redraws)
        lp_ds = log_prior_numpy(post, layout)
        if set(lp_ds.data_vars) != {rv.name for rv in model.free_RVs}:  # a model this twin does not know
            from pymc.stats.log_density import compute_log_prior

            lp = compute_log_prior(xr.DataTree.from_dict({"posterior": post}), model=model,
                                   extend_inferencedata=False, progressbar=False)
            lp_ds = lp["log_prior"].to_dataset() if "log_prior" in getattr(lp, "children", {}) else lp
        extra = {"sample_stats": stats, "log_prior": native_log_prior(lp_ds, layout),
                 "observed_data": observed_summaries(data)}
        if pointwise:
            extra["log_likelihood"] = _log_likelihood(post, layout, graph, data)
        idata = _native_tree(post, prior, layout, graph, extra)
        idata.attrs.update(attrs)
    prov = collect_provenance(
        seed=settings.random_seed, files=dict(files or {}),
        hashes={"data": None if data is None else data.data_hash},
        settings={**settings.__dict__, "vague": vague, "reliability": reliability,
                  "item_reliability": dict(item_reliability or {}), "prior_only": data is None},
    )
    import json

    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    idata.attrs["prior_only"] = int(data is None)
    return FitResult(idata=idata, layout=layout, graph=graph, data=data, settings=settings)


def edge_starts(model: object, layout: object, prior: object, picks: object) -> list[dict]:
    """Per chain, the grouped edge variables of ``model`` at the prior draws ``picks``.

    The groups are :func:`~veerkracht_bayes.sem.preconditioning.edge_groups` of the layout's
    edge priors (one PyMC variable per prior family and bounds), so a start is the prior draw of
    ``beta`` split the way the model holds it. Fitting paths add their own latent starts.

    Examples
    --------
    >>> edge_starts(object(), type("L", (), {"edge_keys": (), "edge_priors": {}})(), None, [])
    []
    """
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(layout.edge_keys)  # type: ignore[attr-defined]
    groups = [(name, np.array(idx)) for name, _, idx in edge_groups(layout.edge_priors, keys)]  # type: ignore[attr-defined]
    named = getattr(model, "named_vars", {})
    out = []
    for i in picks:  # type: ignore[attr-defined]
        b = prior["beta"].isel(chain=0, draw=int(i)).values  # type: ignore[index]
        out.append({name: b[idx] for name, idx in groups if name in named})
    return out
