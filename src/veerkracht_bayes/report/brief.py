"""The policy brief: ``brief.md`` and a self-contained ``brief.html`` from a run result.

Order of the brief
------------------
1. **Page one**, in plain language (B1 level, as TNO 2023 R10055 recommends for government
   communication), in English and in Dutch: which recommendations most likely raise wellbeing and
   lower stress, for whom, with 90% intervals and the probability that they help. Loud banners
   when the data are synthetic, when the run used no survey data (prior-only), or when the
   diagnostics failed and the brief was forced.
2. Ranking table and forest plot per outcome.
3. Subgroup panel (within-subgroup versus population effects) and subgroup sizes.
4. The diagram with posterior link strengths (data-informed solid, prior-dominated dashed).
5. Feedback-loop gains; time to effect.
6. Diagnostics summary.
7. What rests on assumptions: doses, inferred links, prior-dominated links, prior-driven effects.
8. Methods; references (the priors actually used, the policy doses' sources and the report);
   provenance (versions, seed, input hashes).

Disclosure rules
----------------
Cells below the minimum subgroup size are shown as "suppressed" with a reason from which every
respondent count is removed (:func:`veerkracht_bayes.report.figures.safe_reason`); their numbers are
never printed, even if the effects table carries them. Subgroup sizes of suppressed cells are
not printed either. Nothing at respondent level is written: only posterior summaries, the graph,
the priors and the policy file.

The HTML embeds every figure as a base64 SVG ``data:`` URI and has inline CSS only, so it renders
offline and can be mailed as one file; the Markdown refers to ``figures/*.svg`` next to it. All
text from users (policy titles, labels, dose sources, warnings, paths) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.summaries import desirable_direction
from veerkracht_bayes.report.figures import safe_reason, write_figures

__all__ = ["REPORT_REFERENCE", "PRIMARY_OUTCOMES", "SUBGROUP_NAMES", "Block", "brief_blocks",
           "render_markdown", "render_html", "render_brief", "write_brief", "markdown_to_html"]

logger = logging.getLogger(__name__)

#: The report the diagram and the recommendations come from.
REPORT_REFERENCE = ("Fekkes, M., de Wolff, M., & Rutgers, L. (2023). Metaonderzoek veerkracht: een "
                    "metaonderzoek naar individuele en collectieve veerkracht van de samenleving "
                    "(TNO 2023 R10055). TNO, in opdracht van ZonMw.")
#: Outcomes page one speaks about (when present): wellbeing up, stress down.
PRIMARY_OUTCOMES = ("wellbeing", "stress")
#: Plain-language names of the known subgroups (English, Dutch).
SUBGROUP_NAMES: dict[str, tuple[str, str]] = {
    "all": ("everyone", "iedereen"),
    "single_parent": ("single parents", "alleenstaande ouders"),
    "low_income": ("people with a low income", "mensen met een laag inkomen"),
    "migration_background": ("people with a migration background",
                             "mensen met een migratieachtergrond"),
    "mental_health_problems": ("people with mental health problems",
                               "mensen met psychische klachten"),
    "welfare_recipient": ("people on social assistance", "mensen met een bijstandsuitkering"),
    "youth": ("young people", "jongeren"),
}
_VERBS: dict[str, tuple[str, str]] = {
    "wellbeing": ("raises wellbeing", "verhoogt het welbevinden"),
    "stress": ("lowers stress", "verlaagt de stress"),
    "mental_problems": ("reduces mental health problems", "vermindert psychische klachten"),
}
_MINUS = "\u2212"


# ============================================================================ document model
@dataclass
class Block:
    """One piece of the brief, rendered to both Markdown and HTML.

    ``kind`` is one of ``h1, h2, h3, p, ul, table, banner, figure, details, raw, pagebreak``.
    Text is plain (escaped on output); ``raw`` carries ready HTML and Markdown.
    """

    kind: str
    text: str = ""
    items: list[Any] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    css: str = ""
    ident: str = ""
    html: str = ""
    md: str = ""
    children: list["Block"] = field(default_factory=list)


# ============================================================================ formatting
def _digits(*values: float) -> int:
    v = max((abs(x) for x in values if x is not None and np.isfinite(x)), default=0.0)
    if v >= 0.095 or v == 0:
        return 2
    return int(min(4, max(2, -math.floor(math.log10(v)) + 1)))


def _num(x: float, digits: int, lang: str = "en", signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    s = s.replace("-", _MINUS)
    return s.replace(".", ",") if lang == "nl" else s


def _triple(mean: float, lo: float, hi: float, lang: str = "en") -> str:
    d = _digits(mean, lo, hi)
    return f"{_num(mean, d, lang, True)} [{_num(lo, d, lang, True)}, {_num(hi, d, lang, True)}]"


def _pct(p: float, lang: str = "en") -> str:
    if p is None or not np.isfinite(p):
        return "–"
    if p >= 0.995:
        return "more than 99%" if lang == "en" else "meer dan 99%"
    if p <= 0.005:
        return "less than 1%" if lang == "en" else "minder dan 1%"
    return f"{round(100 * p)}%"


def _pct_short(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    if p >= 0.995:
        return ">99%"
    if p <= 0.005:
        return "<1%"
    return f"{round(100 * p)}%"


def _likely(p: float, lang: str) -> str:
    words = [(0.9, "most likely", "zeer waarschijnlijk"), (0.75, "likely", "waarschijnlijk"),
             (0.0, "possibly", "mogelijk")]
    for cut, en, nl in words:
        if p >= cut:
            return en if lang == "en" else nl
    return ""


def _group(name: str | None, lang: str) -> str:
    key = name or "all"
    en, nl = SUBGROUP_NAMES.get(key, (key.replace("_", " "), key.replace("_", " ")))
    return en if lang == "en" else nl


def _p_helps(row: Mapping[str, Any]) -> float:
    p = float(row["p_positive"])
    return p if int(row["direction"]) > 0 else 1.0 - p


# ============================================================================ context
@dataclass
class _Ctx:
    result: Any
    effects: pd.DataFrame
    titles_en: dict[str, str]
    titles_nl: dict[str, str]
    labels_en: dict[str, str]
    labels_nl: dict[str, str]
    outcomes: list[str]
    primary: list[str]
    synthetic: bool
    prior_only: bool
    forced: bool
    diag_passed: bool | None
    problems: list[str]
    ci: float

    def title(self, pid: str, lang: str = "en") -> str:
        t = (self.titles_en if lang == "en" else self.titles_nl).get(pid)
        return t or pid

    def label(self, node: str, lang: str = "en") -> str:
        return (self.labels_en if lang == "en" else self.labels_nl).get(node, node)


def _is_synthetic(result: Any) -> bool:
    if bool(getattr(result, "synthetic", False)):
        return True
    rep = getattr(result, "survey_report", None)
    if rep is not None and bool(getattr(rep, "synthetic", False)):
        return True
    cb = getattr(result, "codebook", None)
    return bool(getattr(cb, "synthetic", False))


def _context(result: Any) -> _Ctx:
    effects = result.effects.copy()
    pols = getattr(result, "policies", None)
    titles_en = {p.id: p.title_en for p in pols.policies} if pols is not None else {}
    titles_nl = {p.id: p.title_nl for p in pols.policies} if pols is not None else {}
    graph = result.graph
    labels_en = {n.id: n.label_en for n in graph.spec.nodes}
    labels_nl = {n.id: n.label_nl for n in graph.spec.nodes}
    outcomes = list(dict.fromkeys(effects["outcome"]))
    primary = [o for o in PRIMARY_OUTCOMES if o in outcomes] or outcomes[:2]
    diag = getattr(result, "diagnostics", None)
    passed = None if diag is None else bool(getattr(diag, "passed", True))
    problems = [str(p) for p in (getattr(diag, "problems", None) or [])]
    ci = float(effects["ci_prob"].iloc[0]) if "ci_prob" in effects and len(effects) else 0.9
    fit = getattr(result, "fit", None)
    prior_only = bool(getattr(result, "prior_only", False)) or bool(getattr(fit, "prior_only", False))
    return _Ctx(result, effects, titles_en, titles_nl, labels_en, labels_nl, outcomes, primary,
                _is_synthetic(result), prior_only, bool(getattr(result, "forced", False)), passed,
                problems, ci)


# ============================================================================ page one
def _banners(c: _Ctx) -> list[Block]:
    out = []
    if c.synthetic:
        out.append(Block("banner", css="synthetic", items=[
            ("SYNTHETIC DATA", "These results come from a simulated population, not from real "
             "people. They only show how the method works. Do not use them for policy decisions."),
            ("SYNTHETISCHE DATA", "Deze resultaten komen van een gesimuleerde bevolking, niet van "
             "echte mensen. Ze laten alleen zien hoe de methode werkt. Gebruik ze niet voor "
             "beleidsbeslissingen.")]))
    if c.prior_only:
        out.append(Block("banner", css="prior-only", items=[
            ("NO SURVEY DATA (PRIOR ONLY)", "These results rest only on assumptions taken from "
             "the literature. No survey data were used, so they are not a measurement."),
            ("GEEN ENQUÊTEGEGEVENS (ALLEEN AANNAMES)", "Deze resultaten rusten alleen op aannames "
             "uit de literatuur. Er zijn geen enquêtegegevens gebruikt; het is dus geen meting.")]))
    if c.forced or c.diag_passed is False:
        probs = "; ".join(c.problems) if c.problems else "see the diagnostics section"
        out.append(Block("banner", css="forced", items=[
            ("DIAGNOSTICS FAILED", "The checks of the statistical model did not pass. "
             + ("This brief was made anyway (--force). " if c.forced else "")
             + f"The numbers may be wrong. Problems: {probs}"),
            ("CONTROLES MISLUKT", "De controles van het statistische model zijn niet geslaagd. "
             + ("Deze samenvatting is toch gemaakt (--force). " if c.forced else "")
             + f"De getallen kunnen fout zijn. Problemen: {probs}")]))
    return out


def _verb(c: _Ctx, outcome: str, lang: str) -> str:
    if outcome in _VERBS:
        return _VERBS[outcome][0 if lang == "en" else 1]
    d = desirable_direction(outcome)
    lab = c.label(outcome, lang).lower()
    if lang == "en":
        return f"{'raises' if d > 0 else 'lowers'} {lab}"
    return f"{'verhoogt' if d > 0 else 'verlaagt'} {lab}"


def _sentence(c: _Ctx, row: Mapping[str, Any], lang: str) -> str:
    d = int(row["direction"])
    m, lo, hi = (d * float(row[k]) for k in ("mean", "lower", "upper"))
    lo, hi = min(lo, hi), max(lo, hi)
    dig = _digits(m, lo, hi)
    p = _p_helps(row)
    grp = row["subgroup"]
    small = abs(m) < float(row.get("mrc", 0.05) or 0.05)
    title = c.title(row["policy"], lang)
    ci = f"{round(100 * c.ci)}%"
    if lang == "en":
        who = "for everyone" if grp == "all" else f"among {_group(grp, 'en')}"
        return (f"{title} ({row['policy']}) {_likely(p, 'en')} {_verb(c, row['outcome'], 'en')} "
                f"{who}: on average by {_num(m, dig)} SD ({ci} interval {_num(lo, dig)} to "
                f"{_num(hi, dig)}); probability it helps: {_pct(p)}."
                + (" This effect is very small." if small else ""))
    who = "voor iedereen" if grp == "all" else f"bij {_group(grp, 'nl')}"
    return (f"{title} ({row['policy']}) {_verb(c, row['outcome'], 'nl').split(' ', 1)[0]} "
            f"{_likely(p, 'nl')} {_verb(c, row['outcome'], 'nl').split(' ', 1)[1]} {who}: "
            f"gemiddeld met {_num(m, dig, 'nl')} SD ({ci}-interval {_num(lo, dig, 'nl')} tot "
            f"{_num(hi, dig, 'nl')}); kans dat het helpt: {_pct(p, 'nl')}."
            + (" Dit effect is heel klein." if small else ""))


def _top_rows(c: _Ctx, outcome: str, k: int = 3) -> list[dict[str, Any]]:
    """Best ``k`` policies for an outcome: by P(best for the population), helping with p >= 0.5."""
    w = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "within")]
    pop = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "population")]
    pb = dict(zip(pop["policy"], pop["p_best"]))
    rows = []
    for _, r in w.iterrows():
        if bool(r["suppressed"]) or not np.isfinite(r["mean"]):
            continue
        if _p_helps(r) < 0.5:
            continue
        rows.append({**r.to_dict(), "_pb": pb.get(r["policy"], np.nan)})
    rows.sort(key=lambda r: (-(r["_pb"] if np.isfinite(r["_pb"]) else -1),
                             -int(r["direction"]) * r["mean"]))
    return rows[:k]


def _page_one(c: _Ctx) -> list[Block]:
    blocks: list[Block] = [Block("h1", "Policy brief: what strengthens resilience? / "
                                       "Beleidssamenvatting: wat versterkt veerkracht?")]
    blocks += _banners(c)
    suppressed = sorted({(r["policy"], r["subgroup"]) for _, r in c.effects.iterrows()
                         if bool(r["suppressed"])})
    prior_share = (c.effects.loc[~c.effects["suppressed"].astype(bool), "evidence"] == "prior").mean()
    for lang in ("en", "nl"):
        en = lang == "en"
        blocks.append(Block("h2", "In short (English)" if en else "In het kort (Nederlands)",
                            ident=f"page-one-{lang}"))
        blocks.append(Block("p", (
            "TNO's report on resilience (2023) gives ten recommendations. We put them into a "
            "model of causes and effects and asked: what happens if the government does this? "
            "These are the recommendations that most likely help, and for whom."
            if en else
            "Het TNO-rapport over veerkracht (2023) geeft tien aanbevelingen. We hebben ze in een "
            "model van oorzaken en gevolgen gezet en gevraagd: wat gebeurt er als de overheid dit "
            "doet? Dit zijn de aanbevelingen die het meest waarschijnlijk helpen, en voor wie.")))
        for o in c.primary:
            rows = _top_rows(c, o)
            head = (f"Most likely to {_verb(c, o, 'en').replace('raises', 'raise').replace('lowers', 'lower').replace('reduces', 'reduce')}:"
                    if en else f"Meest kansrijk voor {c.label(o, 'nl').lower()}:")
            blocks.append(Block("h3", head))
            if rows:
                blocks.append(Block("ul", items=[_sentence(c, r, lang) for r in rows]))
            else:
                blocks.append(Block("p", "No recommendation helps here with a probability above "
                                         "50%." if en else "Geen aanbeveling helpt hier met een "
                                         "kans van meer dan 50%."))
        notes = []
        ci = round(100 * c.ci)
        notes.append(
            f"SD means standard deviation: 0.1 SD is a small change, 0.3 SD a clear one. The "
            f"{ci}% interval is the range in which the effect lies with {ci}% probability. "
            "Order: the chance of being the best choice for the whole population."
            if en else
            f"SD betekent standaarddeviatie: 0,1 SD is een kleine verandering, 0,3 SD een "
            f"duidelijke. Het {ci}%-interval is het gebied waarin het effect met {ci}% kans ligt. "
            "Volgorde: de kans dat het de beste keuze is voor de hele bevolking.")
        if prior_share >= 0.5:
            notes.append(
                "Most of these effects rest mainly on assumptions from the literature, not on "
                "survey data. See 'What rests on assumptions'." if en else
                "De meeste effecten rusten vooral op aannames uit de literatuur, niet op "
                "enquêtegegevens. Zie 'What rests on assumptions'.")
        for pid, grp in suppressed:
            notes.append(
                f"We do not report {c.title(pid, 'en')} ({pid}) for {_group(grp, 'en')}: this group "
                "is too small in the survey." if en else
                f"We melden geen resultaat voor {c.title(pid, 'nl')} ({pid}) bij "
                f"{_group(grp, 'nl')}: deze groep is te klein in de enquête.")
        blocks.append(Block("ul", items=notes, css="notes"))
    blocks.append(Block("pagebreak"))
    return blocks


# ============================================================================ technical part
def _ranking(c: _Ctx, outcome: str) -> Block:
    w = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "within")]
    pop = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "population")]
    pop = pop.set_index("policy")
    recs = []
    for _, r in w.iterrows():
        q = pop.loc[r["policy"]] if r["policy"] in pop.index else None
        recs.append((r, q))
    recs.sort(key=lambda rq: (bool(rq[0]["suppressed"]),
                              -(rq[1]["p_best"] if rq[1] is not None and np.isfinite(rq[1]["p_best"])
                                else -1),
                              -int(rq[0]["direction"]) * (rq[0]["mean"] if np.isfinite(rq[0]["mean"])
                                                          else 0)))
    rows = []
    rank = 0
    for r, q in recs:
        who = _group(r["subgroup"], "en")
        name = f"{r['policy']} {c.title(r['policy'])}"
        if bool(r["suppressed"]):
            rows.append(["–", name, who, "suppressed: " + safe_reason(r["reason"]), "suppressed",
                         "–", "–", "–", "–"])
            continue
        rank += 1
        rows.append([str(rank), name, who, _triple(r["mean"], r["lower"], r["upper"]),
                     _triple(q["mean"], q["lower"], q["upper"]) if q is not None else "–",
                     _pct_short(_p_helps(r)),
                     _pct_short(q["p_best"]) if q is not None else "–",
                     str(r["evidence"] or "–"), _pct_short(r["p_stable"])])
    ci = round(100 * c.ci)
    header = ["#", "Recommendation", "For whom", f"Effect in target group, SD [{ci}% interval]",
              f"Population average, SD [{ci}% interval]", "P(helps)",
              "P(best for population)", "Rests mainly on", "P(stable)"]
    return Block("table", header=header, rows=rows, css="ranking", ident=f"ranking-{outcome}")


def _figure(figs: Mapping[str, Mapping[str, Path]] | None, name: str, caption: str) -> list[Block]:
    if not figs or name not in figs or "svg" not in figs[name]:
        return []
    return [Block("figure", text=caption, ident=name, items=[figs[name]["svg"]])]


def _subgroup_sizes(c: _Ctx) -> Block | None:
    sizes = getattr(c.result, "subgroup_sizes", None)
    if sizes is None or not isinstance(sizes, pd.DataFrame) or sizes.empty:
        return None
    df = sizes.reset_index() if "subgroup" not in sizes.columns else sizes
    name_col = "subgroup" if "subgroup" in df.columns else df.columns[0]
    n_col = next((k for k in ("n", "n_unweighted", "count", "size") if k in df.columns), None)
    sup_col = next((k for k in ("suppressed", "is_suppressed") if k in df.columns), None)
    prev_col = next((k for k in ("prevalence", "share", "weighted_share") if k in df.columns), None)
    rows = []
    for _, r in df.iterrows():
        sup = bool(r[sup_col]) if sup_col else False
        if sup:
            rows.append([str(r[name_col]), "suppressed (below the minimum cell size)", "–"])
        else:
            n_val = r[n_col] if n_col else None
            prev_val = r[prev_col] if prev_col else None
            rows.append([str(r[name_col]),
                         str(int(n_val)) if n_val is not None and not pd.isna(n_val) else "–",
                         _pct_short(float(prev_val)) if prev_val is not None and not pd.isna(prev_val)
                         else "–"])
    return Block("table", header=["Subgroup", "Respondents", "Share of population"], rows=rows,
                 css="sizes", ident="subgroup-sizes")


def _edge_rows(c: _Ctx) -> Block:
    from veerkracht_bayes.report.figures import edge_posterior_means

    graph = c.result.graph
    diag = getattr(c.result, "diagnostics", None)
    cls = dict(getattr(diag, "edge_class", None) or {})
    table = getattr(diag, "edge_table", None)
    means = edge_posterior_means(c.result.fit.idata, graph)
    rows = []
    for e in graph.edges:
        contraction = "–"
        if isinstance(table, pd.DataFrame) and e.key in table.index:
            col = next((k for k in table.columns if "contraction" in str(k)), None)
            if col is not None and np.isfinite(float(table.loc[e.key, col])):
                contraction = f"{float(table.loc[e.key, col]):.2f}"
        rows.append([f"{c.label(e.source)} → {c.label(e.target)}", e.sign.replace("-", _MINUS),
                     _num(means.get(e.key, np.nan), 3, signed=True), contraction,
                     cls.get(e.key, "unclassified"), "yes" if e.inferred else "no"])
    return Block("table", header=["Link", "Sign", "Posterior mean", "Contraction",
                                  "Class", "Inferred"], rows=rows, css="edges", ident="edges")


def _loops(c: _Ctx) -> list[Block]:
    gains = getattr(c.result, "loop_gains", None)
    out: list[Block] = []
    if isinstance(gains, pd.DataFrame) and len(gains):
        rows = [[str(r["loop"]), str(r.get("title", "")), str(r.get("stated_polarity", "")),
                 _triple(r["mean"], r["lower"], r["upper"]),
                 _pct_short(r["p_reinforcing"]) if "p_reinforcing" in r else "–"]
                for _, r in gains.iterrows()]
        out.append(Block("table", header=["Loop", "Title", "Stated polarity",
                                          f"Gain [{round(100 * c.ci)}% interval]",
                                          "P(reinforcing)"], rows=rows, css="loops", ident="loops"))
    amp = getattr(c.result, "loop_amplification", None)
    if isinstance(amp, pd.DataFrame) and len(amp):
        sup = set(c.effects.loc[c.effects["suppressed"].astype(bool), "policy"])
        rows = []
        for _, r in amp.iterrows():
            if r["policy"] in sup:
                continue
            share = r.get("loop_share", np.nan)
            rows.append([str(r["policy"]), str(r["outcome"]), str(r["loop"]),
                         _triple(r["loop_carried_mean"], r["loop_carried_lower"],
                                 r["loop_carried_upper"]),
                         "–" if not np.isfinite(share) else f"{share:.0%}",
                         _pct_short(r["p_amplifies"])])
        out.append(Block("details", text="Which loops carry each policy's effect", children=[
            Block("table", header=["Policy", "Outcome", "Loop", "Loop-carried effect, SD",
                                   "Share of effect", "P(amplifies)"], rows=rows, css="amp")]))
    return out


def _stability(c: _Ctx) -> tuple[float, float] | None:
    try:
        from veerkracht_bayes.causal.draws import StructuralDraws

        rho = StructuralDraws.from_posterior(c.result.fit.idata, c.result.graph).spectral_radius()
        return float((rho < 1).mean()), float(rho.max())
    except Exception as exc:  # reported, not hidden
        logger.warning("stability of the posterior draws could not be computed: %s", exc)
        return None


def _scalar_items(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if len(v) <= 12:
                out += _scalar_items(v, key + ".")
        elif isinstance(v, (str, bool, int, float, np.integer, np.floating)) or v is None:
            if isinstance(v, (float, np.floating)):
                v = "–" if not np.isfinite(v) else f"{float(v):.4g}"
            out.append((key, "–" if v is None else str(v)))
    return out


def _diagnostics(c: _Ctx) -> list[Block]:
    diag = getattr(c.result, "diagnostics", None)
    rows: list[list[str]] = []
    if diag is None:
        rows.append(["overall", "no diagnostics available"])
    else:
        rows.append(["overall", "passed" if c.diag_passed else "FAILED"])
    st = _stability(c)
    if st is not None:
        rows.append(["stability: P(spectral radius < 1) over posterior draws", _pct_short(st[0])])
        rows.append(["stability: largest spectral radius ρ", f"{st[1]:.3f}"])
    fit = getattr(c.result, "fit", None)
    data = getattr(fit, "data", None)
    rows.append(["missing-data method",
                 "none (prior-only: no survey data)" if data is None
                 else str(getattr(data, "missing_method", "unknown"))])
    if data is not None:
        rows.append(["respondents used", str(getattr(getattr(data, "y", None), "shape", ["?"])[0])])
    settings = getattr(fit, "settings", None)
    if settings is not None:
        rows.append(["sampler", f"{settings.sampler}, {settings.chains} chains × {settings.draws} "
                                f"draws ({settings.tune} tuning), seed {settings.random_seed}"])
    if diag is not None and callable(getattr(diag, "to_dict", None)):
        try:
            rows += [[k, v] for k, v in _scalar_items(diag.to_dict())
                     if k not in ("passed",)][:40]
        except Exception as exc:
            logger.warning("diagnostics.to_dict() failed: %s", exc)
    out = [Block("table", header=["Check", "Value"], rows=rows, css="diag", ident="diagnostics")]
    if c.problems:
        out.append(Block("p", "Problems found by the diagnostics:"))
        out.append(Block("ul", items=c.problems, css="problems"))
    warns = [str(w) for w in (getattr(c.result, "warnings", None) or [])]
    if warns:
        out.append(Block("p", "Warnings during the run:"))
        out.append(Block("ul", items=warns, css="warnings"))
    if diag is not None and callable(getattr(diag, "to_markdown", None)):
        try:
            md = str(diag.to_markdown())
            out.append(Block("details", text="Full diagnostics report", children=[
                Block("raw", html=markdown_to_html(md), md=md)]))
        except Exception as exc:
            logger.warning("diagnostics.to_markdown() failed: %s", exc)
    return out


def _dose_text(lv: Any) -> str:
    if lv.type == "set":
        return f"set to {lv.value:g} {lv.unit}"
    d = lv.dose
    desc = {"normal": lambda: f"Normal({d.mean:+g}, {d.sd:g})",
            "uniform": lambda: f"Uniform({d.lo:g}, {d.hi:g})",
            "lognormal": lambda: f"LogNormal(median {d.median:+g}, σ {d.sigma:g})",
            "fixed": lambda: f"{d.value:+g}"}
    return f"shift by {desc.get(d.dist, lambda: str(d))()} {lv.unit}"


def _assumptions(c: _Ctx) -> list[Block]:
    out: list[Block] = [Block("h3", "Doses of the policies")]
    pols = getattr(c.result, "policies", None)
    if pols is not None:
        rows = [[p.id, c.label(lv.node), _dose_text(lv), lv.dose_source, lv.citation or "–"]
                for p in pols.policies for lv in p.levers]
        out.append(Block("p", "The report gives no sizes for its recommendations. Every dose below "
                              "is an assumption, with its source; change the policy file to test "
                              "other doses."))
        out.append(Block("table", header=["Policy", "Acts on", "Dose", "Source", "Citation"],
                         rows=rows, css="doses", ident="doses"))
    graph = c.result.graph
    inferred = [e for e in graph.edges if e.inferred]
    out.append(Block("h3", "Inferred links"))
    if inferred:
        out.append(Block("p", f"{len(inferred)} links are our reading of the report's text, not "
                              "links the report states:"))
        out.append(Block("table", header=["Link", "Sign", "Why"],
                         rows=[[f"{c.label(e.source)} → {c.label(e.target)}",
                                e.sign.replace("-", _MINUS),
                                str(getattr(e, "evidence", "") or "")] for e in inferred],
                         css="inferred", ident="inferred-links"))
    else:
        out.append(Block("p", "None: every link is stated in the report."))
    diag = getattr(c.result, "diagnostics", None)
    cls = dict(getattr(diag, "edge_class", None) or {})
    pd_links = [e for e in graph.edges if cls.get(e.key, "prior-dominated") != "data-informed"]
    out.append(Block("h3", "Prior-dominated links"))
    out.append(Block("p", f"{len(pd_links)} of {len(graph.edges)} links are prior-dominated: the "
                          "data changed them little, so their strength is mainly the literature's "
                          "(or the default) prior" + ("" if cls else " (no edge classification "
                                                      "was available: all links counted)") + "."))
    if pd_links:
        out.append(Block("details", text="List of prior-dominated links", children=[
            Block("ul", items=[f"{c.label(e.source)} → {c.label(e.target)} ({e.key})"
                               for e in pd_links])]))
    out.append(Block("h3", "Effects that rest mostly on priors"))
    w = c.effects[(c.effects["scope"] == "within") & ~c.effects["suppressed"].astype(bool)]
    prior = w[w["evidence"] == "prior"]
    out.append(Block("p", f"{len(prior)} of {len(w)} policy–outcome effects travel mostly "
                          "(50% or more) through prior-dominated links."))
    if len(prior):
        out.append(Block("details", text="List of prior-driven effects", children=[
            Block("table", header=["Policy", "Outcome", "Share via prior-dominated links"],
                  rows=[[f"{r['policy']} {c.title(r['policy'])}", c.label(r["outcome"]),
                         "–" if not np.isfinite(r["prior_share"]) else f"{r['prior_share']:.0%}"]
                        for _, r in prior.iterrows()], css="prior-effects")]))
    return out


_METHODS = [
    "The diagram is the MARVEL causal diagram of TNO 2023 R10055: signed links between individual, "
    "societal and organisational resources, with feedback loops. It is turned into a linear "
    "structural equation model on standardised latent variables, η = Bη + Γx + ζ, whose "
    "equilibrium η = (I − B)⁻¹(Γx + ζ) handles the cycles exactly; every latent has variance 1, so "
    "each link strength is a standardised, correlation-sized effect comparable to literature betas.",
    "Link strengths get priors from the literature with the sign the report gives (or documented "
    "defaults). A smooth stability barrier keeps the spectral radius of B below 1, so the "
    "feedback loops settle; the exact spectral radius of every draw is reported.",
    "Survey items load on the constructs (single items with an assumed reliability). Likert items "
    "are treated as continuous. Survey weights enter as a pseudo-likelihood (weights normalised to "
    "the sample size); this is not a design-based variance. Missing item values are handled by "
    "full-information likelihood per missingness pattern, or, with many patterns, by a two-stage "
    "EM approach (Savalei & Bentler, 2009) whose posterior is slightly too narrow; the method used "
    "is in the diagnostics table.",
    "Policies are do-interventions: a lever is shifted by a dose (in SD, with its own uncertainty) "
    "and the new equilibrium is compared with the old, per posterior draw. Effects within a target "
    "group use that group's prevalence for the population average. 'P(helps)' is the posterior "
    "probability that the effect goes in the desirable direction; 'P(best)' the probability of "
    "being the best policy for the population. Time to effect uses a first-order delay per link.",
    "Each link is classed data-informed or prior-dominated from the contraction of its posterior "
    "relative to its prior; an effect 'rests mainly on priors' when 50% or more of it flows "
    "through prior-dominated links.",
]


def _references(c: _Ctx) -> Block:
    from veerkracht_bayes.priors.bibliography import format_reference, load_bib
    from veerkracht_bayes.priors.spec import priors_dir

    priors = getattr(c.result, "priors", None)
    keys: list[str] = list(priors.citations_used()) if priors is not None else []
    pols = getattr(c.result, "policies", None)
    if pols is not None:
        keys += [lv.citation for p in pols.policies for lv in p.levers if lv.citation]
    keys = list(dict.fromkeys(keys))
    bib_path = getattr(priors, "bib_path", None) or (priors_dir() / "references.bib")
    html_items = [html.escape(REPORT_REFERENCE)]
    md_items = [REPORT_REFERENCE]
    missing: list[str] = []
    entries = []
    if keys and Path(bib_path).is_file():
        bib = load_bib(bib_path)
        seen: set[str] = set()
        for k in keys:
            if k not in bib:
                missing.append(k)
            elif bib[k].key.lower() not in seen:
                seen.add(bib[k].key.lower())
                entries.append(bib[k])
    else:
        missing = keys
    from veerkracht_bayes.priors.bibliography import _sort_key

    for e in sorted(entries, key=_sort_key):
        html_items.append(format_reference(e, "html"))
        md_items.append(format_reference(e, "markdown"))
    for k in missing:
        html_items.append(f"[{html.escape(k)}] (not in the bibliography)")
        md_items.append(f"[{k}] (not in the bibliography)")
    h = '<ol class="references">\n' + "\n".join(f"  <li>{x}</li>" for x in html_items) + "\n</ol>"
    m = "\n".join(f"{i}. {x}" for i, x in enumerate(md_items, 1))
    return Block("raw", html=h, md=m)


def _provenance(c: _Ctx) -> list[Block]:
    prov = dict(getattr(c.result, "provenance", None) or {})
    rows = []
    for k in ("seed", "command", "platform", "created_utc"):
        if k in prov:
            rows.append([k, str(prov[k])])
    cfg = getattr(c.result, "config_path", None)
    if cfg is not None:
        rows.append(["config", str(cfg)])
    out = [Block("table", header=["Item", "Value"], rows=rows, css="prov", ident="provenance")]
    inputs = prov.get("inputs") or {}
    if inputs:
        out.append(Block("table", header=["Input", "File", "SHA-256"],
                         rows=[[str(k), str((v or {}).get("path", "–")),
                                str((v or {}).get("sha256", "–"))] for k, v in inputs.items()],
                         css="prov", ident="inputs"))
    versions = prov.get("versions") or {}
    if versions:
        out.append(Block("table", header=["Package", "Version"],
                         rows=[[str(k), str(v)] for k, v in versions.items()], css="prov",
                         ident="versions"))
    return out


def brief_blocks(result: Any, figures: Mapping[str, Mapping[str, Path]] | None = None
                 ) -> list[Block]:
    """The brief as a list of :class:`Block` (page one first, then the technical sections).

    Parameters
    ----------
    result
        A ``RunResult`` (see :mod:`veerkracht_bayes.workflow.pipeline`).
    figures
        ``{name: {format: path}}`` from :func:`veerkracht_bayes.report.figures.write_figures`, or
        ``None`` for a brief without figures.
    """
    c = _context(result)
    b = _page_one(c)
    b.append(Block("h2", "Ranking of the recommendations per outcome", ident="ranking"))
    b.append(Block("p", "Policies ordered by the probability of being the best for the whole "
                        "population (P(best)), then by their mean effect; effects in SD of the "
                        "outcome. 'Rests mainly on' says whether most of the effect flows through "
                        "data-informed links ('data') or prior-dominated ones ('prior')."))
    for o in c.outcomes:
        b.append(Block("h3", f"{c.label(o)} ({'lower' if desirable_direction(o) < 0 else 'higher'} "
                             "is better)"))
        b.append(_ranking(c, o))
        b += _figure(figures, f"forest_{o}", f"Forest plot: effect of each recommendation on "
                                            f"{c.label(o).lower()}, ordered by the mean effect "
                                            "within the target group, best first.")
    b.append(Block("h2", "For whom: subgroups", ident="subgroups"))
    b += _figure(figures, "subgroups", "Effects within each targeted subgroup (blue) and averaged "
                                       "over the whole population (orange). Suppressed cells show "
                                       "no numbers.")
    sizes = _subgroup_sizes(c)
    if sizes is not None:
        b.append(sizes)
    b.append(Block("h2", "The diagram with posterior link strengths", ident="diagram"))
    b += _figure(figures, "diagram_posterior",
                 "Nodes coloured by resource type (individual red, societal blue, organisational "
                 "grey). Link width ∝ |posterior mean|; solid: data-informed, dashed: "
                 "prior-dominated; green +, red −.")
    b.append(Block("details", text="All links: posterior means and classes",
                   children=[_edge_rows(c)]))
    b.append(Block("h2", "Feedback loops", ident="loops"))
    b += _figure(figures, "loop_gains", "Gain of each named loop (product of its link strengths) "
                                        "with its central interval.")
    b += _loops(c)
    b.append(Block("h2", "Time to effect", ident="dynamics"))
    b += _figure(figures, "trajectories", "Mean effect over the years after the start, per "
                                          "recommendation (bands: central interval).")
    b.append(Block("h2", "Diagnostics", ident="diagnostics-section"))
    b += _diagnostics(c)
    b.append(Block("h2", "What rests on assumptions", ident="assumptions"))
    b += _assumptions(c)
    b.append(Block("h2", "Methods", ident="methods"))
    b += [Block("p", t) for t in _METHODS]
    b.append(Block("h2", "References", ident="references"))
    b.append(_references(c))
    b.append(Block("h2", "Provenance", ident="provenance-section"))
    b += _provenance(c)
    return b


# ============================================================================ renderers
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], figure_prefix: str = "figures") -> str:
    """Render blocks to Markdown (figures as ``figure_prefix/<name>.svg``)."""
    out: list[str] = []
    for b in blocks:
        k = b.kind
        if k in ("h1", "h2", "h3"):
            out.append("#" * int(k[1]) + " " + b.text)
        elif k == "p":
            out.append(b.text)
        elif k == "ul":
            out.append("\n".join(f"- {i}" for i in b.items))
        elif k == "banner":
            out.append("\n>\n".join(f"> **⚠ {t}** — {msg}" for t, msg in b.items))
        elif k == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                     "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_md_cell(x) for x in r) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif k == "figure":
            out.append(f"![{b.text}]({figure_prefix}/{Path(b.items[0]).name})\n\n*{b.text}*")
        elif k == "details":
            out.append(f"**{b.text}**\n\n" + render_markdown(b.children, figure_prefix).strip())
        elif k == "raw":
            out.append(b.md)
        elif k == "pagebreak":
            out.append("---")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1d;margin:0;
background:#f4f4f1;line-height:1.5}
main{max-width:1040px;margin:0 auto;background:#fff;padding:28px 44px 60px;
box-shadow:0 0 6px rgba(0,0,0,.08)}
h1{font-size:1.7em;margin:.3em 0 .6em;color:#10355f}
h2{font-size:1.35em;margin:1.6em 0 .5em;padding-bottom:.2em;border-bottom:2px solid #c4d9f0;
color:#10355f}
h3{font-size:1.1em;margin:1.2em 0 .4em}
.page-one{font-size:1.08em}
.page-one li{margin:.35em 0}
.page-one h2{border-bottom-color:#1f5fa8}
ul.notes{color:#444;font-size:.93em}
.banner{border:3px solid #b2182b;background:#fde8e6;color:#5c0b14;border-radius:6px;
padding:10px 16px;margin:12px 0}
.banner.prior-only{border-color:#c77c02;background:#fff4dc;color:#4d3000}
.banner.forced{border-color:#7a0010;background:#b2182b;color:#fff}
.banner p{margin:.3em 0}.banner strong{letter-spacing:.04em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em;width:100%}
th,td{border:1px solid #d6d6d6;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#eef3f9}
tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.suppressed{color:#777;font-style:italic}
figure{margin:1em 0 1.4em}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;margin-top:.3em}
details{margin:.5em 0 1em}summary{cursor:pointer;color:#1f5fa8}
table.doses td:nth-child(3){white-space:nowrap}
ol.references li{margin:.3em 0;font-size:.92em}
code{background:#f2f2f2;padding:0 3px}
@media print{.page-one{page-break-after:always}main{box-shadow:none}details{display:block}}
"""

