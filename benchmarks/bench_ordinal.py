"""Ordinal (Likert) path benchmark: our ``fit_ordinal`` (numpyro) vs PyMC's default NUTS.

Same posterior (``build_ordinal_model``: explicit latent scores, ordered-probit items, cyclic
structural part with its Jacobian), same data (simulated from known parameters: the 3-node
cycle a -> b -> c -> a with a covariate x -> a, 3 five-category items per construct, 5% missing),
same priors. Each sampler runs in its own fresh interpreter with OMP/OpenBLAS/MKL threads set
to 1:

* ``pymc`` (the baseline of the ratio): ``pm.sample(nuts_sampler="pymc", chains=2, cores=2)``
  on the model as written straightforwardly (``coordinates="noncentred"``: non-centred latent
  scores, reference item terms), started at two stability-truncated prior draws, killed at
  ``cap_s`` seconds; a capped run counts as its cap with ESS bounded by its number of draws
  (2 x draws), so the ratio is then a lower bound;
* ``ours``: ``fit_ordinal`` with its defaults (guided latent coordinates, data-based starts,
  curvature scales, :func:`veerkracht_bayes.inference.jax_nuts.sample_nuts`), numpyro;
* ``pymc_guided`` (reported, not in the ratio): PyMC's default sampler on our guided model,
  from the same prior-draw starts as ``pymc``, to show how much of the gain is the coordinates
  (which any sampler can use) and how much the JAX driver.

ESS/s = min bulk ESS over ``beta`` / sampling seconds. PyMC's ``sampling_time`` excludes its
compilation; ours *includes* the XLA compilation (and the curvature scale), so our ESS/s is
conservative. Wall times include everything in the subprocess.

Usage: ``run_ordinal_benchmark(n, draws, tune, cap_s)`` (called by ``benchmarks/run.py``), or
``.venv/bin/python benchmarks/bench_ordinal.py --n 20000 --draws 200 --tune 200 --cap 600``.

Issue 16, the polychoric two-stage route (``--polychoric``, :func:`run_polychoric_benchmark`):
``polychoric`` stage = stage 1 (``survey.polychoric.polychoric`` on the codes and the covariate,
full asymptotic covariance) + ``fit_polychoric`` in a fresh process with an empty compilation
cache, then a refit with the compiled program (its sampling time is the one compared with PyMC's
``sampling_time``); the baseline is the ``pymc`` stage above (the exact per-respondent model), and
the route is also run at n = 1,000 and 1,000,000 for ``ordinal_flat_n_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
TRUE_BETA = (0.4, 0.5, 0.45, -0.3)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = "1"
    env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def make_graph():  # noqa: ANN201 - CausalGraph
    """The benchmark's 3-node cycle with one covariate."""
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

    nodes = list(dict.fromkeys([s for s, _, _ in EDGES] + [t for _, t, _ in EDGES]))
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "ordinal-bench",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "benchmark"} for s, t, sg in EDGES],
    })
    return CausalGraph(spec)


def simulate(n: int, seed: int = 1):  # noqa: ANN201 - OrdinalData
    """Ordinal data from the exact model at ``TRUE_BETA`` (standardised latents, theta probit)."""
    import numpy as np

    from veerkracht_bayes.sem.ordinal import OrdinalData

    rng = np.random.default_rng(seed)
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = TRUE_BETA[1], TRUE_BETA[2], TRUE_BETA[3]
    G = np.array([[TRUE_BETA[0]], [0.0], [0.0]])
    A = np.linalg.inv(np.eye(3) - B)
    psi = np.linalg.solve(A * A, 1.0 - ((A @ G) ** 2).sum(1))
    x = rng.normal(size=(n, 1))
    eta = (x @ G.T + rng.normal(size=(n, 3)) * np.sqrt(psi)) @ A.T
    lam = np.array([1.2, 0.9, 0.7] * 3)
    c_idx = np.repeat(np.arange(3), 3)
    tau = np.tile(np.array([-1.2, -0.4, 0.3, 1.1]), (9, 1)) + rng.normal(0, 0.2, size=(9, 1))
    ystar = eta[:, c_idx] * lam + rng.normal(size=(n, 9))
    codes = (ystar[:, :, None] > tau[None]).sum(-1)
    codes[rng.random(codes.shape) < 0.05] = -1
    return OrdinalData(item_names=tuple(f"{c}{i}" for c in "abc" for i in range(3)),
                       item_construct=tuple(np.repeat(list("abc"), 3)), n_categories=np.full(9, 5),
                       codes=codes, x_names=("x",), x=x - x.mean(0), weights=np.ones(n))


