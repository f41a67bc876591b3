"""Simulation-based calibration (Talts et al. 2018) of the structural engine.

Model: three standardised latents in a feedback loop a -> b -> c -> a (signs +, +, -), two
observed covariates entering at a and b (exclusion restrictions), two continuous items per
construct, n = 300, the engine's default sign-constrained edge priors and measurement priors.

Procedure per replication r:
1. draw the true parameters from the model's own prior *including* the stability barrier and
   the psi > 0 truncation (``sampling._prior_draws``, the draws ``fit`` stores as the prior);
2. simulate items from exactly that model given a fixed covariate design x (the model is
   conditional on x) using the psi the model solves for the standardisation;
3. sample the posterior with NUTS on the model's own log-density (``build_model``'s graph,
   compiled once to JAX; the data enter only through the sufficient statistics Syy and Suy,
   which are swapped in as function arguments, so one compilation serves every replication);
4. rank each true parameter among L = 99 thinned posterior draws (rank in 0..99).

If the engine is correct, every parameter's rank is uniform on 0..99. Test: chi-square on 5
equal bins (expected count R/5 >= 8) per parameter, family-wise alpha = 0.01 with a Bonferroni
correction over the K parameters (per-test alpha 0.01/K): a correct engine fails with
probability <= 1% (plus the error of finite NUTS runs).

Negative control (must FAIL the same test): the data are simulated with item residual
variances twice those of the drawn parameters (a wrong likelihood). Every residual variance
posterior then sits near 2 theta, far above the truth (posterior sd of log theta is about
sqrt(2/n) = 0.08 against a shift of log 2 = 0.69), so its ranks pile up at 0.

The data are NOT re-standardised here (prepare_model_data standardises items by their sample
sd, a data-dependent transform that SBC cannot accommodate): the statistics are built from
the raw simulated items.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import chi2  # noqa: E402

from veerkracht_bayes.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.graph_spec import GraphSpec  # noqa: E402
from veerkracht_bayes.model_builder import build_model  # noqa: E402
from veerkracht_bayes.sufficient_stats import ModelData, pattern_stats  # noqa: E402

EDGES = [("x1", "a", "+"), ("x2", "b", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
LATENT = ["a", "b", "c"]
ITEMS = ["a", "a", "b", "b", "c", "c"]
N = 300
L = 99          # thinned posterior draws per replication -> ranks 0..99
BINS = 5
FAMILY_ALPHA = 0.01


def make_graph() -> CausalGraph:
    nodes = ["x1", "x2"] + LATENT
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "sbc",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n.startswith("x") else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


def raw_model_data(y: np.ndarray, x: np.ndarray) -> ModelData:
    """ModelData on raw (not re-standardised) items, unit weights, centred covariates."""
    n = len(y)
    u = np.column_stack([np.ones(n), x])
    return ModelData(item_names=tuple(f"i{j}" for j in range(len(ITEMS))), item_construct=tuple(ITEMS),
                     y=y, item_center=np.zeros(len(ITEMS)), item_scale=np.ones(len(ITEMS)),
                     x_names=("x1", "x2"), x=x, x_mean=np.zeros(2), weights=np.ones(n),
                     stats=pattern_stats(y, u, np.ones(n)))


class SBCEngine:
    """The model's log-density compiled once to JAX with the data statistics as arguments."""

    def __init__(self, seed: int = 0) -> None:
        import jax
        import pytensor
        import pytensor.tensor as pt
        from pymc.sampling.jax import get_jaxified_graph
        from pytensor.graph.replace import graph_replace
        from pytensor.graph.traversal import ancestors

        jax.config.update("jax_enable_x64", True)
        from veerkracht_bayes.sampling import enable_compilation_cache

        enable_compilation_cache()
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
        for v in ancestors([logp]):
            if isinstance(v, pt.TensorConstant):
                val = np.asarray(v.data)
                if val.shape == st.Syy.shape and np.array_equal(val, st.Syy):
                    repl[v] = syy_in
                elif val.shape == st.Suy.shape and np.array_equal(val, st.Suy):
                    repl[v] = suy_in
        assert set(repl.values()) == {syy_in, suy_in}, "data statistics not found in the logp graph"
        logp_d = graph_replace(logp, repl)
        self.value_vars = list(self.model.value_vars)
        fn = get_jaxified_graph(inputs=self.value_vars + [syy_in, suy_in], outputs=[logp_d])
        self.names = [v.name for v in self.value_vars]
        self.shapes = {v.name: tuple(np.shape(self.model.initial_point()[v.name])) for v in self.value_vars}

        def logp_fn(params, syy, suy):
            return fn(*[params[k] for k in self.names], syy, suy)[0]

        self.logp_fn = jax.jit(logp_fn)
        # forward transforms (constrained -> value space) for the free random variables
        self.to_value = {}
        for rv in self.model.free_RVs:
            val = self.model.rvs_to_values[rv]
            tr = self.model.rvs_to_transforms.get(rv)
            xin = pt.tensor(dtype="float64", shape=(None,) * rv.ndim, name=rv.name + "_c")
            out = xin if tr is None else tr.forward(xin, *rv.owner.inputs)
            self.to_value[val.name] = (rv.name, pytensor.function([xin], out, mode="FAST_COMPILE"))
        self._mcmc = None

    # -- truth ---------------------------------------------------------------------------------
    def prior_draws(self, n: int, seed: int) -> list[dict[str, np.ndarray]]:
        from veerkracht_bayes.sampling import _prior_draws

        xc = self.x - self.x.mean(axis=0)
        x_cov = xc.T @ xc / xc.shape[0]  # the covariates' moments enter psi (standardisation)
        ds = _prior_draws(self.model, self.layout, self.graph, n, seed, x_cov)
        keys = ["beta", "lambda", "theta", "nu", "psi"] + [rv.name for rv in self.model.free_RVs]
        return [{k: np.asarray(ds[k].isel(chain=0, draw=i).values) for k in dict.fromkeys(keys)}
                for i in range(n)]

    def simulate(self, truth: dict, rng: np.random.Generator, theta_factor: float = 1.0) -> np.ndarray:
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
        return {vname: np.asarray(f(np.asarray(truth[rvname], dtype=float)))
                for vname, (rvname, f) in self.to_value.items()}

    # -- posterior ----------------------------------------------------------------------------
    def posterior(self, y: np.ndarray, init: dict, seed: int, warmup: int, samples: int):
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS

        if self._mcmc is None or self._mcmc.num_warmup != warmup:
            logp_fn = self.logp_fn
            shapes = self.shapes

            def nmodel(syy, suy):
                params = {k: numpyro.sample(k, dist.ImproperUniform(dist.constraints.real, (), shape))
                          for k, shape in shapes.items()}
                numpyro.factor("logp", logp_fn(params, syy, suy))

            self._mcmc = MCMC(NUTS(nmodel, target_accept_prob=0.9), num_warmup=warmup, num_samples=samples,
                              num_chains=1, progress_bar=False, jit_model_args=True)
        st = raw_model_data(y, self.x).stats
        self._mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(st.Syy), jnp.asarray(st.Suy),
                       init_params={k: jnp.asarray(v) for k, v in init.items()})
        return {k: np.asarray(v) for k, v in self._mcmc.get_samples().items()}


