"""Drawing causal diagrams: graphviz when the ``dot`` program exists, matplotlib otherwise.

Colours follow the TNO report: individual resources red, societal blue,
organisational grey. Policy levers are hexagons, exogenous nodes have a dashed
border. Edges carry ``+`` or ``−`` and are coloured by sign (green ``+``, red ``−``);
inferred edges (our reading, not a statement of the report) get an open arrowhead. Named
loops can be highlighted: their edges are drawn thicker in the loop's colour.

One legend (:data:`LINK_LEGEND`, :func:`legend_entries`) says what a link's look means, and
every drawing uses it: this module's graphviz and matplotlib drawings, the posterior diagram
of :mod:`veerkracht_bayes.report.figures` and the legend printed in the policy brief. Line
style is kept for one thing only: **solid = data-informed, dashed = prior-dominated** (a
posterior drawing; a drawing of the diagram alone draws every link solid). Colour is the sign,
the arrowhead says whether the report states the link.

The graphviz Python package only writes DOT source; rendering needs the Graphviz
``dot`` executable. When it is missing, :func:`draw_graph` logs how to install it
and draws with matplotlib (networkx layout) instead, which writes SVG and PNG too.
"""

from __future__ import annotations

import html
import io
import logging
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veerkracht_bayes.errors import ConfigError, Problem, SpecError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import graphviz
    from matplotlib.figure import Figure

    from veerkracht_bayes.graph.causal_graph import CausalGraph

__all__ = [
    "RESOURCE_COLOURS",
    "SIGN_COLOURS",
    "LOOP_COLOURS",
    "ROLE_SHAPES",
    "DOT_INSTALL_HINT",
    "dot_available",
    "reset_dot_warning",
    "to_digraph",
    "draw_matplotlib",
    "draw_graph",
    "graph_svg",
    "graph_html",
    "wrap_label",
    "diagram_layout",
    "node_groups",
    "LINK_LEGEND",
    "LegendEntry",
    "legend_entries",
    "link_style",
    "add_graphviz_legend",
    "matplotlib_legend_handles",
]

logger = logging.getLogger(__name__)

#: Resource type -> (fill colour, border colour), as in the report.
RESOURCE_COLOURS: dict[str, tuple[str, str]] = {
    "individual": ("#f5c4bf", "#c0392b"),
    "societal": ("#c4d9f0", "#1f5fa8"),
    "organisational": ("#dedede", "#666666"),
}
#: Edge sign -> colour.
SIGN_COLOURS: dict[str, str] = {"+": "#1b7837", "-": "#b2182b"}
#: Colours for highlighted loops, in order.
LOOP_COLOURS: tuple[str, ...] = ("#e08214", "#542788", "#01665e", "#c51b7d", "#8c510a",
                                 "#2166ac", "#7f3b08", "#35978f")
#: Role -> graphviz node shape.
ROLE_SHAPES: dict[str, str] = {"construct": "ellipse", "exogenous": "ellipse",
                               "policy_lever": "hexagon"}
#: How to get the Graphviz ``dot`` program.
DOT_INSTALL_HINT = ("install Graphviz to get it: 'apt-get install graphviz' (Debian/Ubuntu), "
                    "'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz'")
_MINUS = "\u2212"


class LegendEntry(tuple):
    """One legend line: ``(key, label, colour, line style, arrowhead)``.

    ``style`` is ``"solid"`` or ``"dashed"`` (the same word in graphviz and matplotlib),
    ``arrowhead`` is ``"normal"`` (filled) or ``"onormal"`` (open), graphviz's names.

    Examples
    --------
    >>> entries = legend_entries()
    >>> isinstance(entries[0], LegendEntry)
    True
    """

    __slots__ = ()

    def __new__(cls, key: str, label: str, colour: str, style: str, arrowhead: str) -> "LegendEntry":
        return super().__new__(cls, (key, label, colour, style, arrowhead))

    key = property(lambda self: self[0])
    label = property(lambda self: self[1])
    colour = property(lambda self: self[2])
    style = property(lambda self: self[3])
    arrowhead = property(lambda self: self[4])


