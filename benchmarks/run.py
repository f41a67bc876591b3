"""Benchmark suite of veerkracht_bayes (not part of the test suite).

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py --smoke --json     # seconds: checks that every stage runs
    .venv/bin/python benchmarks/run.py --quick --json     # < 25 min on 2 cores: the numbers of issue 7
    .venv/bin/python benchmarks/run.py --json             # full: N up to 1M, graphs up to 100 nodes

Stages (each timed in its own fresh subprocess unless noted, so JAX caches and memory do not
leak between them; peak memory = VmHWM of that subprocess):

1. ``ess``: the MARVEL model (cut posterior, continuous path) on N = 20,000 complete
   respondents generated from the model (``gen_marvel_data``), sampled by
   (a) PyMC's default NUTS (``nuts_sampler="pymc"``) on the NAIVE per-respondent likelihood
   (``pm.MvNormal`` observed per row, same implied mean and covariance, same priors and
   barriers; BLAS/OpenMP threads 1), capped at ``--pymc-cap`` seconds — a capped run counts as
   its cap with ESS bounded by its number of draws, so the ratio is then a lower bound;
   (b) nutpie and (c) ``sampling.fit`` with numpyro, both on the sufficient statistics.
   ESS/s = min bulk ESS over ``beta`` / sampling seconds (PyMC's recorded ``sampling_time``;
   compilation excluded there, included in the wall times). Ours: the sampling time of a second
   fit of the same model in the same process (the compiled program reused; the first fit's time,
   compilation included, is reported as ``first_call_sampling_with_compile_s``).
   The wall variant: our FIRST fit in a fresh process with an empty compilation cache (model
   build, prior draws, compilation, curvature, warm-up, sampling; its own min ESS) against
   PyMC's ``pm.sample`` wall time (compilation, tuning, sampling; the cap if capped).
2. ``scaling_n``: our default path at N = 1k ... 1M: data generation excluded; statistics,
   model build, compilation (cold JAX cache per run) and sampling included → ``flat_n_ratio``.
3. ``graph_size``: random signed cyclic graphs with 10 ... 100 nodes (ρ(B) < 1 at the truth,
   3 items per node), N = 5,000: wall time and ESS/s.
4. ``first_result``: the README's first result, ``vb.fit(graph, survey, priors="marvel")`` on
   the ``SurveyData`` of ``data/synthetic`` (20,000 rows; import, read, statistics, fit) in a
   fresh interpreter, with vb.fit's default draws and tuning steps (2 chains; ``--smoke``:
   50 + 50), twice: on the continuous path named explicitly (``measurement="continuous"``, the
   demo's; key ``first_result_seconds``) and as the README's call runs (``measurement="auto"``,
   which the shipped codebook resolves to the polychoric route, joint mode; key
   ``first_result_ordinal_seconds``; ``--skip first_ordinal`` leaves it out),
   (a) with ``VEERKRACHT_JAX_CACHE`` pointing at an empty directory and (b) after
   ``veerkracht-bayes warmup`` (what scripts/bootstrap.sh runs: both routes; ``--draws D --tune D``
   in ``--smoke``) filled another empty directory. Each run also reports the load average at its
   start and end, the route resolved, the draws, min bulk ESS of ``beta``, max R-hat, leapfrog
   steps per draw and divergences, its CPU seconds, the time (wall and CPU) of the survey's
   statistics inside the fit (``stats_s``, ``stats_cpu_s``: the two-stage EM, or stage 1 of the
   polychoric route), the time of the per-respondent
   log-likelihood for LOO (``pointwise_loglik_s``, ``pointwise_loglik_cpu_s``; 0 since ``vb.fit``
   computes it only with ``log_likelihood=True``)
   and, from ``jax.monitoring``, the seconds of tracing, lowering, XLA compilation and cache reads
   and the number of compilations / cache hits.
5. ``doquery``: 10 policies × 7 subgroup targetings on 4,000 draws, equilibrium
   (``do_queries.do_query``) plus a 20-step trajectory (``dynamics.simulate_trajectories``),
   after one warm-up call (JIT) → ``doquery_seconds`` (the first call, compilation included, is
   reported too).
   ``uncertainty``: one MARVEL fit at N = 20,000 (not timed), then ``structure_seconds``
   (inclusion probabilities of the inferred links + robustness over 200 drawn structures) and
   ``voi_seconds`` (EVSI of every unmeasured construct x 3 wave sizes by preposterior
   simulation + importance reweighting, and the EVPI).
6. ``parquet``: time and peak memory (VmHWM) of ``out_of_core.stats_from_parquet`` on a
   synthetic Parquet file written in chunks (``bench_parquet.run_parquet_benchmark``).
7. ``ordinal``: the exact ordinal path vs PyMC's default sampler on the same ordinal model
   (``bench_ordinal.run_ordinal_benchmark``; 3 latents, 9 five-category items, n = 2,000).
8. ``polychoric``: the polychoric two-stage route (``fit_polychoric`` after stage 1,
   ``survey.polychoric.polychoric`` with its full asymptotic covariance, timed from the codes)
   vs PyMC's default NUTS on the exact per-respondent ordered-probit model, same data, n =
   20,000 (``bench_ordinal.run_polychoric_benchmark``), and the route at n = 1,000 and
   1,000,000 (fresh process, empty compilation cache each) → ``ordinal_flat_n_ratio``.

``--json`` prints one JSON object as the LAST line; a Markdown table goes to
``benchmarks/results/``. Its fields:

* ``profile``, ``machine`` (``cpus``, ``load_avg_start``, ``load_avg_end``), ``total_s``;
* ``ess`` (records ``ours``, ``nutpie``, ``pymc_naive``), ``ess_per_s_ratio_vs_pymc`` (sampling
  time only), ``ess_per_s_wall_ratio_vs_pymc`` and ``ess_per_s_wall`` (compilation, warm-up and
  sampling on both sides, ours compiled fresh), ``ess_ratio_is_lower_bound`` (PyMC capped: both
  ratios are lower bounds), ``ess_per_s_ratio_vs_pymc_cost_estimate``, ``grad_ms``,
  ``nutpie_ess_per_s_ratio_vs_pymc``;
* ``scaling_n``, ``flat_n_ratio``; ``graph_size``;
* ``first_result`` (``cold``, ``warmup``, ``after_warmup``), ``first_result_seconds_empty_cache``,
  ``first_result_seconds_after_warmup`` (= ``first_result_seconds_warm_cache``, the key of earlier
  runs), ``first_result_cache_warm`` (whether the README's first command, scripts/bootstrap.sh,
  runs ``veerkracht-bayes warmup``) and ``first_result_seconds`` (the after-warmup time if it
  does, else the empty-cache time); the same for the README's call as it runs (auto ->
  polychoric): ``first_result_ordinal`` (``cold``, ``warmup`` (its ``warmup_fit_s`` per route),
  ``after_warmup``), ``first_result_ordinal_seconds_empty_cache``,
  ``first_result_ordinal_seconds_after_warmup``, ``first_result_ordinal_cache_warm``,
  ``first_result_ordinal_seconds``;
* ``doquery``, ``doquery_seconds``; ``uncertainty``, ``structure_seconds``, ``voi_seconds``;
  ``parquet``;
* ``ordinal`` (exact path), ``ordinal_exact_ess_per_s_ratio_vs_pymc``,
  ``ordinal_exact_ratio_is_lower_bound``;
* ``ordinal_polychoric`` (records ``ours``, ``pymc``, ``flat``), ``ordinal_ess_per_s_ratio_vs_pymc``
  (polychoric route, refit sampling time, vs PyMC's sampling time on the exact model),
  ``ordinal_ess_per_s_wall_ratio_vs_pymc`` (our first fit with stage 1 and compilation vs PyMC's
  ``pm.sample`` wall time), ``ordinal_ratio_is_lower_bound``, ``ordinal_flat_n_ratio`` (wall of
  stage 1 + first fit, cold compilation cache, largest over smallest n),
  ``ordinal_flat_n_ratio_warm`` (stage 1 + a refit with the compiled program) and
  ``ordinal_flat_n_peak_rss_mb`` (peak memory of the largest run).

``--skip`` takes ``ess,nutpie,scaling,graph,first,first_ordinal,doquery,uncertainty,parquet,ordinal,polychoric``
and ``polychoric_baseline`` (the polychoric stage then measures ``ordinal_flat_n_ratio`` only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def _env(cache: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for v in THREAD_VARS[:3]:
        env[v] = "1"
    # (a bare "intra_op_parallelism_threads=1" here, not an XLA flag, made sampling 2-3x slower)
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false " \
                       "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + str(ROOT / "benchmarks")
    if cache:
        env["VEERKRACHT_JAX_CACHE"] = cache
    return env


def run_stage(stage: str, args: dict, *, timeout: float | None = None, cache: str | None = None) -> dict:
    """Run one stage in a fresh interpreter; returns its JSON (or a timeout record)."""
    cmd = [sys.executable, str(Path(__file__)), "--stage", stage, "--stage-args", json.dumps(args)]
    t0 = time.perf_counter()
    # own session, so that a capped stage is ended together with its sampler worker processes
    proc = subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        # what the stage reported before its cap (lines marked "partial")
        res = _merged_json(stdout)
        res.pop("partial", None)
        res.update(timed_out=True, wall_s=time.perf_counter() - t0, cap_s=timeout)
        return res
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (stderr or stdout)[-3000:], "wall_s": time.perf_counter() - t0}
    res = _merged_json(stdout)
    res.pop("partial", None)
    res["process_wall_s"] = time.perf_counter() - t0
    return res


def _merged_json(stdout: str | None) -> dict:
    """The JSON lines a stage printed, merged in order (later keys win)."""
    res: dict = {}
    for ln in (stdout or "").splitlines():
        if ln.startswith("{"):
            try:
                res.update(json.loads(ln))
            except json.JSONDecodeError:
                pass
    return res


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). ``ru_maxrss`` is not used: on Linux it
    carries over from the parent across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ============================================================================ data
def marvel_layout():
    """MARVEL graph, codebook items and a parameter point to simulate from (one draw of fit's prior)."""
    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.survey.codebook import load_codebook

    g = load_graph("marvel")
    cb = load_codebook(ROOT / "data/synthetic/codebook_synthetic.yaml", graph=g)
    return g, cb


def gen_marvel_data(n: int, seed: int = 1):
    """Complete continuous items drawn with numpy from a fixed MARVEL model point.

    The point: edge coefficients from ``data/synthetic/truth.yaml`` where present (else 0.1 with
    the diagram's sign), loadings 0.75, residual variances 0.44, standardised latents, the two
    observed covariates (adverse life events ~ N(0,1), single parent ~ Bernoulli(0.16)). Items are
    the synthetic codebook's (reverse coding irrelevant here). Generated in blocks; O(n·m) memory.
    """
    import numpy as np

    from veerkracht_bayes.sem.implied_moments import implied_moments
    from veerkracht_bayes.sem.model_builder import build_model
    from veerkracht_bayes.survey.statistics import prepare_model_data

    g, cb = marvel_layout()
    specs = cb.item_specs()
    cov_nodes = ["adverse_life_events", "single_parent_household"]
    items = [(it.column, k) for k, it in specs if k not in cov_nodes]
    rng = np.random.default_rng(seed)
    # layout from a tiny data set with the same columns
    tiny = prepare_model_data(rng.normal(size=(50, len(items))), [c for c, _ in items], [k for _, k in items],
                              covariates=np.column_stack([rng.normal(size=50), rng.integers(0, 2, 50)]),
                              covariate_names=cov_nodes)
    _, layout = build_model(g, tiny)
    truth = _truth_beta(g)
    m = len(items)
    draws = {"beta": truth[None], "lambda": np.full((1, m), 0.75), "theta": np.full((1, m), 1 - 0.75**2),
             "nu": np.zeros((1, m)), "psi": np.ones((1, len(g.nodes)))}

    class _X:  # x_cov of the generating covariates
        x_cov = np.diag([1.0, 0.16 * 0.84])

    Sigma, M = implied_moments(layout, g, _X, draws)  # type: ignore[arg-type]
    L = np.linalg.cholesky(Sigma[0])
    y = np.empty((n, m))
    x = np.empty((n, 2))
    for a in range(0, n, 200_000):
        b = min(n, a + 200_000)
        xb = np.column_stack([rng.normal(size=b - a), (rng.random(b - a) < 0.16).astype(float)])
        u = np.column_stack([np.ones(b - a), xb - np.array([0.0, 0.16])])
        y[a:b] = u @ M[0].T + rng.normal(size=(b - a, m)) @ L.T
        x[a:b] = xb
    return g, y, x, [c for c, _ in items], [k for _, k in items], cov_nodes


def _truth_beta(g):
    """Edge coefficients of the synthetic truth (data/synthetic/truth.yaml), in graph order."""
    import numpy as np

    from veerkracht_bayes.datasets.synthetic import SyntheticTruth

    coefs = SyntheticTruth.from_yaml(ROOT / "data/synthetic/truth.yaml").coefficients
    return np.array([float(coefs.get(e.key, 0.1 if e.sign == "+" else -0.1)) for e in g.edges])


def model_data(n: int, seed: int = 1):
    from veerkracht_bayes.survey.statistics import prepare_model_data

    g, y, x, names, cons, cov = gen_marvel_data(n, seed)
    t0 = time.perf_counter()
    md = prepare_model_data(y, names, cons, covariates=x, covariate_names=cov)
    return g, md, time.perf_counter() - t0


def min_ess_beta(idata) -> float:
    import numpy as np
    from arviz_stats import ess

    post = idata["posterior"].to_dataset() if hasattr(idata["posterior"], "to_dataset") else idata["posterior"]
    e = ess(post[["beta"]], method="bulk")
    return float(np.nanmin(e["beta"].values))


def _sampling_time(idata, fallback: float) -> float:
    for grp in ("posterior", "sample_stats"):
        try:
            t = idata[grp].attrs.get("sampling_time")
        except Exception:
            t = None
        if t:
            return float(t)
    return fallback


# ============================================================================ stages (subprocess)
def stage_fit(a: dict) -> dict:
    """Our path (numpyro or nutpie) on generated MARVEL data of size n."""
    from veerkracht_bayes.inference.sampling import SamplerSettings, fit

    t_all = time.perf_counter()
    g, md, t_stats = model_data(a["n"], a.get("seed", 1))
    t0 = time.perf_counter()
    if a.get("sampler") == "nutpie":
        # PyMC's nutpie bridge takes one start dict for all chains (a prior draw, as in fit)
        import pymc as pm

        from veerkracht_bayes.sem.model_builder import build_model
        from veerkracht_bayes.inference.sampling import draw_prior, initial_values

        model, layout = build_model(g, md)
        prior = draw_prior(model, layout, g, 200, 2023, md.x_cov)
        init = initial_values(model, layout, prior, 1, 2023)[0]
        with model:
            idata = pm.sample(draws=a["draws"], tune=a["tune"], chains=2, cores=2, nuts_sampler="nutpie",
                              initvals=init, random_seed=2023, progressbar=False, target_accept=0.9,
                              compute_convergence_checks=False)
    else:
        idata = fit(g, md, settings=SamplerSettings(sampler=a.get("sampler", "numpyro"), chains=2,
                                                    draws=a["draws"], tune=a["tune"], progressbar=False,
                                                    prior_draws=200), pointwise=False).idata
    t_fit = time.perf_counter() - t0
    cpu_fit = _cpu_s()
    ess = min_ess_beta(idata)
    ts = _sampling_time(idata, t_fit)
    out = {"n": a["n"], "sampler": a.get("sampler", "numpyro"), "stats_s": t_stats, "fit_s": t_fit,
           "cpu_s_to_end_of_fit": cpu_fit,
           "wall_s": t_stats + t_fit, "sampling_s": ts, "min_ess_beta": ess, "ess_per_s": ess / ts}
    if a.get("sampler", "numpyro") == "numpyro" and a.get("repeat"):
        # our driver's sampling time includes compilation on the first call for a model shape;
        # a second fit of the same model (another seed) reuses the program: its time is
        # sampling only, comparable with PyMC's and nutpie's recorded sampling times
        t1 = time.perf_counter()
        idata2 = fit(g, md, settings=SamplerSettings(chains=2, draws=a["draws"], tune=a["tune"],
                                                     progressbar=False, prior_draws=200, random_seed=2024),
                     pointwise=False).idata
        ts2 = _sampling_time(idata2, time.perf_counter() - t1)
        ess2 = min_ess_beta(idata2)
        steps = float(idata2["sample_stats"]["n_steps"].mean())
        out.update(first_call_sampling_with_compile_s=ts, first_min_ess_beta=ess, first_fit_s=t_fit,
                   sampling_s=ts2, min_ess_beta=ess2,
                   ess_per_s=ess2 / ts2, refit_wall_s=time.perf_counter() - t1,
                   mean_leapfrog_steps=steps, grad_ms=_our_grad_ms(g, md),
                   # warm-up trees are as deep or deeper than sampling ones: a lower count
                   leapfrog_steps_per_chain=steps * (a["draws"] + a["tune"]))
    out.update(total_with_generation_s=time.perf_counter() - t_all, peak_rss_mb=peak_rss_mb())
    return out


def _time_calls(f, *args, reps: int = 200) -> float:
    """Median milliseconds of ``f(*args)`` over ``reps`` calls in blocks of 10 (after 3 warm-ups)."""
    import numpy as np

    for _ in range(3):
        f(*args)
    times = []
    for _ in range(max(1, reps // 10)):
        t0 = time.perf_counter()
        for _ in range(10):
            f(*args)
        times.append((time.perf_counter() - t0) / 10 * 1e3)
    return float(np.median(times))


def _our_grad_ms(g, md) -> float:
    """Cost of one log-density + gradient of our model (the JAX program NUTS runs), in ms."""
    import jax
    import jax.numpy as jnp

    from veerkracht_bayes.inference.jax_nuts import CompiledModel, data_values
    from veerkracht_bayes.sem.model_builder import build_model

    model, _ = build_model(g, md)
    comp = CompiledModel(model)
    data = tuple(jnp.asarray(v) for v in data_values(model))
    point = {k: jnp.asarray(v) for k, v in model.initial_point().items()}
    f = jax.jit(jax.value_and_grad(lambda p, *d: comp.logp(p, d)))

    def call(p, *d):
        return jax.block_until_ready(f(p, *d))

    return _time_calls(call, point, *data)


def _pymc_grad_ms(model) -> float:
    """Cost of one log-density + gradient of a PyMC model with PyMC's default (C) backend, in ms."""
    import numpy as np
    import pytensor

    logp = model.logp()
    grads = pytensor.grad(logp, model.value_vars)
    f = pytensor.function(model.value_vars, [logp, *grads])
    ip = model.initial_point()
    args = [np.asarray(ip[v.name]) for v in model.value_vars]
    return _time_calls(f, *args, reps=20)



def build_naive_model(g, md):
    """PyMC model with the same priors/barriers as build_model and a per-respondent MvNormal."""
    import dataclasses

    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt

    from veerkracht_bayes.sem.model_builder import build_model
    from veerkracht_bayes.survey.statistics import PatternStats

    st = md.stats
    zero = PatternStats(st.masks, np.zeros_like(st.W), np.zeros_like(st.Syy), np.zeros_like(st.Suy),
                        np.zeros_like(st.Suu), st.pattern_of_row)
    md0 = dataclasses.replace(md, stats=zero)  # the sufficient-statistics potential becomes 0
    model, layout = build_model(g, md0)
    lik = list(layout.lik_latent)
    lli = {k: i for i, k in enumerate(lik)}
    ci = {k: i for i, k in enumerate(layout.covariates)}
    with model:
        beta = model["beta"]
        P, q = len(lik), len(ci)
        B = pt.zeros((P, P))
        G = pt.zeros((P, q))
        for i, e in enumerate(g.edges):
            if layout.edge_kind[e.key] == "latent":
                B = pt.set_subtensor(B[lli[e.target], lli[e.source]], beta[i])
            elif layout.edge_kind[e.key] == "covariate":
                G = pt.set_subtensor(G[lli[e.target], ci[e.source]], beta[i])
        A = pt.linalg.inv(pt.eye(P) - B)
        AG = pt.dot(A, G)
        dx = pt.sum(pt.dot(AG, md.x_cov) * AG, axis=1)
        psi = pt.linalg.solve(A * A, 1.0 - dx)
        psi = pt.switch(pt.gt(psi, 1e-4), psi, 1e-4)
        c = np.array([lli[k] for k in md.item_construct])
        lam, theta, nu = model["lambda"], model["theta"], model["nu"]
        S_eta = pt.dot(A * psi[None, :], A.T)
        Sigma = lam[:, None] * lam[None, :] * S_eta[c][:, c] + pt.diag(theta)
        mu = nu[None, :] + pt.dot(md.x, (lam[:, None] * AG[c]).T)
        pm.MvNormal("y", mu=mu, cov=Sigma, observed=md.y)
    return model, layout


def stage_pymc(a: dict) -> dict:
    import pymc as pm

    from veerkracht_bayes.inference.sampling import draw_prior, initial_values

    g, md, _ = model_data(a["n"], a.get("seed", 1))
    model, layout = build_naive_model(g, md)
    prior = draw_prior(model, layout, g, 200, 2023, md.x_cov)
    initvals = initial_values(model, layout, prior, 2, 2023)
    # its cost per gradient, measured before sampling so that it is known even for a capped run
    print(json.dumps({"n": a["n"], "sampler": "pymc-naive", "grad_ms": _pymc_grad_ms(model), "partial": True}),
          flush=True)
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(draws=a["draws"], tune=a["tune"], chains=2, cores=2, nuts_sampler="pymc",
                          init="adapt_diag", initvals=initvals, random_seed=2023, progressbar=False,
                          compute_convergence_checks=False, target_accept=0.9)
    wall = time.perf_counter() - t0
    ts = _sampling_time(idata, wall)
    ess = min_ess_beta(idata)
    return {"n": a["n"], "sampler": "pymc-naive", "sampling_s": ts, "wall_s": wall, "min_ess_beta": ess,
            "ess_per_s": ess / ts, "peak_rss_mb": peak_rss_mb()}


def random_graph(p: int, seed: int):
    """Random signed cyclic graph: a chain with ~p/5 back edges, extra forward edges; ρ(B) < 1."""
    import numpy as np

    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

    rng = np.random.default_rng(seed)
    nodes = [f"n{i}" for i in range(p)]
    edges = {(i, i + 1) for i in range(p - 1)}
    while len(edges) < 2 * p:
        i, j = rng.choice(p, 2, replace=False)
        if (i, j) not in edges and (j, i) not in edges and (j < i or rng.random() < 0.8):
            edges.add((int(i), int(j)))
    edges = sorted(edges)
    signs = rng.choice(["+", "-"], size=len(edges))
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": f"random{p}",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
                  for n in nodes],
        "edges": [{"source": nodes[i], "target": nodes[j], "sign": s, "evidence": "benchmark"}
                  for (i, j), s in zip(edges, signs)]})
    g = CausalGraph(spec)
    beta = np.array([0.2 if e.sign == "+" else -0.2 for e in g.edges])
    B = np.zeros((p, p))
    for k, e in enumerate(g.edges):
        B[g.node_index[e.target], g.node_index[e.source]] = beta[k]
    while np.max(np.abs(np.linalg.eigvals(np.abs(B)))) >= 0.8:
        B *= 0.9
        beta *= 0.9
    return g, B


