"""Tests for the brief's figures (matplotlib Agg; graphviz source without the dot program)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.report import figures as F

from _brief_fixture import build_run_result


@pytest.fixture(scope="module")
def run_result():
    return build_run_result()


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts + ax.get_yticklabels()]


def test_safe_reason_removes_counts():
    r = "subgroup 'youth' has n=23 respondents, below the minimum cell size 50; estimates suppressed"
    s = F.safe_reason(r)
    assert "23" not in s and "youth" in s and "50" in s
    assert "17" not in F.safe_reason("cell too small (n = 17)")


def test_forest_plot_ranks_best_first_and_marks_direction(run_result):
    eff = run_result.effects
    order = F.ranked_policies(eff, "stress", "within")
    w = eff[(eff.outcome == "stress") & (eff.scope == "within") & ~eff.suppressed
            & eff.reachable].set_index("policy")
    # the brief's one order: probability it helps (p_meaningful), then the mean in the
    # desirable direction (lower is better for stress: most negative first)
    keys = [(-w.loc[p, "p_meaningful"], w.loc[p, "mean"]) for p in order if p in w.index]
    assert keys == sorted(keys)
    assert order[-1] == "P02"  # suppressed last
    fig = F.forest_plot(eff, "stress")
    texts = _texts(fig)
    assert "\u2190 better" in texts
    assert any(t.startswith("  suppressed") and "23" not in t for t in texts)
    fig_w = F.forest_plot(eff, "wellbeing")
    assert "better \u2192" in _texts(fig_w)
    # top tick label is the best policy (y ticks run bottom to top)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].startswith(order[0])


def test_suppressed_cells_are_never_plotted(run_result):
    eff = run_result.effects.copy()
    sup = eff.suppressed.astype(bool)
    eff.loc[sup, ["mean", "lower", "upper"]] = [5.0, 4.0, 6.0]
    for fig in (F.forest_plot(eff, "stress"), F.subgroup_panel(eff, ["wellbeing", "stress"])):
        for ax in fig.axes:
            for line in ax.get_lines():
                x = np.asarray(line.get_xdata(), float)
                assert not np.any(np.isclose(x, [[4.0], [5.0], [6.0]]))
        assert any("suppressed" in t for t in _texts(fig))


def test_edge_posterior_means_and_digraph(run_result):
    g = run_result.graph
    means = F.edge_posterior_means(run_result.fit.idata, g)
    beta = run_result.fit.idata["posterior"].to_dataset()["beta"]
    k = g.edge_keys[0]
    assert means[k] == pytest.approx(float(beta.sel(edge=k).mean()))
    cls = {key: ("data-informed" if i % 2 == 0 else "prior-dominated")
           for i, key in enumerate(g.edge_keys)}
    src = F.posterior_digraph(g, means, cls).source
    widths = {}
    for e in g.edges:
        line = next(ln for ln in src.splitlines() if re.search(rf"\b{e.source} -> {e.target}\b", ln))
        style = "solid" if cls[e.key] == "data-informed" else "dashed"
        assert f"style={style}" in line
        assert ("arrowhead=onormal" in line) == e.inferred
        widths[e.key] = float(re.search(r"penwidth=\"?([\d.]+)", line).group(1))
    # width proportional to |mean|: the largest link gets the maximum width
    kmax = max(means, key=lambda x: abs(means[x]))
    assert widths[kmax] == pytest.approx(6.0, abs=0.01)
    kmin = min(means, key=lambda x: abs(means[x]))
    assert widths[kmin] < widths[kmax]


def test_matplotlib_diagram_styles(run_result, tmp_path):
    g = run_result.graph
    means = F.edge_posterior_means(run_result.fit.idata, g)
    cls = {k: "data-informed" for k in g.edge_keys[:10]}
    fig = F.posterior_diagram_matplotlib(g, means, cls)
    from matplotlib.patches import FancyArrowPatch

    arrows = [a for a in fig.axes[0].patches if isinstance(a, FancyArrowPatch)]
    assert len(arrows) == len(g.edges)
    solid = [a for a in arrows if a.get_linestyle() in ("-", "solid")]
    assert len(solid) == 10
    paths = F.save_figure(fig, tmp_path, "diagram")
    assert paths["svg"].read_text().lstrip().startswith(("<?xml", "<svg"))
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loop_gain_and_trajectory_plots(run_result, tmp_path):
    fig = F.loop_gain_plot(run_result.loop_gains)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(run_result.loop_gains)
    assert all("P(reinforcing)" in t for t in labels)
    fig2 = F.trajectory_plot(run_result.trajectories, ["wellbeing", "stress"], suppressed=["P02"])
    assert len(fig2.axes) == 2
    legend = fig2.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    assert not any(n.startswith("P02") for n in names) and any(n.startswith("P01") for n in names)


def test_save_is_deterministic(run_result, tmp_path):
    a = F.save_figure(F.loop_gain_plot(run_result.loop_gains), tmp_path / "a", "g")
    b = F.save_figure(F.loop_gain_plot(run_result.loop_gains), tmp_path / "b", "g")
    assert a["svg"].read_bytes() == b["svg"].read_bytes()


def _svg_size_and_fonts(svg: str) -> tuple[float, float, list[float]]:
    m = re.search(r'<svg[^>]*\swidth="([\d.]+)pt" height="([\d.]+)pt"', svg)
    sizes = [float(x) for x in re.findall(r"font-size: ?([\d.]+)px", svg)]
    return float(m.group(1)), float(m.group(2)), sizes


def test_charts_are_legible_on_a4(run_result, tmp_path):
    """Every chart is at most the A4 text width (170 mm = 482.4 pt) and its smallest text is
    8 pt, so printed at its own size nothing is below 8 pt; several outcomes go in a grid of at
    most two columns, never one long row."""
    figs = F.write_figures(run_result, tmp_path)
    assert F.A4_TEXT_WIDTH_IN * 72 <= 482.5
    for name, paths in figs.items():
        if name == "diagram_posterior":
            continue  # graphviz or the landscape fallback: see test_posterior_diagram_sizes
        w, h, sizes = _svg_size_and_fonts(paths["svg"].read_text(encoding="utf-8"))
        assert w <= F.A4_TEXT_WIDTH_IN * 72 + 0.5, (name, w)
        assert sizes and min(sizes) >= F.MIN_FONT_PT, (name, min(sizes))
    outcomes = list(dict.fromkeys(run_result.effects["outcome"]))
    fig = F.subgroup_panel(run_result.effects, outcomes)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    cols = {round(ax.get_position().x0, 2) for ax in visible}
    assert len(visible) == len(outcomes) and len(cols) <= 2
    traj = F.trajectory_plot(run_result.trajectories, outcomes)
    assert len({round(ax.get_position().x0, 2) for ax in traj.axes if ax.get_visible()}) <= 2


def test_posterior_diagram_uses_the_shared_legend(run_result, monkeypatch):
    from veerkracht_bayes.graph import drawing

    means = F.edge_posterior_means(run_result.fit.idata, run_result.graph)
    fig = F.posterior_diagram_matplotlib(run_result.graph, means, {})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for e in drawing.legend_entries(posterior=True):
        assert e.label in labels
    # landscape A4 at its own size, text 8 pt
    w, h = fig.get_size_inches()
    assert w <= 10.6 and h <= 7.5
    src = F.posterior_digraph(run_result.graph, means, {}).source
    for e in drawing.legend_entries(posterior=True):
        assert e.label in src
