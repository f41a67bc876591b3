# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Policy effects and the policy brief
#
# The report closes with ten recommendations. The package ships them as **do-queries**
# (`veerkracht_bayes/data/policies.yaml`): each policy moves one or more *levers* (nodes of
# the diagram) by an uncertain dose, for everyone or for a targeted subgroup. For every
# posterior draw the query solves the intervened cyclic system for its new equilibrium:
#
# `eta' = (I - B_do)^-1 c_do`,  effect = `eta' − eta_baseline`,
#
# so effects include every feedback loop, and are in **SD units of the outcome** (0.1 = a
# tenth of a population standard deviation). Summaries report the posterior mean, a central
# 90% interval, the probability that the policy helps, `P(best)` among the ten, and whether
# the effect rests on data or on priors.
#
# This notebook makes **one** reproducible run of the pipeline on the shipped synthetic
# survey (`veerkracht-bayes demo`: validate → fit → diagnose → query → brief), and then redoes
# its steps by hand from the run's posterior, so that every number of the brief can be audited:
# the ten policies, the do-queries, the effect summaries, `P(best)` and the pairwise matrix,
# time to effect, subgroup targeting and loop amplification. It ends with the brief itself.

# %%
# %matplotlib inline
import os
import tempfile
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

FAST = os.environ.get("VEERKRACHT_FAST", "0") == "1"
FAST_DRAWS = int(os.environ.get("VEERKRACHT_FAST_DRAWS", "150"))  # tests shorten it further
SEED = 2023
warnings.filterwarnings("ignore", message="The effect of Potentials")
warnings.filterwarnings("ignore", message="Numba will use object mode")
warnings.filterwarnings("ignore", message="IProgress not found")

from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

from veerkracht_bayes.workflow import pipeline
from veerkracht_bayes.resources import package_data_path
from veerkracht_bayes.report import EffectsTable, effects_html, run_result_html
from veerkracht_bayes.causal import SubgroupInfo, do_query
from veerkracht_bayes.causal import simulate_trajectories
from veerkracht_bayes.causal import p_best, pairwise_beats, summarise_effects
from veerkracht_bayes.report import forest_plot, subgroup_panel, trajectory_plot
from veerkracht_bayes.causal import Intervention
from veerkracht_bayes.causal import loop_amplification, loop_gain_summary
from veerkracht_bayes.workflow import load_config
from veerkracht_bayes.causal import StructuralDraws

pd.set_option("display.max_colwidth", 60)
OUT = Path(tempfile.gettempdir()) / "veerkracht_notebook_04"
print(f"fast mode: {FAST}; outputs go to {OUT}")

# %% [markdown]
# ## 1. One run of the pipeline
#
# The demo config (`demo.toml`) names the graph, the literature priors, the synthetic survey
# and its codebook, the policies, six outcomes, the sampler settings and the seed. Every input
# is validated before any sampling. In fast mode we shorten the chains further
# (150 tuning + 150 draws per chain, 300 prior draws) and pass `force=True`: such short chains
# fail the ESS thresholds, and a forced brief says so in a banner on page one. Without fast
# mode the demo's own settings are used, and a brief is written only if the diagnostics pass.

# %%
cfg = load_config(package_data_path("demo.toml"))
if FAST:
    cfg = cfg.model_copy(deep=True).with_base(cfg.base_dir, cfg.path)
    cfg.sampler.tune = cfg.sampler.draws = FAST_DRAWS
    cfg.sampler.prior_draws = max(2 * FAST_DRAWS, 50)
    cfg.model.group_draws = cfg.model.group_tune = FAST_DRAWS  # the "for whom" multi-group fit
    if cfg.neighbourhoods is not None:  # the two-level neighbourhood fit
        cfg.neighbourhoods.draws = cfg.neighbourhoods.tune = FAST_DRAWS
    cfg.diagnostics.ess_min = cfg.diagnostics.ess_min * FAST_DRAWS / 300
    cfg.diagnostics.ppp_draws = 50
print(cfg.sampler)