def _min_ess_beta(post) -> float:  # noqa: ANN001
    import numpy as np

    try:
        from arviz_stats import ess
    except ImportError:  # a GPU image without arviz_stats' xarray layer: numpyro's (not rank-normalised)
        from numpyro.diagnostics import effective_sample_size

        return float(np.nanmin(effective_sample_size(np.asarray(post["beta"].values))))
    e = ess(post[["beta"]], method="bulk")
    return float(np.nanmin(e["beta"].values))


def _sampling_time(idata, fallback: float) -> float:  # noqa: ANN001
    for grp in ("posterior", "sample_stats"):
        try:
            t = idata[grp].attrs.get("sampling_time")
        except (KeyError, AttributeError):
            t = None
        if t:
            return float(t)
    return fallback


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ``ru_maxrss`` carries over from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage_polychoric(n: int, draws: int, tune: int, repeat: bool) -> dict:
    """The polychoric two-stage route on the benchmark data (runs inside the subprocess).

    Timed from the respondents' codes: stage 1 (thresholds, polychoric / polyserial
    correlations and their full asymptotic covariance, ``survey.polychoric.polychoric``), the
    arrangement for stage 2, and ``fit_polychoric`` (model build, prior draws, compilation with
    the process's compilation cache, curvature scale, warm-up and sampling). With ``repeat`` a
    second fit of the same stage-2 data (another seed) reuses the compiled program: its sampling
    time is comparable with PyMC's recorded ``sampling_time``.
    """
    import numpy as np

    from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
    from veerkracht_bayes.inference.sampling import SamplerSettings
    from veerkracht_bayes.sem.polychoric_likelihood import polychoric_data
    from veerkracht_bayes.survey.polychoric import polychoric

    t_imp = time.perf_counter()
    od = simulate(n, 1)
    g = make_graph()
    t_sim = time.perf_counter()
    codes = np.where(od.codes < 0, np.nan, od.codes.astype(float))
    table = np.column_stack([codes, od.x[:, 0]])
    names = list(od.item_names) + ["x_obs"]
    del od
    t0 = time.perf_counter()
    stats = polychoric(table, ["ordinal"] * (len(names) - 1) + ["continuous"], names=names, acov="full")
    pdata = polychoric_data(stats, {v: v[0] for v in names[:-1]}, covariates={"x": "x_obs"})
    t1 = time.perf_counter()
    rss_stage1 = _peak_rss_mb()
    del table, codes

    def one(seed: int) -> tuple[object, float]:
        ta = time.perf_counter()
        res = fit_polychoric(g, pdata, settings=SamplerSettings(chains=2, draws=draws, tune=tune, progressbar=False,
                                                                prior_draws=200, random_seed=seed))
        return res, time.perf_counter() - ta

    res, t_fit = one(2023)
    post = res.idata["posterior"].to_dataset()
    ess = _min_ess_beta(post)
    ts = float(res.idata.attrs["sampling_seconds"])
    out = {"sampler": "numpyro-polychoric", "n": n, "draws": draws, "tune": tune,
           "simulate_s": t_sim - t_imp, "stage1_s": t1 - t0, "fit_s": t_fit,
           "wall_s": (t1 - t0) + t_fit,  # stage 1 + stage 2, compilation included
           "first_call_sampling_with_compile_s": ts, "first_min_ess_beta": ess,
           "sampling_s": ts, "min_ess_beta": ess, "ess_per_s": ess / ts,
           "ess_per_s_wall": ess / ((t1 - t0) + t_fit),
           "divergences": int(res.idata["sample_stats"]["diverging"].sum()),
           "stage1_peak_rss_mb": rss_stage1}
    if repeat:
        res2, t_fit2 = one(2024)
        ts2 = float(res2.idata.attrs["sampling_seconds"])
        ess2 = _min_ess_beta(res2.idata["posterior"].to_dataset())
        out.update(sampling_s=ts2, min_ess_beta=ess2, ess_per_s=ess2 / ts2, refit_wall_s=t_fit2,
                   divergences_refit=int(res2.idata["sample_stats"]["diverging"].sum()))
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _stage(which: str, n: int, draws: int, tune: int, chain_method: str, repeat: bool = False) -> dict:
    """One sampler on the benchmark model (runs inside the subprocess)."""
    from veerkracht_bayes.inference.sampling import SamplerSettings

    if which == "polychoric":
        return _stage_polychoric(n, draws, tune, repeat)
    data = simulate(n, 1)
    g = make_graph()
    t0 = time.perf_counter()
    if which == "ours":
        from veerkracht_bayes.inference.ordinal_fit import fit_ordinal

        res = fit_ordinal(g, data, settings=SamplerSettings(chains=2, draws=draws, tune=tune, progressbar=False,
                                                            prior_draws=200, random_seed=2023),
                          chain_method=chain_method)
        idata = res.idata
        post = idata["posterior"].to_dataset()
    else:
        import numpy as np
        import pymc as pm

        from veerkracht_bayes.inference.ordinal_fit import ordinal_prior_draws
        from veerkracht_bayes.inference.sampling import edge_starts
        from veerkracht_bayes.sem.ordinal import build_ordinal_model

        model, layout = build_ordinal_model(g, data, coordinates="guided" if which == "pymc_guided" else "noncentred")
        prior = ordinal_prior_draws(layout, g, 200, 2023, data.x_cov)
        picks = np.random.default_rng(2023).choice(prior.sizes["draw"], size=2, replace=False)
        # the grouped edge variables at two prior draws, the latent coordinates at 0 (as fit_ordinal)
        initvals = edge_starts(model, layout, prior, picks)
        lat = "u" if "u" in model.named_vars else "z"
        for d in initvals:
            d[lat] = np.zeros(tuple(int(s) for s in model[lat].shape.eval()))
        t0 = time.perf_counter()
        with model:
            idata = pm.sample(draws=draws, tune=tune, chains=2, cores=2, nuts_sampler="pymc", init="adapt_diag",
                              initvals=initvals, random_seed=2023, progressbar=False, target_accept=0.9,
                              compute_convergence_checks=False, var_names=["beta"])
        post = idata["posterior"]
        post = post.to_dataset() if hasattr(post, "to_dataset") else post
    wall = time.perf_counter() - t0
    ts = _sampling_time(idata, wall)
    ess = _min_ess_beta(post)
    div = int(idata["sample_stats"]["diverging"].sum())
    return {"sampler": "numpyro-" + chain_method if which == "ours" else which, "n": n, "draws": draws,
            "tune": tune, "wall_s": wall, "sampling_s": ts, "min_ess_beta": ess, "ess_per_s": ess / ts,
            "divergences": div, "peak_rss_mb": _peak_rss_mb()}


