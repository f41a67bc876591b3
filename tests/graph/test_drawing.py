"""Drawing: graphviz description, matplotlib fallback, Jupyter display."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from veerkracht_bayes.graph import drawing
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.drawing import (
    LOOP_COLOURS,
    RESOURCE_COLOURS,
    SIGN_COLOURS,
    LINK_LEGEND,
    draw_graph,
    legend_entries,
    link_style,
    to_digraph,
)
from veerkracht_bayes.errors import ConfigError, SpecError
from veerkracht_bayes.graph.spec import EdgeSpec, GraphSpec, LoopSpec, NodeSpec

HAS_DOT = shutil.which("dot") is not None


@pytest.fixture()
def small() -> CausalGraph:
    nodes = [NodeSpec(id="a", label_en="Alpha", label_nl="A", resource="individual", role="construct"),
             NodeSpec(id="b", label_en="Beta", label_nl="B", resource="societal", role="construct"),
             NodeSpec(id="c", label_en="Gamma", label_nl="C", resource="organisational",
                      role="construct"),
             NodeSpec(id="x", label_en="Ex", label_nl="X", resource="individual", role="exogenous"),
             NodeSpec(id="p", label_en="Lever", label_nl="P", resource="organisational",
                      role="policy_lever")]
    e = dict(evidence="test")
    edges = [EdgeSpec(source="a", target="b", sign="+", **e),
             EdgeSpec(source="b", target="c", sign="-", **e),
             EdgeSpec(source="c", target="a", sign="-", **e),
             EdgeSpec(source="x", target="a", sign="+", **e),
             EdgeSpec(source="p", target="c", sign="+", inferred=True, **e)]
    loops = [LoopSpec(id="L1", title="abc", nodes=["a", "b", "c"], polarity="R")]
    return CausalGraph(GraphSpec(spec_version=1, name="small", nodes=nodes, edges=edges, loops=loops))


@pytest.fixture()
def no_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drawing, "dot_available", lambda: False)
    drawing.reset_dot_warning()


def _node_attrs(src: str, node: str) -> str:
    m = re.search(rf"^\s*{node} \[(.*)\]$", src, re.M)
    assert m, node
    return m.group(1)


def _edge_attrs(src: str, a: str, b: str) -> str:
    m = re.search(rf"^\s*{a} -> {b} \[(.*)\]$", src, re.M)
    assert m, (a, b)
    return m.group(1)


def test_digraph_styles(small: CausalGraph) -> None:
    src = to_digraph(small).source
    for n in small.spec.nodes:
        attrs = _node_attrs(src, n.id)
        fill, border = RESOURCE_COLOURS[n.resource]
        assert f'fillcolor="{fill}"' in attrs and f'color="{border}"' in attrs
    assert "shape=hexagon" in _node_attrs(src, "p")
    assert "shape=hexagon" not in _node_attrs(src, "a")
    assert "dashed" in _node_attrs(src, "x") and "dashed" not in _node_attrs(src, "a")
    neg = _edge_attrs(src, "b", "c")
    assert "label=\"\u2212\"" in neg or "label=\u2212" in neg
    assert f'color="{SIGN_COLOURS["-"]}"' in neg
    pos = _edge_attrs(src, "a", "b")
    assert "label=\"+\"" in pos and f'color="{SIGN_COLOURS["+"]}"' in pos
    # one legend: dashed lines mean prior-dominated (posterior drawings only), so the plain
    # drawing draws every link solid; an inferred link has the open arrowhead instead
    inferred = _edge_attrs(src, "p", "c")
    assert "arrowhead=onormal" in inferred and "style=solid" in inferred
    assert "style=solid" in pos and "arrowhead=normal" in pos
    assert "style=dashed" not in "\n".join(x for x in src.splitlines() if "->" in x)
    assert "penwidth" not in src
    # the legend under the drawing says so, in the legend's own words
    for e in legend_entries(posterior=False):
        assert e.label in src
    assert LINK_LEGEND["prior-dominated"].label not in src


def test_digraph_highlights_only_loop_edges(small: CausalGraph) -> None:
    src = to_digraph(small, highlight_loops=["L1"]).source
    loop_edges = {("a", "b"), ("b", "c"), ("c", "a")}
    for e in small.edges:
        attrs = _edge_attrs(src, e.source, e.target)
        highlighted = (e.source, e.target) in loop_edges
        assert ("penwidth=3" in attrs) == highlighted
        assert (LOOP_COLOURS[0] in attrs) == highlighted


def test_fallback_warns_and_writes_svg_png(small: CausalGraph, no_dot: None, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="veerkracht_bayes.graph.drawing"):
        fig = draw_graph(small, out=tmp_path / "g.svg")
    assert isinstance(fig, Figure)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "dot" in text and "apt-get install graphviz" in text and "brew install graphviz" in text
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    draw_graph(small, out=tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    draw_graph(small, out=tmp_path / "g.out", fmt="svg")
    assert "<svg" in (tmp_path / "g.out").read_text(encoding="utf-8")


def test_one_legend_for_every_drawing(small: CausalGraph, no_dot: None) -> None:
    """Solid = data-informed, dashed = prior-dominated, open arrowhead = inferred: the same in
    the legend entries, link_style, the matplotlib fallback's lines and its legend."""
    entries = {e.key: e for e in legend_entries()}
    assert entries["data-informed"].style == "solid"
    assert entries["prior-dominated"].style == "dashed"
    assert entries["inferred"].arrowhead == "onormal"
    assert {e.style for k, e in entries.items() if k != "prior-dominated"} == {"solid"}
    edge = small.edges[-1]  # p -> c, inferred
    assert link_style(edge) == ("solid", "onormal")
    assert link_style(edge, {edge.key: "data-informed"}) == ("solid", "onormal")
    assert link_style(edge, {}) == ("dashed", "onormal")
    fig = draw_graph(small)
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    assert {p.get_linestyle() for p in arrows} <= {"-", "solid"}
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    for e in legend_entries(posterior=False):
        assert e.label in texts
    assert LINK_LEGEND["prior-dominated"].label not in texts
    from veerkracht_bayes.graph.drawing import matplotlib_legend_handles

    styles = {h.get_label(): h.get_linestyle() for h in matplotlib_legend_handles(legend_entries())}
    assert styles[entries["prior-dominated"].label] == "--"
    assert styles[entries["data-informed"].label] == "-"