_NUMERIC = re.compile(r"^[−+\-]?[\d.,<>%–\[\] −+]+$|^[<>]?\d+%$")


def _cell(x: str, header: bool = False, numeric: bool = True) -> str:
    tag = "th" if header else "td"
    s = str(x)
    cls = ""
    if not header and s.startswith("suppressed"):
        cls = ' class="suppressed"'
    elif not header and numeric and _NUMERIC.match(s):
        cls = ' class="num"'
    return f"<{tag}{cls}>{html.escape(s)}</{tag}>"


def _data_uri(path: Path) -> str:
    data = Path(path).read_bytes()
    return "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii")


def _html_blocks(blocks: Sequence[Block]) -> list[str]:
    esc = html.escape
    out: list[str] = []
    for b in blocks:
        k = b.kind
        ident = f' id="{esc(b.ident, quote=True)}"' if b.ident else ""
        if k in ("h1", "h2", "h3"):
            out.append(f"<{k}{ident}>{esc(b.text)}</{k}>")
        elif k == "p":
            out.append(f"<p>{esc(b.text)}</p>")
        elif k == "ul":
            cls = f' class="{esc(b.css)}"' if b.css else ""
            out.append(f"<ul{cls}>" + "".join(f"<li>{esc(str(i))}</li>" for i in b.items) + "</ul>")
        elif k == "banner":
            body = "".join(f"<p><strong>⚠ {esc(t)}</strong> — {esc(msg)}</p>" for t, msg in b.items)
            out.append(f'<div class="banner {esc(b.css)}" role="alert">{body}</div>')
        elif k == "table":
            head = "<tr>" + "".join(_cell(h, True) for h in b.header) + "</tr>"
            num = b.css != "prov"
            body = "".join("<tr>" + "".join(_cell(x, numeric=num) for x in r) + "</tr>"
                           for r in b.rows)
            out.append(f'<table class="{esc(b.css)}"{ident}><thead>{head}</thead>'
                       f"<tbody>{body}</tbody></table>")
        elif k == "figure":
            out.append(f'<figure{ident}><img src="{_data_uri(b.items[0])}" alt="{esc(b.text, True)}">'
                       f"<figcaption>{esc(b.text)}</figcaption></figure>")
        elif k == "details":
            out.append(f"<details><summary>{esc(b.text)}</summary>"
                       + "".join(_html_blocks(b.children)) + "</details>")
        elif k == "raw":
            out.append(b.html)
        elif k == "pagebreak":
            out.append("</section>\n<section>")
    return out