_NEUTRAL = "#444444"
#: The links' legend, shared by every drawing and the brief (key -> entry).
LINK_LEGEND: dict[str, LegendEntry] = {
    "positive": LegendEntry("positive", "+ link (more of one, more of the other)",
                            SIGN_COLOURS["+"], "solid", "normal"),
    "negative": LegendEntry("negative", f"{_MINUS} link (more of one, less of the other)",
                            SIGN_COLOURS["-"], "solid", "normal"),
    "data-informed": LegendEntry("data-informed", "solid line: data-informed link", _NEUTRAL,
                                 "solid", "normal"),
    "prior-dominated": LegendEntry("prior-dominated",
                                   "dashed line: prior-dominated link (mainly the literature)",
                                   _NEUTRAL, "dashed", "normal"),
    "inferred": LegendEntry("inferred", "open arrowhead: inferred link (our reading of the report)",
                            _NEUTRAL, "solid", "onormal"),
}


def legend_entries(posterior: bool = True) -> list[LegendEntry]:
    """The legend lines of a drawing: with a posterior the data-informed / prior-dominated
    line styles are included; the plain diagram draws every link solid and leaves them out.

    Examples
    --------
    >>> [e.style for e in legend_entries()]
    ['solid', 'solid', 'solid', 'dashed', 'solid']
    >>> [e.key for e in legend_entries(posterior=False)]
    ['positive', 'negative', 'inferred']
    """
    keys = (["positive", "negative", "data-informed", "prior-dominated", "inferred"] if posterior
            else ["positive", "negative", "inferred"])
    return [LINK_LEGEND[k] for k in keys]


def link_style(edge: Any, edge_class: dict[str, str] | None = None) -> tuple[str, str]:
    """``(line style, arrowhead)`` of a link by :data:`LINK_LEGEND`.

    ``edge_class`` (edge key -> ``"data-informed"`` / ``"prior-dominated"``) is given for a
    posterior drawing: data-informed links are solid, all others dashed. Without it every link
    is solid. Inferred links get the open arrowhead.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> link_style(load_graph("marvel").edges[0])
    ('solid', 'normal')
    """
    if edge_class is None:
        style = "solid"
    else:
        cls = "data-informed" if edge_class.get(edge.key) == "data-informed" else "prior-dominated"
        style = LINK_LEGEND[cls].style
    head = LINK_LEGEND["inferred"].arrowhead if edge.inferred else "normal"
    return style, head


def add_graphviz_legend(d: Any, entries: Sequence[LegendEntry], title: str = "",
                        fontsize: str = "11") -> None:
    """Put ``entries`` as the legend text under a graphviz Digraph (its graph label), in the
    words of :data:`LINK_LEGEND`, so the drawing explains itself outside the brief too.

    Examples
    --------
    >>> import graphviz
    >>> d = graphviz.Digraph()
    >>> add_graphviz_legend(d, legend_entries(), title="Links")
    >>> "Links" in d.source
    True
    """
    words = [f"{'green' if e.key == 'positive' else 'red' if e.key == 'negative' else ''} "
             f"{e.label}".strip() for e in entries]
    half = (len(words) + 1) // 2
    lines = ([title] if title else []) + ["Legend: " + " · ".join(words[:half]),
                                          " · ".join(words[half:])]
    d.attr("graph", label="\n".join(x for x in lines if x), labelloc="b", labeljust="l",
           fontsize=fontsize)


def matplotlib_legend_handles(entries: Sequence[LegendEntry]) -> list[Any]:
    """Matplotlib handles for ``entries`` (same colours, line styles and labels).

    Examples
    --------
    >>> handles = matplotlib_legend_handles(legend_entries())
    >>> len(handles) == len(legend_entries())
    True
    """
    from matplotlib.lines import Line2D

    out = []
    for e in entries:
        marker = "$\u25b7$" if e.arrowhead == "onormal" else "$\u25b6$"
        out.append(Line2D([], [], color=e.colour, lw=2, ls="--" if e.style == "dashed" else "-",
                          marker=marker, markevery=[-1], ms=8, label=e.label))
    return out


_FORMATS = ("svg", "png", "pdf")
_WARNED = False


def dot_available() -> bool:
    """True when the Graphviz ``dot`` executable is on ``PATH``.

    Examples
    --------
    >>> isinstance(dot_available(), bool)
    True
    """
    return shutil.which("dot") is not None


def reset_dot_warning() -> None:
    """Let the next drawing without Graphviz warn again.

    Drawing falls back to matplotlib when ``dot`` is missing and says so once per process; after
    this call the next fallback says it again (useful in a long Jupyter session, and in tests).

    Examples
    --------
    >>> reset_dot_warning()
    """
    global _WARNED
    _WARNED = False


