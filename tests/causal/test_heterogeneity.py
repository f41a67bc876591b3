"""Per-group do-queries and the heterogeneity table on fixed structural draws (closed forms)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.heterogeneity import (
    HETEROGENEITY_COLUMNS,
    group_do_queries,
    heterogeneity_table,
)
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan

UP = Intervention(name="up", parts=[Shift(node="a", delta=1.0)])


def _setup(S=400, seed=0):
    g = graph_from_lavaan("b ~ a\nc ~ b")  # a -> b -> c: effect of a on c = beta_ab * beta_bc
    rng = np.random.default_rng(seed)
    keys = list(g.edge_keys)
    pop = rng.normal([0.4, 0.3], 0.05, (S, 2))
    dev = {"strong": np.array([0.2, 0.0]), "weak": np.array([-0.2, 0.0]), "same": np.zeros(2)}
    z = np.zeros((S, len(g.nodes)))
    groups = {k: StructuralDraws.from_arrays(g, pop + d + rng.normal(0, 0.02, (S, 2)), z) for k, d in dev.items()}
    return g, keys, pop, StructuralDraws.from_arrays(g, pop, z), groups


def test_effects_differences_and_probabilities():
    _g, keys, pop, popd, groups = _setup()
    res = group_do_queries(popd, groups, [UP], ["c"], seed=3)
    tab = heterogeneity_table(res).set_index("group")
    assert list(heterogeneity_table(res).columns) == list(HETEROGENEITY_COLUMNS)
    ia, ib = keys.index("a->b"), keys.index("b->c")
    exact_pop = pop[:, ia] * pop[:, ib]
    assert tab.loc["population", "mean"] == pytest.approx(exact_pop.mean())
    strong = groups["strong"].beta()
    assert tab.loc["strong", "mean"] == pytest.approx((strong[:, ia] * strong[:, ib]).mean())
    assert tab.loc["strong", "difference_mean"] == pytest.approx(
        (strong[:, ia] * strong[:, ib] - exact_pop).mean())
    assert tab.loc["strong", "p_larger_than_population"] > 0.99
    assert tab.loc["weak", "p_larger_than_population"] < 0.01
    assert 0.05 < tab.loc["same", "p_larger_than_population"] < 0.95
    assert tab.loc["strong", "rank_mean"] == pytest.approx(1.0)
    assert tab.loc["weak", "rank_mean"] == pytest.approx(3.0)
    assert np.isnan(tab.loc["population", "p_larger_than_population"])


def test_lower_is_better_direction_flips_probability():
    _, _, _, popd, groups = _setup()
    res = group_do_queries(popd, groups, [UP], ["c"])
    tab = heterogeneity_table(res, directions={"c": -1}).set_index("group")
    assert tab.loc["strong", "p_larger_than_population"] < 0.01
    assert tab.loc["weak", "rank_mean"] == pytest.approx(1.0)


def test_refuses_targeted_and_mismatched():
    _g, _, _pop, popd, groups = _setup(S=10)
    with pytest.raises(InterventionError, match="targets subgroup"):
        group_do_queries(popd, groups, [UP.model_copy(update={"subgroup": "x"})], ["c"])
    short = {"x": popd.subset(slice(0, 5))}
    with pytest.raises(InterventionError, match="do not match"):
        group_do_queries(popd, short, [UP], ["c"])
    with pytest.raises(InterventionError, match="population result"):
        heterogeneity_table({"x": group_do_queries(popd, {}, [UP], ["c"])[None]})