def render_html(blocks: Sequence[Block], title: str = "Policy brief") -> str:
    """Render blocks to one self-contained HTML document (inline CSS, figures as data URIs)."""
    parts = _html_blocks(blocks)
    body = "\n".join(parts)
    body = f'<section class="page-one">\n{body}\n</section>'
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            f"{body}\n</main>\n</body>\n</html>\n")


def markdown_to_html(md: str) -> str:
    """A small, safe Markdown-to-HTML converter for diagnostics reports.

    Handles ``#`` headings, pipe tables, ``-``/``*`` bullet lists, inline ``code`` and
    paragraphs; everything is HTML-escaped (no raw HTML passes through).
    """
    esc = html.escape

    def inline(t: str) -> str:
        t = esc(t.strip())
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)

    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
            continue
        if s.startswith("#"):
            level = min(len(s) - len(s.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{inline(s.lstrip('#'))}</h{level}>")
            i += 1
        elif s.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [x.strip() for x in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", x) for x in cells if x):
                    rows.append(cells)
                i += 1
            if rows:
                head = "".join(f"<th>{inline(x)}</th>" for x in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{inline(x)}</td>" for x in r) + "</tr>"
                               for r in rows[1:])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif re.match(r"^[-*]\s+", s):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                items.append(f"<li>{inline(re.sub(r'^\s*[-*]\s+', '', lines[i]))}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^\s*([#|]|[-*]\s)", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def render_brief(result: Any, figures: Mapping[str, Mapping[str, Path]] | None = None
                 ) -> tuple[str, str]:
    """``(markdown, html)`` of the brief of a run result (figures optional)."""
    blocks = brief_blocks(result, figures)
    return render_markdown(blocks), render_html(blocks, title="Policy brief – veerkracht_bayes")


def write_brief(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write the brief of a run: figures, ``brief.md`` and ``brief.html``.

    Parameters
    ----------
    result
        A ``RunResult`` (fields used: ``graph``, ``fit``, ``diagnostics``, ``policies``,
        ``effects``, ``loop_gains``, ``loop_amplification``, ``trajectories``,
        ``subgroup_sizes``, ``priors``, ``survey_report``, ``provenance``, ``forced``,
        ``prior_only``, ``warnings``).
    out_dir
        Output folder (created if missing); figures go to ``out_dir/figures``.

    Returns
    -------
    dict
        Relative file name (``"brief.md"``, ``"brief.html"``, ``"figures/forest_stress.svg"``...)
        -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = write_figures(result, out / "figures")
    md, page = render_brief(result, figs)
    paths: dict[str, Path] = {}
    for name, per in figs.items():
        for fmt, p in per.items():
            paths[f"figures/{Path(p).name}"] = Path(p)
    (out / "brief.md").write_text(md, encoding="utf-8")
    (out / "brief.html").write_text(page, encoding="utf-8")
    paths["brief.md"] = out / "brief.md"
    paths["brief.html"] = out / "brief.html"
    logger.info("wrote the brief to %s", out)
    return paths
