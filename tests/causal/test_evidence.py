"""Tests for veerkracht_bayes.causal.evidence: the elasticity decomposition of an effect into
assumption / literature / data shares, on cases with closed-form answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.evidence import (edge_evidence, evidence_label, evidence_shares)
from veerkracht_bayes.causal.interventions import Intervention, Normal, Shift
from veerkracht_bayes.causal.summaries import summarise_effects
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec


def _graph(nodes, edges, name="t"):
    roles = {n: r for n, r in nodes}
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": name,
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": r}
                  for n, r in nodes],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "test"} for s, t in edges],
    })) if roles else None


def _draws(g, beta, S=200, seed=0, edge_class=None):
    rng = np.random.default_rng(seed)
    b = np.asarray(beta, float)
    if b.ndim == 1:  # jitter each draw so the test is not a single point
        b = b * rng.uniform(0.5, 1.5, (S, b.size))
    return StructuralDraws.from_arrays(g, b, np.zeros(len(g.nodes)), edge_class=edge_class)


LEVER = Intervention(name="L", parts=[Shift(node="lever", delta=Normal(mean=0.4, sd=0.1))])


def test_chain_default_then_data_is_two_thirds_assumption():
    """lever -> a -> b: the coverage and both links have elasticity 1 on b, so with classes
    (default, data) the effect on b is 2/3 assumption, 1/3 data; on a it is all assumption."""
    g = _graph([("lever", "policy_lever"), ("a", "construct"), ("b", "construct")],
               [("lever", "a"), ("a", "b")])
    r = do_query(_draws(g, [0.3, 0.5]), [LEVER], outcomes=["a", "b"], seed=1)
    ev = {"lever->a": "assumption", "a->b": "data"}
    sh = evidence_shares(r, "b", ev)
    np.testing.assert_allclose(sh[0], np.broadcast_to([2 / 3, 0, 1 / 3], sh[0].shape), atol=1e-12)
    np.testing.assert_allclose(evidence_shares(r, "a", ev)[0, :, 0], 1.0, atol=1e-12)
    df = summarise_effects(r, edge_evidence=ev, scopes=("within",))
    row = df[df.outcome == "b"].iloc[0]
    assert row["share_assumption"] == pytest.approx(2 / 3) and row["share_data"] == pytest.approx(1 / 3)
    assert row["evidence"] == "assumption"
    # both links data-informed: data 2/3 > 0.5 -> "data"
    df2 = summarise_effects(r, edge_evidence={"lever->a": "data", "a->b": "data"}, scopes=("within",))
    assert df2[df2.outcome == "b"].iloc[0]["evidence"] == "data"


def test_parallel_paths_closed_form():
    """lever -> a -> b and lever -> b: eps(lever->a) = eps(a->b) = p, eps(lever->b) = q with
    p = b1 b2 / (b1 b2 + b3), q = b3 / (b1 b2 + b3); the coverage has elasticity 1."""
    g = _graph([("lever", "policy_lever"), ("a", "construct"), ("b", "construct")],
               [("lever", "a"), ("a", "b"), ("lever", "b")])
    S = 50
    rng = np.random.default_rng(3)
    beta = rng.uniform(0.1, 0.6, (S, 3))  # lever->a, a->b, lever->b
    r = do_query(_draws(g, beta), [LEVER], outcomes=["b"], seed=2)
    ev = {"lever->a": "assumption", "a->b": "data", "lever->b": "literature"}
    b1, b2, b3 = beta.T
    p, q = b1 * b2 / (b1 * b2 + b3), b3 / (b1 * b2 + b3)
    tot = 1 + 2 * p + q
    ref = np.stack([(1 + p) / tot, q / tot, p / tot], axis=1)
    np.testing.assert_allclose(evidence_shares(r, "b", ev)[0], ref, atol=1e-12)


def test_cycle_elasticities_sum_and_shift_on_outcome_is_assumption():
    """A shift placed on the outcome itself: the dose, not data, carries the effect (the old
    walk split called this 'data'). On a 2-cycle a <-> b with the shift on b, E_b = d / (1 - g),
    eps(a->b) = eps(b->a) = g / (1 - g), dose elasticity 1."""
    g = _graph([("a", "construct"), ("b", "construct")], [("a", "b"), ("b", "a")])
    beta = np.array([[0.5, 0.4]] * 4)
    r = do_query(_draws(g, beta), [Intervention(name="x", parts=[Shift(node="b", delta=0.3)])],
                 outcomes=["b"])
    gain = 0.2
    e = gain / (1 - gain)
    sh = evidence_shares(r, "b", {"a->b": "data", "b->a": "data"})
    np.testing.assert_allclose(sh[0], np.broadcast_to([1 / (1 + 2 * e), 0, 2 * e / (1 + 2 * e)],
                                                      (4, 3)), atol=1e-12)
    df = summarise_effects(r, edge_evidence={"a->b": "data", "b->a": "data"}, scopes=("within",))
    assert df.iloc[0]["evidence"] == "assumption"


def test_prior_only_fit_labels_nothing_data(marvel):
    """On prior-only draws of the MARVEL graph (no fit with data: no link is data), no row of
    the summary is labelled 'data', including shifts placed directly on an outcome."""
    fit = SimpleNamespace(prior_only=True, layout=SimpleNamespace(
        edge_kind={k: "latent" for k in marvel.edge_keys}, unobserved_latent=()))
    ev = edge_evidence(marvel, None, fit=fit,
                       edge_class={k: "data-informed" for k in marvel.edge_keys})
    assert set(ev.values()) == {"assumption"}
    rng = np.random.default_rng(5)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in marvel.edges])
    beta = sign * np.abs(rng.normal(0.15, 0.1, (100, len(marvel.edges))))
    d = StructuralDraws.from_arrays(marvel, beta, np.zeros(len(marvel.nodes)))
    ivs = [Intervention(name="direct", parts=[Shift(node="mental_problems", delta=-0.59)]),
           Intervention(name="net", parts=[Shift(node="social_network", delta=0.3)])]
    df = summarise_effects(do_query(d, ivs, outcomes=["mental_problems", "wellbeing", "stress"]),
                           edge_evidence=ev)
    assert not (df["evidence"] == "data").any()
    assert (df.loc[df.reachable, "share_data"].fillna(0) == 0).all()


def test_edge_evidence_rules():
    g = _graph([("lever", "policy_lever"), ("a", "construct"), ("b", "construct"),
                ("u", "construct")], [("lever", "a"), ("a", "b"), ("u", "b"), ("b", "a")])
    priors = SimpleNamespace(for_edge=lambda k: SimpleNamespace(
        source="literature" if k in ("u->b", "a->b") else "default"))
    fit = SimpleNamespace(prior_only=False, layout=SimpleNamespace(
        edge_kind={"lever->a": "absent", "a->b": "latent", "u->b": "prior_only", "b->a": "latent"},
        unobserved_latent=("u",)))
    ev = edge_evidence(g, priors, fit=fit, edge_class={"a->b": "data-informed",
                                                       "b->a": "prior-dominated"})
    assert ev == {"lever->a": "assumption", "a->b": "data", "u->b": "literature",
                  "b->a": "assumption"}
    assert evidence_label([0.2, 0.35, 0.45]) == "literature"  # data needs a majority
    assert evidence_label([0.2, 0.2, 0.6]) == "data"
    assert evidence_label([0.5, 0.5, 0.0], reachable=False) == "no path"