def test_fallback_highlights_loop_edges(small: CausalGraph, no_dot: None) -> None:
    fig = draw_graph(small, highlight_loops=["L1"])
    widths = sorted(p.get_linewidth() for p in fig.axes[0].patches
                    if type(p).__name__ == "FancyArrowPatch")
    assert len(widths) == len(small.edges)
    assert widths.count(max(widths)) == 3 and max(widths) > 2 * min(widths)


def test_bad_inputs(small: CausalGraph, no_dot: None, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown loop 'L2' to highlight.*expected one of L1"):
        draw_graph(small, highlight_loops=["L2"])
    with pytest.raises(ConfigError, match=r"unsupported drawing format 'jpg'.*svg, png or pdf"):
        draw_graph(small, out=tmp_path / "g.jpg")
    with pytest.raises(ConfigError, match="has no suffix"):
        draw_graph(small, out=tmp_path / "g")


def test_jupyter_reprs(small: CausalGraph, no_dot: None) -> None:
    svg = small._repr_svg_()
    assert "<svg" in svg
    page = small._repr_html_()
    assert "<svg" in page and "<?xml" not in page
    assert "simple cycles" in page and "L1" in page
    n_cycles = len(small.simple_cycles())
    assert re.search(rf"simple cycles</th><td>{n_cycles}<", page)
    assert isinstance(small.draw(), Figure)


def test_marvel_fallback_drawing(marvel, no_dot: None, tmp_path: Path) -> None:
    out = tmp_path / "marvel.svg"
    fig = draw_graph(marvel, highlight_loops=["L1", "L3"], out=out)
    assert isinstance(fig, Figure) and out.stat().st_size > 10_000


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' program not installed")
def test_dot_rendering(marvel, tmp_path: Path) -> None:
    out = tmp_path / "marvel.svg"
    d = draw_graph(marvel, highlight_loops=["L1"], out=out)
    assert hasattr(d, "source")
    svg = out.read_text(encoding="utf-8")
    assert "<svg" in svg and "\u2212" in svg
    png = tmp_path / "marvel.png"
    draw_graph(marvel, out=png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in marvel._repr_svg_()
