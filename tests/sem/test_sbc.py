"""Simulation-based calibration (Talts et al. 2018) of the structural engine.

Model (``tests/_sbc_engine.py``): three standardised latents in a feedback loop
a -> b -> c -> a (signs +, +, -), two observed covariates entering at a and b, two continuous
items per construct, n = 300, the engine's default sign-constrained edge priors and
measurement priors. K = 23 free (value-space) parameters.

Procedure per replication r:
1. draw the true parameters from the model's own prior *including* the stability barrier and
   the psi > 0 truncation (``sampling.draw_prior``, the draws ``fit`` stores as the prior);
2. simulate items from exactly that model given a fixed covariate design x;
3. sample the posterior with NUTS (blackjax window adaptation, then NUTS) on the model's own
   log-density (``build_model``'s graph compiled once to JAX, data statistics as arguments),
   starting at an independent prior draw; all replications run in ONE ``jit(vmap(...))``
   program;
4. keep L thinned draws and rank the true parameter among them (rank in 0..L).

Test: if the engine is correct every rank is uniform on 0..L. Chi-square on 5 equal bins per
parameter; family-wise alpha 0.01 with a Bonferroni correction over the K parameters
(per-test alpha 0.01/K = 4.3e-4): a correct engine fails with probability <= 1% (plus the
error of finite NUTS runs, which the ESS check below bounds).

Thinning: ranks need near-independent draws (autocorrelated draws make rank histograms
U-shaped and the test anti-conservative). We keep every (samples // L)-th draw and check that
the median (over replications) effective sample size of the L kept draws is at least L/2 for
every parameter (measured in the fast batch: 0.7-1.1 L).

Negative control (must FAIL the same test): the data are simulated with item residual
variances ``factor`` times those of the drawn parameters (a wrong likelihood). The residual
variance posteriors then sit near factor * theta, above the truth (posterior sd of log theta
is roughly sqrt(2/n) = 0.08, or a little more with the loadings unknown, against a shift of
log 2 = 0.69), so their ranks pile up at 0.

Fast version (default suite): 50 correct + 20 negative-control replications in one batch,
200 warmup + 196 draws, L = 49 (thin 4). Full version (slow): 200 correct + 60
negative-control replications (factor 1.5, a subtler misspecification), 300 warmup + 297
draws, L = 99 (thin 3).

Cost (measured on the shared, heavily loaded 2-core machine; CPU seconds are the honest
figure there): the whole file in the default suite takes about 60 s of CPU (about 30-40 s of
it compiling the batch program, partly saved by the persistent JAX cache on re-runs); the
full version about 250 s of CPU (8.9 min wall under load average ~10). Full run (seed 2024):
min p over the 23 parameters 0.076 (c->a), control rejected with p <= 6e-18 on all six
residual variances, median ESS of the kept draws 0.75-0.98 L, 75 divergent transitions out
of 77 220 (0.1%).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _sbc_engine import (  # noqa: E402
    SBCEngine,
    SBCResult,
    raw_model_data,
    run_sbc,
    uniformity_pvalues,
)

from veerkracht_bayes.sem.model_builder import build_model  # noqa: E402

FAMILY_ALPHA = 0.01
BINS = 5


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
    # and it does depend on the data (the swap is not a no-op)
    other = raw_model_data(engine.simulate(truth, rng), engine.x).stats
    got2 = float(engine.logp_fn({k: jnp.asarray(v) for k, v in point.items()},
                                jnp.asarray(other.Syy), jnp.asarray(other.Suy)))
    assert got2 != pytest.approx(got, rel=1e-6)


def _split(res: SBCResult, n_good: int) -> tuple[dict, dict]:
    good = {k: v[:n_good] for k, v in res.ranks.items()}
    bad = {k: v[n_good:] for k, v in res.ranks.items()}
    return good, bad


def _check_calibrated(res: SBCResult, n_good: int, L: int, samples: int) -> dict[str, float]:
    good, _ = _split(res, n_good)
    p = uniformity_pvalues(good, L=L, bins=BINS)
    alpha = FAMILY_ALPHA / len(p)
    bad = {k: v for k, v in p.items() if v < alpha}
    assert not bad, f"non-uniform ranks (Bonferroni alpha {alpha:.2g}): {bad}"
    # near-independent thinned draws: median ESS of the L kept draws >= L/2 for every parameter
    med_ess = {k: np.median(v[:n_good], axis=0) for k, v in res.ess.items()}
    low = {k: v for k, v in med_ess.items() if (v < L / 2).any()}
    assert not low, f"thinned draws too autocorrelated (median ESS < {L / 2}): {low}"
    # sampler sanity: under 1% divergent transitions after warmup
    assert res.divergences[:n_good].sum() < 0.01 * n_good * samples, res.divergences
    return p


def _check_control_rejected(res: SBCResult, n_good: int, L: int) -> dict[str, float]:
    _, bad_ranks = _split(res, n_good)
    p = uniformity_pvalues(bad_ranks, L=L, bins=BINS)
    alpha = FAMILY_ALPHA / len(p)
    rejected = [k for k, v in p.items() if v < alpha]
    assert rejected, f"negative control not detected; smallest p = {min(p.values()):.3g}"
    assert any(k.startswith("residual_var") for k in rejected), rejected
    return p


FAST = {"good": 50, "neg": 20, "factor": 2.0, "warmup": 200, "samples": 196, "L": 49, "seed": 7}


@pytest.fixture(scope="module")
def fast_batch(engine) -> SBCResult:
    """One compiled batch: FAST['good'] correct + FAST['neg'] negative-control replications."""
    f = np.r_[np.ones(FAST["good"]), np.full(FAST["neg"], FAST["factor"])]
    return run_sbc(engine, reps=len(f), seed=FAST["seed"], theta_factor=f, warmup=FAST["warmup"],
                   samples=FAST["samples"], L=FAST["L"])


def test_sbc_uniform_ranks_fast(fast_batch):
    """50 replications (expected 10 per bin): every parameter's ranks uniform."""
    _report("fast", fast_batch, FAST)
    _check_calibrated(fast_batch, FAST["good"], FAST["L"], FAST["samples"])