def stage_graph(a: dict) -> dict:
    import numpy as np

    from veerkracht_bayes.inference.sampling import SamplerSettings, fit
    from veerkracht_bayes.survey.statistics import prepare_model_data

    p, n = a["p"], a["n"]
    g, B = random_graph(p, a.get("seed", 3))
    rng = np.random.default_rng(1)
    A = np.linalg.inv(np.eye(p) - B)
    psi = np.linalg.solve(A * A, np.ones(p))
    psi = np.clip(psi, 0.05, None)
    eta = rng.normal(size=(n, p)) * np.sqrt(psi) @ A.T
    c = np.repeat(np.arange(p), 3)
    y = eta[:, c] * 0.75 + rng.normal(size=(n, 3 * p)) * np.sqrt(1 - 0.75**2)
    t0 = time.perf_counter()
    md = prepare_model_data(y, [f"i{j}" for j in range(3 * p)], [g.nodes[k] for k in c])
    res = fit(g, md, settings=SamplerSettings(chains=2, draws=a["draws"], tune=a["tune"], progressbar=False,
                                              prior_draws=200), pointwise=False)
    wall = time.perf_counter() - t0
    ess = min_ess_beta(res.idata)
    ts = _sampling_time(res.idata, wall)
    return {"p": p, "edges": len(g.edges), "n": n, "wall_s": wall, "sampling_s": ts, "min_ess_beta": ess,
            "ess_per_s": ess / ts, "peak_rss_mb": peak_rss_mb()}