def _sign_text(sign: str) -> str:
    return "+" if sign == "+" else _MINUS


def wrap_label(label: str, width: int = 16) -> str:
    """Wrap at spaces (and hyphens); a word longer than ``width`` stays whole.

    Examples
    --------
    >>> print(wrap_label("collective agency of the neighbourhood", 16))
    collective
    agency of the
    neighbourhood
    """
    return "\n".join(textwrap.wrap(label, width=width, break_long_words=False)) or label


def _highlight_map(graph: "CausalGraph", loops: Iterable[Any]) -> dict[str, list[str]]:
    """Edge key -> colours of the highlighted loops that use it."""
    ids = [lp.id for lp in graph.loops]
    out: dict[str, list[str]] = {}
    for i, lp in enumerate(loops):
        colour = LOOP_COLOURS[i % len(LOOP_COLOURS)]
        if isinstance(lp, str):
            if lp not in ids:
                raise SpecError(Problem(
                    f"unknown loop {lp!r} to highlight{did_you_mean(lp, ids)}; expected one of "
                    f"{', '.join(ids) or '(the graph has no named loops)'}",
                    field="highlight", value=lp))
            keys = graph.loop_edge_keys(lp)
        else:  # a Cycle or a node sequence
            nodes = list(getattr(lp, "nodes", lp))
            ring = nodes + nodes[:1]
            keys = [f"{a}->{b}" for a, b in zip(ring[:-1], ring[1:])]
        for k in keys:
            out.setdefault(k, []).append(colour)
    return out


def _format(out: str | Path | None, fmt: str | None) -> str | None:
    if fmt is None and out is not None:
        fmt = Path(out).suffix.lower().lstrip(".") or None
        if fmt is None:
            raise ConfigError(Problem(f"output file {str(out)!r} has no suffix; expected "
                                      "one of .svg, .png, .pdf", file=str(out), field="out"))
    if fmt is not None and fmt.lower() not in _FORMATS:
        raise ConfigError(Problem(f"unsupported drawing format {fmt!r}{did_you_mean(fmt, _FORMATS)}; "
                                  "expected svg, png or pdf", file=None if out is None else str(out),
                                  field="format", value=fmt))
    return None if fmt is None else fmt.lower()


def to_digraph(graph: "CausalGraph", *, highlight_loops: Sequence[Any] = (),
               engine: str = "dot") -> "graphviz.Digraph":
    """Build the graphviz description of a diagram (needs no ``dot`` executable).

    Parameters
    ----------
    graph
        The diagram.
    highlight_loops
        Named-loop ids (or cycles / node sequences) whose edges are drawn thick and
        coloured.
    engine
        Graphviz layout engine (``dot``, ``neato``, ``circo``, ...).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> d = to_digraph(load_graph("marvel"))
    >>> "wellbeing" in d.source
    True
    """
    import graphviz

    hl = _highlight_map(graph, highlight_loops)
    d = graphviz.Digraph(name=graph.name, engine=engine)
    d.attr("graph", rankdir="LR", fontname="Helvetica", label=graph.name, labelloc="t",
           fontsize="16", nodesep="0.25", ranksep="0.5")
    d.attr("node", fontname="Helvetica", fontsize="10", style="filled")
    d.attr("edge", fontname="Helvetica", fontsize="11", arrowsize="0.7")
    for n in graph.spec.nodes:
        fill, border = RESOURCE_COLOURS.get(n.resource, ("#ffffff", "#000000"))
        style = "filled,dashed" if n.role == "exogenous" else (
            "filled,bold" if n.role == "policy_lever" else "filled")
        d.node(n.id, label=wrap_label(n.label_en), shape=ROLE_SHAPES.get(n.role, "ellipse"),
               fillcolor=fill, color=border, style=style,
               tooltip=f"{n.label_en} / {n.label_nl} ({n.resource}, {n.role})")
    for e in graph.edges:
        colours = hl.get(e.key)
        style, head = link_style(e)
        attrs = dict(label=_sign_text(e.sign), fontcolor=SIGN_COLOURS[e.sign],
                     color=SIGN_COLOURS[e.sign], style=style, arrowhead=head,
                     tooltip=f"{e.source} -> {e.target} ({e.sign}): {e.evidence}")
        if colours:
            attrs.update(color=":".join(colours), penwidth="3")
        d.edge(e.source, e.target, **attrs)
    add_graphviz_legend(d, legend_entries(posterior=False), title=graph.name)
    return d


