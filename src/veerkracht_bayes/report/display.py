"""Rich HTML display in Jupyter: the fitted model summary and the effects table.

Functions return HTML fragments (inline styles only, every user string escaped); classes elsewhere
can hook them in with ``_repr_html_ = lambda self: fit_summary_html(self)``. Suppressed cells
(subgroups below the minimum size) show "suppressed" and a reason without respondent counts,
never numbers.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.report.figures import safe_reason

__all__ = ["fit_summary_html", "effects_html", "EffectsTable", "run_result_html"]

_TABLE = "border-collapse:collapse;font-size:12px;margin:4px 0"
_TD = "border:1px solid #ddd;padding:2px 6px;text-align:{a}"
_BANNER = ("border:2px solid {c};background:{bg};padding:6px 10px;margin:6px 0;border-radius:4px;"
           "font-weight:bold")


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
           ) -> str:
    align = list(align or ["left"] * len(header))
    head = "".join(f"<th style='{_TD.format(a='left')};background:#eef3f9'>{_esc(h)}</th>"
                   for h in header)
    body = "".join("<tr>" + "".join(f"<td style='{_TD.format(a=align[i])}'>{_esc(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _f(x: Any, d: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(v) else f"{v:+.{d}f}".replace("-", "\u2212")


def _p(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(v) else f"{v:.0%}"


def fit_summary_html(fit: Any, diagnostics: Any = None, max_edges: int = 80) -> str:
    """HTML summary of a :class:`~veerkracht_bayes.inference.sampling.FitResult`.

    Shows the graph, the mode (prior-only or survey data with its size and missing-data
    method), the sampler settings, the exact stability of the draws, optional diagnostics
    (passed/failed, problems, edge classes) and a table of link strengths (posterior mean, sd,
    central 90% interval, class).

    Parameters
    ----------
    fit
        The fit.
    diagnostics
        Optional ``Diagnostics`` (``passed``, ``problems``, ``edge_class``).
    max_edges
        At most this many links in the table (largest ``|mean|`` first).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> f = vb.fit("marvel", prior_only=True, prior_draws=50, seed=1)
    >>> fit_summary_html(f).lstrip().startswith("<")
    True
    """
    graph = fit.graph
    post = fit.idata["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    beta = post["beta"].stack(sample=("chain", "draw")).transpose("edge", "sample")
    keys = [str(k) for k in beta["edge"].values]
    vals = np.asarray(beta.values, float)
    cls = dict(getattr(diagnostics, "edge_class", None) or {})
    parts = [f"<div><h4 style='margin:4px 0'>Fitted model: {_esc(graph.name)}</h4>"]
    prior_only = getattr(fit, "data", None) is None
    if prior_only:
        parts.append("<div style='" + _BANNER.format(c="#c77c02", bg="#fff4dc") + "'>"
                     "Prior only: no survey data; the 'posterior' is the prior.</div>")
    rows = [["nodes / links", f"{len(graph.nodes)} / {len(graph.edges)}"],
            ["draws", f"{post.sizes.get('chain', 1)} chains × {post.sizes.get('draw', 0)}"]]
    s = getattr(fit, "settings", None)
    if s is not None:
        rows.append(["sampler", f"{s.sampler} (tune {s.tune}, target_accept {s.target_accept}, "
                                f"seed {s.random_seed})"])
    if not prior_only:
        d = fit.data
        rows.append(["respondents × items", f"{d.y.shape[0]} × {d.y.shape[1]}"])
        rows.append(["missing-data method", str(getattr(d, "missing_method", "?"))])
    try:
        from veerkracht_bayes.causal.draws import StructuralDraws

        rho = StructuralDraws.from_posterior(fit.idata, graph).spectral_radius()
        rows.append(["P(spectral radius < 1)", _p((rho < 1).mean())])
        rows.append(["max spectral radius", f"{rho.max():.3f}"])
    except Exception as exc:  # shown, not hidden
        rows.append(["stability", f"not computed: {exc}"])
    if diagnostics is not None:
        rows.append(["diagnostics", "passed" if getattr(diagnostics, "passed", False) else "FAILED"])
        if cls:
            n_inf = sum(v == "data-informed" for v in cls.values())
            rows.append(["data-informed links", f"{n_inf} of {len(cls)}"])
    parts.append(_table(["", ""], rows))
    probs = list(getattr(diagnostics, "problems", None) or [])
    if probs:
        parts.append("<ul style='color:#b2182b'>" + "".join(f"<li>{_esc(p)}</li>" for p in probs)
                     + "</ul>")
    mean = vals.mean(axis=1)
    order = np.argsort(-np.abs(mean))[:max_edges]
    lo, hi = np.quantile(vals, [0.05, 0.95], axis=1)
    sd = vals.std(axis=1)
    erows = [[keys[i], _f(mean[i]), f"{sd[i]:.3f}", f"[{_f(lo[i])}, {_f(hi[i])}]",
              cls.get(keys[i], "–")] for i in order]
    parts.append("<details><summary>Link strengths (largest first)</summary>"
                 + _table(["link", "mean", "sd", "90% interval", "class"], erows,
                          ["left", "right", "right", "right", "left"]) + "</details></div>")
    return "".join(parts)


def effects_html(effects: pd.DataFrame, max_rows: int = 200) -> str:
    """HTML table of an effects table (:func:`~veerkracht_bayes.causal.summaries.summarise_effects`).

    One row per policy × outcome × scope: mean, central interval, P(helps) (``p_meaningful``:
    P(direction × effect > minimal relevant change)), P(best), evidence and P(stable). Suppressed rows show "suppressed" and a count-free reason, never numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> html = effects_html(pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "mean": [0.1],
    ...                                   "lower": [0.0], "upper": [0.2]}))
    >>> "<table" in html
    True
    """
    rows = []
    for _, r in effects.head(max_rows).iterrows():
        base = [r["policy"], r["outcome"], r.get("subgroup", "all"), r.get("scope", "")]
        if bool(r.get("suppressed", False)):
            rows.append(base + ["suppressed", "", "", "", safe_reason(r.get("reason")), ""])
            continue
        if r.get("reachable", True) is False or r.get("evidence") == "no path":
            rows.append(base + ["no path", "", "", "", "no path in the diagram", ""])
            continue
        # "helps" = P(direction x effect > minimal relevant change), never the sign alone
        ph = r.get("p_meaningful", float("nan"))
        rows.append(base + [_f(r["mean"]), f"[{_f(r['lower'])}, {_f(r['upper'])}]", _p(ph),
                            _p(r.get("p_best")), str(r.get("evidence", "")), _p(r.get("p_stable"))])
    ci = float(effects["ci_prob"].iloc[0]) if "ci_prob" in effects and len(effects) else 0.9
    more = (f"<p style='font-size:11px'>… {len(effects) - max_rows} more rows</p>"
            if len(effects) > max_rows else "")
    return ("<div>" + _table(["policy", "outcome", "subgroup", "scope", "mean (SD)",
                              f"{ci:.0%} interval", "P(helps)", "P(best)", "evidence",
                              "P(stable)"], rows,
                             ["left"] * 4 + ["right"] * 4 + ["left", "right"]) + more + "</div>")


class EffectsTable:
    """An effects DataFrame that displays as a readable HTML table in Jupyter.

    Parameters
    ----------
    frame
        The tidy effects table (one row per policy × outcome × scope).

    Examples
    --------
    >>> EffectsTable(effects)                       # doctest: +SKIP
    >>> EffectsTable(effects).filter(outcome="stress", scope="within")  # doctest: +SKIP
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def filter(self, **equal: Any) -> "EffectsTable":
        """Rows whose columns equal the given values (e.g. ``outcome="stress"``)."""
        df = self.frame
        for k, v in equal.items():
            df = df[df[k] == v]
        return EffectsTable(df)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"EffectsTable({len(self.frame)} rows)"

    def _repr_html_(self) -> str:
        return effects_html(self.frame)