run = pipeline.run(cfg, out_dir=OUT, overwrite=True, force=FAST, progress=False)
print("diagnostics passed:", run.diagnostics_passed, "| brief written:", run.brief_written)
print(sorted(p.name for p in OUT.iterdir()))

# %%
HTML(run_result_html(run))

# %% [markdown]
# ## 2. The ten policies
#
# Each lever has a dose distribution (a shift in SD units of the lever's node), taken from
# the report's description and the literature where possible; these doses are assumptions and
# the brief lists them. Subgroup-targeted policies act only on their group.

# %%
graph, policies = run.graph, run.policies
interventions = policies.to_interventions()
pd.DataFrame([{"policy": p.id, "advice": p.advice, "title": p.title_en,
               "subgroup": p.subgroup or "all",
               "levers (dose in SD)": "; ".join(
                   f"{part.node}: {getattr(part.delta, 'mean', part.delta)}"
                   + (f" ± {part.delta.sd}" if hasattr(part.delta, "sd") else "")
                   for part in iv.parts)}
              for p, iv in zip(policies.policies, interventions)])

# %% [markdown]
# ## 3. do-queries from the posterior, by hand
#
# `StructuralDraws` turns the posterior into dense arrays: `B[s, k, j]` (edge `j -> k`),
# intercepts `alpha[s, k]` and disturbance variances `psi[s, k]`, one entry per draw; the
# diagnostics' link classes travel along, so each effect can be split into the part carried by
# data-informed links and the rest. Subgroup prevalences come from the weighted survey; cells
# below the codebook's minimum size are suppressed (no numbers shown).

# %%
draws = StructuralDraws.from_posterior(run.fit.idata, graph,
                                       edge_class=run.diagnostics.edge_class)
survey_sizes = run.subgroup_sizes.set_index("subgroup")
subgroups = {g: SubgroupInfo(prevalence=float(r.prevalence), n=int(r.n))
             for g, r in survey_sizes.iterrows()}
outcomes = [o.name for o in run.do_result.outcomes]
q = run.config.query
result = do_query(draws, interventions, outcomes, subgroups=subgroups,
                  min_cell_size=run.do_result.meta["min_cell_size"], seed=q.dose_seed)
print(f"{result.effect.shape[0]} policies x {result.effect.shape[1]} draws x "
      f"{result.effect.shape[2]} nodes; P(stable) per policy: {np.round(result.p_stable(), 3)}")
survey_sizes

# %% [markdown]
# ## 4. Effect summaries
#
# `scope="within"` is the effect for the people the policy reaches; `scope="population"` is
# the average over the whole population (within-effect × the group's share). The columns:
# `p_meaningful` = P(the effect goes the desirable way by more than the minimal relevant change
# `mrc`: "probability it helps"), `p_positive` = P(the right direction at all),
# `share_assumption` / `share_literature` / `share_data` = what the effect rests on (elasticity
# decomposition), `evidence` = the class it rests on ("data" only with a data share above 0.5;
# "no path" when the policy cannot reach the outcome), `rank_lower`..`rank_upper` = 90% interval
# of the policy's rank. The same seed gives the same numbers as the pipeline.

# %%
effects = summarise_effects(result, outcomes, ci_prob=q.ci_prob,
                            min_relevant_change=q.min_relevant_change,
                            edge_evidence=run.edge_evidence)
cols = ["policy", "outcome", "subgroup", "scope", "mean"]
same = np.allclose(effects[["mean", "lower", "upper"]].to_numpy(dtype=float),
                   run.effects[["mean", "lower", "upper"]].to_numpy(dtype=float), equal_nan=True)
print("identical to the pipeline's effects.csv:", same)
assert same
EffectsTable(effects).filter(outcome="wellbeing")

# %%
titles = {p.id: p.title_en for p in policies.policies}
forest_plot(effects, "wellbeing", titles=titles)

# %%
forest_plot(effects, "stress", titles=titles)

# %% [markdown]
# ## 5. Which policy is best? P(best) and the pairwise matrix
#
# `P(best)` is the share of posterior draws in which a policy has the most desirable
# population effect on an outcome. The pairwise matrix gives P(row beats column): a cleaner
# view when two policies are close.