def _run_sub(which: str, n: int, draws: int, tune: int, cap_s: float | None, chain_method: str, *,
             repeat: bool = False, cache: str | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--stage", which, "--n", str(n), "--draws", str(draws),
           "--tune", str(tune), "--chain-method", chain_method] + (["--repeat"] if repeat else [])
    env = _env()
    if cache:  # a fresh directory: the persistent compilation cache starts empty (cold compile)
        env["VEERKRACHT_JAX_CACHE"] = cache
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)  # own group: a capped run ends with its workers
    try:
        out, err = proc.communicate(timeout=cap_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"timed_out": True, "process_wall_s": time.perf_counter() - t0, "cap_s": cap_s}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (err or out)[-3000:], "process_wall_s": time.perf_counter() - t0}
    res = json.loads(lines[-1])
    res["process_wall_s"] = time.perf_counter() - t0
    return res


def run_ordinal_benchmark(n: int, draws: int, tune: int, cap_s: float, *,
                          pymc_draws: int | None = None, pymc_tune: int | None = None,
                          chain_method: str = "vectorized", pymc_guided: bool = True) -> dict:
    """Ordinal path: our numpyro fit vs PyMC's default sampler on the same model and data.

    Parameters
    ----------
    n
        Respondents (simulated from the model at known parameters).
    draws, tune
        Per chain (2 chains) for both samplers unless ``pymc_draws``/``pymc_tune`` are given.
    cap_s
        Wall-clock cap of the PyMC subprocess; a capped run counts as ``cap_s`` seconds with
        ESS bounded by ``2 * draws`` (ratio then a lower bound).
    chain_method
        numpyro chain method of our run (``"vectorized"``: one device, GPU-ready).
    pymc_guided
        Also run PyMC's default sampler on the guided model (same cap; reported only).

    Returns
    -------
    dict
        ``ours``, ``pymc`` (and ``pymc_guided``) records (``wall_s``, ``sampling_s``, ``min_ess_beta``,
        ``ess_per_s``, ...), ``ess_per_s_ratio_ordinal_vs_pymc`` and
        ``ordinal_ratio_is_lower_bound``.
    """
    pd_, pt_ = pymc_draws or draws, pymc_tune or tune
    ours = _run_sub("ours", n, draws, tune, None, chain_method)
    base = _run_sub("pymc", n, pd_, pt_, cap_s, chain_method)
    if base.get("timed_out"):
        base.update(sampler="pymc", n=n, draws=pd_, tune=pt_, sampling_s=float(cap_s), wall_s=float(cap_s),
                    min_ess_beta=float(2 * pd_), ess_per_s=2 * pd_ / float(cap_s), capped=True)
    out: dict = {"n": n, "ours": ours, "pymc": base}
    if pymc_guided:
        pg = _run_sub("pymc_guided", n, pd_, pt_, cap_s, chain_method)
        if pg.get("timed_out"):
            pg.update(sampler="pymc_guided", n=n, capped=True)
        out["pymc_guided"] = pg
    if "ess_per_s" in ours and "ess_per_s" in base:
        out["ess_per_s_ratio_ordinal_vs_pymc"] = ours["ess_per_s"] / base["ess_per_s"]
        out["ordinal_ratio_is_lower_bound"] = bool(base.get("capped", False))
    return out


