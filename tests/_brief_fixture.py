"""A RunResult-like object built from real module outputs (prior-only MARVEL fit).

The effects table has the current columns (``p_meaningful``, ``reachable``, ranks, evidence
shares) and the result carries the ``sensitivity`` frame of
:func:`veerkracht_bayes.causal.sensitivity.assumption_sensitivity`; the diagnostics stand-in has a
``verdict`` and example identification / cut-routing findings.

Shared by tests/report/test_brief.py, tests/report/test_figures.py and tests/report/test_display.py until
``pipeline.RunResult`` exists. Everything comes from the package's own functions; only the
``Diagnostics`` stand-in is assembled here (prior vs posterior moments of the fit), because the
diagnostics module is written elsewhere. Sizes are small (200 prior draws) to keep tests fast.
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SEED = 11
N_DRAWS = 200
#: Subgroup sizes: ``youth`` and ``pupils_and_parents`` (P02's target group) are below the
#: minimum cell size and must be suppressed.
SUBGROUPS = {"single_parent": (0.06, 400), "low_income": (0.15, 900),
             "migration_background": (0.2, 1100), "mental_health_problems": (0.12, 700),
             "welfare_recipient": (0.05, 260), "youth": (0.004, 23),
             "pupils_and_parents": (0.004, 23), "refugee": (0.03, 300),
             "bottom_labour_market": (0.12, 800)}
MIN_CELL = 50


def _diagnostics(fit, graph):
    prior = fit.idata["prior"].to_dataset()["beta"]
    post = fit.idata["posterior"].to_dataset()["beta"]
    pm_, ps_ = prior.mean(("chain", "draw")).values, prior.std(("chain", "draw")).values
    qm, qs = post.mean(("chain", "draw")).values, post.std(("chain", "draw")).values
    contraction = 1 - qs**2 / ps_**2
    keys = [str(k) for k in post["edge"].values]
    cls = np.where(contraction > 0.5, "data-informed", "prior-dominated")
    table = pd.DataFrame({"prior_mean": pm_, "prior_sd": ps_, "posterior_mean": qm,
                          "posterior_sd": qs, "contraction": contraction,
                          "classification": cls}, index=pd.Index(keys, name="edge"))
    summary = {"passed": True, "verdict": "passed", "r_hat_max": None, "ess_bulk_min": None,
               "divergences": 0, "p_stable": 1.0, "rho_max": 0.6, "ppp": None,
               "missing_data_method": None}
    # identification / cut-routing findings: example sentences in the form the diagnostics give
    ident = ["single_parent_household -> stress: cut (prior only): its target has no items.",
             "meeting_places -> social_network: cut (prior only): a policy lever is unmeasured."]
    cut = ["social_network -> stress: 25% of its implied association runs through unmeasured "
           "nodes (above 10%)."]
    ns = SimpleNamespace(passed=True, verdict="passed", problems=[], notes=[],
                         edge_class=dict(zip(keys, cls)), edge_table=table,
                         identification_findings=ident, cut_routing_findings=cut)
    ns.to_dict = lambda: dict(summary)
    ns.to_markdown = lambda: ("| check | value |\n|---|---|\n| divergences | 0 |\n"
                              "| edges data-informed | %d of %d |\n" % ((cls == "data-informed").sum(),
                                                                    len(cls)))
    return ns


#: Columns of the effects table the brief codes against (one row per policy x outcome x scope).
EFFECT_COLUMNS = ("policy", "outcome", "subgroup", "scope", "direction", "reachable", "mean",
                  "median", "lower", "upper", "ci_prob", "p_meaningful", "p_positive", "mrc",
                  "p_best", "rank_mean", "rank_lower", "rank_upper", "p_stable", "n_draws",
                  "n_used", "share_assumption", "share_literature", "share_data", "evidence",
                  "suppressed", "reason")


def _with_decision_columns(effects, do):
    """The effects table with the current columns.

    ``summarise_effects`` produces them; only while an older summary is installed are they
    constructed here (p_meaningful = p_improve; ranks from the draws; on prior-only draws no
    share rests on data: the old prior share split between assumption and literature).
    """
    if "p_meaningful" in effects.columns:
        return effects
    eff = effects.copy()
    eff["p_meaningful"] = eff["p_improve"]
    eff["reachable"] = ~((eff["mean"] == 0) & (eff["lower"] == 0) & (eff["upper"] == 0))
    eff["rank_mean"] = eff["rank_lower"] = eff["rank_upper"] = np.nan
    for (o, scope), idx in eff.groupby(["outcome", "scope"]).groups.items():
        names = [p for p in eff.loc[idx, "policy"] if p in do.names]
        ok = [do.index(p) for p in names if do.suppressed[do.index(p)] is None]
        d = int(eff.loc[idx, "direction"].iloc[0])
        x = d * do.outcome_effect(o, scope)[ok]
        good = np.isfinite(x).all(axis=0)
        ranks = (-x[:, good]).argsort(axis=0).argsort(axis=0) + 1.0
        for j, i in enumerate(ok):
            row = idx[list(eff.loc[idx, "policy"]).index(do.names[i])]
            eff.loc[row, ["rank_mean", "rank_lower", "rank_upper"]] = [
                ranks[j].mean(), np.quantile(ranks[j], 0.05), np.quantile(ranks[j], 0.95)]
    rest = eff["prior_share"].fillna(1.0).clip(0, 1)
    eff["share_assumption"] = 0.6 * rest + (1 - rest)
    eff["share_literature"] = 0.4 * rest
    eff["share_data"] = 0.0
    eff["evidence"] = np.where(eff["reachable"], np.where(
        eff["share_assumption"] >= eff["share_literature"], "assumption", "literature"), "no path")
    return eff[list(EFFECT_COLUMNS)]


def _sensitivity(draws, ivs, outcomes, graph, do, sg, effects):
    """``assumption_sensitivity`` when it exists; else leader / runner-up from ``effects``."""
    try:
        from veerkracht_bayes.causal.sensitivity import assumption_sensitivity
    except ImportError:
        assumption_sensitivity = None
    if assumption_sensitivity is not None:
        return assumption_sensitivity(draws, ivs, outcomes, graph=graph, base=do, subgroups=sg,
                                      min_cell_size=MIN_CELL, seed=SEED)
    rows = []
    for (o, scope), g in effects[~effects.suppressed & effects.reachable].groupby(
            ["outcome", "scope"]):
        g = g.assign(_k=-g["p_meaningful"], _m=-g["direction"] * g["mean"]).sort_values(
            ["_k", "_m"])
        if len(g) < 2:
            continue
        rows.append({"outcome": o, "scope": scope, "leader": g["policy"].iloc[0],
                     "runner_up": g["policy"].iloc[1], "p_order_holds": 0.7,
                     "p_order_holds_doses_x2": 0.6, "p_order_holds_default_lever_priors": 0.4,
                     "order_holds_doses_x2": True, "order_holds_default_lever_priors": False,
                     "break_even_coverage": 0.45})
    return pd.DataFrame(rows)


@functools.lru_cache(maxsize=1)
def build_run_result():
    """Prior-only MARVEL run (built once per process; do not mutate): fit, do-queries for the ten policies, summaries, loops, dynamics."""
    from veerkracht_bayes.inference import sampling
    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.causal.do import SubgroupInfo, do_query
    from veerkracht_bayes.causal.dynamics import simulate_trajectories
    from veerkracht_bayes.causal.summaries import pairwise_beats, summarise_effects
    from veerkracht_bayes.causal.loops import loop_amplification, loop_gain_summary
    from veerkracht_bayes.causal.policies import load_policies
    from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path
    from veerkracht_bayes.inference.provenance import collect_provenance
    from veerkracht_bayes.causal.draws import StructuralDraws

    graph = load_graph("marvel")
    priors = load_priors(marvel_priors_path(), graph)
    fit = sampling.fit(graph, None, priors, prior_only=True, prior_draws=N_DRAWS, random_seed=SEED,
                       progressbar=False)
    diag = _diagnostics(fit, graph)
    draws = StructuralDraws.from_posterior(fit.idata, graph, edge_class=diag.edge_class)
    pols = load_policies()
    ivs = pols.to_interventions()
    sg = {k: SubgroupInfo(p, n=n) for k, (p, n) in SUBGROUPS.items()}
    outcomes = ["wellbeing", "stress", "mental_problems"]
    do = do_query(draws, ivs, outcomes, subgroups=sg, min_cell_size=MIN_CELL, seed=SEED)
    effects = _with_decision_columns(summarise_effects(do), do)
    sensitivity = _sensitivity(draws, ivs, outcomes, graph, do, sg, effects)
    pop = effects[effects.scope == "population"]
    p_best = pop.pivot(index="policy", columns="outcome", values="p_best")
    pairwise = {o: pairwise_beats(do, o) for o in outcomes}
    tr = simulate_trajectories(draws, ivs, outcomes, horizon=15, subgroups=sg,
                               min_cell_size=MIN_CELL, seed=SEED)
    rows = []
    for k, o in enumerate(tr.outcomes):
        for i, name in enumerate(tr.names):
            x = tr.effect[i, :, :, k]
            for t_i, t in enumerate(tr.times):
                col = x[:, t_i]
                col = col[np.isfinite(col)]
                rows.append({"policy": name, "outcome": o.name, "t": float(t),
                             "mean": col.mean() if col.size else np.nan,
                             "lower": np.quantile(col, 0.05) if col.size else np.nan,
                             "upper": np.quantile(col, 0.95) if col.size else np.nan})
    traj = pd.DataFrame(rows)
    gains = loop_gain_summary(draws, graph)
    amp = loop_amplification(draws, graph, ivs[:2], ["wellbeing"], subgroups=sg, seed=SEED)
    sizes = pd.DataFrame([{"subgroup": k, "n": n, "prevalence": p, "suppressed": n < MIN_CELL}
                          for k, (p, n) in SUBGROUPS.items()])
    prov = collect_provenance(seed=SEED, files={"priors": marvel_priors_path()},
                              settings={"prior_draws": N_DRAWS})
    return SimpleNamespace(
        config=None, config_path=None, graph=graph, priors=priors, survey_report=None, fit=fit,
        diagnostics=diag, policies=pols, do_result=do, effects=effects, pairwise=pairwise,
        p_best=p_best, trajectories=traj, loop_gains=gains, loop_amplification=amp,
        subgroup_sizes=sizes, provenance=prov, forced=False, prior_only=True,
        sensitivity=sensitivity,
        warnings=["example warning: 3 draws unstable under P05"])
