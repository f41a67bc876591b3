"""Recovery of group-specific links by the multi-group model, and per-group do-queries.

Data: :func:`veerkracht_bayes.datasets.heterogeneous.simulate_groups` on a 5-construct cyclic graph
(two feedback loops, three covariates, 3 items per construct); the link a->b differs between groups
(delta = -0.2 / +0.2), every other link is equal. Criteria (issue 20):

* group deviations' 90 % intervals cover the truth for >= 80 % of the group x link cells;
* equal links are pooled: the population link's posterior mean lies inside every group's 90 %
  interval of that link;
* the per-group do-query (shift a by 1 SD, effect on b) is larger in the group with the stronger
  link: p_larger_than_population > 0.8 there and < 0.2 in the other group.

Fast (default suite): one seed, 2 groups x 600, 2 chains x (250 + 250). Slow: three seeds, 3 groups.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.heterogeneity import group_do_queries, heterogeneity_table
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.datasets.heterogeneous import simulate_groups
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.inference.multigroup_fit import fit_multigroup
from veerkracht_bayes.sem.multigroup import prepare_group_data

os.environ.setdefault("OMP_NUM_THREADS", "1")

TRUTH = {"x1->a": 0.4, "x2->c": 0.4, "x3->d": 0.4, "x1->f": 0.3,
         "a->b": 0.4, "b->c": 0.3, "c->a": -0.3, "c->d": 0.35, "d->b": -0.25, "d->f": 0.5}
COVS = ["x1", "x2", "x3"]
LATENT = ["a", "b", "c", "d", "f"]
HET = "a->b"


def make_graph() -> CausalGraph:
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "multigroup",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in COVS else "construct"} for n in COVS + LATENT],
        "edges": [{"source": k.split("->")[0], "target": k.split("->")[1], "sign": "+" if v > 0 else "-",
                   "evidence": "t"} for k, v in TRUTH.items()]}))


class WidePriors:
    """Sign-constrained Normal(sign * 0.3, 0.4) population links (weakly informative)."""

    def __init__(self, graph: CausalGraph) -> None:
        self.sign = {e.key: (1.0 if e.sign == "+" else -1.0) for e in graph.edges}

    def for_edge(self, key: str):
        from types import SimpleNamespace

        return SimpleNamespace(distribution="truncated_normal", mean=0.3 * self.sign[key], sd=0.4, nu=None)


def run(seed: int, n_per_group: dict[str, int], deviations: dict, draws: int = 250):
    g = make_graph()
    sim = simulate_groups(g, TRUTH, n_per_group, deviations=deviations,
                          intercepts={list(n_per_group)[-1]: {"a": 0.3}}, seed=seed)
    gd = prepare_group_data(sim.items, sim.item_names, sim.item_construct, sim.groups, covariates=sim.covariates,
                            covariate_names=sim.covariate_names)
    res = fit_multigroup(g, gd, WidePriors(g), draws=draws, tune=draws, chains=2, random_seed=seed,
                         progressbar=False)
    return g, sim, res


def check(g, sim, res):
    tab = res.deviation_table(prob=0.9)
    tab["truth"] = [sim.delta[r.group][r.link] for r in tab.itertuples()]
    cover = (tab.delta_lower <= tab.truth) & (tab.truth <= tab.delta_upper)
    # pooling: equal links' group intervals hold the population link
    pop = res.posterior["beta"]
    eq = tab[tab.link != HET]
    pop_mean = np.array([float(pop.sel(edge=k).mean()) for k in eq.link])
    pooled = (eq.beta_group_lower.values <= pop_mean) & (pop_mean <= eq.beta_group_upper.values)
    return tab, cover, pooled


def per_group_query(g, res):
    pa = res.population_arrays()
    popd = StructuralDraws.from_arrays(g, pa["beta"], pa["alpha"], pa["psi"])
    groups = {lab: StructuralDraws.from_arrays(g, **res.group_arrays(lab)) for lab in res.layout.labels}
    out = group_do_queries(popd, groups, [Intervention(name="a_up", parts=[Shift(node="a", delta=1.0)])], ["b"])
    return heterogeneity_table(out)


@pytest.fixture(scope="module")
def fast():
    return run(7, {"low": 600, "high": 600}, {"low": {HET: -0.2}, "high": {HET: 0.2}})


# measured: about 70 s on the shared 2-core machine (compilation included)
def test_recovery_and_pooling_fast(fast):
    g, sim, res = fast
    tab, cover, pooled = check(g, sim, res)
    assert cover.mean() >= 0.8, tab[~cover]
    assert pooled.all(), tab[tab.link != HET][~pooled]
    div = int(res.idata["sample_stats"]["diverging"].values.sum())
    assert div <= 0.01 * 500
    # the heterogeneous link's deviations have the right signs, with posterior mass
    het = tab[tab.link == HET].set_index("group")
    assert het.loc["high", "delta_mean"] > 0.05 and het.loc["low", "delta_mean"] < -0.05
    # its tau is larger than the equal links' (pooling is adaptive)
    tau = res.posterior["tau"]
    assert float(tau.sel(pooled_edge=HET).mean()) > float(tau.drop_sel(pooled_edge=HET).mean(("chain", "draw")).max())


def test_group_do_query_fast(fast):
    g, _, res = fast
    tab = per_group_query(g, res).set_index("group")
    assert tab.loc["high", "p_larger_than_population"] > 0.8
    assert tab.loc["low", "p_larger_than_population"] < 0.2
    assert tab.loc["high", "mean"] > tab.loc["population", "mean"] > tab.loc["low", "mean"]
    assert tab.loc["high", "rank_mean"] < tab.loc["low", "rank_mean"]
    # within-group effect = group's total effect of a on b, draw by draw
    ga = res.group_arrays("high")
    d = StructuralDraws.from_arrays(g, **ga)
    i_b, i_a = d.node_index["b"], d.node_index["a"]
    tot = np.linalg.inv(np.eye(len(d.nodes))[None] - d.B)[:, i_b, i_a]
    assert tab.loc["high", "mean"] == pytest.approx(tot.mean(), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_recovery_three_groups_slow(seed):
    g, sim, res = run(seed, {"g1": 800, "g2": 600, "g3": 400},
                      {"g1": {HET: -0.2}, "g2": {HET: 0.05}, "g3": {HET: 0.2, "d->f": 0.15}}, draws=500)
    tab, cover, pooled = check(g, sim, res)
    assert cover.mean() >= 0.8, tab[~cover]
    other = tab[tab.link != HET]
    equal = np.array([sim.delta[r.group][r.link] == 0 for r in other.itertuples()])
    assert pooled[equal].mean() >= 0.95