# %%
pd.DataFrame({o: p_best(result, o, scope="population") for o in outcomes}).round(3)

# %%
pairwise = pairwise_beats(result, "wellbeing", scope="population")
pairwise.round(2)

# %% [markdown]
# ## 6. Time to effect
#
# The equilibrium is where the system ends up; how fast it gets there depends on the delay
# class of each link (short / medium / long; e.g. the intergenerational loop is slow). Each
# link adjusts towards its source at a rate per year set by its delay class, and the
# trajectory converges to the equilibrium effect.

# %%
traj = simulate_trajectories(draws, interventions, outcomes, horizon=q.horizon,
                             subgroups=subgroups, min_cell_size=run.do_result.meta["min_cell_size"],
                             seed=q.dose_seed)
traj_table = pipeline.trajectory_table(traj, q.ci_prob)
trajectory_plot(traj_table, ["wellbeing", "stress"], titles=titles)

# %% [markdown]
# ## 7. For whom? Subgroup targeting
#
# The subgroup panel compares within-group effects. A second question a ministry asks is
# whether *targeting* pays: the same levers and doses given to everyone reach more people,
# so their population effect is larger, but per person reached the targeted version may be
# as good. We rerun P01 and P03 untargeted and compare.

# %%
subgroup_panel(effects, ["wellbeing", "stress"], titles=titles)

# %%
compare = []
for pid in ("P01", "P03"):
    iv = next(i for i in interventions if i.name == pid)
    compare += [iv, Intervention(name=f"{pid} (everyone)", parts=iv.parts, subgroup=None)]
targeting = do_query(draws, compare, ["wellbeing"], subgroups=subgroups,
                     min_cell_size=run.do_result.meta["min_cell_size"], seed=q.dose_seed)
summarise_effects(targeting, ["wellbeing"], ci_prob=q.ci_prob)[
    ["policy", "subgroup", "scope", "mean", "lower", "upper", "p_meaningful"]].round(3)

# %% [markdown]
# ## 8. Feedback loops: gains and amplification
#
# Posterior loop gains (product of the coefficients around each named loop), and for each
# policy the part of its effect carried by each loop: the effect minus the effect in a system
# where that loop is cut. A large `loop_share` means the policy works largely *through* the
# loop — the report's point that breaking a vicious circle can pay twice.

# %%
loop_gain_summary(draws, graph, ci_prob=q.ci_prob).round(4)

# %%
amp = loop_amplification(draws, graph, interventions, ["wellbeing"], ci_prob=q.ci_prob,
                         subgroups=subgroups, seed=q.dose_seed)
amp.pivot(index="policy", columns="loop", values="loop_share").round(3)

# %% [markdown]
# ## 9. The brief
#
# The run folder holds the effects table (`effects.csv` / `.parquet`, with a `policy` column),
# the posterior (`posterior.nc`, never respondent-level data), figures, `provenance.json`
# (versions, seed, input hashes) and the brief in HTML and Markdown. Page one is plain
# language in English and Dutch; then the ranking tables, forest plots, subgroup panel, the
# posterior diagram (data-informed vs prior-dominated links), loop gains, diagnostics, what
# rests on assumptions, methods, bibliography and provenance.

# %%
display(HTML(effects_html(run.effects[(run.effects.outcome == "wellbeing")
                                      & (run.effects.scope == "population")])))

# %%
brief_md = OUT / "brief.md"
if brief_md.exists():
    text = brief_md.read_text(encoding="utf-8")
    display(Markdown(text[: text.find("\n## ", 200) if text.find("\n## ", 200) > 0 else 4000]))
    print(f"\nfull brief: {OUT / 'brief.html'} ({len(text.splitlines())} lines of Markdown)")
else:
    print("No brief: the diagnostics failed (see diagnostics.json); rerun with force=True to "
          "write one that says so on page one.")

# %%
prov = pd.read_json(OUT / "provenance.json", typ="series")
prov[["seed", "dose_seed", "config_sha256"]] if {"seed", "dose_seed"} <= set(prov.index) else prov.head()