def _compile_clock() -> dict[str, float]:
    """Seconds JAX reports (``jax.monitoring``) for tracing, lowering, XLA compilation and cache
    reads in this process, and the counts of cache hits and misses, filled in as they happen."""
    import jax.monitoring as mon

    names = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
             "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
             "/jax/core/compile/backend_compile_duration": "xla_compile_s",
             "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read_s"}
    clock = {v: 0.0 for v in names.values()} | {"cache_hits": 0, "cache_misses": 0, "compilations": 0}

    def on_duration(event: str, secs: float, **_: object) -> None:
        if event in names:
            clock[names[event]] += secs
            if event == "/jax/core/compile/backend_compile_duration":
                clock["compilations"] += 1

    def on_event(event: str, **_: object) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            clock["cache_hits"] += 1
        elif event == "/jax/compilation_cache/cache_misses":
            clock["cache_misses"] += 1

    mon.register_event_duration_secs_listener(on_duration)
    mon.register_event_listener(on_event)
    return clock


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stage_first_result(a: dict) -> dict:
    """The README's first result in a fresh interpreter: import, read the shipped survey, fit.

    ``vb.fit(graph, survey, priors="marvel", draws, tune, measurement=...)`` on the
    :class:`SurveyData` itself, exactly as the README and ``veerkracht-bayes warmup`` call it
    (``a["measurement"]``: ``"continuous"``, the continuous key, or ``"auto"``, the README's
    call as it runs, which the shipped codebook resolves to the polychoric route). Fitting
    prepared ``ModelData`` instead would leave out the codebook's per-item reliabilities, whose
    values are constants of the compiled programs, so the warmup's cache would miss. The
    survey's statistics (continuous: ``model_data_from_survey``; polychoric: stage 1,
    ``polychoric_data_from_survey``) are timed inside the fit by wrapping those functions.
    Besides the wall times per step: this process's CPU seconds (a loaded machine stretches wall
    time, much less CPU time) and where the fit's time went according to ``jax.monitoring``.
    """
    t_start = a["t_start"]
    t0 = time.time()
    load_start = os.getloadavg()[0]
    import numpy as np

    import veerkracht_bayes as vb
    import veerkracht_bayes.inference.polychoric_fit as pfit
    import veerkracht_bayes.survey.statistics as stats_mod

    clock = _compile_clock()
    import veerkracht_bayes.inference.sampling as smp

    timed = {"pointwise_loglik_s": 0.0, "pointwise_loglik_cpu_s": 0.0, "stats_s": 0.0, "stats_cpu_s": 0.0}

    def timing(inner, key):
        def wrapped(*args, **kwargs):
            w0, c0 = time.perf_counter(), _cpu_s()
            try:
                return inner(*args, **kwargs)
            finally:
                timed[f"{key}_s"] += time.perf_counter() - w0
                timed[f"{key}_cpu_s"] += _cpu_s() - c0
        return wrapped

    # the per-respondent log-likelihood for LOO (NumPy; vb.fit computes it only with
    # log_likelihood=True, so the README's call reports 0), and the survey's statistics, which
    # vb.fit computes first (the functions are looked up when vb.fit runs, so the wrappers count)
    smp.pointwise_loglik = timing(smp.pointwise_loglik, "pointwise_loglik")
    stats_mod.model_data_from_survey = timing(stats_mod.model_data_from_survey, "stats")
    pfit.polychoric_data_from_survey = timing(pfit.polychoric_data_from_survey, "stats")
    t_imp = time.time()
    cpu_imp = _cpu_s()
    g = vb.load_graph("marvel")
    sd = vb.read_survey(ROOT / "data/synthetic/veerkracht_synthetic.csv.gz",
                        ROOT / "data/synthetic/codebook_synthetic.yaml", graph=g)
    t_read = time.time()
    measurement = a.get("measurement", "continuous")
    # draws / tune: vb.fit's defaults unless the profile names them
    kw = {k: a[k] for k in ("draws", "tune", "prior_draws") if a.get(k) is not None}
    f = vb.fit(g, sd, priors="marvel", progress=False, measurement=measurement, **kw)
    t_fit = time.time()
    post = f.idata["posterior"]
    st = f.idata["sample_stats"]
    samp = float(post.attrs.get("sampling_time", f.idata.attrs.get("sampling_seconds", float("nan"))))
    from arviz_stats import rhat

    pds = post.to_dataset() if hasattr(post, "to_dataset") else post
    rh = rhat(pds, method="rank")
    return {"measurement": measurement, "measurement_resolved": f.idata.attrs.get("measurement_resolved"),
            "unmeasured_resolved": f.idata.attrs.get("unmeasured_resolved"),
            "stage2_weight": f.idata.attrs.get("stage2_weight"),
            "sandwich_pilot_s": f.idata.attrs.get("sandwich_pilot_seconds"),
            "draws": int(post.sizes["draw"]), "tune": int(post.attrs.get("tuning_steps", -1)),
            "min_ess_beta": min_ess_beta(f.idata), "rhat_max": float(max(np.nanmax(rh[v].values) for v in rh.data_vars)),
            "divergences": int(st["diverging"].sum()),
            "steps_per_draw": float(np.asarray(st["n_steps"]).mean()),
            "load_avg_start": load_start, "load_avg_end": os.getloadavg()[0],
            "total_s": t_fit - t_start, "interpreter_s": t0 - t_start, "import_s": t_imp - t0,
            "read_s": t_read - t_imp, "fit_s": t_fit - t_read,
            "fit_sampling_incl_chain_compile_s": samp,
            "cpu_s": _cpu_s(), "cpu_import_s": cpu_imp, **clock, **timed,
            "cache_dir": os.environ.get("VEERKRACHT_JAX_CACHE")}


