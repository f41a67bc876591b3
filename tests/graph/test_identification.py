"""Tests of the identification checks (veerkracht_bayes.graph.identification)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import IdentificationError, Problem
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.graph.identification import (CUT, LIKELIHOOD, ORDER_FAILS, assert_identified,
                                                   check_identification, identification_report)
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


def test_unmeasured_construct_links_are_cut():
    """Cut posterior (default): every link touching a construct without items is prior only,
    even when the construct has a measured neighbour (u); joint mode keeps the old check of
    constructs that touch no measured node (v, w)."""
    g = make_graph([("a", "b"), ("b", "u"), ("u", "v"), ("v", "w")])
    md = data_for(["a", "a", "b", "b"])
    probs = check_identification(g, md, vague=False)
    assert [(p.kind, p.location, p.level) for p in probs] == [
        ("unmeasured_construct", "u", "warning"), ("unmeasured_construct", "v", "warning"),
        ("unmeasured_construct", "w", "warning")]
    assert "b->u" in str(probs[0]) and "carried entirely by their priors" in str(probs[0])
    probs_v = check_identification(g, md, vague=True)
    assert {p.location for p in probs_v} == {"u", "v", "w"} and all(p.level == "error" for p in probs_v)
    rep = identification_report(g, md)
    assert rep.status == {"a->b": LIKELIHOOD, "b->u": CUT, "u->v": CUT, "v->w": CUT}
    joint = check_identification(g, md, vague=False, unmeasured="joint")
    assert [(p.kind, p.location) for p in joint] == [("unmeasured_isolated", "v"), ("unmeasured_isolated", "w")]
    assert identification_report(g, md, unmeasured="joint").status["b->u"] == LIKELIHOOD


def test_accepts_a_model_layout():
    g = make_graph(LOOP + [("x1", "a"), ("x2", "b")], roles={"x1": "exogenous", "x2": "exogenous"})
    md = data_for(ITEMS, covariates=("x1", "x2"))
    _, layout = build_model(g, md)
    assert check_identification(g, layout, vague=True) == []
    _, layout0 = build_model(make_graph(LOOP), data_for(ITEMS))
    assert len(check_identification(make_graph(LOOP), layout0, vague=True)) == 3


# --------------------------------------------------------------------------- MARVEL + shipped survey
@pytest.fixture(scope="module")
def marvel_built():
    """MARVEL built on the shipped synthetic survey (default edge priors: the classes do not
    depend on the priors)."""
    from pathlib import Path

    from veerkracht_bayes.survey.reading import read_survey
    from veerkracht_bayes.survey.statistics import model_data_from_survey

    root = Path(__file__).resolve().parents[2] / "data" / "synthetic"
    data, cbp = root / "veerkracht_synthetic.csv.gz", root / "codebook_synthetic.yaml"
    if not (data.exists() and cbp.exists()):
        pytest.skip("shipped synthetic survey not present")
    g = CausalGraph.marvel()
    md = model_data_from_survey(read_survey(data, cbp, graph="marvel"), g)
    model, layout = build_model(g, md)
    return g, md, model, layout


def _likelihood_dependence(model, graph) -> set[str]:
    """Links whose coefficient the log-likelihood potential depends on: non-zero gradient of
    the 'loglik' potential with respect to beta at the model's initial point."""
    import pytensor

    ll = next(p for p in model.potentials if p.name == "loglik")
    grad = pytensor.grad(ll, model["beta"])
    fn = model.compile_fn(grad, inputs=model.value_vars, point_fn=True, on_unused_input="ignore",
                          mode="FAST_COMPILE")
    g = np.asarray(fn(model.initial_point()))
    assert np.all(np.isfinite(g))
    return {k for k, v in zip(graph.edge_keys, g) if v != 0.0}


def test_marvel_report_matches_the_likelihood(marvel_built):
    g, md, model, layout = marvel_built
    rep = layout.identification
    assert rep is not None and rep.status == identification_report(g, md).status  # layout == data path
    assert rep.status == identification_report(g, layout).status
    depends = _likelihood_dependence(model, g)
    assert set(rep.in_likelihood) == depends
    assert set(rep.links_with(CUT)) == set(g.edge_keys) - depends
    # every link touching a construct without items, and every link out of an absent node, is cut
    unobs = set(layout.unobserved_latent)
    for e in g.edges:
        if unobs & {e.source, e.target} or e.source in layout.absent:
            assert rep.status[e.key] == CUT, e.key
    # the problems list agrees with the report: no problem names a likelihood link as cut ...
    probs = check_identification(g, layout, vague=False)
    cut_named = {k for p in probs if p.kind in ("unmeasured_construct", "absent_source") for k in p.value}
    assert cut_named == set(rep.links_with(CUT))
    order_named = {k for p in probs if p.kind == "order_condition" for k in p.value}
    assert order_named == set(rep.links_with(ORDER_FAILS))
    assert sum(rep.counts().values()) == len(g.edges)
    findings = rep.findings()
    assert findings[0].startswith(f"{len(depends)} of {len(g.edges)} links enter the likelihood")
    d = rep.to_dict()
    assert {r["link"]: r["status"] for r in d["links"]} == rep.status and d["findings"] == findings


def test_build_model_warns_at_warning_level(caplog):
    import logging

    g = make_graph([("a", "b"), ("b", "u")])
    with caplog.at_level(logging.WARNING, logger="veerkracht_bayes.sem.model_builder"):
        build_model(g, data_for(["a", "a", "b", "b"]))
    rec = [r for r in caplog.records if "identification" in r.getMessage()]
    assert rec and rec[0].levelno == logging.WARNING and "1 of 2 links are cut" in rec[0].getMessage()


def test_no_data_report_is_all_cut():
    g = make_graph(LOOP)
    rep = identification_report(g, None)
    assert set(rep.status.values()) == {CUT}
    assert rep.findings() == ["No survey data: all 3 links rest on their priors alone."]
