"""do-query throughput benchmark (issue 7): 10 policies x 7 subgroups x S draws on MARVEL.

Same workload as ``benchmarks/run.py``'s ``stage_doquery`` (70 targeted ``Shift`` interventions,
2 outcomes, equilibrium plus a ``horizon``-step trajectory), timed per part: first call (JIT
compilation included), then the best of ``--repeat`` warm calls. With ``--old DIR`` it also
imports a previous implementation (``old_do_queries.py`` / ``old_dynamics.py`` in DIR), times it at
``--old-draws`` draws and checks that both give the same numbers there.

Usage::

    .venv/bin/python benchmarks/bench_doquery.py --draws 4000 --horizon 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def workload(S: int, seed: int = 0):
    """Draws, interventions, subgroups and outcomes of the benchmark (as in run.py)."""
    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.causal.do import SubgroupInfo
    from veerkracht_bayes.causal.interventions import Intervention, Shift
    from veerkracht_bayes.causal.draws import StructuralDraws

    g = load_graph("marvel")
    rng = np.random.default_rng(seed)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    beta = sign * 0.2 + rng.normal(0, 0.03, size=(S, len(g.edges)))
    d = StructuralDraws.from_arrays(g, beta, np.zeros((S, len(g.nodes))))
    subs = {f"s{k}": SubgroupInfo(prevalence=0.05 + 0.03 * k, n=500) for k in range(7)}
    targets = [n for n in g.nodes if g.children(n)][:10]
    ivs = [Intervention(name=f"p{i}_{s}", parts=[Shift(node=t, delta=0.2)], subgroup=s)
           for i, t in enumerate(targets) for s in subs]
    return d, ivs, subs, ["wellbeing", "stress"]


def time_impl(do_query, simulate, S: int, horizon: int, repeat: int) -> dict:
    d, ivs, subs, outs = workload(S)
    t0 = time.perf_counter()
    do_query(d, ivs, outcomes=outs, subgroups=subs)
    t1 = time.perf_counter()
    simulate(d, ivs, outcomes=outs, subgroups=subs, horizon=horizon)
    t2 = time.perf_counter()
    eq, tr, cpu = [], [], []
    for _ in range(repeat):
        p0 = time.process_time()
        a = time.perf_counter()
        r = do_query(d, ivs, outcomes=outs, subgroups=subs)
        b = time.perf_counter()
        t = simulate(d, ivs, outcomes=outs, subgroups=subs, horizon=horizon)
        c = time.perf_counter()
        cpu.append(time.process_time() - p0)
        eq.append(b - a)
        tr.append(c - b)
    return {"cpu_s_per_warm_call": min(cpu), "draws": S, "n_interventions": len(ivs), "first_equilibrium_s": t1 - t0,
            "first_trajectory_s": t2 - t1, "first_call_with_compile_s": t2 - t0,
            "equilibrium_s": min(eq), "trajectory_s": min(tr), "doquery_s": min(eq) + min(tr),
            "_result": (r, t)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--old", help="directory with old_do_queries.py / old_dynamics.py")
    ap.add_argument("--old-draws", type=int, default=300)
    args = ap.parse_args(argv)

    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.dynamics import simulate_trajectories

    out = {}
    new = time_impl(do_query, simulate_trajectories, args.draws, args.horizon, args.repeat)
    new.pop("_result")
    out["new"] = new
    if args.old:
        sys.path.insert(0, args.old)
        import old_do_queries  # type: ignore[import-not-found]
        import old_dynamics  # type: ignore[import-not-found]

        S = args.old_draws
        old = time_impl(old_do_queries.do_query, old_dynamics.simulate_trajectories, S, args.horizon, 1)
        ro, to = old.pop("_result")
        small = time_impl(do_query, simulate_trajectories, S, args.horizon, args.repeat)
        rn, tn = small.pop("_result")
        out["old_small"], out["new_small"] = old, small
        out["max_abs_diff"] = {
            "effect": float(np.nanmax(np.abs(ro.effect - rn.effect))),
            "effect_data_only": float(np.nanmax(np.abs(ro.effect_data_only - rn.effect_data_only))),
            "rho": float(np.max(np.abs(ro.rho - rn.rho))),
            "cond_rel": float(np.max(np.abs(ro.cond / rn.cond - 1))),
            "trajectory": float(np.nanmax(np.abs(to.effect - tn.effect))),
            "flags_equal": bool((ro.solvable == rn.solvable).all() and (ro.stable == rn.stable).all()),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
