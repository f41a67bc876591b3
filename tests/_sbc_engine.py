"""Simulation-based calibration machinery for ``tests/sem/test_sbc.py`` (Talts et al. 2018).

Model: three standardised latents in a feedback loop a -> b -> c -> a (signs +, +, -), two
observed covariates entering at a and b (exclusion restrictions), two continuous items per
construct, n = 300, the engine's default sign-constrained edge priors and measurement priors.

The model's log-density (``build_model``'s PyMC graph) is compiled ONCE to JAX with the data
statistics ``Syy`` and ``Suy`` turned into function arguments (the covariate design x, hence
``Suu`` and ``x_cov``, is fixed: the model is conditional on x). Many replications are then
sampled at once: blackjax window adaptation + NUTS for one replication is a pure function of
(key, initial point, Syy, Suy), and ``jax.jit(jax.vmap(...))`` turns it into one compiled
program for the whole batch of replications.

Initial points: each replication starts at an independent draw from the prior (in the
support by construction: the prior draws pass the model's barriers). No random search for an
initial point is made. (The numpyro harness this replaces failed now and then with "Cannot
find valid initial parameters": numpyro's ``initialize_model`` searches Uniform(-2, 2) in the
unconstrained space *even when init_params is given*, and only about 3% of such points have a
standardisable system (psi > 0) on this model, so 100 tries failed with probability ~4% per
run; the retry reused the same PRNG key and failed identically.)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.stats import chi2  # noqa: E402

from veerkracht_bayes.graph.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.graph.spec import GraphSpec  # noqa: E402
from veerkracht_bayes.sem.model_builder import build_model  # noqa: E402
from veerkracht_bayes.survey.statistics import ModelData, pattern_stats  # noqa: E402

EDGES = [("x1", "a", "+"), ("x2", "b", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
LATENT = ["a", "b", "c"]
ITEMS = ["a", "a", "b", "b", "c", "c"]
N = 300


def make_graph() -> CausalGraph:
    """The 3-latent cyclic SBC graph with two covariates."""
    nodes = ["x1", "x2"] + LATENT
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "sbc",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n.startswith("x") else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


def raw_model_data(y: np.ndarray, x: np.ndarray) -> ModelData:
    """ModelData on raw (not re-standardised) items, unit weights, centred covariates.

    ``prepare_model_data`` standardises items by their sample sd, a data-dependent transform
    that SBC cannot accommodate, so the statistics are built from the raw simulated items.
    """
    n = len(y)
    u = np.column_stack([np.ones(n), x])
    return ModelData(item_names=tuple(f"i{j}" for j in range(len(ITEMS))),
                     item_construct=tuple(ITEMS),
                     y=y, item_center=np.zeros(len(ITEMS)), item_scale=np.ones(len(ITEMS)),
                     x_names=("x1", "x2"), x=x, x_mean=np.zeros(2), weights=np.ones(n),
                     stats=pattern_stats(y, u, np.ones(n)))


@dataclass
class SBCResult:
    """Output of :func:`run_sbc`.

    ranks: ``{value-variable name: (reps, size) int array}``, ranks in 0..L;
    ess: ``{name: (reps, size)}`` effective sample size of the L thinned draws;
    divergences: (reps,) divergent transitions after warmup; step_size: (reps,);
    mean_steps: (reps,) mean leapfrog steps per draw; seconds: wall time of the batch.
    """

    ranks: dict[str, np.ndarray]
    ess: dict[str, np.ndarray]
    divergences: np.ndarray
    step_size: np.ndarray
    mean_steps: np.ndarray
    seconds: float
    extra: dict = field(default_factory=dict)


class SBCEngine:
    """The model's log-density compiled once to JAX with the data statistics as arguments."""

    def __init__(self, seed: int = 0) -> None:
        import jax
        import pytensor
        import pytensor.tensor as pt
        from jax.flatten_util import ravel_pytree
        from pymc.sampling.jax import get_jaxified_graph
        from pytensor.graph.replace import graph_replace
        from pytensor.compile.sharedvalue import SharedVariable
        from pytensor.graph.traversal import ancestors

        jax.config.update("jax_enable_x64", True)
        from veerkracht_bayes.inference.sampling import enable_compilation_cache

        enable_compilation_cache()  # the package's persistent JAX cache: re-runs skip compilation
        rng = np.random.default_rng(seed)
        self.graph = make_graph()
        x = rng.normal(size=(N, 2))
        self.x = x - x.mean(axis=0)
        y0 = rng.normal(size=(N, len(ITEMS)))
        self.md0 = raw_model_data(y0, self.x)
        self.model, self.layout = build_model(self.graph, self.md0)
        st = self.md0.stats
        logp = self.model.logp()
        # swap the constant statistics for inputs (every constant node holding these values)
        syy_in = pt.tensor3("Syy")
        suy_in = pt.tensor3("Suy")
        repl = {}
        # the statistics are constants in the graph, or pm.Data (shared) containers
        for v in ancestors([logp]):
            if isinstance(v, (pt.TensorConstant, SharedVariable)):
                val = np.asarray(v.data if isinstance(v, pt.TensorConstant) else v.get_value())
                if val.shape == st.Syy.shape and np.array_equal(val, st.Syy):
                    repl[v] = syy_in
                elif val.shape == st.Suy.shape and np.array_equal(val, st.Suy):
                    repl[v] = suy_in
        assert set(repl.values()) == {syy_in, suy_in}, "data statistics not found in the logp graph"
        logp_d = graph_replace(logp, repl)
        self.value_vars = list(self.model.value_vars)
        fn = get_jaxified_graph(inputs=self.value_vars + [syy_in, suy_in], outputs=[logp_d])
        self.names = [v.name for v in self.value_vars]
        ip = self.model.initial_point()
        self.shapes = {k: tuple(np.shape(ip[k])) for k in self.names}

        def logp_fn(params, syy, suy):
            return fn(*[params[k] for k in self.names], syy, suy)[0]

        self._logp_raw = logp_fn
        self.logp_fn = jax.jit(logp_fn)
        _, self.unravel = ravel_pytree({k: np.zeros(s) for k, s in self.shapes.items()})
        # forward transforms (constrained -> value space) for the free random variables
        self.to_value = {}
        for rv in self.model.free_RVs:
            val = self.model.rvs_to_values[rv]
            tr = self.model.rvs_to_transforms.get(rv)
            xin = pt.tensor(dtype="float64", shape=(None,) * rv.ndim, name=rv.name + "_c")
            out = xin if tr is None else tr.forward(xin, *rv.owner.inputs)
            self.to_value[val.name] = (rv.name, pytensor.function([xin], out, mode="FAST_COMPILE"))
        self._samplers: dict[tuple[int, int, float], object] = {}

    # -- truth ---------------------------------------------------------------------------------
    def prior_draws(self, n: int, seed: int) -> list[dict[str, np.ndarray]]:
        """Draws from the model's prior, barriers included (``sampling.draw_prior``)."""
        from veerkracht_bayes.inference.sampling import draw_prior

        x_cov = self.x.T @ self.x / self.x.shape[0]  # the covariates' moments enter psi
        ds = draw_prior(self.model, self.layout, self.graph, n, seed, x_cov)
        keys = ["beta", "lambda", "theta", "nu", "psi"] + [rv.name for rv in self.model.free_RVs]
        return [{k: np.asarray(ds[k].isel(chain=0, draw=i).values) for k in dict.fromkeys(keys)}
                for i in range(n)]

    def simulate(self, truth: dict, rng: np.random.Generator,
                 theta_factor: float = 1.0) -> np.ndarray:
        """Items from the model given ``truth`` (residual variances times ``theta_factor``)."""
        li = {k: i for i, k in enumerate(self.layout.latent)}
        ci = {k: i for i, k in enumerate(self.layout.covariates)}
        B = np.zeros((3, 3))
        G = np.zeros((3, 2))
        for e, b in zip(self.graph.edges, truth["beta"]):
            if e.source in ci:
                G[li[e.target], ci[e.source]] = b
            else:
                B[li[e.target], li[e.source]] = b
        A = np.linalg.inv(np.eye(3) - B)
        psi = truth["psi"][[self.graph.node_index[k] for k in self.layout.latent]]
        eta = (A @ (G @ self.x.T + np.sqrt(psi)[:, None] * rng.normal(size=(3, N)))).T
        c = [li[k] for k in ITEMS]
        lam, th, nu = truth["lambda"], truth["theta"], truth["nu"]
        return nu + eta[:, c] * lam + np.sqrt(theta_factor * th) * rng.normal(size=(N, len(ITEMS)))

    def value_point(self, truth: dict) -> dict[str, np.ndarray]:
        """The value-space (unconstrained) coordinates of a draw."""
        return {vname: np.asarray(f(np.asarray(truth[rvname], dtype=float)))
                for vname, (rvname, f) in self.to_value.items()}

    def flat(self, point: dict[str, np.ndarray]) -> np.ndarray:
        """Value-space point as the flat vector NUTS works on (ravel_pytree order)."""
        from jax.flatten_util import ravel_pytree

        tree = {k: np.asarray(point[k], dtype=float) for k in self.shapes}
        return np.asarray(ravel_pytree(tree)[0])

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(reps, D) rows of flat vectors -> ``{name: (reps, size)}`` (inverse of :meth:`flat`)."""
        parts = [self.unravel(np.asarray(r, dtype=float)) for r in rows]
        return {k: np.stack([np.ravel(np.asarray(p[k])) for p in parts]).astype(rows.dtype)
                for k in self.shapes}

    # -- posterior ----------------------------------------------------------------------------
    def sampler(self, warmup: int, samples: int, target_accept: float = 0.8, dense: bool = False):
        """jit(vmap(one replication)): (keys, inits, Syy, Suy) -> draws and diagnostics."""
        cache_key = (warmup, samples, target_accept, dense)
        if cache_key in self._samplers:
            return self._samplers[cache_key]
        import blackjax
        import jax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        logp_raw, unravel = self._logp_raw, self.unravel

        def one(key, init, syy, suy):
            def ld(q):
                return logp_raw(unravel(q), syy, suy)

            k_warm, k_draw = jax.random.split(key)
            warm = blackjax.window_adaptation(blackjax.nuts, ld,
                                              target_acceptance_rate=target_accept,
                                              is_mass_matrix_diagonal=not dense,
                                              adaptation_info_fn=get_filter_adapt_info_fn())
            (state, params), _ = warm.run(k_warm, init, num_steps=warmup)
            step = blackjax.nuts(ld, **params).step

            def body(s, k):
                s, info = step(k, s)
                return s, (s.position, info.is_divergent, info.num_integration_steps)

            _, (pos, div, nsteps) = jax.lax.scan(body, state, jax.random.split(k_draw, samples))
            return pos, div, nsteps, params["step_size"], ld(init)

        fn = jax.jit(jax.vmap(one))
        self._samplers[cache_key] = fn
        return fn


def ess_basic(x: np.ndarray) -> np.ndarray:
    """Effective sample size of single chains along axis -1 (Geyer initial positive sequence).

    ``x``: (..., L). Returns (...) ESS, using autocorrelations up to the first negative pair sum.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    f = np.fft.rfft(xc, n=2 * n, axis=-1)
    acov = np.fft.irfft(f * np.conj(f), axis=-1)[..., :n] / n
    var = acov[..., :1]
    rho = np.where(var > 0, acov / np.where(var > 0, var, 1.0), 0.0)
    out = np.empty(x.shape[:-1])
    flat_rho = rho.reshape(-1, n)
    for i, r in enumerate(flat_rho):
        s = 0.0
        for t in range(0, n - 1, 2):
            pair = r[t] + r[t + 1]
            if pair < 0:
                break
            s += pair
        tau = max(-1.0 + 2.0 * s, 1.0 / np.log10(n))
        out.flat[i] = n / tau
    return out


