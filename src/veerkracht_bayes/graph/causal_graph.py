"""`CausalGraph`: a validated signed diagram over networkx, with loop analysis.

Conventions
-----------
* Node order is the order of the spec's ``nodes`` list; every matrix uses it.
* Matrices follow the structural equation ``eta = B eta + ...``: entry ``[k, j]``
  belongs to the edge ``j -> k`` (row = target, column = source).
* A cycle is *reinforcing* (R) when it has an even number of negative links and
  *balancing* (B) when odd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import networkx as nx
import numpy as np

from veerkracht_bayes.resources import package_data_path
from veerkracht_bayes.errors import Problem, SpecError, did_you_mean
from veerkracht_bayes.graph.lavaan_syntax import LavaanModel, read_lavaan, spec_from_lavaan
from veerkracht_bayes.graph.spec import EdgeSpec, GraphSpec, LoopSpec, NodeSpec, load_graph_spec

__all__ = ["graph_from_lavaan", "graph_from_lavaan_file", "Cycle", "LoopCheck", "CausalGraph", "load_graph", "marvel_path"]


def marvel_path() -> Path:
    """Path of the shipped MARVEL diagram YAML.

    Examples
    --------
    >>> marvel_path().name
    'marvel.yaml'
    """
    return package_data_path("marvel.yaml")


@dataclass(frozen=True)
class Cycle:
    """A simple directed cycle of the graph.

    Examples
    --------
    >>> g = load_graph("marvel")
    >>> c = g.simple_cycles(max_length=2)[0]
    >>> isinstance(c, Cycle), c.length, c.polarity
    (True, 2, 'R')
    """

    nodes: tuple[str, ...]
    signs: tuple[str, ...]

    @property
    def length(self) -> int:
        """Number of links in the cycle."""
        return len(self.nodes)

    @property
    def polarity(self) -> str:
        """``"R"`` (even number of negative links) or ``"B"``."""
        return "R" if sum(s == "-" for s in self.signs) % 2 == 0 else "B"

    def edge_keys(self) -> list[str]:
        """Edge keys ``a->b`` along the cycle."""
        cyc = self.nodes + (self.nodes[0],)
        return [f"{a}->{b}" for a, b in zip(cyc[:-1], cyc[1:])]


@dataclass(frozen=True)
class LoopCheck:
    """Result of checking one named loop against the graph.

    Examples
    --------
    >>> g = load_graph("marvel")
    >>> checks = g.check_loops()
    >>> all(isinstance(c, LoopCheck) for c in checks), len(checks)
    (True, 6)
    """

    id: str
    title: str
    nodes: tuple[str, ...]
    stated_polarity: str
    polarity: str | None
    found: bool
    message: str

    @property
    def ok(self) -> bool:
        """True when the loop is a directed cycle with the stated polarity."""
        return self.found and self.polarity == self.stated_polarity


def _canonical(nodes: Sequence[str]) -> tuple[str, ...]:
    i = min(range(len(nodes)), key=lambda k: nodes[k])
    return tuple(nodes[i:]) + tuple(nodes[:i])


class CausalGraph:
    """A signed, possibly cyclic causal diagram.

    Parameters
    ----------
    spec
        A validated :class:`~veerkracht_bayes.graph.spec.GraphSpec`.
    path
        File the spec came from (for provenance and messages).

    Examples
    --------
    >>> g = CausalGraph.marvel()
    >>> g.parents("wellbeing")[:2]
    ['stress', 'social_network']
    """

    def __init__(self, spec: GraphSpec, path: str | Path | None = None) -> None:
        self.spec = spec
        self.path = None if path is None else Path(path)
        g = nx.DiGraph(name=spec.name)
        for n in spec.nodes:
            g.add_node(n.id, **n.model_dump())
        for e in spec.edges:
            g.add_edge(e.source, e.target, **e.model_dump())
        self._g = g

    # ------------------------------------------------------------------ constructors
    @classmethod
    def marvel(cls) -> "CausalGraph":
        """The shipped MARVEL resilience diagram."""
        return load_graph("marvel")

    # ------------------------------------------------------------------ basic views
    @property
    def name(self) -> str:
        """Graph name."""
        return self.spec.name

    @property
    def nx(self) -> nx.DiGraph:
        """A copy of the underlying :class:`networkx.DiGraph` (node/edge attributes included)."""
        return self._g.copy()

    @cached_property
    def nodes(self) -> list[str]:
        """Node ids in the fixed (spec) order."""
        return [n.id for n in self.spec.nodes]

    @cached_property
    def node_index(self) -> dict[str, int]:
        """Position of each node in :attr:`nodes`."""
        return {n: i for i, n in enumerate(self.nodes)}

    @cached_property
    def edges(self) -> list[EdgeSpec]:
        """Edges in spec order."""
        return list(self.spec.edges)

    @cached_property
    def edge_keys(self) -> list[str]:
        """Edge keys ``source->target`` in spec order."""
        return [e.key for e in self.spec.edges]

    @property
    def loops(self) -> list[LoopSpec]:
        """The named loops of the spec."""
        return list(self.spec.loops)

    def node(self, node_id: str) -> NodeSpec:
        """Return the spec of one node, with a did-you-mean error for unknown ids."""
        self._require(node_id)
        return self.spec.nodes[self.node_index[node_id]]

    def edge(self, source: str, target: str) -> EdgeSpec:
        """Return the spec of edge ``source -> target``."""
        self._require(source)
        self._require(target)
        for e in self.spec.edges:
            if e.source == source and e.target == target:
                return e
        raise SpecError(f"no edge {source}->{target} in graph {self.name!r}")

    def has_node(self, node_id: str) -> bool:
        """True when ``node_id`` is a node."""
        return node_id in self.node_index

    def _require(self, node_id: str) -> None:
        if node_id not in self.node_index:
            raise SpecError(
                Problem(f"unknown node {node_id!r} in graph {self.name!r}"
                        f"{did_you_mean(node_id, self.nodes)}", field="node", value=node_id)
            )

    def parents(self, node_id: str) -> list[str]:
        """Direct causes of ``node_id``, in edge order."""
        self._require(node_id)
        return [e.source for e in self.spec.edges if e.target == node_id]

    def children(self, node_id: str) -> list[str]:
        """Direct effects of ``node_id``, in edge order."""
        self._require(node_id)
        return [e.target for e in self.spec.edges if e.source == node_id]

    def nodes_where(self, *, resource: str | None = None, role: str | None = None) -> list[str]:
        """Node ids with the given resource type and/or role (spec order)."""
        return [n.id for n in self.spec.nodes
                if (resource is None or n.resource == resource) and (role is None or n.role == role)]

    # ------------------------------------------------------------------ matrices
    def signed_adjacency(self, order: Sequence[str] | None = None) -> np.ndarray:
        """Signed adjacency matrix ``S`` with ``S[k, j] = +1/-1`` for edge ``j -> k``.

        Parameters
        ----------
        order
            Node order for rows and columns; defaults to :attr:`nodes`.
        """
        order = list(self.nodes if order is None else order)
        idx = {n: i for i, n in enumerate(order)}
        for n in order:
            self._require(n)
        s = np.zeros((len(order), len(order)), dtype=np.int8)
        for e in self.spec.edges:
            if e.source in idx and e.target in idx:
                s[idx[e.target], idx[e.source]] = 1 if e.sign == "+" else -1
        return s

    # ------------------------------------------------------------------ cycles and loops
    def simple_cycles(self, max_length: int | None = None) -> list[Cycle]:
        """All simple directed cycles, sorted by length then node names.

        Parameters
        ----------
        max_length
            Only cycles with at most this many links (``None``: all).
        """
        out = []
        for cyc in nx.simple_cycles(self._g, length_bound=max_length):
            nodes = _canonical(cyc)
            ring = nodes + (nodes[0],)
            signs = tuple(self._g.edges[a, b]["sign"] for a, b in zip(ring[:-1], ring[1:]))
            out.append(Cycle(nodes=nodes, signs=signs))
        return sorted(out, key=lambda c: (c.length, c.nodes))

    def check_loops(self) -> list[LoopCheck]:
        """Check each named loop: is it a directed cycle, with the stated polarity?"""
        out = []
        for lp in self.spec.loops:
            nodes = tuple(lp.nodes)
            unknown = [n for n in nodes if n not in self.node_index]
            if unknown:
                out.append(LoopCheck(lp.id, lp.title, nodes, lp.polarity, None, False,
                                     f"unknown node(s) {unknown}"))
                continue
            ring = nodes + (nodes[0],)
            missing = [f"{a}->{b}" for a, b in zip(ring[:-1], ring[1:]) if not self._g.has_edge(a, b)]
            if missing or len(set(nodes)) != len(nodes):
                out.append(LoopCheck(lp.id, lp.title, nodes, lp.polarity, None, False,
                                     f"not a directed cycle; missing {', '.join(missing)}"))
                continue
            cyc = Cycle(nodes, tuple(self._g.edges[a, b]["sign"] for a, b in zip(ring[:-1], ring[1:])))
            msg = "ok" if cyc.polarity == lp.polarity else (
                f"stated {lp.polarity} but the signs give {cyc.polarity}")
            out.append(LoopCheck(lp.id, lp.title, nodes, lp.polarity, cyc.polarity, True, msg))
        return out

    def loop_edge_keys(self, loop_id: str) -> list[str]:
        """Edge keys along a named loop."""
        for lp in self.spec.loops:
            if lp.id == loop_id:
                ring = list(lp.nodes) + [lp.nodes[0]]
                return [f"{a}->{b}" for a, b in zip(ring[:-1], ring[1:])]
        ids = [lp.id for lp in self.spec.loops]
        raise SpecError(f"unknown loop {loop_id!r}{did_you_mean(loop_id, ids)}")

    # ------------------------------------------------------------------ sub-views
    def subgraph(self, nodes: Iterable[str], name: str | None = None) -> "CausalGraph":
        """Induced sub-diagram on ``nodes`` (named loops kept when fully inside)."""
        keep = set(nodes)
        for n in keep:
            self._require(n)
        spec = self.spec.model_copy(update={
            "name": name or f"{self.name}[sub]",
            "nodes": [n for n in self.spec.nodes if n.id in keep],
            "edges": [e for e in self.spec.edges if e.source in keep and e.target in keep],
            "loops": [lp for lp in self.spec.loops if set(lp.nodes) <= keep],
            "measurement": {k: v for k, v in self.spec.measurement.items() if k in keep},
        })
        return CausalGraph(spec, self.path)

    def view(self, *, resource: str | None = None, role: str | None = None) -> "CausalGraph":
        """Sub-diagram of the nodes with a given resource type and/or role."""
        label = ",".join(x for x in (resource, role) if x)
        return self.subgraph(self.nodes_where(resource=resource, role=role),
                             name=f"{self.name}[{label}]")

    # ------------------------------------------------------------------ summaries
    def info(self) -> dict[str, object]:
        """A JSON-ready summary: counts and lists of nodes, edges, loops and cycles."""
        cycles = self.simple_cycles()
        return {
            "name": self.name,
            "n_nodes": len(self.nodes),
            "n_edges": len(self.edges),
            "n_named_loops": len(self.spec.loops),
            "n_simple_cycles": len(cycles),
            "n_reinforcing_cycles": sum(c.polarity == "R" for c in cycles),
            "n_balancing_cycles": sum(c.polarity == "B" for c in cycles),
            "n_inferred_edges": sum(e.inferred for e in self.edges),
            "nodes": [{"id": n.id, "label_en": n.label_en, "label_nl": n.label_nl,
                       "resource": n.resource, "role": n.role} for n in self.spec.nodes],
            "edges": [{"source": e.source, "target": e.target, "sign": e.sign, "delay": e.delay,
                       "inferred": e.inferred} for e in self.edges],
            "loops": [{"id": lp.id, "title": lp.title, "nodes": list(lp.nodes),
                       "polarity": lp.polarity} for lp in self.spec.loops],
        }

    # ------------------------------------------------------------------ drawing / display
    def draw(self, **kwargs: object) -> object:
        """Draw the diagram; see :func:`veerkracht_bayes.graph.drawing.draw_graph` for arguments."""
        from veerkracht_bayes.graph.drawing import draw_graph

        return draw_graph(self, **kwargs)  # type: ignore[arg-type]

    def _repr_svg_(self) -> str:
        from veerkracht_bayes.graph.drawing import graph_svg

        return graph_svg(self)

    def _repr_html_(self) -> str:
        from veerkracht_bayes.graph.drawing import graph_html

        return graph_html(self)

    def __repr__(self) -> str:
        return (f"CausalGraph(name={self.name!r}, nodes={len(self.nodes)}, edges={len(self.edges)}, "
                f"named_loops={len(self.spec.loops)})")


def load_graph(source: str | Path | GraphSpec | CausalGraph = "marvel") -> CausalGraph:
    """Load a diagram.

    Parameters
    ----------
    source
        ``"marvel"`` (the shipped diagram), a path to a YAML graph file or a lavaan
        model-syntax file (``.lav``, ``.lavaan``, ``.txt``), a :class:`GraphSpec` or a
        :class:`CausalGraph` (returned unchanged).

    Raises
    ------
    SpecError
        If the file is invalid (the message locates each problem).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> g
    CausalGraph(name='marvel', nodes=42, edges=72, named_loops=6)
    >>> "wellbeing" in g.nodes
    True
    """
    if isinstance(source, CausalGraph):
        return source
    if isinstance(source, GraphSpec):
        return CausalGraph(source)
    if str(source) == "marvel":
        path = marvel_path()
        return CausalGraph(load_graph_spec(path), path)
    path = Path(source)
    if path.suffix.lower() in {".lav", ".lavaan", ".txt", ".model"}:
        return graph_from_lavaan_file(path)
    return CausalGraph(load_graph_spec(path), path)


def graph_from_lavaan(source: str | LavaanModel, *, name: str | None = None, resource: str = "individual",
                      path: str | Path | None = None) -> CausalGraph:
    """Build a causal graph from lavaan model syntax.

    Parameters
    ----------
    source
        lavaan syntax text or a parsed :class:`~veerkracht_bayes.graph.lavaan_syntax.LavaanModel`.
    name
        Graph name (default: the file stem, or ``"lavaan"``).
    resource
        Resource type given to every node (lavaan has no such notion).
    path
        File the text came from (for messages), when ``source`` is text.

    Returns
    -------
    CausalGraph

    Raises
    ------
    SpecError
        Located at the lavaan line (see :func:`~veerkracht_bayes.graph.lavaan_syntax.spec_from_lavaan`).

    Examples
    --------
    >>> g = graph_from_lavaan("y ~ x")
    >>> [e.key for e in g.edges]
    ['x->y']
    """
    spec, file = spec_from_lavaan(source, name=name, resource=resource, path=path)
    return CausalGraph(spec, file)


def graph_from_lavaan_file(path: str | Path, *, name: str | None = None,
                           resource: str = "individual") -> CausalGraph:
    """Read a lavaan model-syntax file as a causal graph (see :func:`graph_from_lavaan`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "m.lav"
    >>> _ = f.write_text("y ~ x")
    >>> graph_from_lavaan_file(f).name
    'm'
    """
    return graph_from_lavaan(read_lavaan(path), name=name, resource=resource)