def run_sbc(engine: SBCEngine, reps: int, seed: int, theta_factor: float = 1.0,
            warmup: int = 300, samples: int = 297) -> dict[str, np.ndarray]:
    """Ranks (reps, K) of the true value-space parameters among L thinned posterior draws.

    Ranks are computed on the unconstrained (value) scale; the transforms are monotone, so the
    ranks equal those of the constrained parameters.
    """
    rng = np.random.default_rng(seed)
    truths = engine.prior_draws(reps + 1, seed)
    ranks: dict[str, list[np.ndarray]] = {}
    thin = samples // L
    for r in range(reps):
        truth = truths[r]
        y = engine.simulate(truth, rng, theta_factor)
        tv = engine.value_point(truth)
        key = int(rng.integers(2**31))
        post = None
        for j in range(1, 6):  # start from another prior draw; the next one if NUTS rejects it
            init = engine.value_point(truths[(r + j) % len(truths)])
            try:
                post = engine.posterior(y, init, seed=key, warmup=warmup, samples=samples)
                break
            except RuntimeError:  # "Cannot find valid initial parameters"
                continue
        assert post is not None, f"replication {r}: no valid initial point among 5 prior draws"
        for k, v in tv.items():
            d = post[k][::thin][:L].reshape(L, -1)
            ranks.setdefault(k, []).append((d < np.ravel(v)[None, :]).sum(axis=0))
    return {k: np.stack(v) for k, v in ranks.items()}