def run_result_html(result: Any) -> str:
    """Compact HTML of a run result: banners, then the within-target effects on each outcome.

    Examples
    --------
    Any object with ``effects`` (and optionally ``prior_only``, ``forced``, ``survey_report``):

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> eff = pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "scope": ["within"],
    ...                     "mean": [0.1], "lower": [0.0], "upper": [0.2]})
    >>> html = run_result_html(SimpleNamespace(effects=eff, prior_only=True))
    >>> "PRIOR ONLY" in html and "<table" in html
    True
    """
    parts = []
    rep = getattr(result, "survey_report", None)
    if getattr(rep, "synthetic", False):
        parts.append("<div style='" + _BANNER.format(c="#b2182b", bg="#fde8e6")
                     + "'>SYNTHETIC DATA: not real people.</div>")
    if getattr(result, "prior_only", False):
        parts.append("<div style='" + _BANNER.format(c="#c77c02", bg="#fff4dc")
                     + "'>PRIOR ONLY: no survey data used.</div>")
    if getattr(result, "forced", False):
        parts.append("<div style='" + _BANNER.format(c="#7a0010", bg="#f4c4c4")
                     + "'>DIAGNOSTICS FAILED: results forced.</div>")
    eff = result.effects
    parts.append(effects_html(eff[eff["scope"] == "within"]))
    return "<div>" + "".join(parts) + "</div>"
