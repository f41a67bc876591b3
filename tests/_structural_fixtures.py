"""Shared test helpers: a small signed cyclic graph and random structural draws on it."""

from __future__ import annotations

import numpy as np

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.causal.draws import StructuralDraws


def small_graph() -> CausalGraph:
    """Small cyclic graph: loops a->b->c->a and a<->b, an exogenous e and a sink d."""

    def node(i, role="construct"):
        return {"id": i, "label_en": i, "label_nl": i, "resource": "individual", "role": role}

    edges = [("e", "a", "+", "short"), ("a", "b", "+", "immediate"), ("b", "c", "+", "medium"),
             ("c", "a", "+", "long"), ("b", "a", "-", "short"), ("c", "d", "+", "generational"),
             ("a", "d", "-", "short")]
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "small",
        "nodes": [node("a"), node("b"), node("c"), node("d"), node("e", "exogenous")],
        "edges": [{"source": s, "target": t, "sign": g, "delay": d, "evidence": "test"}
                  for s, t, g, d in edges],
        "loops": [{"id": "L1", "title": "abc", "nodes": ["a", "b", "c"], "polarity": "R"},
                  {"id": "L2", "title": "ab", "nodes": ["a", "b"], "polarity": "B"}],
    })
    return CausalGraph(spec)


def random_draws(graph, S, seed, scale=0.25):
    rng = np.random.default_rng(seed)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in graph.edges])
    beta = sign * np.abs(rng.normal(scale, 0.1, (S, len(graph.edges))))
    alpha = rng.normal(0.0, 0.5, (S, len(graph.nodes)))
    psi = rng.uniform(0.5, 1.5, (S, len(graph.nodes)))
    return StructuralDraws.from_arrays(graph, beta, alpha, psi)
