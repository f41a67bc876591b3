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
# # 02 · Priors and prior predictive checks
#
# Every link `j -> k` of the diagram gets a prior on its **standardised path coefficient**
# `B[k, j]`: the change in `k`, in standard deviations (SD) of `k`, when `j` moves by one SD
# of `j`, all other causes of `k` held fixed. Because every latent construct is standardised
# to variance 1 in the population, these coefficients are correlation-sized and comparable
# with literature betas and correlations.
#
# * 28 links have **literature priors** (`priors/marvel.yaml`): an effect size as published
#   (r, Cohen's d, odds ratio, beta), converted to the r scale by the documented converters,
#   shrunk for cross-sectional designs and widened for heterogeneity between studies;
# * the other links get the **sign-constrained default** (`|beta| ~ N(0.15, 0.15)`
#   truncated to the link's sign): the diagram says which way the link goes, not how strong.
#
# Before any data, we ask what these priors imply for the things we care about:
# the gains of the feedback loops, the **stability** of the system (spectral radius of `B`
# below 1) and the **effects of the report's policies**. This is a prior predictive check:
# if the priors alone implied absurd policy effects, the priors would need rethinking —
# before they are mixed with data.

# %%
# %matplotlib inline
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

FAST = os.environ.get("VEERKRACHT_FAST", "0") == "1"
SEED = 2023
PRIOR_DRAWS = 300 if FAST else 2000

import warnings

# The prior draws apply the stability barrier by rejection, so PyMC's warning that
# potentials are ignored by forward sampling does not apply here.
warnings.filterwarnings("ignore", message="The effect of Potentials")
warnings.filterwarnings("ignore", message="Numba will use object mode")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import HTML

from veerkracht_bayes.priors import effect_sizes as es
from veerkracht_bayes.priors import references_html
from veerkracht_bayes.graph import load_graph
from veerkracht_bayes.report import EffectsTable, fit_summary_html
from veerkracht_bayes.causal import SubgroupInfo, do_query
from veerkracht_bayes.causal import p_best, summarise_effects
from veerkracht_bayes.report import forest_plot
from veerkracht_bayes.causal import loop_gain_summary, loop_gains
from veerkracht_bayes.causal import load_policies
from veerkracht_bayes.priors import default_priors, load_priors
from veerkracht_bayes.inference import SamplerSettings, fit
from veerkracht_bayes.causal import StructuralDraws

pd.set_option("display.max_colwidth", 80)
print(f"fast mode: {FAST}; prior draws: {PRIOR_DRAWS}")

# %% [markdown]
# ## 1. The prior table, with citations
#
# `load_priors("marvel")` reads the shipped priors and checks them against the graph (every
# key an edge, signs consistent, recorded conversions recomputed). `to_frame()` gives one row
# per link: the distribution, its implied mean, sd and 90% interval after truncation, the
# effect size as read, its metric and the BibTeX keys.

# %%
graph = load_graph("marvel")
priors = load_priors("marvel", graph)
table = priors.to_frame()
print(table.source.value_counts().to_dict(), "| confidence:", table.confidence.value_counts().to_dict())
cols = ["edge", "sign", "prior", "prior_mean", "q05", "q95", "metric", "value", "confidence",
        "citations"]
table.loc[table.source == "literature", cols].round(3)

# %% [markdown]
# The links without a literature source all share the default prior. The report warns that
# most of its evidence is correlational: keeping the default weak makes the data (notebook 03)
# — or its absence — visible in the results (prior-dominated vs data-informed links).

# %%
table.loc[table.source == "default", ["edge", "sign", "prior", "q05", "q95", "rationale"]].head(8)

# %% [markdown]
# The references actually used by these priors, formatted from `priors/references.bib`:

# %%
HTML(references_html(priors))

# %% [markdown]
# ## 2. From a published number to a prior: the converters
#
# The functions of `veerkracht_bayes.priors.effect_sizes` are the documented route from a published
# effect size to the r scale (the shipped priors record each call and the file is checked on
# load). A few examples:

# %%
examples = pd.DataFrame([
    ("Cohen's d = 0.5, equal groups  -> r", es.d_to_r(0.5)),
    ("odds ratio 2.0 (p = 0.5)        -> r", es.or_to_r(2.0)),
    ("odds ratio 2.0                  -> d", es.or_to_d(2.0)),
    ("log-odds slope 0.4 per SD       -> latent beta", es.logodds_to_latent_beta(0.4)),
    ("cross-sectional r = 0.30        -> direct-effect r (shrunk)", es.shrink_cross_sectional(0.30)),
    ("95% CI [0.10, 0.30]             -> sd", es.ci_to_sd(0.10, 0.30)),
    ("se 0.03, I2 = 90% over k = 20   -> prior sd (widened)",
     es.widen_for_heterogeneity(0.03, i2=0.90, k=20)),
], columns=["conversion", "result"])
examples.round(3)

# %% [markdown]
# Each literature prior records its conversion chain; recomputing it reproduces the number
# the prior is centred on (the loader refuses a file where they disagree).

# %%
rows = []
for key, e in priors.edges.items():
    if e.source == "literature" and e.conversion:
        rows.append({"edge": key, "metric": e.metric, "value as read": e.value,
                     "steps": " → ".join(s.function for s in e.conversion),
                     "converted r": e.converted, "prior mean": e.mean, "prior sd": e.sd,
                     "detail": e.value_detail})
pd.DataFrame(rows).head(10)

# %% [markdown]
# ## 3. Prior-only "fit"
#
# `sampling.fit(graph, None, priors)` builds the same PyMC model as with data but without a
# likelihood, and draws forward from the priors. The **stability barrier** of the model (the
# Perron root of `|B|` must stay below 0.99) and positive disturbance variances (every latent
# standardised to variance 1) are applied by rejection, so these draws are exactly the prior
# the posterior starts from. The result has the same shape as a posterior, so every later
# stage (do-queries, loop analysis, the brief) runs on it unchanged.

