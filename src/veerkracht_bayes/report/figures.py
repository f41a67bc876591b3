"""Figures for the policy brief: forest plots, subgroup panel, posterior diagram, loops, dynamics.

Every figure is a matplotlib :class:`~matplotlib.figure.Figure` built without pyplot (no global
state, Agg canvas), saved with :func:`save_figure` as SVG and PNG with fixed metadata and a fixed
SVG hash salt, so the same run gives byte-identical files.

Conventions
-----------
* Effects are in SD units of the outcome; intervals are the central ``ci_prob`` intervals of the
  effects table (:mod:`veerkracht_bayes.causal.summaries`).
* The desirable direction is marked on every effect axis (``better →`` or ``← better``);
  policies are ranked by the probability that they help (a change larger than the minimal
  relevant change in the desirable direction), then by the mean (:func:`ranked_policies`).
* Suppressed cells (subgroups below the minimum size) are drawn as a grey "suppressed" note with
  the reason, with every respondent count removed (:func:`safe_reason`); their numbers are never
  plotted, even if a table carries them.
* The diagram with posterior link strengths colours nodes by resource type (individual red,
  societal blue, organisational grey, as in the report), draws each link with a width
  proportional to ``|posterior mean|``, solid when the link is data-informed and dashed when it
  is prior-dominated (or unclassified); links that are our reading rather than the report's
  (``inferred``) get an open arrowhead. The legend is the one of
  :func:`veerkracht_bayes.graph.drawing.legend_entries`, the same in both drawings and in the
  brief. Graphviz is used when ``dot`` exists, matplotlib otherwise.
* Sized for A4: charts are at most 6.7 in (170 mm) wide with text of 8 pt or more, so printed
  at their own size nothing is smaller than 8 pt; several outcomes go in a grid of two
  columns, never in one long row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from veerkracht_bayes.graph.drawing import (RESOURCE_COLOURS, ROLE_SHAPES, SIGN_COLOURS,
                                            LegendEntry, add_graphviz_legend, diagram_layout,
                                            dot_available, legend_entries, link_style,
                                            matplotlib_legend_handles, node_groups, wrap_label)
from veerkracht_bayes.causal.summaries import desirable_direction

if TYPE_CHECKING:  # pragma: no cover
    import graphviz
    from matplotlib.figure import Figure

    from veerkracht_bayes.graph.causal_graph import CausalGraph

__all__ = ["FIGURE_FORMATS", "A4_TEXT_WIDTH_IN", "MIN_FONT_PT", "safe_reason", "save_figure", "policy_label", "decision_columns",
           "ranked_policies", "forest_plot",
           "subgroup_panel", "edge_posterior_means", "posterior_digraph",
           "posterior_diagram_matplotlib", "save_posterior_diagram", "loop_gain_plot",
           "trajectory_plot", "write_figures"]

logger = logging.getLogger(__name__)

#: Formats every figure is written in.
FIGURE_FORMATS = ("svg", "png")
#: Widest chart, in inches: the text width of an A4 page with 20 mm margins (170 mm).
A4_TEXT_WIDTH_IN = 6.7
#: Smallest font size (pt) in a chart, at its own size (= printed on A4).
MIN_FONT_PT = 8
_MINUS = "\u2212"
_GREY = "#8a8a8a"
_WITHIN = "#1f5fa8"
_POP = "#e08214"


def safe_reason(reason: str | None, min_cell_size: int | None = None) -> str:
    """A suppression reason with every respondent count removed.

    ``"subgroup 'youth' has n=23 respondents, below the minimum cell size 50; ..."`` becomes
    ``"subgroup 'youth' is below the minimum cell size (50)"``. Any other ``n=<digits>`` is
    replaced by ``n below the minimum``.

    Examples
    --------
    >>> safe_reason(None)
    'subgroup below the minimum cell size'
    """
    text = str(reason or "").strip()
    m = re.match(r"subgroup '([^']*)' has n=\d+ respondents, below the minimum cell size (\d+)", text)
    if m:
        return f"subgroup '{m.group(1)}' is below the minimum cell size ({m.group(2)})"
    text = re.sub(r"\bn\s*=\s*\d+(\s*respondents)?", "n below the minimum", text)
    text = re.sub(r";\s*estimates suppressed\s*$", "", text)
    if not text:
        text = ("subgroup below the minimum cell size" +
                (f" ({min_cell_size})" if min_cell_size else ""))
    return text


_RC = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8.5,
       "ytick.labelsize": 8.5, "legend.fontsize": 8.5, "legend.title_fontsize": 8.5,
       "figure.titlesize": 10}


def _fig(width: float, height: float) -> "Figure":
    """A constrained-layout figure no wider than :data:`A4_TEXT_WIDTH_IN`."""
    from matplotlib.figure import Figure

    return Figure(figsize=(min(width, A4_TEXT_WIDTH_IN), height), layout="constrained")


def _grid(fig: "Figure", n: int, sharey: bool = False) -> list[Any]:
    """``n`` panels in a grid of at most two columns (one long row never happens)."""
    cols = 1 if n <= 1 else 2
    rows = -(-n // cols)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def save_figure(fig: Any, out_dir: str | Path, name: str,
                formats: Sequence[str] = FIGURE_FORMATS) -> dict[str, Path]:
    """Save a matplotlib figure (or a graphviz Digraph) as ``out_dir/name.<fmt>``.

    Parameters
    ----------
    fig
        :class:`matplotlib.figure.Figure` or :class:`graphviz.Digraph`.
    out_dir
        Folder (created if missing).
    name
        File stem (no suffix).
    formats
        Formats to write (default SVG and PNG).

    Returns
    -------
    dict
        ``{format: path}``.

    Examples
    --------
    >>> import tempfile
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> paths = save_figure(fig, tempfile.mkdtemp(), "empty", formats=("svg",))
    >>> sorted(paths), paths["svg"].suffix
    (['svg'], '.svg')
    """
    import matplotlib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for fmt in formats:
        p = out / f"{name}.{fmt}"
        if hasattr(fig, "pipe"):
            p.write_bytes(fig.pipe(format=fmt))
        else:
            meta = {"Date": None} if fmt == "svg" else {}
            with matplotlib.rc_context({"svg.hashsalt": "veerkracht", "svg.fonttype": "none"}):
                fig.savefig(p, format=fmt, dpi=100, metadata=meta)
        paths[fmt] = p
    return paths


def policy_label(policy: str, titles: Mapping[str, str] | None = None, width: int = 34) -> str:
    """``"P01 Extra support for single parents"`` wrapped to ``width`` characters.

    Examples
    --------
    >>> print(policy_label("P01", {"P01": "Neighbourhood coaches for single parents"}))
    P01 Neighbourhood coaches for
    single parents
    """
    title = (titles or {}).get(policy)
    return wrap_label(f"{policy} {title}" if title else policy, width)


def _rows(effects: pd.DataFrame, outcome: str, scope: str) -> pd.DataFrame:
    return effects[(effects["outcome"] == outcome) & (effects["scope"] == scope)]


def _direction(effects: pd.DataFrame, outcome: str) -> int:
    sub = effects[effects["outcome"] == outcome]
    if "direction" in sub and len(sub):
        return int(sub["direction"].iloc[0])
    return desirable_direction(outcome)


def _mark_direction(ax: Any, direction: int) -> None:
    """Zero line and a "better" arrow in the desirable direction (inside the top corner)."""
    ax.axvline(0.0, color="#444444", lw=0.8)
    text = "better \u2192" if direction > 0 else "\u2190 better"
    ax.text(0.99 if direction > 0 else 0.01, 0.995, text, transform=ax.transAxes,
            ha="right" if direction > 0 else "left", va="top", fontsize=9, color="#1b7837",
            fontweight="bold", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.9))


def decision_columns(effects: pd.DataFrame) -> pd.DataFrame:
    """The effects table with the decision columns the brief and the figures read.

    The current contract (:mod:`veerkracht_bayes.causal.summaries`) has ``p_meaningful``
    (P(direction x effect > MRC)), ``reachable``, ``rank_lower``/``rank_upper`` and the evidence
    shares. For an older table they are filled in: ``p_meaningful`` from ``p_improve``,
    ``reachable`` False only where every number is exactly zero (no causal path), ranks and
    shares missing (NaN). Returns a copy; the input is not changed.

    Examples
    --------
    >>> import pandas as pd
    >>> df = decision_columns(pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "mean": [0.1], "p_improve": [0.8]}))
    >>> float(df["p_meaningful"].iloc[0])
    0.8
    """
    df = effects.copy()
    if "p_meaningful" not in df.columns:
        df["p_meaningful"] = df["p_improve"] if "p_improve" in df.columns else np.nan
    if "reachable" not in df.columns:
        zero = pd.Series(False, index=df.index)
        if {"mean", "lower", "upper"} <= set(df.columns):
            zero = ((df["mean"] == 0) & (df["lower"] == 0) & (df["upper"] == 0))
        df["reachable"] = ~zero
    df["reachable"] = df["reachable"].fillna(True).astype(bool)
    for k in ("rank_mean", "rank_lower", "rank_upper", "share_assumption", "share_literature",
              "share_data"):
        if k not in df.columns:
            df[k] = np.nan
    if "evidence" not in df.columns:
        df["evidence"] = ""
    return df


def ranked_policies(effects: pd.DataFrame, outcome: str, scope: str = "within") -> list[str]:
    """Policies in the brief's one ranking order for an outcome.

    Best first by the probability that the policy helps (``p_meaningful``: a change in the
    desirable direction larger than the minimal relevant change), ties broken by the mean
    effect in the desirable direction; then policies with no causal path to the outcome
    (not ranked), then suppressed ones. The ranking tables of the brief use the same order.

    Examples
    --------
    >>> import pandas as pd
    >>> eff = pd.DataFrame({"policy": ["P01", "P02"], "outcome": ["wellbeing"] * 2, "scope": ["within"] * 2,
    ...                     "mean": [0.1, 0.3], "p_meaningful": [0.6, 0.9], "suppressed": [False, False]})
    >>> ranked_policies(eff, "wellbeing")
    ['P02', 'P01']
    """
    rows = decision_columns(_rows(effects, outcome, scope))
    d = _direction(effects, outcome)
    ok = rows[~rows["suppressed"].astype(bool) & rows["reachable"]]
    k1 = (-ok["p_meaningful"].astype(float)).fillna(np.inf)
    k2 = (-d * ok["mean"].astype(float)).fillna(np.inf)
    order = list(ok.assign(_k1=k1, _k2=k2).sort_values(["_k1", "_k2", "policy"])["policy"])
    unreachable = [p for p in rows.loc[~rows["suppressed"].astype(bool), "policy"]
                   if p not in order]
    order += unreachable
    return order + [p for p in rows["policy"] if p not in order]


def forest_plot(effects: pd.DataFrame, outcome: str, *, titles: Mapping[str, str] | None = None,
                outcome_label: str | None = None) -> "Figure":
    """Forest plot of every policy's effect on one outcome.

    Filled dots with thick lines: effect within the targeted group (mean and central interval);
    open dots with thin lines: population average. Ordered as :func:`ranked_policies` (the
    brief's ranking tables use the same order); a policy with no causal path to the outcome shows
    "no path in the diagram" instead of a zero.

    Parameters
    ----------
    effects
        The effects table of :func:`~veerkracht_bayes.causal.summaries.summarise_effects`.
    outcome
        Outcome name.
    titles
        Policy id -> title, for the labels.
    outcome_label
        Axis label (default the outcome name).

    Examples
    --------
    >>> import pandas as pd
    >>> eff = pd.DataFrame({"policy": ["P01", "P02"], "outcome": ["wellbeing"] * 2, "scope": ["within"] * 2,
    ...                     "mean": [0.1, 0.3], "lower": [0.0, 0.1], "upper": [0.2, 0.5],
    ...                     "p_meaningful": [0.6, 0.9], "suppressed": [False, False]})
    >>> type(forest_plot(eff, "wellbeing")).__name__
    'Figure'
    """
    order = ranked_policies(effects, outcome, "within")
    within = decision_columns(_rows(effects, outcome, "within")).set_index("policy")
    pop = decision_columns(_rows(effects, outcome, "population")).set_index("policy")
    d = _direction(effects, outcome)
    n = len(order)
    fig = _fig(A4_TEXT_WIDTH_IN, 1.5 + 0.42 * n)
    ax = fig.add_subplot()
    ys = np.arange(n)[::-1]
    ci = float(within["ci_prob"].iloc[0]) if "ci_prob" in within and n else 0.9
    for y, p in zip(ys, order):
        w = within.loc[p]
        if bool(w["suppressed"]):
            ax.text(0.0, y, "  suppressed: " + safe_reason(w["reason"]), va="center", ha="left",
                    fontsize=8, color=_GREY, style="italic", transform=ax.get_yaxis_transform())
            continue
        if not bool(w["reachable"]):
            ax.text(0.0, y, "  no path in the diagram", va="center", ha="left", fontsize=8,
                    color=_GREY, style="italic", transform=ax.get_yaxis_transform())
            continue
        ax.plot([w["lower"], w["upper"]], [y + 0.12] * 2, color=_WITHIN, lw=3, solid_capstyle="butt")
        ax.plot(w["mean"], y + 0.12, "o", color=_WITHIN, ms=6)
        if p in pop.index and not bool(pop.loc[p, "suppressed"]):
            q = pop.loc[p]
            ax.plot([q["lower"], q["upper"]], [y - 0.14] * 2, color=_POP, lw=1.4)
            ax.plot(q["mean"], y - 0.14, "o", mfc="white", mec=_POP, ms=5)
    ax.set_yticks(ys, [policy_label(p, titles, 30) for p in order], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"effect on {outcome_label or outcome} (SD; {ci:.0%} interval)")
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=_WITHIN, lw=3, marker="o", label="within target group"),
                       Line2D([], [], color=_POP, lw=1.4, marker="o", mfc="white",
                              label="population average")],
              loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    _mark_direction(ax, d)
    ax.set_title(f"{outcome_label or outcome}: ranked by the probability it helps,\nthen the "
                 "mean effect", fontsize=9.5, loc="left")
    ax.grid(axis="x", color="#e0e0e0", lw=0.6)
    return fig


def subgroup_panel(effects: pd.DataFrame, outcomes: Sequence[str], *,
                   titles: Mapping[str, str] | None = None,
                   outcome_labels: Mapping[str, str] | None = None) -> "Figure":
    """Within-subgroup versus population effects of the targeted policies, one panel per outcome.

    Policies without a target group (``subgroup == "all"``) are left out (their two effects are
    equal). Suppressed cells are shown as "suppressed" with the reason, never with numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> eff = pd.DataFrame({"policy": ["P01", "P01"], "subgroup": ["refugee"] * 2,
    ...                     "outcome": ["wellbeing"] * 2, "scope": ["within", "population"],
    ...                     "mean": [0.3, 0.05], "lower": [0.1, 0.0], "upper": [0.5, 0.1],
    ...                     "p_meaningful": [0.9, 0.2], "suppressed": [False, False]})
    >>> type(subgroup_panel(eff, ["wellbeing"])).__name__
    'Figure'
    """
    targeted = effects[effects["subgroup"] != "all"]
    pols = list(dict.fromkeys(targeted["policy"]))
    outs = [o for o in outcomes if o in set(effects["outcome"])]
    n = max(len(pols), 1)
    rows = -(-max(len(outs), 1) // 2) if len(outs) > 1 else 1
    fig = _fig(A4_TEXT_WIDTH_IN, rows * (0.9 + 0.36 * n) + 0.5)
    axes = _grid(fig, max(len(outs), 1), sharey=True)
    ys = np.arange(n)[::-1]
    labels = []
    for p in pols:
        g = targeted.loc[targeted["policy"] == p, "subgroup"].iloc[0]
        labels.append(wrap_label(f"{p} → {str(g).replace('_', ' ')}", 20))
    for ax, o in zip(axes, outs):
        within = decision_columns(_rows(targeted, o, "within")).set_index("policy")
        pop = _rows(targeted, o, "population").set_index("policy")
        for y, p in zip(ys, pols):
            if p not in within.index:
                continue
            w = within.loc[p]
            if bool(w["suppressed"]):
                ax.text(0.02, y, "suppressed", va="center",
                        ha="left", fontsize=8, color=_GREY, style="italic",
                        transform=ax.get_yaxis_transform())
                continue
            if not bool(w["reachable"]):
                ax.text(0.02, y, "no path", va="center", ha="left", fontsize=8,
                        color=_GREY, style="italic", transform=ax.get_yaxis_transform())
                continue
            ax.plot([w["lower"], w["upper"]], [y + 0.12] * 2, color=_WITHIN, lw=3)
            ax.plot(w["mean"], y + 0.12, "o", color=_WITHIN, ms=5)
            q = pop.loc[p]
            ax.plot([q["lower"], q["upper"]], [y - 0.14] * 2, color=_POP, lw=1.4)
            ax.plot(q["mean"], y - 0.14, "o", mfc="white", mec=_POP, ms=4)
        ax.set_title(wrap_label((outcome_labels or {}).get(o, o), 30), fontsize=9, loc="left")
        ax.set_xlabel("effect (SD)")
        ax.grid(axis="x", color="#e0e0e0", lw=0.6)
        _mark_direction(ax, _direction(effects, o))
    for i, ax in enumerate(axes):
        if i % 2 == 0:
            ax.set_yticks(ys, labels, fontsize=8)
        else:
            ax.tick_params(labelleft=False)
    axes[0].set_ylim(-0.7, n - 0.3)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=_WITHIN, lw=3, marker="o", label="within the subgroup"),
                        Line2D([], [], color=_POP, lw=1.4, marker="o", mfc="white",
                               label="population average")],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


# ------------------------------------------------------------------------------ diagram
def edge_posterior_means(idata: Any, graph: "CausalGraph") -> dict[str, float]:
    """Posterior mean of every edge coefficient (``beta``), by edge key.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> means = edge_posterior_means(f.idata, f.graph)
    >>> len(means) == len(f.graph.edges)
    True
    """
    post = idata["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    beta = post["beta"].mean(("chain", "draw"))
    return {str(k): float(v) for k, v in zip(beta["edge"].values, beta.values)
            if str(k) in set(graph.edge_keys)}


def _width(value: float, vmax: float, lo: float = 0.6, hi: float = 6.0) -> float:
    return lo + (hi - lo) * min(abs(value) / vmax, 1.0) if vmax > 0 else lo


def _num(v: float) -> str:
    return f"{v:+.2f}".replace("-", _MINUS)


#: The posterior diagram's one extra legend line (width), beside the shared link legend.
_WIDTH_ENTRY = LegendEntry("width", "line width ∝ |posterior mean|", "#444444", "solid", "normal")


def posterior_digraph(graph: "CausalGraph", means: Mapping[str, float],
                      edge_class: Mapping[str, str] | None = None) -> "graphviz.Digraph":
    """Graphviz description of the diagram with posterior link strengths (no ``dot`` needed).

    Edge ``penwidth`` is proportional to ``|posterior mean|`` (0.6 to 6 pt, the largest link
    gets 6); ``style=solid`` for data-informed links, ``dashed`` otherwise; open arrowheads for
    inferred links (:func:`veerkracht_bayes.graph.drawing.link_style`); tooltips carry the
    posterior mean; the legend text under the drawing is
    :func:`veerkracht_bayes.graph.drawing.legend_entries`.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> d = posterior_digraph(graph_from_lavaan("b ~ a"), {"a->b": 0.4}, {"a->b": "data-informed"})
    >>> "posterior mean +0.400" in d.source
    True
    """
    import graphviz

    cls = dict(edge_class or {})
    vmax = max((abs(v) for v in means.values()), default=0.0)
    d = graphviz.Digraph(name=f"{graph.name}_posterior")
    # top to bottom, tight, no edge labels (the link table of the brief has the numbers, the
    # tooltips too): the drawing prints on landscape A4 with its text near 8 pt
    d.attr("graph", rankdir="TB", fontname="Helvetica", nodesep="0.05", ranksep="0.2",
           margin="0")
    d.attr("node", fontname="Helvetica", fontsize="14", style="filled", margin="0.02,0.01")
    d.attr("edge", arrowsize="0.6")
    for n in graph.spec.nodes:
        fill, border = RESOURCE_COLOURS.get(n.resource, ("#ffffff", "#000000"))
        d.node(n.id, label=wrap_label(n.label_en, 10), shape=ROLE_SHAPES.get(n.role, "ellipse"),
               fillcolor=fill, color=border,
               tooltip=f"{n.label_en} / {n.label_nl} ({n.resource})")
    for e in graph.edges:
        m = means.get(e.key, 0.0)
        informed = cls.get(e.key) == "data-informed"
        style, head = link_style(e, cls)
        d.edge(e.source, e.target, color=SIGN_COLOURS[e.sign], penwidth=f"{_width(m, vmax):.2f}",
               style=style, arrowhead=head,
               tooltip=f"{e.key}: posterior mean {m:+.3f} "
                       f"({'data-informed' if informed else 'prior-dominated'})")
    add_graphviz_legend(d, legend_entries(posterior=True) + [_WIDTH_ENTRY],
                        title=f"{graph.name}: posterior link strengths", fontsize="14")
    return d


def posterior_diagram_matplotlib(graph: "CausalGraph", means: Mapping[str, float],
                                 edge_class: Mapping[str, str] | None = None,
                                 seed: int = 0) -> "Figure":
    """The diagram with posterior link strengths drawn with matplotlib (no Graphviz needed).

    Same encoding as :func:`posterior_digraph`: width ∝ ``|posterior mean|``, solid =
    data-informed, dashed = prior-dominated, open arrowhead = inferred link.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> fig = posterior_diagram_matplotlib(graph_from_lavaan("b ~ a"), {"a->b": 0.4})
    >>> type(fig).__name__
    'Figure'
    """
    import networkx as nx
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cls = dict(edge_class or {})
    vmax = max((abs(v) for v in means.values()), default=0.0)
    g = graph.nx
    pos = diagram_layout(g, seed)
    from matplotlib.figure import Figure

    # landscape A4 (10.5 x 7.4 in printable): printed at its own size every text is >= 8 pt
    fig = Figure(figsize=(10.5, 7.4), layout="constrained")
    ax = fig.add_subplot()
    size = 700
    for (resource, role), ids in node_groups(graph):
        fill, border = RESOURCE_COLOURS.get(resource, ("#ffffff", "#000000"))
        nx.draw_networkx_nodes(g, pos, nodelist=ids, ax=ax, node_size=size, node_color=fill,
                               edgecolors=border, linewidths=2.0 if role == "policy_lever" else 1.2,
                               node_shape="h" if role == "policy_lever" else "o")
    conn = "arc3,rad=0.12"
    for e in graph.edges:
        m = means.get(e.key, 0.0)
        nx.draw_networkx_edges(
            g, pos, edgelist=[(e.source, e.target)], ax=ax, node_size=size,
            edge_color=SIGN_COLOURS[e.sign], width=_width(m, vmax),
            style=link_style(e, cls)[0],
            arrows=True, arrowstyle="->" if e.inferred else "-|>", arrowsize=14,
            connectionstyle=conn)
    for sign in ("+", "-"):
        labels = {(e.source, e.target): _num(means.get(e.key, 0.0)) for e in graph.edges
                  if e.sign == sign}
        if labels:
            nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, ax=ax, font_size=8,
                                         font_color=SIGN_COLOURS[sign], node_size=size,
                                         connectionstyle=conn, rotate=False,
                                         bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none",
                                                   alpha=0.7))
    nx.draw_networkx_labels(g, pos, labels={v.id: wrap_label(v.label_en, 14) for v in graph.spec.nodes},
                            ax=ax, font_size=8)
    names = {"individual": "individual resource", "societal": "societal resource",
             "organisational": "organisational resource"}
    handles = [Patch(facecolor=f, edgecolor=b, label=names.get(r, r))
               for r, (f, b) in RESOURCE_COLOURS.items()
               if r in {v.resource for v in graph.spec.nodes}]
    handles += matplotlib_legend_handles(legend_entries(posterior=True))
    handles.append(Line2D([], [], color="#444444", lw=0.6, label="width ∝ |posterior mean|"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=True, framealpha=0.9)
    ax.set_title(f"{graph.name}: posterior link strengths", fontsize=13)
    ax.set_axis_off()
    return fig


def save_posterior_diagram(graph: "CausalGraph", means: Mapping[str, float],
                           edge_class: Mapping[str, str] | None, out_dir: str | Path,
                           name: str = "diagram_posterior") -> dict[str, Path]:
    """Draw the posterior diagram with Graphviz when ``dot`` exists, else matplotlib; save it.

    Examples
    --------
    >>> import tempfile
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> paths = save_posterior_diagram(graph_from_lavaan("b ~ a"), {"a->b": 0.4}, None, tempfile.mkdtemp())
    >>> all(p.exists() for p in paths.values())
    True
    """
    if dot_available():
        return save_figure(posterior_digraph(graph, means, edge_class), out_dir, name)
    logger.info("Graphviz 'dot' not found: drawing the posterior diagram with matplotlib")
    return save_figure(posterior_diagram_matplotlib(graph, means, edge_class), out_dir, name)


def loop_gain_plot(loop_gains: pd.DataFrame) -> "Figure":
    """Posterior mean and central interval of each named loop's gain (product of its links).

    A loop with gain above 0 reinforces; its annotation gives ``P(reinforcing)``.

    Examples
    --------
    >>> import pandas as pd
    >>> gains = pd.DataFrame({"loop": ["L1"], "title": ["stress and wellbeing"], "mean": [0.1],
    ...                       "lower": [0.02], "upper": [0.2], "p_reinforcing": [0.97]})
    >>> type(loop_gain_plot(gains)).__name__
    'Figure'
    """
    df = loop_gains.reset_index(drop=True)
    n = max(len(df), 1)
    fig = _fig(A4_TEXT_WIDTH_IN, 1.3 + 0.5 * n)
    ax = fig.add_subplot()
    ys = np.arange(len(df))[::-1]
    for y, (_, r) in zip(ys, df.iterrows()):
        ax.plot([r["lower"], r["upper"]], [y, y], color="#542788", lw=3)
        ax.plot(r["mean"], y, "o", color="#542788", ms=6)
    labels = [wrap_label(f"{r['loop']} {r.get('title', '')}".strip(), 36)
              + (f"\nP(reinforcing) {r['p_reinforcing']:.0%}" if "p_reinforcing" in r else "")
              for _, r in df.iterrows()]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.axvline(0.0, color="#444444", lw=0.8)
    ci = float(df["ci_prob"].iloc[0]) if "ci_prob" in df and len(df) else 0.9
    ax.set_xlabel(f"loop gain (product of the loop's link strengths;\n{ci:.0%} interval)")
    ax.set_title("Feedback loops: posterior gain", fontsize=9.5, loc="left")
    ax.grid(axis="x", color="#e0e0e0", lw=0.6)
    return fig


def trajectory_plot(trajectories: pd.DataFrame, outcomes: Sequence[str], *,
                    titles: Mapping[str, str] | None = None,
                    outcome_labels: Mapping[str, str] | None = None,
                    suppressed: Sequence[str] = ()) -> "Figure":
    """Time to effect: mean effect over time per policy (lines only: with ten policies in a
    panel their interval bands hide each other; the intervals are in ``trajectories.csv``).

    Policies listed in ``suppressed`` (or whose trajectory is all NaN) are left out and named
    in a note below the plot.

    Examples
    --------
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.dynamics import simulate_trajectories
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "ab",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("a", "b")],
    ...     "edges": [{"source": "a", "target": "b", "sign": "+", "evidence": "t"}]}))
    >>> draws = StructuralDraws.from_arrays(g, [[0.5], [0.4]], [0.0, 0.0])
    >>> tr = simulate_trajectories(draws, [Intervention(name="a up", parts=[Shift(node="a", delta=1.0)])],
    ...                            outcomes=["b"], horizon=5)
    >>> from veerkracht_bayes.workflow.pipeline import trajectory_table
    >>> fig = trajectory_plot(trajectory_table(tr, 0.9), ["b"])
    >>> type(fig).__name__
    'Figure'
    """
    import matplotlib

    outs = [o for o in outcomes if o in set(trajectories["outcome"])]
    rows = -(-max(len(outs), 1) // 2) if len(outs) > 1 else 1
    pols_n = len(dict.fromkeys(trajectories["policy"]))
    fig = _fig(A4_TEXT_WIDTH_IN, rows * 2.3 + 0.35 * -(-pols_n // 2) + 0.6)
    axes = _grid(fig, max(len(outs), 1))
    cmap = matplotlib.colormaps["tab10"]
    pols = list(dict.fromkeys(trajectories["policy"]))
    dropped = set(suppressed)
    for p in pols:
        if trajectories.loc[trajectories["policy"] == p, "mean"].isna().all():
            dropped.add(p)
    shown = [p for p in pols if p not in dropped]
    for ax, o in zip(axes, outs):
        for i, p in enumerate(shown):
            t = trajectories[(trajectories["policy"] == p) & (trajectories["outcome"] == o)]
            c = cmap(i % 10)
            ax.plot(t["t"], t["mean"], color=c, lw=1.6, label=policy_label(p, titles, 30),
                    ls=("-", "--", ":", "-.")[(i // 10) % 4])
        ax.axhline(0, color="#444444", lw=0.8)
        ax.set_title(wrap_label((outcome_labels or {}).get(o, o), 30), fontsize=9, loc="left")
        ax.set_xlabel("years after the start")
        ax.set_ylabel("effect (SD)")
        d = desirable_direction(o)
        ax.annotate("better \u2191" if d > 0 else "better \u2193", xy=(0.99, 0.98),
                    xycoords="axes fraction", ha="right", va="top", fontsize=9, color="#1b7837",
                    fontweight="bold")
        ax.grid(color="#eeeeee", lw=0.6)
    if shown:
        note = ("not shown (suppressed or not computable): " + ", ".join(sorted(dropped))
                if dropped else None)
        leg = fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                         ncols=2, fontsize=8, frameon=False, title=note, title_fontsize=8)
        if note:
            leg.get_title().set_color(_GREY)
    return fig


def write_figures(result: Any, out_dir: str | Path) -> dict[str, dict[str, Path]]:
    """Draw and save every brief figure of a run result.

    Parameters
    ----------
    result
        A ``RunResult`` (or any object with ``graph``, ``fit``, ``diagnostics``, ``policies``,
        ``effects``, ``loop_gains`` and ``trajectories``).
    out_dir
        Folder for the files (e.g. ``<run>/figures``).

    Returns
    -------
    dict
        ``{figure name: {format: path}}``; names: ``forest_<outcome>``, ``subgroups``,
        ``diagram_posterior``, ``loop_gains``, ``trajectories``.

    Examples
    --------
    A run result needs a fit (minutes); the figures then take a few seconds:

    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import package_data_path
    >>> result = vb.run(package_data_path("demo.toml"), fast=True, write=False)  # doctest: +SKIP
    >>> figs = write_figures(result, "out/figures")  # doctest: +SKIP
    >>> "diagram_posterior" in figs  # doctest: +SKIP
    True
    """
    import matplotlib

    with matplotlib.rc_context(_RC):
        return _write_figures(result, Path(out_dir))


def _write_figures(result: Any, out: Path) -> dict[str, dict[str, Path]]:
    graph = result.graph
    effects = result.effects
    titles = {p.id: p.title_en for p in result.policies.policies} if result.policies else {}
    labels = {n.id: n.label_en for n in graph.spec.nodes}
    outcomes = list(dict.fromkeys(effects["outcome"]))
    figs: dict[str, dict[str, Path]] = {}
    for o in outcomes:
        fig = forest_plot(effects, o, titles=titles, outcome_label=labels.get(o, o))
        figs[f"forest_{o}"] = save_figure(fig, out, f"forest_{o}")
    if (effects["subgroup"] != "all").any():
        figs["subgroups"] = save_figure(
            subgroup_panel(effects, outcomes, titles=titles, outcome_labels=labels), out, "subgroups")
    diag = getattr(result, "diagnostics", None)
    edge_class = getattr(diag, "edge_class", None) or {}
    means = edge_posterior_means(result.fit.idata, graph)
    figs["diagram_posterior"] = save_posterior_diagram(graph, means, edge_class, out)
    gains = getattr(result, "loop_gains", None)
    if gains is not None and len(gains):
        figs["loop_gains"] = save_figure(loop_gain_plot(gains), out, "loop_gains")
    traj = getattr(result, "trajectories", None)
    if traj is not None and len(traj):
        sup = sorted(set(effects.loc[effects["suppressed"].astype(bool), "policy"]))
        figs["trajectories"] = save_figure(
            trajectory_plot(traj, outcomes, titles=titles, outcome_labels=labels, suppressed=sup),
            out, "trajectories")
    return figs