def test_sbc_negative_control_fails_fast(fast_batch):
    """Residual variances simulated twice too large: the same uniformity test must reject.

    20 replications suffice: if every residual-variance rank falls in the lowest bin,
    chi-square = 80 on 4 df (p ~ 2e-16), far below the per-test alpha 4.3e-4."""
    _check_control_rejected(fast_batch, FAST["good"], FAST["L"])


FULL = {"good": 200, "neg": 60, "factor": 1.5, "warmup": 300, "samples": 297, "L": 99, "seed": 2024}


@pytest.mark.slow
def test_sbc_full(engine):
    """Full SBC: 200 replications (expected 40 per bin) and a subtler negative control
    (residual variances 1.5 times too large, 60 replications) in one batch."""
    f = np.r_[np.ones(FULL["good"]), np.full(FULL["neg"], FULL["factor"])]
    res = run_sbc(engine, reps=len(f), seed=FULL["seed"], theta_factor=f, warmup=FULL["warmup"],
                  samples=FULL["samples"], L=FULL["L"])
    _report("full", res, FULL)
    _check_calibrated(res, FULL["good"], FULL["L"], FULL["samples"])
    _check_control_rejected(res, FULL["good"], FULL["L"])


def _report(tag: str, res: SBCResult, cfg: dict) -> None:
    """Print the batch's numbers (seen with ``pytest -s``)."""
    good, bad = _split(res, cfg["good"])
    pg = uniformity_pvalues(good, L=cfg["L"], bins=BINS)
    pb = uniformity_pvalues(bad, L=cfg["L"], bins=BINS)
    n = cfg["good"]
    ess = {k: np.round(np.median(v[:n], axis=0) / cfg["L"], 2) for k, v in res.ess.items()}
    print(f"\n[{tag}] {len(res.divergences)} replications in {res.seconds:.1f} s "
          f"(compile included); divergences {int(res.divergences.sum())}; "
          f"mean leapfrog steps {res.mean_steps.mean():.1f}")
    print(f"[{tag}] calibrated: min p {min(pg.values()):.3g}; p per parameter "
          + ", ".join(f"{k} {v:.3g}" for k, v in pg.items()))
    print(f"[{tag}] control: " + ", ".join(f"{k} {v:.2g}" for k, v in sorted(pb.items(),
                                                                       key=lambda kv: kv[1])[:8]))
    print(f"[{tag}] median ESS / L: {ess}")