def stage_warmup(a: dict) -> dict:
    """``veerkracht-bayes warmup`` (the command the install runs) in a fresh interpreter."""
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).with_name("veerkracht-bayes")), "warmup"]
    for d in a["draws"]:  # none: the warmup's default, vb.fit's default setting
        cmd += ["--draws", str(d), "--tune", str(d)]
    for m in a.get("measurement", []):  # none: the warmup's default (auto and continuous)
        cmd += ["--measurement", m]
    r = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True, cwd=ROOT, check=False)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    # "compiled: ..., measurement M (route R) in S s", one line per setting
    per = {m: float(x) for m, x in re.findall(r"measurement (\w+) \(route \w+\) in ([0-9.]+) s", r.stdout)}
    return {"warmup_s": time.perf_counter() - t0, "warmup_fit_s": per}


def stage_doquery(a: dict) -> dict:
    import numpy as np

    from veerkracht_bayes.causal.do import SubgroupInfo, do_query
    from veerkracht_bayes.causal.dynamics import simulate_trajectories
    from veerkracht_bayes.causal.interventions import Intervention, Shift
    from veerkracht_bayes.causal.draws import StructuralDraws

    g, _ = marvel_layout()
    rng = np.random.default_rng(0)
    S = a["draws"]
    beta = _truth_beta(g)[None] + rng.normal(0, 0.03, size=(S, len(g.edges)))
    d = StructuralDraws.from_arrays(g, beta, np.zeros((S, len(g.nodes))))
    subs = {f"s{k}": SubgroupInfo(prevalence=0.05 + 0.03 * k, n=500) for k in range(7)}
    targets = [n for n in g.nodes if g.children(n)][:10]
    ivs = [Intervention(name=f"p{i}_{s}", parts=[Shift(node=t, delta=0.2)], subgroup=s)
           for i, t in enumerate(targets) for s in subs]
    outs = ["wellbeing", "stress"]
    tw = time.perf_counter()
    do_query(d, ivs, outcomes=outs, subgroups=subs)  # first call: JIT compilation for these shapes
    simulate_trajectories(d, ivs, outcomes=outs, subgroups=subs, horizon=a["horizon"])
    first = time.perf_counter() - tw
    t0 = time.perf_counter()
    do_query(d, ivs, outcomes=outs, subgroups=subs)
    t1 = time.perf_counter()
    simulate_trajectories(d, ivs, outcomes=outs, subgroups=subs, horizon=a["horizon"])
    t2 = time.perf_counter()
    return {"n_interventions": len(ivs), "draws": S, "equilibrium_s": t1 - t0, "trajectory_s": t2 - t1,
            "doquery_s": t2 - t0, "first_call_with_compile_s": first}