def run_sbc(engine: SBCEngine, reps: int, seed: int, theta_factor: float | np.ndarray = 1.0,
            warmup: int = 300, samples: int = 300, L: int = 99, target_accept: float = 0.8,
            dense: bool = False) -> SBCResult:
    """Ranks of the true value-space parameters among L thinned posterior draws, all
    replications in one vmapped, compiled NUTS program.

    Draw ``reps`` truths from the prior, simulate one data set per truth (residual variances
    times ``theta_factor``, a scalar or one value per replication: 1 is the correct model),
    run ``warmup`` adaptation steps and
    ``samples`` NUTS draws per replication, keep every ``samples // L``-th draw (L of them) and
    rank each true parameter among them (rank in 0..L). Ranks are computed on the
    unconstrained (value) scale; the transforms are monotone, so the ranks equal those of the
    constrained parameters.
    """
    import jax
    import jax.numpy as jnp

    if samples < L:
        raise ValueError(f"samples ({samples}) must be >= L ({L})")
    rng = np.random.default_rng(seed)
    draws = engine.prior_draws(2 * reps, seed)
    # each replication starts at an independent prior draw
    truths, starts = draws[:reps], draws[reps:]
    factors = np.broadcast_to(np.asarray(theta_factor, dtype=float), (reps,))
    ys = [engine.simulate(t, rng, f) for t, f in zip(truths, factors)]
    stats = [raw_model_data(y, engine.x).stats for y in ys]
    syy = jnp.asarray(np.stack([s.Syy for s in stats]))
    suy = jnp.asarray(np.stack([s.Suy for s in stats]))
    inits = np.stack([engine.flat(engine.value_point(s)) for s in starts])
    keys = jax.random.split(jax.random.PRNGKey(seed), reps)
    fn = engine.sampler(warmup, samples, target_accept, dense)
    t0 = time.perf_counter()
    pos, div, nsteps, step, lp0 = jax.block_until_ready(fn(keys, jnp.asarray(inits), syy, suy))
    seconds = time.perf_counter() - t0
    # the starting points are prior draws, hence inside the support: checked, not searched for
    lp0 = np.asarray(lp0)
    assert np.isfinite(lp0).all(), \
        f"non-finite log-density at the starts of replications {np.flatnonzero(~np.isfinite(lp0))}"
    pos = np.asarray(pos)  # (reps, samples, D)
    thin = samples // L
    kept = pos[:, ::thin][:, :L]  # (reps, L, D)
    tv = np.stack([engine.flat(engine.value_point(t)) for t in truths])  # (reps, D)
    rank_flat = (kept < tv[:, None, :]).sum(axis=1)  # (reps, D)
    ess_flat = ess_basic(np.moveaxis(kept, 1, -1))  # (reps, D)
    ranks = engine.split(rank_flat)
    ess = engine.split(ess_flat)
    return SBCResult(ranks=ranks, ess=ess, divergences=np.asarray(div).sum(axis=1),
                     step_size=np.asarray(step), mean_steps=np.asarray(nsteps).mean(axis=1),
                     seconds=seconds)


def uniformity_pvalues(ranks: dict[str, np.ndarray], L: int = 99,
                       bins: int = 5) -> dict[str, float]:
    """Chi-square p-value per scalar parameter: ranks 0..L in ``bins`` equal bins.

    ``(L + 1)`` must be divisible by ``bins`` so that each bin has equal probability under
    uniformity.
    """
    if (L + 1) % bins:
        raise ValueError(f"L + 1 = {L + 1} is not divisible by bins = {bins}")
    out = {}
    for k, r in ranks.items():
        for j in range(r.shape[1]):
            b = r[:, j] * bins // (L + 1)
            counts = np.bincount(b, minlength=bins)
            e = len(b) / bins
            stat = float(((counts - e) ** 2 / e).sum())
            out[f"{k}[{j}]"] = float(chi2.sf(stat, bins - 1))
    return out