def draw_matplotlib(graph: "CausalGraph", *, highlight_loops: Sequence[Any] = (),
                    seed: int = 0) -> "Figure":
    """Draw a diagram with matplotlib and a networkx layout (no Graphviz needed).

    Parameters
    ----------
    graph
        The diagram.
    highlight_loops
        Named-loop ids (or cycles / node sequences) to highlight.
    seed
        Seed of the layout (used when the graph is disconnected).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> fig = draw_matplotlib(load_graph("marvel"))
    >>> type(fig).__name__
    'Figure'
    """
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    hl = _highlight_map(graph, highlight_loops)
    g = graph.nx
    n = max(len(graph.nodes), 1)
    pos = diagram_layout(g, seed)
    side = min(6 + 0.3 * n, 18)
    fig = Figure(figsize=(side, side * 0.75))
    ax = fig.add_subplot()
    size = 1400 if n <= 40 else 700
    for n_spec_group in node_groups(graph):
        (resource, role), ids = n_spec_group
        fill, border = RESOURCE_COLOURS.get(resource, ("#ffffff", "#000000"))
        coll = nx.draw_networkx_nodes(g, pos, nodelist=ids, ax=ax, node_size=size,
                                      node_color=fill, edgecolors=border,
                                      linewidths=2.0 if role == "policy_lever" else 1.2,
                                      node_shape="h" if role == "policy_lever" else "o")
        if role == "exogenous":
            coll.set_linestyle("--")
    conn = "arc3,rad=0.12"
    for e in graph.edges:
        colours = hl.get(e.key)
        nx.draw_networkx_edges(g, pos, edgelist=[(e.source, e.target)], ax=ax, node_size=size,
                               edge_color=colours[0] if colours else SIGN_COLOURS[e.sign],
                               width=3.0 if colours else 1.2,
                               style=link_style(e)[0],
                               arrowstyle="->" if e.inferred else "-|>",
                               arrows=True, arrowsize=12, connectionstyle=conn)
    for sign in ("+", "-"):
        labels = {(e.source, e.target): _sign_text(e.sign) for e in graph.edges if e.sign == sign}
        if labels:
            nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, ax=ax, font_size=9,
                                         font_color=SIGN_COLOURS[sign], node_size=size,
                                         connectionstyle=conn, rotate=False,
                                         bbox=dict(boxstyle="round,pad=0.1", fc="white",
                                                   ec="none", alpha=0.7))
    nx.draw_networkx_labels(g, pos, labels={v.id: wrap_label(v.label_en, 14) for v in graph.spec.nodes},
                            ax=ax, font_size=7)
    handles = [Patch(facecolor=f, edgecolor=b, label=r) for r, (f, b) in RESOURCE_COLOURS.items()
               if r in {v.resource for v in graph.spec.nodes}]
    handles += matplotlib_legend_handles(legend_entries(posterior=False))
    for i, lp in enumerate(highlight_loops):
        handles.append(Line2D([], [], color=LOOP_COLOURS[i % len(LOOP_COLOURS)], linewidth=3,
                              label=f"loop {lp}" if isinstance(lp, str) else "highlighted cycle"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ax.set_title(graph.name)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def diagram_layout(g: Any, seed: int) -> dict[str, Any]:
    """Node positions for a matplotlib drawing: a Kamada-Kawai (stress-minimising) start, then a
    few spring steps to separate close nodes (a plain spring layout for tiny or disconnected
    graphs).

    Examples
    --------
    >>> import networkx as nx
    >>> pos = diagram_layout(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")]), seed=0)
    >>> sorted(pos), pos["a"].shape
    (['a', 'b', 'c'], (2,))
    """
    import networkx as nx

    n = g.number_of_nodes()
    if n <= 2 or not nx.is_weakly_connected(g):
        return nx.spring_layout(g, seed=seed)
    und = nx.Graph(g)
    start = nx.kamada_kawai_layout(und)
    return nx.spring_layout(und, pos=start, k=1.6 / n**0.5, iterations=40, seed=seed)


def node_groups(graph: "CausalGraph") -> list[tuple[tuple[str, str], list[str]]]:
    """Node ids grouped by ``(resource, role)``, in the graph file's order (one colour and
    shape per group in a drawing).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> groups = dict(node_groups(vb.load_graph("marvel")))
    >>> len(groups[("individual", "construct")]) > 0
    True
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for v in graph.spec.nodes:
        groups.setdefault((v.resource, v.role), []).append(v.id)
    return list(groups.items())


def _warn_missing_dot() -> None:
    global _WARNED
    if not _WARNED:
        logger.warning("the Graphviz 'dot' program is not on PATH, so the diagram is drawn with "
                       "matplotlib instead; %s", DOT_INSTALL_HINT)
        _WARNED = True


def draw_graph(
    graph: "CausalGraph",
    *,
    highlight_loops: Sequence[Any] = (),
    out: str | Path | None = None,
    fmt: str | None = None,
    engine: str = "dot",
) -> "graphviz.Digraph | Figure":
    """Draw a causal diagram, optionally writing it to a file.

    Parameters
    ----------
    graph
        The diagram.
    highlight_loops
        Named-loop ids (e.g. ``["L1", "L3"]``), or cycles / node sequences, whose edges
        are drawn thicker in a loop colour.
    out
        File to write; the format comes from its suffix (``.svg``, ``.png``, ``.pdf``)
        unless ``fmt`` is given.
    fmt
        Output format, overriding the suffix.
    engine
        Graphviz layout engine.

    Returns
    -------
    graphviz.Digraph or matplotlib.figure.Figure
        A :class:`graphviz.Digraph` when the ``dot`` program is available, otherwise a
        matplotlib figure (a warning says how to install Graphviz).

    Raises
    ------
    SpecError
        For an unknown loop id (with a did-you-mean).
    ConfigError
        For an unsupported output format.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> drawing = draw_graph(graph_from_lavaan("b ~ a\\na ~ b"), highlight_loops=[["a", "b"]])
    >>> type(drawing).__name__ in ("Digraph", "Figure")
    True
    """
    fmt = _format(out, fmt)
    _highlight_map(graph, highlight_loops)  # validate loop ids before drawing
    if dot_available():
        d = to_digraph(graph, highlight_loops=highlight_loops, engine=engine)
        if out is not None:
            Path(out).write_bytes(d.pipe(format=fmt))
            logger.info("wrote %s (graphviz, %s)", out, fmt)
        return d
    _warn_missing_dot()
    fig = draw_matplotlib(graph, highlight_loops=highlight_loops)
    if out is not None:
        fig.savefig(out, format=fmt, dpi=150)
        logger.info("wrote %s (matplotlib, %s)", out, fmt)
    return fig


def graph_svg(graph: "CausalGraph", *, highlight_loops: Sequence[Any] = ()) -> str:
    """The diagram as SVG text (graphviz if available, matplotlib otherwise).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> graph_svg(load_graph("marvel")).lstrip().startswith("<")
    True
    """
    drawing = draw_graph(graph, highlight_loops=highlight_loops)
    if hasattr(drawing, "pipe"):
        return drawing.pipe(format="svg").decode("utf-8")
    buf = io.StringIO()
    drawing.savefig(buf, format="svg")
    return buf.getvalue()


def graph_html(graph: "CausalGraph") -> str:
    """An HTML summary: counts, named loops (found / polarity) and the drawing.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> "<svg" in graph_html(load_graph("marvel"))
    True
    """
    info = graph.info()
    esc = html.escape
    counts = [("nodes", info["n_nodes"]), ("edges", info["n_edges"]),
              ("inferred edges", info["n_inferred_edges"]), ("named loops", info["n_named_loops"]),
              ("simple cycles", info["n_simple_cycles"]),
              ("reinforcing / balancing", f"{info['n_reinforcing_cycles']} / "
                                          f"{info['n_balancing_cycles']}")]
    rows = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                   for k, v in counts)
    loops = "".join(
        f"<tr><td>{esc(c.id)}</td><td>{esc(c.title)}</td><td>{esc(' → '.join(c.nodes))}</td>"
        f"<td>{esc(c.stated_polarity)}</td><td>{'yes' if c.found else 'no'}</td>"
        f"<td>{esc(c.polarity or '–')}</td></tr>" for c in graph.check_loops())
    loop_table = ("<table><tr><th>id</th><th>title</th><th>cycle</th><th>stated</th>"
                  f"<th>found</th><th>polarity</th></tr>{loops}</table>") if loops else ""
    svg = graph_svg(graph)
    svg = svg[svg.find("<svg"):] if "<svg" in svg else svg
    return (f"<div><h4>CausalGraph {esc(graph.name)}</h4><table>{rows}</table>{loop_table}"
            f"<div style='max-width:100%;overflow:auto'>{svg}</div></div>")