def stage_uncertainty(a: dict) -> dict:
    """``structure_seconds``: inclusion probabilities of every inferred MARVEL link (Savage-Dickey
    on the one fit: no refit per variant) plus the robustness of every policy x outcome ranking
    over the drawn structures; ``voi_seconds``: EVSI of every unmeasured construct x 3 wave sizes
    and the EVPI, for one decision, by preposterior simulation (400 simulated waves per construct
    and size, importance reweighting; the Gaussian approximation is timed alongside). The fit (N = ``n``) is not timed."""
    import numpy as np

    from veerkracht_bayes.causal.do import SubgroupInfo, do_query
    from veerkracht_bayes.causal.draws import StructuralDraws
    from veerkracht_bayes.causal.evidence import edge_evidence
    from veerkracht_bayes.causal.policies import load_policies
    from veerkracht_bayes.inference.sampling import SamplerSettings, fit
    from veerkracht_bayes.workflow.uncertainty import structure_from_fit, voi_from_fit

    g, md, _ = model_data(a["n"], a.get("seed", 1))
    res = fit(g, md, settings=SamplerSettings(chains=2, draws=a["draws"], tune=a["tune"],
                                              progressbar=False, prior_draws=200), pointwise=False)
    draws = StructuralDraws.from_posterior(res.idata, g)
    ev = edge_evidence(g, None, fit=res)
    pol = load_policies(graph=g)
    ivs = pol.to_interventions()
    subs = {iv.subgroup: SubgroupInfo(prevalence=0.1) for iv in ivs if iv.subgroup}
    t0 = time.perf_counter()
    st = structure_from_fit(res, draws, ivs, None, edge_evidence=ev, subgroups=subs,
                            n_structures=a.get("n_structures", 200), draws_per_structure=200)
    t1 = time.perf_counter()
    dq = do_query(draws, ivs, ["wellbeing"], subgroups=subs, min_cell_size=0)
    voi = voi_from_fit(res, dq, outcome="wellbeing", n=[500, 2000, 8000], method="reweight",
                       outer_draws=400)
    t2 = time.perf_counter()
    vg = voi_from_fit(res, dq, outcome="wellbeing", n=[500, 2000, 8000], method="gaussian")
    t3 = time.perf_counter()
    inf = st.links[st.links["inferred"]]
    return {"structure_s": t1 - t0, "voi_s": t2 - t1, "n_inferred": int(len(inf)),
            "n_inferred_informed": int(inf["informed"].sum()),
            "n_candidates": int(voi["construct"].nunique()), "evpi": float(voi["evpi"].iloc[0]),
            "evsi_max": float(voi["evsi"].max()), "draws": int(draws.n_draws),
            "voi_method": "reweight", "voi_outer_draws": 400,
            "voi_share_k_bad_max": float(voi["share_k_bad"].max()),
            "voi_gaussian_s": t3 - t2, "evsi_max_gaussian": float(vg["evsi"].max()),
            "p_rank_holds_min": float(np.min(st.robustness["p_rank_holds"]))}