# %%
prior_fit = fit(graph, None, priors, prior_only=True,
                settings=SamplerSettings(prior_draws=PRIOR_DRAWS, random_seed=SEED,
                                         progressbar=False))
HTML(fit_summary_html(prior_fit, max_edges=15))

# %%
draws = StructuralDraws.from_posterior(prior_fit.idata, graph)
print(f"{draws.n_draws} draws; B has shape {draws.B.shape} (draw, target k, source j)")
# convention check: B[s, k, j] is the coefficient of the edge j -> k
k, j = draws.node_index["wellbeing"], draws.node_index["stress"]
assert (draws.B[:, k, j] < 0).all()  # stress -> wellbeing is a negative link in every draw

# %% [markdown]
# ## 4. Prior distribution of the loop gains
#
# The gain of a loop is the product of its coefficients. With correlation-sized links of
# about 0.1–0.3, a loop of three links has a gain of order 0.001–0.03: each trip around the
# loop returns a few per cent of a disturbance. All six named loops are reinforcing by their
# signs, so `P(reinforcing) = 1` under sign-constrained priors; the data can only change how
# strong they are.

# %%
gains = loop_gain_summary(draws, graph)
gains

# %%
g = loop_gains(draws, graph)
fig, ax = plt.subplots(figsize=(7, 3.5))
for loop_id, values in g.items():
    ax.hist(np.log10(np.abs(values) + 1e-12), bins=40, histtype="step", label=loop_id)
ax.set_xlabel("log10 |loop gain| (prior)")
ax.set_ylabel("draws")
ax.legend(ncol=3)
ax.set_title("Prior distribution of the named loops' gains")
plt.show()

# %% [markdown]
# ## 5. Prior distribution of the spectral radius
#
# The equilibrium `eta = (I - B)^-1 (alpha + ...)` exists and a disturbance dies out when the
# spectral radius `rho(B)` — the largest absolute eigenvalue of `B` — is below 1. The model
# bounds the Perron root of `|B|` (an upper bound of `rho(B)`), so every kept prior draw is
# stable; the plot shows how much room the priors leave.

# %%
rho = draws.spectral_radius()
print(f"P(rho < 1) = {np.mean(rho < 1):.3f}; median rho = {np.median(rho):.3f}; "
      f"90% interval [{np.quantile(rho, 0.05):.3f}, {np.quantile(rho, 0.95):.3f}]")
assert np.all(rho < 1.0)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(rho, bins=40, color="#4575b4")
ax.axvline(1.0, color="k", ls="--", lw=1)
ax.set_xlabel("spectral radius of B (prior draws)")
ax.set_ylabel("draws")
plt.show()

# %% [markdown]
# ## 6. What the priors alone say about the policies
#
# The report's ten recommendations are shipped as do-queries (`policies.yaml`): each policy
# shifts one or more nodes by an uncertain dose (in SD units of the node), possibly for a
# subgroup only. `do_query` computes, per prior draw, the new equilibrium of the intervened
# system minus the baseline — the effect in **SD units of the outcome**.
#
# Subgroup-targeted policies need the subgroup's share of the population; that comes from the
# survey (notebooks 03–04). Here there is no survey, so we report effects **within** the
# targeted group (prevalence set to 1 as a placeholder; population-wide effects would be these
# times the group's share).

# %%
policies = load_policies(graph=graph)
interventions = policies.to_interventions()
targeted = sorted({iv.subgroup for iv in interventions if iv.subgroup})
placeholder = {name: SubgroupInfo(prevalence=1.0) for name in targeted}
pd.DataFrame([{"policy": p.id, "title": p.title_en, "subgroup": p.subgroup or "all",
               "levers": ", ".join(part.node for part in iv.parts)}
              for p, iv in zip(policies.policies, interventions)])

# %%
OUTCOMES = ["wellbeing", "stress"]
prior_result = do_query(draws, interventions, OUTCOMES, subgroups=placeholder, seed=SEED)
prior_effects = summarise_effects(prior_result, OUTCOMES, scopes=("within",))
EffectsTable(prior_effects)

# %%
titles = {p.id: p.title_en for p in policies.policies}
forest_plot(prior_effects, "wellbeing", titles=titles)

# %% [markdown]
# How to read this: the prior predictive effects are small (a few hundredths of an SD for
# most policies) and uncertain, and their order comes from the doses in `policies.yaml` and
# the number of links between a lever and the outcome, not from data. `P(best)` below is the
# share of prior draws in which a policy has the largest effect — under the priors alone.

# %%
p_best(prior_result, "wellbeing", scope="within").sort_values(ascending=False).round(3)

# %% [markdown]
# ## 7. How much do the literature priors matter?
#
# The same prior predictive check with the sign-constrained default on **every** link shows
# what the literature adds: its priors are tighter and, for the core links (stress, wellbeing,
# livelihood security), stronger.

# %%
flat_fit = fit(graph, None, default_priors(graph), prior_only=True,
               settings=SamplerSettings(prior_draws=PRIOR_DRAWS, random_seed=SEED,
                                        progressbar=False))
flat_draws = StructuralDraws.from_posterior(flat_fit.idata, graph)
flat_result = do_query(flat_draws, interventions, OUTCOMES, subgroups=placeholder, seed=SEED)
both = pd.DataFrame({
    "literature priors": summarise_effects(prior_result, ["wellbeing"], scopes=("within",))
    .set_index("policy")["mean"],
    "default priors only": summarise_effects(flat_result, ["wellbeing"], scopes=("within",))
    .set_index("policy")["mean"],
})
both.round(4)
