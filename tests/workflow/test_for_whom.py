"""workflow/for_whom.py without MCMC: the heterogeneity table's population reference, suppression and
P(larger), and the observed threshold share, on hand-made group draws of a small cyclic graph.

The statistical validation of the multi-group model and of threshold shares is in
tests/inference/test_multigroup_fit.py and tests/causal/test_thresholds.py; the run with data is in
tests/workflow/test_for_whom_run.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.thresholds import ThresholdSpec
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
from veerkracht_bayes.workflow.for_whom import (HETEROGENEITY_COLUMNS, GroupingFit, group_effects,
                                                heterogeneity_rows, observed_scale)

S = 400


def _draws(g, beta_mean: float, seed: int) -> StructuralDraws:
    rng = np.random.default_rng(seed)
    beta = np.column_stack([rng.normal(beta_mean, 0.05, S), rng.normal(0.3, 0.05, S), rng.normal(-0.2, 0.05, S)])
    return StructuralDraws.from_arrays(g, beta, np.zeros((S, len(g.nodes))))


@pytest.fixture(scope="module")
def setup():
    g = graph_from_lavaan("b ~ a\nc ~ b\na ~ c")  # a cycle a -> b -> c -> a
    gf = GroupingFit("single_parent", labels=("not single_parent", "single_parent"), counts=(900, 100),
                     share=(0.8, 0.2), fit=object(),
                     draws={"not single_parent": _draws(g, 0.3, 1), "single_parent": _draws(g, 0.6, 2)})
    # a targeted intervention: its targeting is dropped inside the groups (the group is the target)
    iv = Intervention(name="a_up", parts=[Shift(node="a", delta=1.0)], subgroup="single_parent")
    res = group_effects([gf], [iv], ["b", "c"], seed=0)
    return g, gf, res


def test_population_is_share_weighted_and_p_larger(setup) -> None:
    g, gf, res = setup
    tab = heterogeneity_rows([gf], res, ["b", "c"], min_cell_size=50, ci_prob=0.9, mrc=0.05)
    assert list(tab.columns) == list(HETEROGENEITY_COLUMNS)
    b = tab[tab.outcome == "b"].set_index("group")
    # per draw: population = 0.8 x effect(not) + 0.2 x effect(single_parent), so the means too
    e_not = res["single_parent"]["not single_parent"].outcome_effect("b")[0]
    e_sp = res["single_parent"]["single_parent"].outcome_effect("b")[0]
    assert b.loc["population", "mean"] == pytest.approx(float(np.mean(0.8 * e_not + 0.2 * e_sp)), rel=1e-12)
    assert b.loc["single_parent", "population_mean"] == pytest.approx(b.loc["population", "mean"], rel=1e-12)
    # the stronger link a->b in single parents: effect on b larger there (beta 0.6 vs 0.3, SD 0.05)
    assert b.loc["single_parent", "p_larger_than_population"] > 0.99
    assert b.loc["not single_parent", "p_larger_than_population"] < 0.01
    assert b.loc["single_parent", "difference_mean"] == pytest.approx(
        float(np.mean(e_sp - (0.8 * e_not + 0.2 * e_sp))), rel=1e-9)
    assert b.loc["single_parent", "n_group"] == 100 and b.loc["population", "n_group"] == 1000


def test_small_groups_suppressed(setup) -> None:
    g, gf, res = setup
    tab = heterogeneity_rows([gf], res, ["b"], min_cell_size=150)
    sp = tab[tab.group == "single_parent"].iloc[0]
    assert sp["suppressed"] and "minimum cell size" in sp["reason"]
    assert sp[["mean", "lower", "upper", "p_larger_than_population", "difference_mean"]].isna().all()
    # the population reference still uses every group (it is not a cell of its own)
    assert np.isfinite(tab[tab.group == "population"]["mean"].iloc[0])
    unfitted = GroupingFit("youth", reason="not fitted: too small")
    t2 = heterogeneity_rows([unfitted], {}, ["b"], min_cell_size=50)
    assert t2["suppressed"].all() and t2["reason"].str.contains("too small").all()


def test_observed_scale_is_the_weighted_share() -> None:
    y = np.array([[1.0, 2.0], [3.0, 3.0], [np.nan, 1.0], [2.0, 2.0]])
    w = np.array([1.0, 3.0, 1.0, 2.0])
    survey = SimpleNamespace(item_matrix=lambda reverse=True: (y.copy(), ["q1", "q2"]), weights=w)
    spec = ThresholdSpec(name="low", outcome="x", items=["q1", "q2"], weights=[2.0, 1.0], offset=-1.0,
                         cutoff=5.0, direction="below")
    share, sd, n = observed_scale(spec, survey)
    score = np.array([-1 + 2 + 2, -1 + 6 + 3, -1 + 4 + 2])  # rows with both items answered
    ww = np.array([1.0, 3.0, 2.0]) / 6.0
    assert n == 3 and share == pytest.approx(float(ww @ (score <= 5.0)))
    assert sd == pytest.approx(float(np.sqrt(ww @ (score - ww @ score) ** 2)))
    above = observed_scale(spec.model_copy(update={"direction": "above"}), survey)[0]
    assert above == pytest.approx(1.0 - share)
    masked = observed_scale(spec, survey, np.array([True, False, True, True]))
    assert masked[2] == 2 and masked[0] == pytest.approx(1.0)


def test_table_is_csv_roundtrippable(setup, tmp_path) -> None:
    g, gf, res = setup
    tab = heterogeneity_rows([gf], res, ["b"], min_cell_size=50)
    tab.to_csv(tmp_path / "h.csv", index=False)
    back = pd.read_csv(tmp_path / "h.csv")
    assert list(back.columns) == list(HETEROGENEITY_COLUMNS) and len(back) == len(tab)