STAGES = {"fit": stage_fit, "pymc": stage_pymc, "graph": stage_graph, "first_result": stage_first_result,
          "warmup": stage_warmup,
          "doquery": stage_doquery, "uncertainty": stage_uncertainty}


# ============================================================================ driver
PROFILES = {
    "smoke": {"n_ess": 1_000, "pymc_draws": 30, "pymc_tune": 30, "draws": 30, "tune": 100, "pymc_cap": 120,
              "ns": [1_000, 5_000], "ps": [10], "graph_n": 1_000, "dq_draws": 200, "horizon": 20,
              "parquet_rows": 20_000, "ord_n": 200, "ord_draws": 30, "ord_pymc_cap": 120, "first_draws": 50,
              "poly_n": 2_000, "poly_draws": 50, "poly_pymc_draws": 10, "poly_pymc_cap": 120,
              "poly_flat_ns": [1_000, 20_000]},
    "quick": {"n_ess": 20_000, "pymc_draws": 50, "pymc_tune": 50, "draws": 500, "tune": 500, "pymc_cap": 600,
              "ns": [1_000, 1_000_000], "ps": [10, 50], "graph_n": 5_000, "dq_draws": 4_000, "horizon": 20,
              "parquet_rows": 2_000_000, "ord_n": 2_000, "ord_draws": 150, "ord_pymc_cap": 300,
              "first_draws": None, "poly_n": 20_000, "poly_draws": 500, "poly_pymc_draws": 25, "poly_pymc_cap": 300,
              "poly_flat_ns": [1_000, 1_000_000]},
    "full": {"n_ess": 20_000, "pymc_draws": 300, "pymc_tune": 300, "draws": 1000, "tune": 1000, "pymc_cap": 3600,
             "ns": [1_000, 10_000, 100_000, 1_000_000], "ps": [10, 30, 60, 100], "graph_n": 5_000,
             "dq_draws": 4_000, "horizon": 20, "parquet_rows": 17_000_000, "ord_n": 20_000, "ord_draws": 300,
             "ord_pymc_cap": 1800, "first_draws": None, "poly_n": 20_000, "poly_draws": 1000,
             "poly_pymc_draws": 100, "poly_pymc_cap": 1800, "poly_flat_ns": [1_000, 1_000_000]},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip: ess,nutpie,scaling,graph,"
                                               "first,first_ordinal,doquery,uncertainty,parquet,ordinal,"
                                               "polychoric,polychoric_baseline")
    ap.add_argument("--stage")
    ap.add_argument("--stage-args")
    args = ap.parse_args(argv)
    if args.stage:
        res = STAGES[args.stage](json.loads(args.stage_args))
        print(json.dumps(res))
        return 0
    prof = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    skip = set(filter(None, args.skip.split(",")))
    t_all = time.perf_counter()
    out: dict = {"profile": "smoke" if args.smoke else "quick" if args.quick else "full",
                 "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def fresh_cache() -> str:
        return tempfile.mkdtemp(prefix="vk_jax_")

    if "ess" not in skip:
        n = prof["n_ess"]
        ours = run_stage("fit", {"n": n, "draws": prof["draws"], "tune": prof["tune"], "repeat": True},
                         cache=fresh_cache())
        log(f"ours numpyro N={n}: {ours}")
        nut = {} if "nutpie" in skip else run_stage(
            "fit", {"n": n, "draws": prof["draws"], "tune": prof["tune"], "sampler": "nutpie"}, cache=fresh_cache())
        log(f"nutpie N={n}: {nut}")
        base = run_stage("pymc", {"n": n, "draws": prof["pymc_draws"], "tune": prof["pymc_tune"]},
                         timeout=prof["pymc_cap"])
        if base.get("timed_out"):
            # counted as its cap, ESS bounded by the number of draws kept: a lower bound on the ratio
            base.update(sampling_s=prof["pymc_cap"], wall_s=prof["pymc_cap"], min_ess_beta=2 * prof["pymc_draws"],
                        ess_per_s=2 * prof["pymc_draws"] / prof["pymc_cap"], capped=True)
        log(f"pymc naive N={n}: {base}")
        out["ess"] = {"ours": ours, "nutpie": nut, "pymc_naive": base}
        if "ess_per_s" in ours and "ess_per_s" in base:
            out["ess_per_s_ratio_vs_pymc"] = ours["ess_per_s"] / base["ess_per_s"]
            out["ess_ratio_is_lower_bound"] = bool(base.get("capped", False))
        if "first_fit_s" in ours and "wall_s" in base:
            # everything on both sides: our first fit in a fresh process with an empty
            # compilation cache (model build, prior draws, compilation, curvature, warm-up,
            # sampling, outputs) vs PyMC's pm.sample wall time (compilation, tuning, sampling)
            ours_wall = ours["first_min_ess_beta"] / ours["first_fit_s"]
            out["ess_per_s_wall_ratio_vs_pymc"] = ours_wall / (base["min_ess_beta"] / base["wall_s"])
            out["ess_per_s_wall"] = {"ours": ours_wall, "pymc_naive": base["min_ess_beta"] / base["wall_s"]}
        if ours.get("grad_ms") and base.get("grad_ms") and ours.get("leapfrog_steps_per_chain"):
            # cost-based estimate: PyMC spending as many gradients as ours per chain (same
            # posterior, same NUTS; ours' warm-up counted at its sampling depth, so PyMC's time is
            # if anything underestimated) on its measured cost per gradient
            t_pymc = ours["leapfrog_steps_per_chain"] * base["grad_ms"] / 1e3
            out["ess_per_s_ratio_vs_pymc_cost_estimate"] = t_pymc / ours["sampling_s"]
            out["grad_ms"] = {"ours": ours["grad_ms"], "pymc_naive": base["grad_ms"]}
        if "ess_per_s" in nut and "ess_per_s" in base:
            out["nutpie_ess_per_s_ratio_vs_pymc"] = nut["ess_per_s"] / base["ess_per_s"]
    if "scaling" not in skip:
        rows = []
        for n in prof["ns"]:
            r = run_stage("fit", {"n": n, "draws": prof["draws"], "tune": prof["tune"]}, cache=fresh_cache())
            log(f"scaling N={n}: {r}")
            rows.append(r)
        out["scaling_n"] = rows
        if all("wall_s" in r and "error" not in r for r in rows):
            out["flat_n_ratio"] = rows[-1]["wall_s"] / rows[0]["wall_s"]
    if "graph" not in skip:
        rows = []
        for p in prof["ps"]:
            r = run_stage("graph", {"p": p, "n": prof["graph_n"], "draws": prof["draws"] // 2,
                                    "tune": prof["tune"] // 2}, cache=fresh_cache())
            log(f"graph p={p}: {r}")
            rows.append(r)
        out["graph_size"] = rows
    if "first" not in skip:
        fd = prof["first_draws"]  # None: vb.fit's defaults, as in the README
        stage = {"draws": fd, "tune": fd}
        routes = {"continuous": "first_result"}
        if "first_ordinal" not in skip:
            # the README's call as it runs: measurement "auto" -> polychoric route, joint
            routes["auto"] = "first_result_ordinal"
        bootstrap = ROOT / "scripts" / "bootstrap.sh"
        installs_warm = bootstrap.is_file() and any(
            re.search(r"veerkracht-bayes\b.*\bwarmup\b", ln) for ln in bootstrap.read_text().splitlines()
            if not ln.lstrip().startswith(("#", "echo", '"')))
        colds = {m: run_stage("first_result", {"t_start": time.time(), "measurement": m, **stage},
                              cache=fresh_cache()) for m in routes}
        # a fresh install: the cache filled by `veerkracht-bayes warmup` (both routes), then new
        # interpreters
        cache = fresh_cache()
        wu = run_stage("warmup", {"draws": [] if fd is None else [fd], "measurement": list(routes)}, cache=cache)
        warms = {m: run_stage("first_result", {"t_start": time.time(), "measurement": m, **stage}, cache=cache)
                 for m in routes}
        for m, name in routes.items():
            cold, warm = colds[m], warms[m]
            log(f"{name} cold: {cold}; after warmup: {warm}")
            out[name] = {"cold": cold, "warmup": wu, "after_warmup": warm}
            if "total_s" in cold:
                out[f"{name}_seconds_empty_cache"] = cold["total_s"]
            if "total_s" in warm:
                out[f"{name}_seconds_after_warmup"] = warm["total_s"]
            if name == "first_result" and "total_s" in warm:
                out["first_result_seconds_warm_cache"] = warm["total_s"]  # the key of earlier runs
            # the README's first command (scripts/bootstrap.sh) fills the cache only if it runs the warmup
            out[f"{name}_cache_warm"] = bool(installs_warm)
            key = f"{name}_seconds_after_warmup" if installs_warm else f"{name}_seconds_empty_cache"
            if key in out:
                out[f"{name}_seconds"] = out[key]
    if "doquery" not in skip:
        r = run_stage("doquery", {"draws": prof["dq_draws"], "horizon": prof["horizon"]})
        log(f"doquery: {r}")
        out["doquery"] = r
        if "doquery_s" in r:
            out["doquery_seconds"] = r["doquery_s"]
    if "uncertainty" not in skip:
        r = run_stage("uncertainty", {"n": 20_000, "draws": prof["draws"], "tune": prof["tune"]})
        log(f"uncertainty: {r}")
        out["uncertainty"] = r
        if "structure_s" in r:
            out["structure_seconds"] = r["structure_s"]
            out["voi_seconds"] = r["voi_s"]
    if "parquet" not in skip:
        from bench_parquet import run_parquet_benchmark

        tmp = Path(tempfile.mkdtemp(prefix="vk_pq_")) / "survey.parquet"
        r = run_parquet_benchmark(prof["parquet_rows"], str(tmp))
        for f in tmp.parent.glob("*"):
            f.unlink()
        log(f"parquet: {r}")
        out["parquet"] = r
    if "ordinal" not in skip:
        from bench_ordinal import run_ordinal_benchmark

        r = run_ordinal_benchmark(prof["ord_n"], prof["ord_draws"], prof["ord_draws"], prof["ord_pymc_cap"],
                                  chain_method="parallel")
        log(f"ordinal (exact path): {r}")
        out["ordinal"] = r
        if "ess_per_s_ratio_ordinal_vs_pymc" in r:
            out["ordinal_exact_ess_per_s_ratio_vs_pymc"] = r["ess_per_s_ratio_ordinal_vs_pymc"]
            out["ordinal_exact_ratio_is_lower_bound"] = r["ordinal_ratio_is_lower_bound"]
    if "polychoric" not in skip:
        from bench_ordinal import run_polychoric_benchmark

        r = run_polychoric_benchmark(prof["poly_n"], prof["poly_draws"], prof["poly_draws"], prof["poly_pymc_cap"],
                                     flat_ns=tuple(prof["poly_flat_ns"]), pymc_draws=prof["poly_pymc_draws"],
                                     pymc_tune=prof["poly_pymc_draws"],
                                     baseline="polychoric_baseline" not in skip)
        log(f"ordinal (polychoric route): {r}")
        out["ordinal_polychoric"] = r
        for k in ("ordinal_ess_per_s_ratio_vs_pymc", "ordinal_ess_per_s_wall_ratio_vs_pymc",
                  "ordinal_ratio_is_lower_bound", "ordinal_flat_n_ratio", "ordinal_flat_n_ratio_warm",
                  "ordinal_flat_n_peak_rss_mb"):
            if k in r:
                out[k] = r[k]
    out["total_s"] = time.perf_counter() - t_all
    out["machine"]["load_avg_end"] = os.getloadavg()[0]
    path = write_markdown(out)
    log(f"wrote {path}")
    if args.json:
        print(json.dumps(out, default=float))
    return 0


def _f(v, fmt="{:.3g}") -> str:
    return "—" if v is None else fmt.format(v) if isinstance(v, (int, float)) else str(v)


def write_markdown(out: dict) -> Path:
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = [f"# Benchmark ({out['profile']}, {stamp})", "",
             f"CPUs {out['machine']['cpus']}, load average {out['machine']['load_avg_start']:.2f} at start, "
             f"{out['machine'].get('load_avg_end', 0):.2f} at end; total {out['total_s']:.0f} s.", "",
             "| metric | value | target (issues 7, 16) |", "|---|---|---|",
             f"| ESS/s ratio vs PyMC default (N = 20k) | {_f(out.get('ess_per_s_ratio_vs_pymc'))}"
             f"{' (lower bound: capped)' if out.get('ess_ratio_is_lower_bound') else ''} | ≥ 100 |",
             f"| ESS/s ratio vs PyMC default, cost-based estimate (gradient ms × our steps) | "
             f"{_f(out.get('ess_per_s_ratio_vs_pymc_cost_estimate'))} | — |",
             f"| gradient ms: ours / PyMC naive | {_f((out.get('grad_ms') or {}).get('ours'))} / "
             f"{_f((out.get('grad_ms') or {}).get('pymc_naive'))} | — |",
             f"| nutpie ESS/s ratio vs PyMC default | {_f(out.get('nutpie_ess_per_s_ratio_vs_pymc'))} | — |",
             f"| ESS/s wall ratio vs PyMC default (compilation, warm-up, sampling, both sides) | "
             f"{_f(out.get('ess_per_s_wall_ratio_vs_pymc'))}"
             f"{' (lower bound: capped)' if out.get('ess_ratio_is_lower_bound') else ''} | ≥ 100 |",
             f"| flat_n_ratio (wall, largest / smallest N) | {_f(out.get('flat_n_ratio'))} | ≤ 1.5 |",
             f"| first_result_seconds (cache {'filled by the install' if out.get('first_result_cache_warm') else 'empty'}) "
             f"| {_f(out.get('first_result_seconds'))} | < 10 |",
             f"| first result, empty compilation cache | {_f(out.get('first_result_seconds_empty_cache'))} | — |",
             f"| first result after `veerkracht-bayes warmup` | "
             f"{_f(out.get('first_result_seconds_after_warmup'))} | — |",
             f"| first_result_ordinal_seconds (README's call, auto -> polychoric; cache "
             f"{'filled by the install' if out.get('first_result_ordinal_cache_warm') else 'empty'}) "
             f"| {_f(out.get('first_result_ordinal_seconds'))} | < 30 cold |",
             f"| ordinal first result, empty compilation cache | "
             f"{_f(out.get('first_result_ordinal_seconds_empty_cache'))} | < 30 |",
             f"| ordinal first result after `veerkracht-bayes warmup` | "
             f"{_f(out.get('first_result_ordinal_seconds_after_warmup'))} | — |",
             f"| doquery_seconds | {_f(out.get('doquery_seconds'))} | < 1 |",
             f"| structure_seconds | {_f(out.get('structure_seconds'))} | < 300 |",
             f"| voi_seconds | {_f(out.get('voi_seconds'))} | < 600 |",
             f"| ordinal ESS/s ratio vs PyMC default (polychoric route vs exact model, n = 20k) | "
             f"{_f(out.get('ordinal_ess_per_s_ratio_vs_pymc'))}"
             f"{' (lower bound: capped)' if out.get('ordinal_ratio_is_lower_bound') else ''} | ≥ 100 |",
             f"| the same, wall (stage 1, compilation, warm-up, sampling) | "
             f"{_f(out.get('ordinal_ess_per_s_wall_ratio_vs_pymc'))}"
             f"{' (lower bound: capped)' if out.get('ordinal_ratio_is_lower_bound') else ''} | — |",
             f"| ordinal_flat_n_ratio (polychoric route, 1M / 1k, stage 1 included) | "
             f"{_f(out.get('ordinal_flat_n_ratio'))} (peak {_f(out.get('ordinal_flat_n_peak_rss_mb'))} MB) | ≤ 1.5 |",
             f"| exact ordinal path ESS/s ratio vs PyMC default (n = 2k) | "
             f"{_f(out.get('ordinal_exact_ess_per_s_ratio_vs_pymc'))} | ≥ 3 |",
             ""]
    if "ess" in out:
        lines += ["## ESS per second (MARVEL, N = 20k)", "", "| sampler | wall s | sampling s | min bulk ESS β | ESS/s |",
                  "|---|---|---|---|---|"]
        for k, r in out["ess"].items():
            lines.append(f"| {k} | {_f(r.get('wall_s'))} | {_f(r.get('sampling_s'))} | {_f(r.get('min_ess_beta'))} "
                         f"| {_f(r.get('ess_per_s'))} |")
        lines.append("")
    if "scaling_n" in out:
        lines += ["## Scaling in N (our path, cold compile each)", "", "| N | stats s | fit s | wall s | ESS/s | peak MB |",
                  "|---|---|---|---|---|---|"]
        for r in out["scaling_n"]:
            lines.append(f"| {_f(r.get('n'), '{:,}')} | {_f(r.get('stats_s'))} | {_f(r.get('fit_s'))} | "
                         f"{_f(r.get('wall_s'))} | {_f(r.get('ess_per_s'))} | {_f(r.get('peak_rss_mb'))} |")
        lines.append("")
    if "graph_size" in out:
        lines += ["## Graph size", "", "| nodes | edges | wall s | ESS/s | peak MB |", "|---|---|---|---|---|"]
        for r in out["graph_size"]:
            lines.append(f"| {_f(r.get('p'))} | {_f(r.get('edges'))} | {_f(r.get('wall_s'))} | "
                         f"{_f(r.get('ess_per_s'))} | {_f(r.get('peak_rss_mb'))} |")
        lines.append("")
    for key in ("first_result", "first_result_ordinal", "doquery", "parquet", "ordinal", "ordinal_polychoric"):
        if key in out:
            lines += [f"## {key}", "", "```", json.dumps(out[key], indent=1, default=float), "```", ""]
    path = res / f"benchmark-{out['profile']}-{stamp}.md"
    path.write_text("\n".join(lines))
    (res / f"latest-{out['profile']}.md").write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
