"""CausalGraph: views, signed adjacency, cycles and named loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph
from veerkracht_bayes.errors import SpecError
from veerkracht_bayes.graph.spec import EdgeSpec, GraphSpec, LoopSpec, NodeSpec


def _node(i: str, resource: str = "individual", role: str = "construct") -> NodeSpec:
    return NodeSpec(id=i, label_en=i, label_nl=i, resource=resource, role=role)


def _edge(s: str, t: str, sign: str = "+") -> EdgeSpec:
    return EdgeSpec(source=s, target=t, sign=sign, evidence="test")


def _brute_force_cycles(graph: CausalGraph) -> set[tuple[str, ...]]:
    """Every simple directed cycle by checking all node permutations (small graphs only).

    Independent of networkx: a sequence is a cycle when each consecutive pair and the
    closing pair are edges; it is stored rotated to start at its smallest node.
    """
    edges = {(e.source, e.target) for e in graph.edges}
    out = set()
    for k in range(2, len(graph.nodes) + 1):
        for perm in itertools.permutations(graph.nodes, k):
            if perm[0] != min(perm):
                continue
            ring = perm + perm[:1]
            if all((a, b) in edges for a, b in zip(ring[:-1], ring[1:])):
                out.add(perm)
    return out


@pytest.fixture()
def small() -> CausalGraph:
    nodes = [_node("a"), _node("b"), _node("c", "societal"), _node("d", "organisational"),
             _node("x", "societal", "exogenous"), _node("p", "organisational", "policy_lever")]
    edges = [_edge("a", "b"), _edge("b", "c", "-"), _edge("c", "a", "-"), _edge("b", "a", "-"),
             _edge("c", "d"), _edge("d", "b"), _edge("x", "a"), _edge("p", "d", "-")]
    loops = [LoopSpec(id="L1", title="abc", nodes=["a", "b", "c"], polarity="R"),
             LoopSpec(id="L2", title="ab", nodes=["a", "b"], polarity="B")]
    return CausalGraph(GraphSpec(spec_version=1, name="small", nodes=nodes, edges=edges,
                                 loops=loops))


def test_parents_children(small: CausalGraph) -> None:
    assert small.parents("a") == ["c", "b", "x"]
    assert small.children("b") == ["c", "a"]
    with pytest.raises(SpecError, match="did you mean 'a'"):
        small.parents("aa")


def test_signed_adjacency_row_is_target(small: CausalGraph) -> None:
    s = small.signed_adjacency()
    idx = small.node_index
    assert s.shape == (6, 6)
    for e in small.edges:
        assert s[idx[e.target], idx[e.source]] == (1 if e.sign == "+" else -1)
    assert np.count_nonzero(s) == len(small.edges)
    order = ["p", "d", "b"]
    sub = small.signed_adjacency(order)
    assert sub[1, 0] == -1 and sub[2, 1] == 1 and np.count_nonzero(sub) == 2


def test_simple_cycles_match_brute_force(small: CausalGraph) -> None:
    cycles = small.simple_cycles()
    assert {c.nodes for c in cycles} == _brute_force_cycles(small)
    signs = {(e.source, e.target): e.sign for e in small.edges}
    for c in cycles:
        ring = c.nodes + c.nodes[:1]
        n_neg = sum(signs[(a, b)] == "-" for a, b in zip(ring[:-1], ring[1:]))
        assert c.polarity == ("R" if n_neg % 2 == 0 else "B")
        assert c.length == len(c.nodes)
    lengths = [c.length for c in cycles]
    assert lengths == sorted(lengths)
    assert all(c.length <= 2 for c in small.simple_cycles(max_length=2))


def test_marvel_cycles_are_cycles_with_right_polarity(marvel) -> None:
    cycles = marvel.simple_cycles()
    assert len({c.nodes for c in cycles}) == len(cycles)
    edges = {(e.source, e.target): e.sign for e in marvel.edges}
    for c in cycles:
        ring = c.nodes + c.nodes[:1]
        signs = [edges[(a, b)] for a, b in zip(ring[:-1], ring[1:])]
        assert list(c.signs) == signs
        assert c.polarity == ("R" if signs.count("-") % 2 == 0 else "B")
    # every cycle of length <= 4 found by an independent search over edge paths
    short = set()
    for a in marvel.nodes:
        stack = [(a, (a,))]
        while stack:
            v, path = stack.pop()
            for e in marvel.edges:
                if e.source != v:
                    continue
                if e.target == a and path[0] == min(path):
                    short.add(path)
                elif e.target not in path and len(path) < 4:
                    stack.append((e.target, path + (e.target,)))
    assert {c.nodes for c in cycles if c.length <= 4} == short


def test_every_marvel_named_loop_found_and_reinforcing(marvel) -> None:
    checks = marvel.check_loops()
    assert len(checks) == len(marvel.loops) == 6
    cycle_set = {c.nodes for c in marvel.simple_cycles()}
    for c in checks:
        assert c.found and c.ok, c
        assert c.polarity == "R" == c.stated_polarity
        i = min(range(len(c.nodes)), key=lambda k: c.nodes[k])
        assert c.nodes[i:] + c.nodes[:i] in cycle_set


def test_check_loops_reports_problems(small: CausalGraph) -> None:
    spec = small.spec.model_copy(update={"loops": [
        LoopSpec(id="L1", title="abc", nodes=["a", "b", "c"], polarity="B"),
        LoopSpec(id="L3", title="no", nodes=["a", "c"], polarity="R")]})
    g = CausalGraph(spec)  # bypasses file validation on purpose
    bad_pol, not_cycle = g.check_loops()
    assert bad_pol.found and not bad_pol.ok and bad_pol.polarity == "R"
    assert not not_cycle.found and "a->c" in not_cycle.message


def test_views(small: CausalGraph, marvel) -> None:
    assert small.nodes_where(resource="societal") == ["c", "x"]
    assert small.nodes_where(role="policy_lever") == ["p"]
    v = small.view(resource="individual")
    assert v.nodes == ["a", "b"]
    assert {e.key for e in v.edges} == {"a->b", "b->a"}
    assert [lp.id for lp in v.loops] == ["L2"]
    levers = marvel.view(role="policy_lever")
    assert levers.nodes == marvel.nodes_where(role="policy_lever") and len(levers.nodes) > 0
    assert levers.edges == []


def test_info_counts(small: CausalGraph) -> None:
    info = small.info()
    cycles = small.simple_cycles()
    assert info["n_simple_cycles"] == len(cycles)
    assert info["n_reinforcing_cycles"] + info["n_balancing_cycles"] == len(cycles)
    assert info["n_nodes"] == 6 and info["n_edges"] == 8 and info["n_named_loops"] == 2


def test_load_graph_sources(marvel, tmp_path) -> None:
    assert load_graph(marvel) is marvel
    assert load_graph(marvel.spec).nodes == marvel.nodes
    with pytest.raises(SpecError, match="file not found"):
        load_graph(tmp_path / "missing.yaml")


def test_edge_lookup(marvel) -> None:
    assert marvel.edge("stress", "wellbeing").sign == "-"
    with pytest.raises(SpecError, match="no edge"):
        marvel.edge("wellbeing", "shame")
    assert marvel.loop_edge_keys("L1") == ["stress->wellbeing", "wellbeing->livelihood_security",
                                           "livelihood_security->stress"]
    with pytest.raises(SpecError, match="did you mean 'L1'"):
        marvel.loop_edge_keys("L1x")