def uniformity_pvalues(ranks: dict[str, np.ndarray]) -> dict[str, float]:
    """Chi-square p-value per scalar parameter, ranks 0..L in BINS equal bins."""
    out = {}
    for k, r in ranks.items():
        for j in range(r.shape[1]):
            b = np.minimum(r[:, j] * BINS // (L + 1), BINS - 1)
            counts = np.bincount(b, minlength=BINS)
            e = len(b) / BINS
            stat = float(((counts - e) ** 2 / e).sum())
            out[f"{k}[{j}]"] = float(chi2.sf(stat, BINS - 1))
    return out


@pytest.fixture(scope="module")
def engine() -> SBCEngine:
    return SBCEngine(seed=0)


def test_engine_logp_matches_model(engine):
    """The JAX function with swapped statistics equals the PyMC model's logp (same data)."""
    import jax.numpy as jnp
    import pytensor

    rng = np.random.default_rng(3)
    truth = engine.prior_draws(1, seed=5)[0]
    y = engine.simulate(truth, rng)
    md = raw_model_data(y, engine.x)
    model, _ = build_model(engine.graph, md)
    point = engine.value_point(truth)
    f = pytensor.function(model.value_vars, model.logp(), mode="FAST_COMPILE")
    ref = float(f(*[point[v.name] for v in model.value_vars]))
    st = md.stats
    got = float(engine.logp_fn({k: jnp.asarray(v) for k, v in point.items()}, jnp.asarray(st.Syy),
                               jnp.asarray(st.Suy)))
    assert np.isfinite(ref) and got == pytest.approx(ref, rel=1e-9)


@pytest.mark.slow
def test_sbc_negative_control_fails(engine):
    """Residual variances simulated twice too large: the uniformity test must reject.

    10 replications suffice: if every theta rank is 0, chi-square = 40 on 4 df (p = 4e-8),
    far below the Bonferroni per-test alpha 0.01/K (about 4e-4).
    Marked slow: one NUTS run takes 20-25 s wall on the loaded shared 2-core machine.
    OPEN: in one run (seed 101) replication 1 found no valid initial point among 5 prior
    draws ("Cannot find valid initial parameters"); not reproduced with other seeds."""
    ranks = run_sbc(engine, reps=10, seed=101, theta_factor=2.0, warmup=200, samples=198)
    p = uniformity_pvalues(ranks)
    alpha = FAMILY_ALPHA / len(p)
    rejected = [k for k, v in p.items() if v < alpha]
    assert rejected, f"negative control not detected; smallest p = {min(p.values()):.3g}"
    assert any(k.startswith("residual_var") for k in rejected)


@pytest.mark.slow
def test_sbc_uniform_ranks_full(engine):
    """Full SBC: 100 replications (expected 20 per bin)."""
    ranks = run_sbc(engine, reps=100, seed=2024)
    p = uniformity_pvalues(ranks)
    alpha = FAMILY_ALPHA / len(p)
    bad = {k: v for k, v in p.items() if v < alpha}
    assert not bad, f"non-uniform ranks (Bonferroni alpha {alpha:.2g}): {bad}"


@pytest.mark.slow
def test_sbc_uniform_ranks_fast(engine):
    """40 replications (expected 8 per bin), 200 warmup + 198 draws. Marked slow: on the
    shared 2-core test machine it exceeds the ~90 s budget; the default suite keeps the
    negative control (which shows the test has power) and the log-density identity."""
    ranks = run_sbc(engine, reps=40, seed=7, warmup=200, samples=198)
    p = uniformity_pvalues(ranks)
    alpha = FAMILY_ALPHA / len(p)
    bad = {k: v for k, v in p.items() if v < alpha}
    assert not bad, f"non-uniform ranks (Bonferroni alpha {alpha:.2g}): {bad}"