def run_polychoric_benchmark(n: int, draws: int, tune: int, cap_s: float, *, flat_ns: tuple[int, int] = (1_000, 1_000_000),
                             pymc_draws: int | None = None, pymc_tune: int | None = None,
                             cache_dir: str | None = None, baseline: bool = True) -> dict:
    """The polychoric two-stage route vs PyMC's default NUTS on the exact ordinal model, and its cost in n.

    Parameters
    ----------
    n
        Respondents of the ESS comparison (issue 16: 20,000).
    draws, tune
        Per chain (2 chains) for our route; PyMC's unless ``pymc_draws``/``pymc_tune`` are given.
    cap_s
        Wall-clock cap of the PyMC subprocess (the exact per-respondent ordered-probit model,
        ``coordinates="noncentred"``, as in :func:`run_ordinal_benchmark`); a capped run counts as
        ``cap_s`` seconds with ESS bounded by ``2 * pymc_draws``: the ratio is then a lower bound.
    flat_ns
        The two sizes of ``ordinal_flat_n_ratio`` (each fitted in a fresh process with an empty
        compilation cache, stage 1 included).
    cache_dir
        Parent directory for the empty per-run compilation caches (default: the system's temp).
    baseline
        ``False`` runs only the two sizes of ``ordinal_flat_n_ratio`` (no fit at ``n``, no PyMC
        run): the ratio alone, in minutes, when a quiet machine is short.

    Returns
    -------
    dict
        ``ours`` (n, with a refit: ``sampling_s`` of the refit, ``wall_s`` of the first fit incl.
        stage 1 and compilation), ``pymc``, ``flat`` (the two sizes) and the keys
        ``ordinal_ess_per_s_ratio_vs_pymc``, ``ordinal_ess_per_s_wall_ratio_vs_pymc``,
        ``ordinal_ratio_is_lower_bound``, ``ordinal_flat_n_ratio``,
        ``ordinal_flat_n_ratio_warm`` (compiled program reused: stage 1 + refit) and
        ``ordinal_flat_n_peak_rss_mb``.
    """
    import tempfile

    pd_, pt_ = pymc_draws or draws, pymc_tune or tune
    ours: dict = {}
    base: dict = {}
    if baseline:
        ours = _run_sub("polychoric", n, draws, tune, None, "parallel", repeat=True,
                        cache=tempfile.mkdtemp(prefix="vk_jax_", dir=cache_dir))
        base = _run_sub("pymc", n, pd_, pt_, cap_s, "parallel")
    if base.get("timed_out"):
        base.update(sampler="pymc", n=n, draws=pd_, tune=pt_, sampling_s=float(cap_s), wall_s=float(cap_s),
                    min_ess_beta=float(2 * pd_), ess_per_s=2 * pd_ / float(cap_s), capped=True)
    flat = [_run_sub("polychoric", k, draws, tune, None, "parallel", repeat=True,
                     cache=tempfile.mkdtemp(prefix="vk_jax_", dir=cache_dir)) for k in flat_ns]
    out: dict = {"n": n, "ours": ours, "pymc": base, "flat": flat}
    if "ess_per_s" in ours and "ess_per_s" in base:
        out["ordinal_ess_per_s_ratio_vs_pymc"] = ours["ess_per_s"] / base["ess_per_s"]
        # everything on both sides: our stage 1 + compilation + warm-up + sampling of a first
        # fit, PyMC's pm.sample wall time (compilation, tuning, sampling)
        out["ordinal_ess_per_s_wall_ratio_vs_pymc"] = ours["ess_per_s_wall"] / (base["min_ess_beta"] / base["wall_s"])
        out["ordinal_ratio_is_lower_bound"] = bool(base.get("capped", False))
    if all("wall_s" in r for r in flat):
        out["ordinal_flat_n_ratio"] = flat[1]["wall_s"] / flat[0]["wall_s"]
        if all("refit_wall_s" in r for r in flat):
            out["ordinal_flat_n_ratio_warm"] = ((flat[1]["stage1_s"] + flat[1]["refit_wall_s"])
                                                / (flat[0]["stage1_s"] + flat[0]["refit_wall_s"]))
        out["ordinal_flat_n_peak_rss_mb"] = flat[1].get("peak_rss_mb")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=["ours", "pymc", "pymc_guided", "polychoric"])
    ap.add_argument("--repeat", action="store_true", help="polychoric stage: refit with the compiled program")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--tune", type=int, default=200)
    ap.add_argument("--cap", type=float, default=600.0)
    ap.add_argument("--chain-method", default="vectorized")
    ap.add_argument("--no-pymc-guided", action="store_true",
                    help="skip the reported-only PyMC run on the guided model")
    ap.add_argument("--polychoric", action="store_true",
                    help="the polychoric route vs PyMC on the exact model (issue 16) instead of the exact path")
    a = ap.parse_args(argv)
    if a.stage:
        sys.path.insert(0, str(ROOT / "src"))
        print(json.dumps(_stage(a.stage, a.n, a.draws, a.tune, a.chain_method, a.repeat)))
        return 0
    if a.polychoric:
        print(json.dumps(run_polychoric_benchmark(a.n, a.draws, a.tune, a.cap)))
        return 0
    print(json.dumps(run_ordinal_benchmark(a.n, a.draws, a.tune, a.cap, chain_method=a.chain_method,
                                           pymc_guided=not a.no_pymc_guided)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
