"""Tests of the identification checks (veerkracht_bayes.graph.identification)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import IdentificationError, Problem
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.graph.identification import assert_identified, check_identification
from veerkracht_bayes.sem.model_builder import build_model
from veerkracht_bayes.survey.statistics import prepare_model_data


def make_graph(edges, roles=None, measurement=None) -> CausalGraph:
    roles = roles or {}
    nodes = list(dict.fromkeys([s for s, _ in edges] + [t for _, t in edges]))
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "id",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": roles.get(n, "construct")} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"} for s, t in edges],
        "measurement": measurement or {}}))


def data_for(constructs: list[str], covariates: tuple[str, ...] = (), n: int = 50):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(n, len(constructs)))
    x = rng.normal(size=(n, len(covariates))) if covariates else None
    return prepare_model_data(y, [f"{c}{j}" for j, c in enumerate(constructs)], constructs,
                              covariates=x, covariate_names=list(covariates))


LOOP = [("a", "b"), ("b", "c"), ("c", "a")]
ITEMS = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]


def test_cycle_without_exogenous_entry_is_an_error_with_vague_priors():
    g = make_graph(LOOP)
    probs = check_identification(g, data_for(ITEMS), vague=True)
    assert {p.location for p in probs} == {"a", "b", "c"}
    assert all(p.level == "error" and p.kind == "order_condition" for p in probs)
    msg = str(next(p for p in probs if p.location == "b"))
    assert "feedback cycle" in msg and "'a'" in msg and "a->b" in msg and "order condition" in msg
    assert "only 0 excluded exogenous" in msg
    with pytest.raises(IdentificationError, match=r"3 problems found(.|\n)*order condition"):
        assert_identified(g, data_for(ITEMS), vague=True)


def test_cycle_is_a_warning_with_informative_priors():
    g = make_graph(LOOP)
    warns = assert_identified(g, data_for(ITEMS), vague=False)
    assert len(warns) == 3 and all(p.level == "warning" for p in warns)
    assert all(isinstance(p, Problem) for p in warns)
    assert "prior-dominated" in str(warns[0])


def test_exclusion_restrictions_identify_the_cycle():
    """Each equation has one endogenous regressor; x1 (enters at a) and x2 (enters at b)
    give every equation at least one excluded instrument that enters the cycle elsewhere."""
    g = make_graph(LOOP + [("x1", "a"), ("x2", "b")], roles={"x1": "exogenous", "x2": "exogenous"})
    md = data_for(ITEMS, covariates=("x1", "x2"))
    assert check_identification(g, md, vague=True) == []
    # with only x1, equation a has no excluded instrument (x1 is its own parent)
    g1 = make_graph(LOOP + [("x1", "a")], roles={"x1": "exogenous"})
    probs = check_identification(g1, data_for(ITEMS, covariates=("x1",)), vague=True)
    assert [p.location for p in probs] == ["a"]
    assert "1 endogenous regressor(s) ('c')" in str(probs[0])


def test_two_endogenous_regressors_need_two_instruments():
    """b has parents a and d inside the cycle; only x1 enters elsewhere: 1 < 2."""
    g = make_graph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "b"), ("x1", "a")],
                   roles={"x1": "exogenous"})
    md = data_for(ITEMS + ["d", "d"], covariates=("x1",))
    probs = {p.location: p for p in check_identification(g, md, vague=True)}
    assert "b" in probs and "needs at least 2" in str(probs["b"])


def test_unmeasured_instrument_does_not_count():
    """An unmeasured exogenous lever entering the cycle carries no data: no instrument."""
    g = make_graph(LOOP + [("lever", "b")], roles={"lever": "policy_lever"})
    probs = check_identification(g, data_for(ITEMS), vague=True)
    kinds = {(p.kind, p.location) for p in probs}
    assert ("order_condition", "a") in kinds and ("absent_source", "lever") in kinds
    absent = next(p for p in probs if p.kind == "absent_source")
    assert "lever->b" in str(absent) and "do-queries" in str(absent)


def test_single_indicator_generic_case():
    g = make_graph([("a", "b")])
    md = data_for(["a", "a", "a", "b"])
    assert check_identification(g, md, vague=True) == []  # MARVEL builder fixes reliability
    probs = check_identification(g, md, vague=True, single_item_fixed=False)
    assert len(probs) == 1 and probs[0].kind == "single_indicator" and probs[0].location == "b"
    msg = str(probs[0])
    assert "single indicator" in msg and "'b'" in msg and "reliability" in msg
    with pytest.raises(IdentificationError, match="single indicator"):
        assert_identified(g, md, vague=False, single_item_fixed=False)  # an error even with priors


def test_single_indicator_from_graph_measurement_block():
    g = make_graph([("f", "g")], measurement={"f": ["y1", "y2", "y3"], "g": ["y4"]})
    probs = check_identification(g, None, vague=True, single_item_fixed=False)
    assert [(p.kind, p.location) for p in probs] == [("single_indicator", "g")]


def test_unmeasured_construct_linked_only_to_unmeasured_nodes():
    g = make_graph([("a", "b"), ("b", "u"), ("u", "v"), ("v", "w")])
    md = data_for(["a", "a", "b", "b"])
    probs = check_identification(g, md, vague=False)
    # u has a measured parent (b) and is informed through it; v (neighbours u, w) and w
    # (neighbour v) touch no measured node
    assert [(p.kind, p.location, p.level) for p in probs] == [("unmeasured_isolated", "v", "warning"),
                                                             ("unmeasured_isolated", "w", "warning")]
    assert "u->v" in str(probs[0]) and "v->w" in str(probs[0]) and "carried entirely by their priors" in str(probs[0])
    probs_v = check_identification(g, md, vague=True)
    assert {p.location for p in probs_v} == {"v", "w"} and all(p.level == "error" for p in probs_v)


def test_accepts_a_model_layout():
    g = make_graph(LOOP + [("x1", "a"), ("x2", "b")], roles={"x1": "exogenous", "x2": "exogenous"})
    md = data_for(ITEMS, covariates=("x1", "x2"))
    _, layout = build_model(g, md)
    assert check_identification(g, layout, vague=True) == []
    _, layout0 = build_model(make_graph(LOOP), data_for(ITEMS))
    assert len(check_identification(make_graph(LOOP), layout0, vague=True)) == 3
