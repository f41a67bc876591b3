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

Both files come from jinja2 templates shipped with the package
(``veerkracht_bayes/report/templates/``: ``brief.html.j2``, ``brief.md.j2``, ``brief.css``). The
HTML inlines every figure as SVG markup (no ``data:`` URIs, ids prefixed per figure) and its CSS,
so it renders offline and can be mailed as one file; it has a print stylesheet for A4 (page one
on one page) and tables that scroll sideways on a phone. Markdown inside the brief (the
diagnostics report, the page-one dose note) is turned into HTML by markdown-it-py with raw HTML
off. The Markdown refers to ``figures/*.svg`` next to it. All text from users (policy titles,
labels, dose sources, warnings, paths) is HTML-escaped by the template's autoescaping.
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.summaries import desirable_direction
from veerkracht_bayes.report.figures import (decision_columns, ranked_policies, safe_reason,
                                             write_figures)

__all__ = ["REPORT_REFERENCE", "PRIMARY_OUTCOMES", "SUBGROUP_NAMES", "Block", "brief_blocks",
           "render_markdown", "render_html", "render_brief", "write_brief", "markdown_html",
           "inline_svg", "likely_words", "effect_evidence_label", "effect_evidence_cell",
           "measurement_text"]

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
    "refugee": ("asylum seekers and status holders", "asielzoekers en statushouders"),
    "pupils_and_parents": ("pupils in primary and secondary school and their parents",
                           "leerlingen in het basis- en voortgezet onderwijs en hun ouders"),
    "bottom_labour_market": ("people on welfare and low-paid workers",
                             "mensen in de bijstand en aan de onderkant van de arbeidsmarkt"),
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

    ``kind`` is one of ``h1, h2, h3, p, ul, table, banner, figure, legend, details, div, md,
    references, pagebreak``. Text is plain (escaped by the HTML template); ``md`` carries
    Markdown (rendered to HTML by markdown-it-py, raw HTML off); ``div`` groups ``children``
    (with ``css`` and ``lang``); ``figure`` carries the inlined SVG in ``html``;
    ``references`` carries ``(html, markdown)`` pairs formatted by
    :func:`veerkracht_bayes.priors.bibliography.format_reference`.

    Examples
    --------
    >>> b = Block("p", text="Most policies help a little.")
    >>> b.kind, b.text
    ('p', 'Most policies help a little.')
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
    lang: str = ""


# ============================================================================ formatting
def _digits(*values: float) -> int:
    v = max((abs(x) for x in values if x is not None and np.isfinite(x)), default=0.0)
    if v >= 0.095 or v == 0:
        return 2
    return int(min(3, max(2, -math.floor(math.log10(v)) + 1)))


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


def likely_words(p: float, lang: str) -> str:
    """Words for the probability that a policy helps (``p_meaningful``); "" below 0.5.

    An effect with ``p_meaningful`` < 0.5 never gets "likely" words: the sentence then says it
    is unlikely to make a meaningful difference (see :func:`_sentence`).

    Examples
    --------
    >>> likely_words(0.95, "en"), likely_words(0.8, "nl"), likely_words(0.3, "en")
    ('most likely', 'waarschijnlijk', '')
    """
    if p is None or not np.isfinite(p):
        return ""
    words = [(0.9, "most likely", "zeer waarschijnlijk"), (0.75, "likely", "waarschijnlijk"),
             (0.5, "possibly", "mogelijk")]
    for cut, en, nl in words:
        if p >= cut:
            return en if lang == "en" else nl
    return ""


def _group(name: str | None, lang: str) -> str:
    key = name or "all"
    en, nl = SUBGROUP_NAMES.get(key, (key.replace("_", " "), key.replace("_", " ")))
    return en if lang == "en" else nl


def _p_helps(row: Mapping[str, Any]) -> float:
    """"Probability it helps": ``p_meaningful`` = P(direction x effect > MRC).

    Never ``p_positive``: every link prior is truncated to the diagram's sign, so the sign alone
    gives almost any path P(> 0) near 1. (:func:`veerkracht_bayes.report.figures.decision_columns`
    fills ``p_meaningful`` from the older ``p_improve``, the same quantity.)
    """
    v = row.get("p_meaningful", np.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


_EVIDENCE = ("assumption", "literature", "data")


def _shares(row: Mapping[str, Any]) -> dict[str, float] | None:
    out = {}
    for k in _EVIDENCE:
        try:
            v = float(row.get(f"share_{k}", np.nan))
        except (TypeError, ValueError):
            v = float("nan")
        out[k] = v
    return out if all(np.isfinite(v) for v in out.values()) else None


def effect_evidence_label(row: Mapping[str, Any]) -> str:
    """What an effect rests mainly on: ``assumption``, ``literature``, ``data`` or ``no path``.

    ``data`` only when ``share_data`` > 0.5 (the rule of
    :func:`veerkracht_bayes.causal.evidence.evidence_label`), whatever the ``evidence`` column
    says (a label that would contradict this is overruled and logged); otherwise the larger of
    the other two (ties: ``assumption``).

    Examples
    --------
    >>> effect_evidence_label({"share_assumption": 0.2, "share_literature": 0.3, "share_data": 0.5})
    'literature'
    >>> effect_evidence_label({"share_assumption": 0.1, "share_literature": 0.2, "share_data": 0.7})
    'data'
    """
    if not bool(row.get("reachable", True)):
        return "no path"
    sh = _shares(row)
    given = str(row.get("evidence", "") or "")
    if sh is None:
        return given or "–"
    if sh["data"] > 0.5:
        label = "data"
    else:
        label = "assumption" if sh["assumption"] >= sh["literature"] else "literature"
    if given and given != label and given in _EVIDENCE:
        if given == "data" or label == "data":
            logger.warning("effect %s -> %s: evidence %r overruled by the shares (%s)",
                           row.get("policy"), row.get("outcome"), given, label)
        else:
            label = given  # the summary's tie-breaking between assumption and literature
    assert label != "data" or sh["data"] > 0.5, "an effect with share_data <= 0.5 labelled data"
    return label


def effect_evidence_cell(row: Mapping[str, Any]) -> str:
    """``"assumption: assumption 62% · literature 30% · data 8%"`` (label, then the shares).

    Examples
    --------
    >>> effect_evidence_cell({"share_assumption": 0.62, "share_literature": 0.3, "share_data": 0.08})
    'assumption: assumption 62% · literature 30% · data 8%'
    """
    label = effect_evidence_label(row)
    sh = _shares(row)
    if label == "no path" or sh is None:
        if sh is None and "prior_share" in row and np.isfinite(float(row.get("prior_share", np.nan))):
            return f"{label} (via prior-dominated links {float(row['prior_share']):.0%})"
        return label
    return f"{label}: " + " · ".join(f"{k} {_pct_short(sh[k])}" for k in _EVIDENCE)


def _rank_interval(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "–"
    try:
        lo, hi = float(row.get("rank_lower", np.nan)), float(row.get("rank_upper", np.nan))
    except (TypeError, ValueError):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    lo_i, hi_i = int(round(lo)), int(round(hi))
    return f"{lo_i}" if lo_i == hi_i else f"{lo_i}–{hi_i}"


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
    verdict: str | None = None
    mrc: float = 0.05
    sensitivity: pd.DataFrame | None = None
    target_groups: dict[str, tuple[str, str]] = field(default_factory=dict)

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


_SAMPLING_WORDS = ("r-hat", "rhat", "ess", "bfmi", "diverg", "sampl", "chain")


def _diag_dict(diag: Any) -> dict[str, Any]:
    if diag is None or not callable(getattr(diag, "to_dict", None)):
        return {}
    try:
        return dict(diag.to_dict())
    except Exception as exc:  # reported, not hidden
        logger.warning("diagnostics.to_dict() failed: %s", exc)
        return {}


def _verdict(diag: Any) -> str | None:
    """The diagnostics verdict: ``passed``, ``model misfit``, ``sampling problems`` or both.

    Taken from ``diagnostics.verdict`` when present; otherwise derived from the problems and
    notes so that a misfit noted anywhere is never reported as "passed".
    """
    if diag is None:
        return None
    v = getattr(diag, "verdict", None) or _diag_dict(diag).get("verdict")
    if v:
        return str(v)
    problems = [str(x) for x in (getattr(diag, "problems", None) or [])]
    notes = [str(x) for x in (getattr(diag, "notes", None) or [])]
    parts = []
    if any("misfit" in t.lower() for t in problems + notes):
        parts.append("model misfit")
    other = [t for t in problems if "misfit" not in t.lower()]
    if any(w in t.lower() for t in other for w in _SAMPLING_WORDS):
        parts.append("sampling problems")
    elif other:
        parts.append("problems found")
    if not parts and getattr(diag, "passed", True) is False:
        parts.append("problems found")
    return "; ".join(parts) or "passed"


def _target_groups(pols: Any) -> dict[str, tuple[str, str]]:
    """Policy id -> (the report's words for its target group, section), where given."""
    out: dict[str, tuple[str, str]] = {}
    for p in getattr(pols, "policies", None) or []:
        tg = getattr(p, "target_group", None)
        if tg is None:
            continue
        get = (tg.get if isinstance(tg, Mapping) else lambda k, _t=tg: getattr(_t, k, None))
        quote = str(get("quote") or "").strip()
        if quote:
            out[p.id] = (quote, str(get("section") or "").strip())
    return out


def _context(result: Any) -> _Ctx:
    effects = decision_columns(result.effects)
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
    verdict = _verdict(diag)
    problems = [str(p) for p in (getattr(diag, "problems", None) or [])]
    ci = float(effects["ci_prob"].iloc[0]) if "ci_prob" in effects and len(effects) else 0.9
    fit = getattr(result, "fit", None)
    prior_only = bool(getattr(result, "prior_only", False)) or bool(getattr(fit, "prior_only", False))
    mrc = 0.05
    if "mrc" in effects and effects["mrc"].notna().any():
        mrc = float(effects["mrc"].dropna().iloc[0])
    sens = getattr(result, "sensitivity", None)
    sens = sens if isinstance(sens, pd.DataFrame) and len(sens) else None
    return _Ctx(result, effects, titles_en, titles_nl, labels_en, labels_nl, outcomes, primary,
                _is_synthetic(result), prior_only, bool(getattr(result, "forced", False)), passed,
                problems, ci, verdict, mrc, sens, _target_groups(pols))


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


def _who(c: _Ctx, row: Mapping[str, Any], lang: str, quote: bool = True) -> str:
    """"for everyone" / "among single parents (the report: “…”)"."""
    grp = row["subgroup"]
    if lang == "en":
        who = "for everyone" if grp == "all" else f"among {_group(grp, 'en')}"
    else:
        who = "voor iedereen" if grp == "all" else f"bij {_group(grp, 'nl')}"
    tg = c.target_groups.get(row["policy"]) if quote else None
    if tg:
        who += (f" (the report: “{tg[0]}”)" if lang == "en" else f" (het rapport: “{tg[0]}”)")
    return who


def _sentence(c: _Ctx, row: Mapping[str, Any], lang: str) -> str:
    """One page-one sentence; its probability is ``p_meaningful`` (see :func:`_p_helps`)."""
    d = int(row["direction"])
    m, lo, hi = (d * float(row[k]) for k in ("mean", "lower", "upper"))
    lo, hi = min(lo, hi), max(lo, hi)
    dig = _digits(m, lo, hi)
    p = _p_helps(row)
    small = abs(m) < c.mrc
    title = c.title(row["policy"], lang)
    ci = f"{round(100 * c.ci)}%"
    likely = likely_words(p, lang)
    verb = _verb(c, row["outcome"], lang)
    who = _who(c, row, lang, quote=False)
    if lang == "en":
        if likely:
            head = f"{title} ({row['policy']}) {likely} {verb} {who}"
        else:
            inf = _INFINITIVE.get(verb.split(" ", 1)[0], verb.split(" ", 1)[0])
            head = (f"{title} ({row['policy']}) is unlikely to {inf} {verb.split(' ', 1)[1]} by a "
                    f"meaningful amount {who}")
        return (f"{head}: on average by {_num(m, dig)} SD ({ci} interval {_num(lo, dig)} to "
                f"{_num(hi, dig)}); probability it helps: {_pct(p)}."
                + (" This effect is very small." if small else ""))
    first, rest = verb.split(" ", 1)
    mid = likely if likely else "waarschijnlijk niet merkbaar"
    return (f"{title} ({row['policy']}) {first} {mid} {rest} {who}: "
            f"gemiddeld met {_num(m, dig, 'nl')} SD ({ci}-interval {_num(lo, dig, 'nl')} tot "
            f"{_num(hi, dig, 'nl')}); kans dat het helpt: {_pct(p, 'nl')}."
            + (" Dit effect is heel klein." if small else ""))


_INFINITIVE = {"raises": "raise", "lowers": "lower", "reduces": "reduce"}


def _top_rows(c: _Ctx, outcome: str, k: int = 3) -> list[dict[str, Any]]:
    """The first ``k`` policies of the ranking (:func:`ranked_policies`) for an outcome.

    Ranked by the probability it helps (``p_meaningful``), then the mean; suppressed cells and
    policies with no path to the outcome are left out. No probability threshold: a first place
    with a low probability is shown with that probability (and "unlikely" words).
    """
    w = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "within")]
    w = w.set_index("policy", drop=False)
    rows = []
    for pid in ranked_policies(c.effects, outcome, "within"):
        r = w.loc[pid]
        if bool(r["suppressed"]) or not bool(r["reachable"]) or not np.isfinite(r["mean"]):
            continue
        rows.append(r.to_dict())
    return rows[:k]


def _doses_note(lang: str) -> Block:
    """The page-one sentence that doses are assumptions, linked to the dose table."""
    if lang == "en":
        pre = ("Important: how many people each programme reaches (its coverage) and, where no "
               "evaluation of a comparable programme exists, how much it changes for the people "
               "it reaches, are assumptions, not measurements. See ")
        link, post = "the dose table with sources", "."
    else:
        pre = ("Let op: hoeveel mensen elk programma bereikt (het bereik) en, waar geen evaluatie "
               "van een vergelijkbaar programma bestaat, hoeveel het verandert voor wie het "
               "bereikt, zijn aannames, geen metingen. Zie ")
        link, post = "de tabel met doses en bronnen", "."
    return Block("md", md=f"{pre}[{link}](#doses){post}", css="doses-note")


_VERDICT_TEXT = {
    "passed": ("passed: the sampling settled and the model reproduces the survey well enough.",
               "geslaagd: de berekening is stabiel en het model past goed genoeg bij de enquête."),
    "model misfit": ("model misfit: the model does not reproduce the survey answers well, so "
                     "treat every number here with extra caution.",
                     "het model past niet goed bij de enquête (model misfit); wees extra "
                     "voorzichtig met alle getallen hier."),
    "sampling problems": ("sampling problems: the computer simulation did not settle well, so the "
                          "numbers may be imprecise.",
                          "problemen bij de berekening (sampling problems): de getallen kunnen "
                          "onnauwkeurig zijn."),
    "problems found": ("problems found: see the diagnostics section.",
                       "problemen gevonden: zie de diagnostiek."),
}


def _verdict_sentence(c: _Ctx, lang: str) -> str | None:
    """Page-one line with the diagnostics verdict ("passed" only when nothing else is said)."""
    if c.verdict is None:
        return None
    parts = [x.strip() for x in c.verdict.split(";") if x.strip()]
    if len(parts) > 1:
        parts = [x for x in parts if x != "passed"]
    i = 0 if lang == "en" else 1
    texts = [(_VERDICT_TEXT.get(x) or (x, x))[i] for x in parts]
    lead = "Model checks: " if lang == "en" else "Controles van het model: "
    tail = ""
    if c.prior_only and parts == ["passed"]:
        texts = [("no survey data, so the fit to data could not be checked." if lang == "en"
                  else "geen enquêtegegevens, dus de aansluiting bij data is niet te controleren.")]
    return lead + " ".join(t[0].upper() + t[1:] if k else t for k, t in enumerate(texts)) + tail


def _sens_row(c: _Ctx, outcome: str) -> Mapping[str, Any] | None:
    if c.sensitivity is None or "outcome" not in c.sensitivity:
        return None
    s = c.sensitivity[c.sensitivity["outcome"] == outcome]
    if "scope" in s and (s["scope"] == "within").any():
        s = s[s["scope"] == "within"]
    return None if s.empty else s.iloc[0].to_dict()


def _holds(row: Mapping[str, Any], key: str) -> bool | None:
    v = row.get(f"order_holds_{key}")
    if v is not None and not (isinstance(v, float) and math.isnan(v)):
        return bool(v)
    p = row.get(f"p_order_holds_{key}")
    try:
        p = float(p)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(p) else p >= 0.5


def _sensitivity_sentence(c: _Ctx, outcome: str, lang: str) -> str | None:
    """Does the first place survive the assumption checks, and the runner-up's break-even."""
    r = _sens_row(c, outcome)
    if r is None or not r.get("leader") or not r.get("runner_up"):
        return None
    en = lang == "en"
    lead, run = str(r["leader"]), str(r["runner_up"])
    checks = [("doses_x2", "doses twice as uncertain", "doses twee keer zo onzeker"),
              ("default_lever_priors", "the default effect assumption for every programme instead "
               "of the literature", "de standaardaanname voor het effect van elk programma in "
               "plaats van de literatuur")]
    held, broke, parts = [], [], []
    for key, w_en, w_nl in checks:
        h = _holds(r, key)
        p = r.get(f"p_order_holds_{key}")
        word = w_en if en else w_nl
        if p is not None and np.isfinite(float(p)):
            parts.append(f"{word}: {_pct(float(p), lang)}")
        if h is True:
            held.append(word)
        elif h is False:
            broke.append(word)
    p0 = r.get("p_order_holds")
    base = (f"{_pct(float(p0), lang)}" if p0 is not None and np.isfinite(float(p0)) else "–")
    if en:
        s = (f"Is the first place of {lead} robust? It comes out ahead of {run} in {base} of the "
             "draws" + (f" (with {'; with '.join(parts)})" if parts else "") + ". ")
        if broke:
            s += f"Its lead does not survive {' or '.join(broke)}. "
        elif held:
            s += "Its lead survives both checks. " if len(held) == 2 else \
                 f"Its lead survives {held[0]}. "
    else:
        s = (f"Is de eerste plaats van {lead} stevig? Het komt in {base} van de trekkingen vóór "
             f"{run} uit" + (f" (met {'; met '.join(parts)})" if parts else "") + ". ")
        if broke:
            s += f"De voorsprong houdt geen stand bij {' of '.join(broke)}. "
        elif held:
            s += "De voorsprong blijft bij beide controles overeind. " if len(held) == 2 else \
                 f"De voorsprong blijft overeind bij {held[0]}. "
    be = r.get("break_even_coverage")
    try:
        be = float(be)
    except (TypeError, ValueError):
        be = float("nan")
    note = str(r.get("break_even_note") or "").strip()
    if not np.isfinite(be) and note and en:
        s += f"Break-even coverage of {run}: {note}."
    elif not np.isfinite(be) and note:
        s += f"Omslagpunt voor {run}: niet te bepalen ({note})."
    if np.isfinite(be):
        if be > 1:
            s += (f"{run} would not overtake even if it reached everyone in its target group."
                  if en else f"{run} haalt niet in, ook niet als het de hele doelgroep bereikt.")
        elif be <= 0:
            s += (f"{run} would overtake at any coverage." if en
                  else f"{run} haalt bij elk bereik in.")
        else:
            share = f"{100 * be:.1f}%" if be >= 0.995 or be <= 0.005 else _pct(be, lang)
            if not en:
                share = share.replace(".", ",")
            s += (f"{run} would overtake if it reached at least {share} of its target "
                  "group (break-even coverage)." if en else
                  f"{run} haalt in als het minstens {share} van zijn doelgroep bereikt "
                  "(omslagpunt).")
    return s.strip()


def _page_one(c: _Ctx) -> list[Block]:
    top: list[Block] = [Block("h1", "Policy brief: what strengthens resilience? / "
                                    "Beleidssamenvatting: wat versterkt veerkracht?")]
    top += _banners(c)
    suppressed = sorted({(r["policy"], r["subgroup"]) for _, r in c.effects.iterrows()
                         if bool(r["suppressed"])})
    live = c.effects[~c.effects["suppressed"].astype(bool) & c.effects["reachable"]
                     & (c.effects["scope"] == "within")]
    labels = [effect_evidence_label(r) for _, r in live.iterrows()]
    not_data = (np.mean([lab in ("assumption", "literature", "prior") for lab in labels])
                if labels else 0.0)
    mrc_en, mrc_nl = _num(c.mrc, 2), _num(c.mrc, 2, "nl")
    languages = Block("div", css="languages")
    for lang in ("en", "nl"):
        en = lang == "en"
        blocks = []
        blocks.append(Block("h2", "In short (English)" if en else "In het kort (Nederlands)",
                            ident=f"page-one-{lang}"))
        blocks.append(Block("p", (
            "TNO's report on resilience (2023) gives ten recommendations. We put them into a "
            "model of causes and effects and asked: what happens if the government does this? "
            "These are the recommendations with the highest probability of helping, and for whom."
            if en else
            "Het TNO-rapport over veerkracht (2023) geeft tien aanbevelingen. We hebben ze in een "
            "model van oorzaken en gevolgen gezet en gevraagd: wat gebeurt er als de overheid dit "
            "doet? Dit zijn de aanbevelingen met de grootste kans dat ze helpen, en voor wie.")))
        vs = _verdict_sentence(c, lang)
        if vs:
            blocks.append(Block("p", vs))
        blocks.append(_doses_note(lang))
        for o in c.primary:
            rows = _top_rows(c, o)
            if en:
                verb = _verb(c, o, "en")
                first, rest = verb.split(" ", 1)
                head = f"Best candidates to {_INFINITIVE.get(first, first)} {rest}:"
            else:
                first, rest = _verb(c, o, "nl").split(" ", 1)
                inf = {"verhoogt": "verhogen", "verlaagt": "verlagen",
                       "vermindert": "verminderen"}.get(first, first)
                head = f"Beste kandidaten om {rest} te {inf}:"
            blocks.append(Block("h3", head))
            if rows:
                blocks.append(Block("ul", items=[_sentence(c, r, lang) for r in rows]))
            if not any(_p_helps(r) >= 0.5 for r in rows):
                blocks.append(Block("p", "No recommendation makes a meaningful difference here "
                                         "with a probability above 50%." if en else
                                         "Geen aanbeveling maakt hier met een kans van meer dan "
                                         "50% een merkbaar verschil."))
            ss = _sensitivity_sentence(c, o, lang)
            if ss:
                blocks.append(Block("p", ss))
        notes = []
        ci = round(100 * c.ci)
        notes.append(
            f"'Probability it helps' is the probability that the change goes the right way by "
            f"more than the minimal relevant change (MRC) of {mrc_en} SD; smaller changes are too "
            "small to matter. It is not the probability that the effect merely has the right "
            f"sign. SD means standard deviation: 0.1 SD is a small change, 0.3 SD a clear one. "
            f"The {ci}% interval is the range in which the effect lies with {ci}% probability. "
            "Order: the probability it helps, then the mean effect."
            if en else
            f"'Kans dat het helpt' is de kans dat de verandering de goede kant op gaat én groter "
            f"is dan de kleinste relevante verandering (MRC) van {mrc_nl} SD; kleinere "
            "veranderingen zijn te klein om ertoe te doen. Het is niet de kans dat het effect "
            f"alleen het goede teken heeft. SD betekent standaarddeviatie: 0,1 SD is een kleine "
            f"verandering, 0,3 SD een duidelijke. Het {ci}%-interval is het gebied waarin het "
            f"effect met {ci}% kans ligt. Volgorde: de kans dat het helpt, dan het gemiddelde "
            "effect.")
        if c.target_groups:
            notes.append(
                "Each group is the survey group closest to the report's own words; those words "
                "are under 'Target groups as the report writes them'."
                if en else
                "Elke groep is de enquêtegroep die het dichtst bij de woorden van het rapport "
                "ligt; die woorden staan onder 'Target groups as the "
                "report writes them'.")
        if not_data >= 0.5:
            notes.append(
                "Most of these effects rest mainly on assumptions or on the literature, not on "
                "survey data. See 'What rests on assumptions'." if en else
                "De meeste effecten rusten vooral op aannames of op de literatuur, niet op "
                "enquêtegegevens. Zie 'What rests on assumptions'.")
        for pid, grp in suppressed:
            notes.append(
                f"We do not report {c.title(pid, 'en')} ({pid}) for {_group(grp, 'en')}: this group "
                "is too small in the survey." if en else
                f"We melden geen resultaat voor {c.title(pid, 'nl')} ({pid}) bij "
                f"{_group(grp, 'nl')}: deze groep is te klein in de enquête.")
        blocks.append(Block("ul", items=notes, css="notes"))
        languages.children.append(Block("div", lang=lang, css=f"lang-{lang}", children=blocks))
    return top + [languages, Block("pagebreak")]


# ============================================================================ technical part
def _ranking(c: _Ctx, outcome: str) -> Block:
    """Ranking table in the order of :func:`ranked_policies` (the forest plots use it too)."""
    w = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "within")]
    w = w.set_index("policy", drop=False)
    pop = c.effects[(c.effects["outcome"] == outcome) & (c.effects["scope"] == "population")]
    pop = pop.set_index("policy")
    rows = []
    rank = 0
    for pid in ranked_policies(c.effects, outcome, "within"):
        r = w.loc[pid]
        q = pop.loc[pid] if pid in pop.index else None
        # the report's own words for the group are in the target-group table (#target-groups):
        # repeated in every ranking table they made each row a page long when printed
        who = _group(r["subgroup"], "en")
        name = f"{pid} {c.title(pid)}"
        if bool(r["suppressed"]):
            rows.append(["–", name, who, "suppressed: " + safe_reason(r["reason"]), "suppressed",
                         "–", "–", "–", "–", "–"])
            continue
        if not bool(r["reachable"]):
            rows.append(["–", name, who, "no path", "no path", "–", "–", "–", "no path",
                         _pct_short(r["p_stable"])])
            continue
        rank += 1
        pop_cell = "–"
        if q is not None:
            pop_cell = (_triple(q["mean"], q["lower"], q["upper"])
                        if bool(q.get("reachable", True)) else "no path")
        rows.append([str(rank), name, who, _triple(r["mean"], r["lower"], r["upper"]), pop_cell,
                     _pct_short(_p_helps(r)), _rank_interval(r),
                     _pct_short(q["p_best"]) if q is not None else "–",
                     effect_evidence_cell(r), _pct_short(r["p_stable"])])
    ci = round(100 * c.ci)
    header = ["#", "Recommendation", "For whom", f"Effect in target group, SD [{ci}% interval]",
              f"Population average, SD [{ci}% interval]", "Probability it helps",
              f"Rank ({ci}% interval)", "Chance of being best for the whole population",
              "Rests mainly on", "Share of stable draws"]
    return Block("table", header=header, rows=rows, css="ranking", ident=f"ranking-{outcome}")


def _figure(figs: Mapping[str, Mapping[str, Path]] | None, name: str, caption: str,
            css: str = "plot") -> list[Block]:
    """A figure block with the SVG inlined (ids prefixed by the figure's name)."""
    if not figs or name not in figs or "svg" not in figs[name]:
        return []
    path = Path(figs[name]["svg"])
    svg = inline_svg(path.read_text(encoding="utf-8"), name)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(caption, quote=True)}" ',
                      1)
    return [Block("figure", text=caption, ident=f"fig-{name}", items=[path], html=svg, css=css)]


def _legend_sample(entry: Any) -> str:
    """A 44 x 12 px SVG of a legend line: its colour, line style and arrowhead."""
    dash = ' stroke-dasharray="5 3"' if entry.style == "dashed" else ""
    fill = "#fff" if entry.arrowhead == "onormal" else entry.colour
    return (f'<svg width="44" height="12" viewBox="0 0 44 12" aria-hidden="true" '
            f'data-style="{entry.style}" data-arrowhead="{entry.arrowhead}">'
            f'<line x1="1" y1="6" x2="33" y2="6" stroke="{entry.colour}" stroke-width="2"{dash}/>'
            f'<path d="M33 1.5 L43 6 L33 10.5 Z" fill="{fill}" stroke="{entry.colour}" '
            f'stroke-width="1.2"/></svg>')


def _diagram_legend() -> Block:
    """The diagram's legend, built from :func:`veerkracht_bayes.graph.drawing.legend_entries`
    (the entries the drawings use), so line styles mean the same here and in the drawing."""
    from veerkracht_bayes.graph.drawing import legend_entries

    items = []
    for e in legend_entries(posterior=True):
        words = (f"{'dashed' if e.style == 'dashed' else 'solid'} "
                 f"{'green' if e.key == 'positive' else 'red' if e.key == 'negative' else 'grey'}"
                 f" line, {'open' if e.arrowhead == 'onormal' else 'filled'} arrowhead")
        items.append((_legend_sample(e), e.label, words))
    return Block("legend", text="Legend of the diagram", items=items, ident="diagram-legend")


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
                                          "P(reinforcing)"], rows=rows, css="loops",
                         ident="loop-gains"))
    amp = getattr(c.result, "loop_amplification", None)
    if isinstance(amp, pd.DataFrame) and len(amp):
        sup = set(c.effects.loc[c.effects["suppressed"].astype(bool), "policy"])
        rows = []
        small = 0
        for _, r in amp.iterrows():
            if r["policy"] in sup:
                continue
            share = r.get("loop_share", np.nan)
            if np.isfinite(share) and abs(share) < _LOOP_SHARE_SHOWN:
                small += 1  # left to loop_amplification.csv
                continue
            rows.append([str(r["policy"]), str(r["outcome"]), str(r["loop"]),
                         _triple(r["loop_carried_mean"], r["loop_carried_lower"],
                                 r["loop_carried_upper"]),
                         "–" if not np.isfinite(share) else f"{share:.0%}",
                         _pct_short(r["p_amplifies"])])
        kids = [Block("table", header=["Policy", "Outcome", "Loop", "Loop-carried effect, SD",
                                       "Share of effect", "P(amplifies)"], rows=rows, css="amp")]
        if small:
            kids.append(Block("p", f"{small} policy–outcome–loop rows where the loop carries "
                                   f"less than {_LOOP_SHARE_SHOWN:.0%} of the effect are left out "
                                   "here (they are in loop_amplification.csv)."))
        out.append(Block("details", text="Which loops carry each policy's effect", children=kids))
    return out


#: Loop-carried shares below this are not listed in the brief (they are in the CSV).
_LOOP_SHARE_SHOWN = 0.05


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


def _dget(d: Mapping[str, Any], *paths: str) -> Any:
    """First non-None value among dotted ``paths`` of a nested dict."""
    for path in paths:
        cur: Any = d
        for k in path.split("."):
            cur = cur.get(k) if isinstance(cur, Mapping) else None
        if cur is not None:
            return cur
    return None


def _fnum(v: Any, fmt: str) -> str | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return format(x, fmt) if np.isfinite(x) else None


def _verdict_rows(c: _Ctx) -> list[list[str]]:
    """Rows (check, value, threshold, status) of the short diagnostics verdict table."""
    diag = getattr(c.result, "diagnostics", None)
    d = _diag_dict(diag)
    th = dict(d.get("thresholds") or getattr(diag, "thresholds", None) or {})
    na = "not applicable"
    rows: list[list[str]] = []
    if c.verdict is None:
        return [["verdict", "no diagnostics available", "–", "–"]]
    rows.append(["overall verdict", c.verdict, "every check below", "ok" if c.verdict == "passed"
                 else "PROBLEM"])
    sampling_na = _dget(d, "sampling.applicable") is False or (
        c.prior_only and _dget(d, "sampling.max_rhat", "r_hat_max") is None)

    def check(name: str, value: Any, fmt: str, limit: Any, op: str, na_reason: str) -> None:
        v = _fnum(value, fmt)
        lim = _fnum(limit, "g")
        if v is None:
            rows.append([name, na_reason, f"{op} {lim}" if lim else "–", na])
            return
        ok = True
        if lim is not None:
            x, L = float(value), float(limit)
            ok = x <= L if op == "≤" else x >= L if op == "≥" else x == L
        rows.append([name, v, f"{op} {lim}" if lim else "–", "ok" if ok else "FAILED"])

    why = "prior-only: independent draws, no Markov chains" if sampling_na else "not computed"
    check("largest R-hat", _dget(d, "sampling.max_rhat", "r_hat_max"), ".3f",
          th.get("rhat_max", 1.01), "≤", why)
    check("smallest bulk ESS", _dget(d, "sampling.min_ess_bulk", "ess_bulk_min"), ".0f",
          th.get("ess_min", 400), "≥", why)
    check("smallest tail ESS", _dget(d, "sampling.min_ess_tail", "ess_tail_min"), ".0f",
          th.get("ess_min", 400), "≥", why)
    div = _dget(d, "sampling.n_divergent", "divergences")
    check("divergent transitions", None if sampling_na else div, ".0f", 0, "=", why)
    bfmi = _dget(d, "sampling.bfmi")
    check("smallest BFMI per chain", min(bfmi) if isinstance(bfmi, list) and bfmi and
          all(b is not None for b in bfmi) else None, ".2f", th.get("bfmi_min", 0.3), "≥", why)
    ps = _dget(d, "stability.p_stable", "p_stable")
    v = _fnum(ps, ".4f")
    rows.append(["share of draws with stable feedback loops (ρ < 1)",
                 _pct_short(float(ps)) if v else "–", "reported; unstable draws are left out",
                 "ok" if v and float(ps) >= 0.999 else ("note" if v else na)])
    rho = _dget(d, "stability.max_rho", "rho_max")
    rows.append(["largest spectral radius ρ", _fnum(rho, ".3f") or "–", "< 1",
                 "ok" if _fnum(rho, "g") and float(rho) < 1 else ("FAILED" if _fnum(rho, "g")
                                                                  else na)])
    ppp_na = _dget(d, "ppp.reason") or ("prior-only: no survey data" if c.prior_only
                                        else "not computed")
    stage2 = _dget(d, "ppp.statistic") == "stage2_correlations"
    check("posterior predictive p-value (PPP" + (", stage-2 polychoric correlations)" if stage2 else ")"),
          _dget(d, "ppp.ppp") if not isinstance(
        d.get("ppp"), (float, int)) else d.get("ppp"), ".3f", th.get("ppp_min", 0.05), "≥",
          str(ppp_na))
    if rows[-1][3] == "FAILED":
        rows[-1][3] = "MISFIT"
    check("SRMR (residual correlations)" if stage2 else "SRMR (standardised residuals)",
          _dget(d, "ppp.srmr", "srmr"), ".3f",
          th.get("srmr_max", 0.08), "≤", str(ppp_na))
    fit = getattr(c.result, "fit", None)
    data = getattr(fit, "data", None)
    rows.append(["missing-data method", "none (prior-only: no survey data)" if data is None
                 else str(getattr(data, "missing_method", None)
                          or _dget(d, "missing_data_method") or "unknown"), "–", "info"])
    return rows


def _diagnostics(c: _Ctx) -> list[Block]:
    """Short verdict table; the raw details go to :func:`_diagnostics_appendix`."""
    out = [Block("p", "The verdict of the model checks, one row per check. The raw numbers are "
                      "in the appendix at the end."),
           Block("table", header=["Check", "Value", "Threshold", "Status"], rows=_verdict_rows(c),
                 css="diag", ident="diagnostics")]
    if c.problems:
        out.append(Block("p", "Problems found by the diagnostics:"))
        out.append(Block("ul", items=c.problems, css="problems"))
    warns = [str(w) for w in (getattr(c.result, "warnings", None) or [])]
    if warns:
        out.append(Block("p", "Warnings during the run:"))
        out.append(Block("ul", items=warns, css="warnings"))
    return out


def _demote_headings(md: str, by: int = 2) -> str:
    return re.sub(r"(?m)^(#{1,6})(\s)", lambda m: "#" * min(len(m.group(1)) + by, 6) + m.group(2),
                  md)


def _diagnostics_appendix(c: _Ctx) -> list[Block]:
    """Appendix: every scalar of ``Diagnostics.to_dict()``, stability, sampler, notes, report."""
    diag = getattr(c.result, "diagnostics", None)
    rows: list[list[str]] = []
    st = _stability(c)
    if st is not None:
        rows.append(["stability: P(spectral radius < 1) over posterior draws", _pct_short(st[0])])
        rows.append(["stability: largest spectral radius ρ", f"{st[1]:.3f}"])
    fit = getattr(c.result, "fit", None)
    data = getattr(fit, "data", None)
    if data is not None:
        rows.append(["respondents used", str(getattr(getattr(data, "y", None), "shape", ["?"])[0])])
    wd = _weights_deff(c.result)
    if wd is not None:
        rows.append(["survey weights: Kish design effect (effective n)", f"{wd[0]:.3f} ({wd[1]:.0f})"])
    settings = getattr(fit, "settings", None)
    if settings is not None:
        rows.append(["sampler", f"{settings.sampler}, {settings.chains} chains × {settings.draws} "
                                f"draws ({settings.tune} tuning), seed {settings.random_seed}"])
    rows += [[k, v] for k, v in _scalar_items(_diag_dict(diag)) if k not in ("passed", "verdict")]
    out = [Block("table", header=["Item", "Value"], rows=rows[:60], css="diag-raw",
                 ident="diagnostics-raw")]
    notes = [str(n) for n in (getattr(diag, "notes", None) or [])]
    if notes:
        out.append(Block("p", "Notes of the diagnostics:"))
        out.append(Block("ul", items=notes, css="notes"))
    if diag is not None and callable(getattr(diag, "to_markdown", None)):
        try:
            md = str(diag.to_markdown())
            out.append(Block("details", text="Full diagnostics report", children=[
                Block("md", md=_demote_headings(md))]))
        except Exception as exc:
            logger.warning("diagnostics.to_markdown() failed: %s", exc)
    return out


def _dose_text(lv: Any) -> str:
    if getattr(lv, "type", "shift") == "set":
        return f"set to {lv.value:g} {lv.unit}"
    d = lv.dose
    desc = {"normal": lambda: f"Normal({d.mean:+g}, {d.sd:g})",
            "uniform": lambda: f"Uniform({d.lo:g}, {d.hi:g})",
            "lognormal": lambda: f"LogNormal(median {d.median:+g}, σ {d.sigma:g})",
            "fixed": lambda: f"{d.value:+g}"}
    return f"shift by {desc.get(d.dist, lambda: str(d))()} {lv.unit}"


def _as_dict(x: Any) -> dict[str, Any] | None:
    if hasattr(x, "model_dump"):
        return dict(x.model_dump())
    if isinstance(x, Mapping):
        return dict(x)
    if hasattr(x, "__dict__") and not isinstance(x, (str, bytes)):
        return {k: v for k, v in vars(x).items() if not k.startswith("_")}
    return None


def _coverage_text(cov: Any) -> str:
    """A coverage (share of the target group reached) in words: ``Beta(6, 14): mean 30%``."""
    if cov is None:
        return "–"
    if isinstance(cov, (int, float, np.integer, np.floating)):
        return _pct_short(float(cov))
    d = _as_dict(cov)
    if d is None:
        return str(cov)
    name = str(d.get("dist") or d.get("distribution") or "").lower()
    a = d.get("a", d.get("alpha"))
    b = d.get("b", d.get("beta"))
    if name == "beta" and a is not None and b is not None:
        return f"Beta({float(a):g}, {float(b):g}): mean {_pct_short(float(a) / (float(a) + float(b)))}"
    if name in ("uniform",) and d.get("lo") is not None:
        return f"between {_pct_short(float(d['lo']))} and {_pct_short(float(d['hi']))}"
    if d.get("value") is not None:
        return _pct_short(float(d["value"]))
    if d.get("mean") is not None:
        extra = f" (sd {float(d['sd']):.2f})" if d.get("sd") is not None else ""
        return f"{name or 'mean'} mean {_pct_short(float(d['mean']))}{extra}"
    return ", ".join(f"{k} {v}" for k, v in d.items() if v is not None)


def _source_text(src: Any) -> str:
    s = str(src or "").strip()
    if not s:
        return "assumption (no source given)"
    if s.lower().startswith("assumption:"):
        return "assumption — " + s.split(":", 1)[1].strip()
    return s


def _effect_prior_text(c: _Ctx, lv: Any) -> str:
    """Where the lever's effect per person reached comes from (policy file, else the priors)."""
    ep = getattr(lv, "effect_prior", None)
    if ep is not None:
        if isinstance(ep, str):
            return ep
        d = _as_dict(ep) or {}
        src = d.get("source") or d.get("citation") or d.get("rationale") or ""
        lab = ep.label() if callable(getattr(ep, "label", None)) else ""
        return " ".join(x for x in (str(src), f"({lab})" if lab else "") if x) or str(ep)
    priors = getattr(c.result, "priors", None)
    edges = getattr(priors, "edges", None) or {}
    out = []
    for key, ep in edges.items():
        src_node, _, tgt = str(key).partition("->")
        if src_node != lv.node:
            continue
        kind = str(getattr(ep, "source", "default"))
        cites = ", ".join(getattr(ep, "citations", None) or [])
        word = "literature" if kind == "literature" else "documented default (assumption)"
        lab = ep.label() if callable(getattr(ep, "label", None)) else ""
        out.append(f"→ {c.label(tgt)}: {word}{' ' + cites if cites else ''}"
                   + (f", {lab}" if lab else ""))
    return "; ".join(out) or "–"


def _dose_rows(c: _Ctx) -> tuple[list[str], list[list[str]]]:
    pols = getattr(c.result, "policies", None)
    header = ["Policy", "Lever", "Coverage (share of the target group reached)",
              "Source of the coverage", "Effect per person reached: prior and source"]
    rows = []
    for p in getattr(pols, "policies", None) or []:
        for lv in p.levers:
            if getattr(lv, "coverage", None) is not None or hasattr(lv, "coverage_source"):
                src = _source_text(getattr(lv, "coverage_source", None))
                cite = getattr(lv, "citation", None)
                rows.append([f"{p.id} {c.title(p.id)}", c.label(lv.node),
                             _coverage_text(getattr(lv, "coverage", None)),
                             src + (f" [{cite}]" if cite else ""), _effect_prior_text(c, lv)])
            else:  # older policy files: a shift of the node, no coverage
                cite = getattr(lv, "citation", None)
                rows.append([f"{p.id} {c.title(p.id)}", c.label(lv.node), _dose_text(lv),
                             _source_text(getattr(lv, "dose_source", None))
                             + (f" [{cite}]" if cite else ""),
                             "– (this older policy file gives the shift itself)"])
    return header, rows


def _findings(c: _Ctx, names: Sequence[str]) -> list[str]:
    """Human-readable findings (identification, cut routing) from the diagnostics or the run."""
    diag = getattr(c.result, "diagnostics", None)
    d = _diag_dict(diag)
    raw: Any = None
    for obj in (diag, c.result):
        for n in names:
            v = getattr(obj, n, None) if obj is not None else None
            if v is not None:
                raw = v
                break
        if raw is not None:
            break
    if raw is None:
        raw = next((d[n] for n in names if d.get(n) is not None), None)
    if raw is None:
        return []
    if callable(getattr(raw, "findings", None)):
        raw = raw.findings()
    elif getattr(raw, "findings", None) is not None:
        raw = raw.findings
    elif isinstance(raw, Mapping) and "findings" in raw:  # IdentificationReport.to_dict()
        raw = raw["findings"]
    if (isinstance(raw, (list, tuple)) and raw and all(isinstance(x, Mapping) for x in raw)
            and all("share" in x and "link" in x for x in raw)):
        # cut-routing records: the diagnostics' own sentence, never a dump of the records
        from veerkracht_bayes.inference.diagnostics import cut_routing_findings

        raw = cut_routing_findings(list(raw))
    if isinstance(raw, Mapping):
        logger.warning("findings %s have no sentences; left out of the brief", names[0])
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, pd.DataFrame):
        col = next((k for k in ("finding", "message", "text", "sentence") if k in raw), None)
        return ([str(x) for x in raw[col]] if col else
                ["; ".join(f"{k}: {v}" for k, v in r.items()) for _, r in raw.iterrows()])
    out = []
    for item in raw if isinstance(raw, (list, tuple)) else [raw]:
        if isinstance(item, Mapping):
            out.append(str(next((item[k] for k in ("finding", "message", "text", "sentence")
                                 if k in item), item)))
        else:
            out.append(str(item))
    return out


def _assumptions(c: _Ctx) -> list[Block]:
    out: list[Block] = [Block("h3", "Doses: coverage and effect of each programme")]
    pols = getattr(c.result, "policies", None)
    if pols is not None:
        header, rows = _dose_rows(c)
        out.append(Block("p", "The report gives no sizes for its recommendations. Each programme's "
                              "dose is its coverage (the share of its target group it reaches) "
                              "times the effect on a person it reaches. Where the source says "
                              "'assumption', or the effect prior is the documented default, the "
                              "number is our assumption; change the policy file to test others."))
        out.append(Block("table", header=header, rows=rows, css="doses", ident="doses"))
    if c.target_groups:
        out.append(Block("h3", "Target groups as the report writes them"))
        out.append(Block("table", header=["Policy", "Subgroup in the model", "The report's words",
                                          "Section"],
                         rows=[[f"{p.id} {c.title(p.id)}",
                                _group(getattr(p, "subgroup", None), "en"),
                                f"“{c.target_groups[p.id][0]}”", c.target_groups[p.id][1] or "–"]
                               for p in pols.policies if p.id in c.target_groups],
                         css="targets", ident="target-groups"))
    ident = _findings(c, ("identification_findings", "identification"))
    cut = _findings(c, ("cut_routing_findings", "cut_findings", "cut_routing"))
    if ident or cut:
        out.append(Block("h3", "What the data can and cannot tell apart"))
        if ident:
            out.append(Block("p", "Identification: which links the survey informs and which rest "
                                  "on their priors alone."))
            out.append(Block("ul", items=ident[:60], css="identification"))
        if cut:
            out.append(Block("p", "Cut posterior: associations routed through unmeasured nodes."))
            out.append(Block("ul", items=cut[:60], css="cut-routing"))
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
    out.append(Block("h3", "Effects that rest mainly on assumptions or the literature"))
    w = c.effects[(c.effects["scope"] == "within") & ~c.effects["suppressed"].astype(bool)
                  & c.effects["reachable"]]
    rec = [(r, effect_evidence_label(r)) for _, r in w.iterrows()]
    not_data = [(r, lab) for r, lab in rec if lab != "data"]
    out.append(Block("p", f"{len(not_data)} of {len(rec)} policy–outcome effects rest mainly on "
                          "assumptions (coverage, default priors) or on literature priors the "
                          "data do not inform; an effect is labelled 'data' only when at least "
                          "half of it rests on data-informed links."))
    if not_data:
        out.append(Block("details", text="List of these effects", children=[
            Block("table", header=["Policy", "Outcome", "Rests mainly on"],
                  rows=[[f"{r['policy']} {c.title(r['policy'])}", c.label(r["outcome"]),
                         effect_evidence_cell(r)] for r, _ in not_data], css="prior-effects")]))
    return out


#: Where the paragraph on measurement (:func:`measurement_text`, which follows the run's settings)
#: goes among the :data:`_METHODS` paragraphs.
_MEASUREMENT_PARAGRAPH = 2


def measurement_text(result: Any) -> str:
    """The methods paragraph on measurement, as the run's ``[model]`` settings made it.

    Continuous measurement (the default) treats Likert items as continuous scores; the polychoric
    route fits binary and ordinal items on their latent-response scale; ``unmeasured = "joint"``
    keeps constructs without items in the model. Single-item reliabilities are assumptions and are
    named.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> r = SimpleNamespace(provenance={"settings": {"model": {"measurement": "polychoric",
    ...                     "unmeasured": "joint", "reliability": 0.8}}})
    >>> "latent-response" in measurement_text(r), "kept in the model" in measurement_text(r)
    (True, True)
    >>> "treated as continuous" in measurement_text(SimpleNamespace(provenance={}))
    True

    On the continuous path, single items with a codebook reliability are named with their value:

    >>> fit = SimpleNamespace(layout=SimpleNamespace(item_reliability={"prof_help": 0.178}))
    >>> print(measurement_text(SimpleNamespace(provenance={}, fit=fit)).split(")")[0])
    Survey items load on the constructs (single items with an assumed reliability: the codebook's own value, on the observed scale, for prof_help 0.18; 0.8 for the others; assumptions, not estimates

    A run whose ``[model] measurement`` was ``"auto"`` names the route it took and why:

    >>> r = SimpleNamespace(provenance={"measurement_requested": "auto", "measurement_resolved": "polychoric",
    ...     "measurement_reason": "auto: 3 of the model's 4 items are ordinal", "settings": {"model": {}}})
    >>> print(measurement_text(r).split(". ")[0])
    The measurement route was chosen automatically from the codebook: polychoric (auto: 3 of the model's 4 items are ordinal)
    """
    prov = getattr(result, "provenance", None) or {}
    model = dict((prov.get("settings") or {}).get("model") or {})
    if prov.get("measurement_resolved"):
        model["measurement"] = prov["measurement_resolved"]
        model["unmeasured"] = prov.get("unmeasured_resolved", model.get("unmeasured"))
    rel = model.get("reliability", 0.8)
    polychoric = model.get("measurement") == "polychoric"
    lead = ""
    if prov.get("measurement_resolved"):
        how = ("chosen automatically from the codebook" if prov.get("measurement_requested") == "auto"
               else "set in the run's configuration")
        lead = (f"The measurement route was {how}: {prov['measurement_resolved']} "
                f"({prov.get('measurement_reason', 'no reason recorded')}). ")
    if polychoric:
        first = ("Survey items load on the constructs. Binary items and Likert items with at most 7 "
                 "categories are modelled as what they are: coarsened normal latent responses, through "
                 "their thresholds and polychoric/polyserial correlations with their asymptotic "
                 "covariance (a two-stage, limited-information likelihood); continuous items are "
                 "standardised after their codebook transform. A single-item construct has a fixed "
                 f"reliability on the latent-response scale: the codebook's per-item value where it "
                 f"gives one, else {rel:g}; both are assumptions, not estimates.")
    else:
        layout = getattr(getattr(result, "fit", None), "layout", None)
        own = dict(getattr(layout, "item_reliability", None) or {})
        if own:
            each = ", ".join(f"{k} {float(v):.2f}" for k, v in sorted(own.items()))
            first = ("Survey items load on the constructs (single items with an assumed reliability: the "
                     f"codebook's own value, on the observed scale, for {each}; {rel:g} for the others; "
                     "assumptions, not estimates). Likert items are treated as continuous.")
        else:
            first = ("Survey items load on the constructs (single items with an assumed reliability, "
                     f"{rel:g}). Likert items are treated as continuous.")
    if model.get("unmeasured") == "joint":
        first += (" Constructs without survey items are kept in the model with their links on their "
                  "priors, so paths through them are part of the likelihood.")
    elif polychoric or model:
        first += (" Links that touch a construct without survey items rest on their priors only (the "
                  "paths through such constructs are not part of the likelihood).")
    return lead + first + (" Survey weights enter as a pseudo-likelihood (weights normalised to the sample size); "
                    "this is not a design-based variance. Missing item values are handled by "
                    + ("pairwise available cases in the correlations (consistent when values are missing "
                       "completely at random)." if polychoric else
                       "full-information likelihood per missingness pattern, or, with many patterns, by a "
                       "two-stage EM approach (Savalei & Bentler, 2009) whose posterior is slightly too "
                       "narrow; the method used is in the diagnostics table."))


_METHODS = [
    "The diagram is the MARVEL causal diagram of TNO 2023 R10055: signed links between individual, "
    "societal and organisational resources, with feedback loops. It is turned into a linear "
    "structural equation model on standardised latent variables, η = Bη + Γx + ζ, whose "
    "equilibrium η = (I − B)⁻¹(Γx + ζ) handles the cycles exactly; every latent has variance 1, so "
    "each link strength is a standardised, correlation-sized effect comparable to literature betas.",
    "Link strengths get priors from the literature with the sign the report gives (or documented "
    "defaults). A smooth stability barrier keeps the spectral radius of B below 1, so the "
    "feedback loops settle; the exact spectral radius of every draw is reported.",
    "Policies are programmes: each acts on one or more lever nodes of the diagram. The dose is "
    "the programme's coverage (the share of its target group it reaches, an uncertain quantity "
    "with its source or the word 'assumption') times the effect on a person reached; the new "
    "equilibrium is compared with the old, per posterior draw, over the stable and solvable "
    "draws only. The population average uses the target group's share of the population. Time "
    "to effect uses a first-order delay per link.",
    "'Probability it helps' is the posterior probability that the effect goes in the desirable "
    "direction by more than the minimal relevant change (MRC, 0.05 SD unless configured). It is "
    "not the probability of the right sign: every link prior is truncated to the diagram's "
    "sign, so the sign alone is nearly certain. Rankings order the policies by this probability "
    "within their target group, then by the mean effect; the tables and the forest plots use "
    "the same order. The rank interval is the central interval of each policy's rank when the "
    "policies are ordered by their effect in each draw. 'Chance of being best' is the "
    "probability of the largest population effect. A policy with no causal path to an outcome "
    "is shown as 'no path', not as zero, and is not ranked.",
    "Each effect is split into the shares that rest on assumptions (coverage, links with "
    "default priors), on literature priors the data do not inform, and on data-informed links; "
    "'Rests mainly on' names the largest, and says 'data' only when the data share is at least "
    "50%. The sensitivity checks on page one repeat the comparison of the first two policies "
    "with the coverage priors twice as wide and with the default prior for every lever effect; "
    "the break-even coverage is the coverage at which the runner-up would overtake.",
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
    items = [(html.escape(REPORT_REFERENCE), REPORT_REFERENCE)]
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
    from veerkracht_bayes.priors.bibliography import reference_sort_key

    for e in sorted(entries, key=reference_sort_key):
        items.append((format_reference(e, "html"), format_reference(e, "markdown")))
    for k in missing:
        items.append((f"[{html.escape(k)}] (not in the bibliography)",
                      f"[{k}] (not in the bibliography)"))
    return Block("references", items=items, ident="reference-list")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _relative(path: Any, base: Path | None) -> str:
    """A path as the brief shows it: relative to the config's folder, never absolute.

    Files inside the installed package are shown from the package (``veerkracht_bayes/...``);
    other absolute paths relative to ``base``, or by their name when no base is known.
    """
    s = str(path)
    p = Path(s)
    if not p.is_absolute():
        return p.as_posix()
    pkg = Path(__file__).resolve().parents[1]
    try:
        return "veerkracht_bayes/" + p.resolve().relative_to(pkg).as_posix()
    except ValueError:
        pass
    if base is not None:
        try:
            return Path(os.path.relpath(p, base)).as_posix()
        except ValueError:  # another drive (Windows)
            pass
    return p.name


def _command_text(prov: Mapping[str, Any], base: Path | None) -> str | None:
    """The command line with the program by its name and every absolute path made relative."""
    argv = prov.get("command_line")
    if not argv:
        cmd = prov.get("command")
        if not cmd:
            return None
        try:
            argv = shlex.split(str(cmd))
        except ValueError:
            argv = str(cmd).split()
    argv = [str(a) for a in argv]
    out = [Path(argv[0]).name] if argv else []
    for a in argv[1:]:
        key, eq, val = a.partition("=")
        if eq and Path(val).is_absolute():
            out.append(f"{key}={_relative(val, base)}")
        elif Path(a).is_absolute():
            out.append(_relative(a, base))
        else:
            out.append(a)
    return shlex.join(out)


def _provenance(c: _Ctx) -> list[Block]:
    """Seed, command, config and input files (paths relative to the config, with SHA-256),
    package versions. No absolute path of the machine is printed."""
    prov = dict(getattr(c.result, "provenance", None) or {})
    cfg = getattr(c.result, "config_path", None)
    base = Path(cfg).resolve().parent if cfg is not None else None
    rows = []
    for k in ("seed", "dose_seed", "platform", "created_utc"):
        if k in prov:
            rows.append([k, str(prov[k])])
    cmd = _command_text(prov, base)
    if cmd:
        rows.insert(1 if rows else 0, ["command", cmd])
    out = [Block("p", "File paths are relative to the folder of the run's configuration file "
                      "(files shipped with the package: from the package).")]
    out.append(Block("table", header=["Item", "Value"], rows=rows, css="prov",
                     ident="provenance"))
    inputs = dict(prov.get("inputs") or {})
    if cfg is not None and "config" not in inputs:
        digest = prov.get("config_sha256")
        if not digest and Path(cfg).is_file():
            digest = _sha256(Path(cfg))
        inputs = {"config": {"path": Path(cfg).name, "sha256": digest}, **inputs}
    if inputs:
        out.append(Block("table", header=["Input", "File", "SHA-256"],
                         rows=[[str(k), _relative((v or {}).get("path"), base)
                                if (v or {}).get("path") else "–",
                                str((v or {}).get("sha256") or "–")] for k, v in inputs.items()],
                         css="prov", ident="inputs"))
    versions = prov.get("versions") or {}
    if versions:
        out.append(Block("table", header=["Package", "Version"],
                         rows=[[str(k), str(v)] for k, v in versions.items()], css="prov",
                         ident="versions"))
    return out


from veerkracht_bayes.report.structure_section import structure_section  # noqa: E402


# ============================================================================ for whom: groups
#: ``p_larger_than_population`` above / below which a group is named on the brief.
FOR_WHOM_P_HIGH = 0.8
FOR_WHOM_P_LOW = 0.2


def _shown_groups(het: pd.DataFrame) -> list[tuple[str, str]]:
    """(grouping, group) columns of the for-whom table: a codebook subgroup shows its members
    only (its ``not ...`` group is in heterogeneity.csv), a survey column every value."""
    out = []
    for (by, lab) in dict.fromkeys(zip(het["grouping"], het["group"])):
        if lab in ("population", "*") or str(lab).startswith("not "):
            continue
        out.append((str(by), str(lab)))
    return out


def _group_heading(by: str, lab: str) -> str:
    return _group(lab, "en") if by == lab else f"{by} = {lab}"


def _for_whom_fits(result: Any) -> list[str]:
    """One sentence per grouping: its groups, sizes and the multi-group fit's diagnostics."""
    out = []
    for gf in getattr(result, "group_fits", None) or []:
        d = gf.to_dict() if hasattr(gf, "to_dict") else dict(gf)
        if not d.get("fitted"):
            out.append(f"Grouping {d.get('grouping')}: not fitted ({safe_reason(str(d.get('reason', '')))}).")
            continue
        dg = d.get("diagnostics") or {}
        verdict = "passed" if dg.get("passed") else "FAILED (" + "; ".join(dg.get("problems") or []) + \
            "): treat its numbers as unreliable"
        ess = [x for x in (dg.get("ess_bulk_min"), dg.get("ess_tail_min")) if x is not None]
        out.append(f"Grouping {d['grouping']}: {len(d['groups'])} groups; multi-group fit of "
                   f"{dg.get('n_chains')} chains x {dg.get('n_draws')} draws, largest R-hat "
                   f"{_num(dg.get('rhat_max', float('nan')), 3)}, smallest ESS "
                   f"{_num(min(ess), 0) if ess else '–'}, {dg.get('divergences')} divergent transitions: "
                   f"diagnostics {verdict}.")
    return out


def _for_whom_groups(c: _Ctx) -> list[Block]:
    """Where effects differ between groups beyond prevalence (``heterogeneity.csv``)."""
    het = getattr(c.result, "heterogeneity", None)
    if not isinstance(het, pd.DataFrame) or het.empty:
        return []
    ci = round(100 * c.ci)
    b = [Block("h2", "For whom: where effects differ between groups", ident="for-whom-groups")]
    b.append(Block("p", (
        "A multi-group model gives every group its own link strengths for the links the survey "
        "informs (each group's links = the population's + a deviation, pulled towards the population "
        "when the group's data are thin). Each recommendation's dose is then given to everyone in the "
        "group. So these effects differ by more than how many people a policy reaches: they differ "
        "by how strongly its levers work in the group. 'P(larger)' is the probability that the "
        "effect in the group is larger, in the desirable direction, than in the whole population "
        "(the share-weighted average over the groups of the same grouping). What the numbers rest "
        "on: the differences between groups rest on the survey data (only data-informed links "
        "differ) and on the assumed pooling prior (between-group SD of a link ~ HalfNormal(0.1) SD); "
        "the size of each effect rests on what the population effect rests on (the 'Rests mainly "
        "on' column of the ranking). Links through unmeasured constructs are shared by all groups "
        "(assumption).")))
    fits = _for_whom_fits(c.result)
    if fits:
        b.append(Block("ul", items=fits, css="notes"))
    cols = _shown_groups(het)
    for o in c.primary:
        sub = het[het["outcome"] == o]
        if sub.empty or not cols:
            continue
        rows, high, low, small = [], [], [], []
        for pid in dict.fromkeys(sub["policy"]):
            if pid == "*":
                continue
            row = [f"{pid} {c.title(pid)}"]
            for by, lab in cols:
                r = sub[(sub["policy"] == pid) & (sub["grouping"] == by) & (sub["group"] == lab)]
                if r.empty:
                    row.append("–")
                    continue
                r = r.iloc[0]
                if bool(r["suppressed"]):
                    row.append("suppressed")
                    continue
                if not bool(r.get("reachable", True)):
                    row.append("no path")
                    continue
                p = float(r["p_larger_than_population"])
                row.append(f"{_pct_short(p)} · {_triple(r['mean'], r['lower'], r['upper'])}")
                who = _group_heading(by, lab)
                diff = r.get("difference_mean", np.nan)
                if (p > FOR_WHOM_P_HIGH or p < FOR_WHOM_P_LOW) and not abs(float(diff)) >= c.mrc:
                    # a confident but tiny difference is not a finding for a policy reader
                    small.append(f"{pid} for {who}")
                elif p > FOR_WHOM_P_HIGH:
                    high.append(f"{pid} for {who} ({_pct_short(p)})")
                elif p < FOR_WHOM_P_LOW:
                    low.append(f"{pid} for {who} ({_pct_short(p)})")
            rows.append(row)
        b.append(Block("h3", f"{c.label(o)}: P(larger than in the population) · effect in the group, SD "
                             f"[{ci}% interval]"))
        b.append(Block("table", header=["Recommendation"] + [_group_heading(by, lab) for by, lab in cols],
                       rows=rows, css="for-whom", ident=f"for-whom-{o}"))
        if high or low:
            parts = []
            if high:
                parts.append(f"works better than in the population (P > {FOR_WHOM_P_HIGH:.1f}): "
                             + "; ".join(high))
            if low:
                parts.append(f"works less well than in the population (P < {FOR_WHOM_P_LOW:.1f}): "
                             + "; ".join(low))
            b.append(Block("p", f"{c.label(o)}: " + ". It ".join(parts) + "."))
        else:
            b.append(Block("p", f"{c.label(o)}: no group stands out; for every recommendation and group "
                                f"P(larger) lies between {FOR_WHOM_P_LOW:.1f} and {FOR_WHOM_P_HIGH:.1f}, "
                                f"or the difference from the population is smaller than the minimal "
                                f"relevant change ({_num(c.mrc, 2)} SD)."))
        if small:
            b.append(Block("p", (f"{c.label(o)}: probably different but by less than the minimal relevant "
                                 f"change of {_num(c.mrc, 2)} SD (mean difference), so not a reason to "
                                 f"target: " + "; ".join(small) + ".")))
    b.append(Block("p", "All outcomes, the 'not ...' groups, the population reference of every grouping and "
                        "the group deviations of each link are in heterogeneity.csv and group_links.csv."))
    return b


def _threshold_evidence(c: _Ctx, pid: str, outcome: str) -> str:
    w = c.effects[(c.effects["policy"] == pid) & (c.effects["outcome"] == outcome)
                  & (c.effects["scope"] == "within")]
    return effect_evidence_label(w.iloc[0]) if len(w) else "see the ranking"


def _threshold_route_note(c: _Ctx) -> str:
    """How the measurement model moves the scale on the polychoric route (empty on the others)."""
    fit = getattr(c.result, "fit", None)
    if fit is None or fit.idata.attrs.get("likelihood") != "polychoric":
        return ""
    return (" On the polychoric route each ordinal item moves through its categories: its latent response "
            "shifts by its loading times the effect, against the item's thresholds in the population or "
            "target group (from the observed answers); this assumes the latent response's spread in a "
            "target group equals the population's (assumption).")


def _for_whom_thresholds(c: _Ctx) -> list[Block]:
    """Threshold outcomes in percentage points (``thresholds.csv``)."""
    th = getattr(c.result, "thresholds", None)
    if not isinstance(th, pd.DataFrame) or th.empty:
        return []
    ci = round(100 * c.ci)
    b = [Block("h2", "Threshold outcomes: shares beyond a cut-off", ident="thresholds")]
    for name in dict.fromkeys(th["threshold"]):
        t = th[th["threshold"] == name]
        first = t.iloc[0]
        mrc = float(first["mrc_pp"])
        want = str(first["desirable"])
        b.append(Block("h3", f"{name} ({c.label(str(first['outcome']))})"))
        b.append(Block("p", (
            f"The share of people beyond the cut-off now (observed in the survey, weighted: data) and "
            f"the change each recommendation brings, in percentage points (pp) with a {ci}% interval. "
            f"The change is the model's shift of the scale's mean (the recommendation's effect on "
            f"{c.label(str(first['outcome'])).lower()} times the measurement model, both estimated), "
            f"applied to the observed spread of the score; a normal approximation of the score "
            f"(assumption). 'P(relevant {want})' is the probability that the share changes by more "
            f"than {_num(mrc, 1)} pp in the desirable direction ({want}): a stated minimal relevant "
            f"change (assumption). 'Change rests on' is what the recommendation's effect on the outcome "
            f"rests mainly on (as in the ranking).{_threshold_route_note(c)}")))
        rows, nonum = [], []
        for _, r in t.iterrows():
            if r["scope"] == "group":
                continue
            who = "population" if r["scope"] == "population" else f"target group: {_group(r['group'], 'en')}"
            pid = str(r["policy"])
            if bool(r["suppressed"]):
                rows.append([f"{pid} {c.title(pid)}", who, "suppressed", "suppressed", "–", "–"])
                continue
            if not np.isfinite(float(r["effect_pp"])) and str(r.get("reason") or ""):
                nonum.append(f"{pid} ({who})")
            rows.append([f"{pid} {c.title(pid)}", who, f"{_num(r['baseline_share'], 1)}%",
                         _triple(r["effect_pp"], r["lower"], r["upper"]), _pct_short(r["p_meaningful"]),
                         _threshold_evidence(c, pid, str(r["outcome"]))])
        b.append(Block("table", header=["Recommendation", "Who", "Share now (data)",
                                        f"Change, pp [{ci}% interval]", f"P(relevant {want})",
                                        "Change rests on"], rows=rows, css="thresholds",
                       ident=f"thresholds-{name}"))
        if nonum:
            b.append(Block("p", "No number for " + "; ".join(nonum) + ": the target group lies (almost) "
                                "entirely on one side of the cut-off (it is defined by the same scale), so "
                                "the normal approximation of its score cannot place the cut-off in it; a "
                                "population row of a targeted policy rests on its target group."))
        g = t[t["scope"] == "group"]
        if len(g):
            grows = []
            for _, r in g.iterrows():
                if str(r["group"]).startswith("not "):
                    continue
                pid = str(r["policy"])
                who = _group_heading(str(r["grouping"]), str(r["group"]))
                if bool(r["suppressed"]):
                    grows.append([f"{pid} {c.title(pid)}", who, "suppressed", "suppressed", "–"])
                    continue
                grows.append([f"{pid} {c.title(pid)}", who, f"{_num(r['baseline_share'], 1)}%",
                              _triple(r["effect_pp"], r["lower"], r["upper"]), _pct_short(r["p_meaningful"])])
            b.append(Block("details", text=f"{name} per group (the dose given to everyone in the group; "
                                           "the group's own links from the multi-group model)",
                           children=[Block("table", header=["Recommendation", "Group", "Share now (data)",
                                                            f"Change, pp [{ci}% interval]",
                                                            f"P(relevant {want})"],
                                           rows=grows, css="thresholds")]))
    return b


def _weights_deff(result: Any) -> tuple[float, float] | None:
    """Kish's design effect of the survey weights and the effective n, from the survey report."""
    w = getattr(getattr(result, "survey_report", None), "weights", None)
    deff = getattr(w, "design_effect", None)
    if deff is None or not np.isfinite(float(deff)):
        return None
    return float(deff), float(getattr(w, "kish_n_eff", float("nan")))


def _nb_get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _neighbourhoods(c: _Ctx) -> list[Block]:
    """Neighbourhood-level policies through the two-level model (``[neighbourhoods]``)."""
    nb = getattr(c.result, "neighbourhoods", None)
    if nb is None:
        return []
    summ = dict(_nb_get(nb, "summary") or {})
    diag = dict(_nb_get(nb, "diagnostics") or {})
    eff = _nb_get(nb, "effects")
    meta = dict(_nb_get(nb, "meta") or {})
    ci = round(100 * c.ci)
    b = [Block("h2", "Neighbourhoods: policies that act on the neighbourhood", ident="neighbourhoods")]
    if not diag.get("passed", False):
        probs = "; ".join(str(x) for x in diag.get("problems") or []) or "see neighbourhoods.json"
        b.append(Block("banner", css="forced", items=[(
            "NEIGHBOURHOOD MODEL: DIAGNOSTICS FAILED",
            f"The two-level neighbourhood model did not pass its checks: {probs}; "
            f"{diag.get('divergences')} divergent transitions. Treat the neighbourhood-level numbers "
            "below as unreliable.")]))
    between = [c.label(x).lower() for x in meta.get("between", [])]
    which = ""
    if isinstance(eff, pd.DataFrame) and len(eff):
        firsts = eff.drop_duplicates("policy")
        which = ": " + "; ".join(f"{r['policy']} {c.title(str(r['policy'])).lower()} (advice {r['advice']})"
                                 for _, r in firsts.iterrows())
    b.append(Block("p", (
        f"Some recommendations act on neighbourhoods rather than on single residents{which}. A second "
        "model splits each survey answer into a part shared by the residents of one neighbourhood and a "
        "part that differs between residents, and estimates how the neighbourhood means of "
        + ", ".join(between) + " hang together (the between level). A policy lever linked to one of these "
        "constructs is taken to move that construct's neighbourhood means by the same assumed dose as in "
        "the ranking (the share of residents reached times the effect on a person reached, draw by draw); "
        "the between-level links then carry the change on. Links of the lever to constructs without a "
        "neighbourhood level (such as the social network) are not part of this route; the table names them. "
        "The single-level estimate (same policy, same dose, the whole diagram) is shown next to it.")))
    # design effects
    deff_w = summ.get("deff_weights")
    items = list(summ.get("items") or [])
    dc = [float(r["deff_cluster"]) for r in items if np.isfinite(float(r["deff_cluster"]))]
    dall = [float(r["deff"]) for r in items if np.isfinite(float(r["deff"]))]
    top = sorted(items, key=lambda r: -float(r["icc"]) if np.isfinite(float(r["icc"])) else 0.0)[:3]
    facts = [f"{summ.get('n_respondents')} respondents with complete answers in {summ.get('n_clusters')} "
             f"neighbourhoods ({summ.get('cluster_column')}); mean size {_num(summ.get('mean_cluster_size', float('nan')), 1)}, "
             f"weighted mean size {_num(summ.get('weighted_mean_cluster_size', float('nan')), 1)}."]
    if summ.get("n_excluded"):
        reasons = "; ".join(f"{k}: {v}" for k, v in (summ.get("exclusion_reasons") or {}).items())
        facts.append(f"{summ['n_excluded']} respondents left out of this model ({reasons}).")
    if summ.get("n_small_clusters"):
        facts.append(f"{summ['n_small_clusters']} neighbourhoods have fewer than {summ.get('min_cluster_size')} "
                     f"respondents ({summ.get('small_cluster_respondents')} respondents); they are kept and not "
                     "named.")
    if deff_w is not None:
        facts.append(f"Design effect of the survey weights (Kish): {_num(float(deff_w), 2)} (the weights alone "
                     f"make the sample worth {_num(100 / float(deff_w), 0)}% of its size).")
    if dc:
        facts.append(f"Design effect of the clustering, 1 + (m̄ − 1)·ICC per item: {_num(min(dc), 2)} to "
                     f"{_num(max(dc), 2)}; overall (weights × clustering): {_num(min(dall), 2)} to "
                     f"{_num(max(dall), 2)}. A design effect of 2 halves the effective sample size for means "
                     "of that item.")
    if top:
        facts.append("Most clustered items: " + "; ".join(
            f"{r['item']} (ICC {_num(float(r['icc']), 3)}, design effect {_num(float(r['deff']), 2)})" for r in top)
            + ".")
    if diag:
        facts.append(f"Two-level fit: {diag.get('n_chains')} chains × {diag.get('n_draws')} draws, "
                     f"{diag.get('divergences')} divergent transitions, largest R-hat "
                     f"{_num(diag.get('rhat_max') or float('nan'), 3)}, smallest ESS "
                     f"{_num(diag.get('ess_min') or float('nan'), 0)} ({diag.get('worst_quantity')}), "
                     f"{_num(diag.get('seconds') or float('nan'), 0)} s: diagnostics "
                     f"{'passed' if diag.get('passed') else 'FAILED'}.")
    b.append(Block("ul", items=facts, css="notes"))
    if isinstance(eff, pd.DataFrame) and len(eff):
        rows = []
        for _, r in eff.iterrows():
            pid = str(r["policy"])
            nb_cell = (_triple(r["mean"], r["lower"], r["upper"]) if bool(r.get("reachable", True))
                       else "no path")
            rows.append([f"{pid} {c.title(pid)}", c.label(str(r["outcome"])), nb_cell,
                         _pct_short(float(r["p_relevant"])) if bool(r.get("reachable", True)) else "–",
                         _triple(r["single_level_mean"], r["single_level_lower"], r["single_level_upper"]),
                         str(r.get("not_in_route") or "") or "–"])
        b.append(Block("table", header=["Recommendation", "Neighbourhood mean of", f"Between level, SD [{ci}% interval]",
                                        f"P(|change| ≥ {_num(c.mrc, 2)} SD)",
                                        f"Single-level estimate, SD [{ci}% interval]", "Lever links not in this route"],
                       rows=rows, css="neighbourhoods", ident="neighbourhood-effects"))
        links = _nb_get(nb, "links")
        share_txt = ""
        if isinstance(links, pd.DataFrame) and len(links):
            sh = links[links["parameter"] == "share"]
            if len(sh):
                share_txt = ("The share of each construct's variance that lies between neighbourhoods is "
                             + "; ".join(f"{c.label(str(r['name'])).lower()} {_num(100 * float(r['mean']), 1)}% "
                                         f"[{_num(100 * float(r['lower']), 1)}, {_num(100 * float(r['upper']), 1)}]"
                                         for _, r in sh.iterrows())
                             + "; the smaller these shares, the less information the neighbourhood means carry "
                               "about the between-level links. ")
        b.append(Block("p", (
            "What these numbers rest on: the share of residents reached (assumption) and the effect on a "
            "person reached (a prior: the survey does not measure the levers) set the size of the first "
            "step; the between-level shares and links are estimated from the neighbourhood means (data). "
            + share_txt + "Effects are changes of the population mean, in SD of the construct over all "
            "residents.")))
        if "rests_on" in eff:
            b.append(Block("ul", css="notes", items=[
                f"{pid}: {txt}" for pid, txt in dict(zip(eff["policy"].astype(str), eff["rests_on"].astype(str))).items()]))
    skipped = meta.get("skipped_policies") or {}
    if skipped:
        b.append(Block("p", "Not evaluated at the neighbourhood level: " + "; ".join(
            f"{k} ({v})" for k, v in skipped.items()) + "."))
    b.append(Block("p", "Numbers: neighbourhoods.json (counts, ICCs and design effects per item, the fit's "
                        "diagnostics), neighbourhood_effects.csv and neighbourhood_links.csv (between shares, "
                        "between and within links)."))
    return b


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

    Examples
    --------
    A hand-made stand-in for a ``RunResult`` (one link, one policy, two posterior draws):

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("wellbeing ~ social_network")
    >>> eff = pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "subgroup": ["all"],
    ...                     "scope": ["population"], "direction": [1], "reachable": [True],
    ...                     "mean": [0.1], "lower": [-0.05], "upper": [0.25], "ci_prob": [0.9],
    ...                     "p_meaningful": [0.6], "suppressed": [False], "reason": [None]})
    >>> post = xr.Dataset({"beta": (("chain", "draw", "edge"), np.full((1, 2, 1), 0.3)),
    ...                    "alpha": (("chain", "draw", "node"), np.zeros((1, 2, 2))),
    ...                    "psi": (("chain", "draw", "node"), np.ones((1, 2, 2)))},
    ...                   coords={"edge": list(g.edge_keys), "node": list(g.nodes)})
    >>> result = SimpleNamespace(graph=g, effects=eff, prior_only=True, policies=None,
    ...                          fit=SimpleNamespace(idata={"posterior": post}))
    >>> blocks = brief_blocks(result)
    >>> blocks[0].kind, blocks[1].kind, "ranking" in [b.ident for b in blocks]
    ('h1', 'banner', True)
    """
    c = _context(result)
    b = _page_one(c)
    b.append(Block("h2", "Ranking of the recommendations per outcome", ident="ranking"))
    ci = round(100 * c.ci)
    b.append(Block("p", "Policies ordered by the probability it helps (a change in the target "
                        f"group larger than the minimal relevant change of {_num(c.mrc, 2)} SD), "
                        "then by the mean effect; the forest plots use the same order. Effects "
                        f"in SD of the outcome. 'Rank ({ci}% interval)' is the range of places "
                        "the policy takes across the posterior draws. 'Rests mainly on' gives "
                        "the shares of the effect that rest on assumptions, on the literature "
                        "and on data. 'no path': the policy cannot reach this outcome in the "
                        "diagram; it is not ranked."))
    for o in c.outcomes:
        b.append(Block("h3", f"{c.label(o)} ({'lower' if desirable_direction(o) < 0 else 'higher'} "
                             "is better)"))
        b.append(_ranking(c, o))
        b += _figure(figures, f"forest_{o}", f"Forest plot: effect of each recommendation on "
                                            f"{c.label(o).lower()}, in the order of the table "
                                            "above (the probability it helps, then the mean "
                                            "effect).")
    b.append(Block("h2", "For whom: subgroups", ident="subgroups"))
    b += _figure(figures, "subgroups", "Effects within each targeted subgroup (blue) and averaged "
                                       "over the whole population (orange). Suppressed cells show "
                                       "no numbers.")
    sizes = _subgroup_sizes(c)
    if sizes is not None:
        b.append(sizes)
    b += _for_whom_groups(c)  # multi-group fits ([model] groups)
    b += _for_whom_thresholds(c)  # [[query.thresholds]]
    b += _neighbourhoods(c)  # [neighbourhoods]: the two-level model
    b.append(Block("h2", "The diagram with posterior link strengths", ident="diagram"))
    b += _figure(figures, "diagram_posterior",
                 "Nodes coloured by resource type (individual red, societal blue, organisational "
                 "grey). Link width ∝ |posterior mean|; the legend below (the same as in the "
                 "drawing) gives the meaning of colours, line styles and arrowheads.",
                 css="diagram")
    b.append(_diagram_legend())
    b.append(Block("details", text="All links: posterior means and classes",
                   children=[_edge_rows(c)]))
    b.append(Block("h2", "Feedback loops", ident="loops"))
    b += _figure(figures, "loop_gains", "Gain of each named loop (product of its link strengths) "
                                        "with its central interval.")
    b += _loops(c)
    b.append(Block("h2", "Time to effect", ident="dynamics"))
    b += _figure(figures, "trajectories", "Mean effect over the years after the start, per "
                                          "recommendation (the intervals are in trajectories.csv).")
    b.append(Block("h2", "Diagnostics", ident="diagnostics-section"))
    b += _diagnostics(c)
    b.append(Block("h2", "What rests on assumptions", ident="assumptions"))
    b += _assumptions(c)
    b += [Block(**d) for d in structure_section(result)]  # How sure is the diagram? Measure next
    b.append(Block("h2", "Methods", ident="methods"))
    methods = list(_METHODS)
    methods.insert(_MEASUREMENT_PARAGRAPH, measurement_text(c.result))
    b += [Block("p", t) for t in methods]
    b.append(Block("h2", "References", ident="references"))
    b.append(_references(c))
    b.append(Block("h2", "Provenance", ident="provenance-section"))
    b += _provenance(c)
    b.append(Block("h2", "Appendix: diagnostics details", ident="diagnostics-appendix"))
    b += _diagnostics_appendix(c)
    return b


# ============================================================================ renderers
_NUMERIC = re.compile(r"^[−+\-]?[\d.,<>%–\[\] −+]+$|^[<>]?\d+%$")
_TEMPLATES = "veerkracht_bayes.report"


def _cell_class(x: Any, css: str = "") -> Any:
    """`` class="num"`` for numeric cells, `` class="suppressed"`` for suppressed ones."""
    from markupsafe import Markup

    s = str(x)
    if s.startswith("suppressed"):
        return Markup(' class="suppressed"')
    if css != "prov" and _NUMERIC.match(s):
        return Markup(' class="num"')
    return Markup("")


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@functools.lru_cache(maxsize=2)
def _environment(kind: str) -> Any:
    """The jinja2 environment for ``html`` (autoescaping on) or ``md`` (off)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader(_TEMPLATES, "templates"),
                             autoescape=(kind == "html"), undefined=jinja2.StrictUndefined,
                             trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True)
    env.globals["cell_class"] = _cell_class
    env.filters["mdcell"] = _md_cell
    env.filters["basename"] = lambda p: Path(str(p)).name
    return env


@functools.lru_cache(maxsize=1)
def _markdown_it() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.add_render_rule("table_open", lambda *a, **k: '<div class="table-wrap"><table>\n')
    md.add_render_rule("table_close", lambda *a, **k: "</table></div>\n")
    return md


def markdown_html(text: str) -> str:
    """Markdown to HTML with markdown-it-py (CommonMark and pipe tables; raw HTML is escaped).

    Tables come wrapped in ``<div class="table-wrap">`` so they scroll on a narrow screen.

    Examples
    --------
    >>> markdown_html("| a | b |\\n|---|---|\\n| 1 | <i> |")  # doctest: +ELLIPSIS
    '<div class="table-wrap"><table>...<td>&lt;i&gt;</td>...'
    """
    return _markdown_it().render(str(text))


_SVG_HEAD = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_COMMENT = re.compile(r"<!--.*?-->", re.S)


_SVG_GEOMETRY = re.compile(r'\s(d|points|transform|x|y|x1|x2|y1|y2|cx|cy|r|rx|ry)="([^"]*)"')
_SVG_FONTS = re.compile(r"font-family: *'DejaVu Sans'[^;\"]*")
_FLOAT = re.compile(r"-?\d+\.\d{2,}")


def _round_geometry(m: re.Match[str]) -> str:
    """Path data and transforms to 0.1 pt (a tenth of a point is far below what can be seen),
    whitespace runs collapsed: the inlined figures are a third of their file size."""
    def short(x: re.Match[str]) -> str:
        v = f"{float(x.group(0)):.1f}".rstrip("0").rstrip(".")
        return "0" if v in ("-0", "") else v

    value = re.sub(r"\s+", " ", _FLOAT.sub(short, m.group(2))).strip()
    return f' {m.group(1)}="{value}"'


def inline_svg(svg: str, prefix: str) -> str:
    """SVG text ready to be inlined in HTML: no XML declaration, DOCTYPE or comments, every
    ``id`` (and every ``#id`` reference) prefixed with ``prefix`` so that several figures on
    one page never share an id; geometry rounded to 0.1 pt and whitespace between tags removed.

    Examples
    --------
    >>> inline_svg('<?xml version="1.0"?><svg><g id="a" clip-path="url(#a)"/></svg>', "f1")
    '<svg><g id="f1-a" clip-path="url(#f1-a)"/></svg>'
    """
    text = _SVG_HEAD.sub("", svg, count=1)
    text = _SVG_COMMENT.sub("", text)
    text = _SVG_GEOMETRY.sub(_round_geometry, text)
    text = _SVG_FONTS.sub("font-family: 'DejaVu Sans', Arial, Helvetica, sans-serif", text)
    text = re.sub(r">\s+<", "><", text)
    p = re.sub(r"[^A-Za-z0-9_-]", "-", prefix)
    used = set(re.findall(r"url\(#([^)]+)\)", text)) | set(re.findall(r'href="#([^"]+)"', text))
    text = re.sub(r'\sid="([^"]+)"', lambda m: m.group(0) if m.group(1) in used else "", text)
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{p}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{p}-{m.group(1)})", text)
    text = re.sub(r'(\bhref=")#([^"]+)"', lambda m: f'{m.group(1)}#{p}-{m.group(2)}"', text)
    return text.strip()


def _prepare(blocks: Sequence[Block]) -> None:
    """Fill the HTML of ``md`` blocks (markdown-it-py)."""
    for b in blocks:
        if b.kind == "md" and not b.html:
            h = markdown_html(b.md)
            if b.css and h.startswith("<p>"):
                h = f'<p class="{html.escape(b.css, quote=True)}">' + h[3:]
            b.html = h
        _prepare(b.children)


def render_markdown(blocks: Sequence[Block], figure_prefix: str = "figures") -> str:
    """Render blocks to Markdown with ``templates/brief.md.j2`` (figures as files).

    Examples
    --------
    >>> print(render_markdown([Block("h2", text="Summary"), Block("p", text="Most policies help a little.")]))
    ## Summary
    <BLANKLINE>
    Most policies help a little.
    """
    text = _environment("md").get_template("brief.md.j2").render(
        blocks=list(blocks), figure_prefix=figure_prefix)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render_html(blocks: Sequence[Block], title: str = "Policy brief") -> str:
    """Render blocks to one self-contained HTML page with ``templates/brief.html.j2``.

    The blocks before the first ``pagebreak`` form page one (``<section class="page-one">``,
    printed on one A4 page); the rest follows in ``<section class="technical">``.

    Examples
    --------
    >>> html = render_html([Block("h2", text="Summary"), Block("p", text="Most policies help a little.")])
    >>> "<h" in html and "Most policies help a little." in html
    True
    """
    blocks = list(blocks)
    _prepare(blocks)
    cut = next((i for i, b in enumerate(blocks) if b.kind == "pagebreak"), len(blocks))
    page = _environment("html").get_template("brief.html.j2").render(
        title=title, page_one=blocks[:cut], rest=[b for b in blocks[cut:] if b.kind != "pagebreak"])
    return re.sub(r"\n{3,}", "\n\n", page)


def render_brief(result: Any, figures: Mapping[str, Mapping[str, Path]] | None = None
                 ) -> tuple[str, str]:
    """``(markdown, html)`` of the brief of a run result (figures optional).

    Examples
    --------
    A hand-made stand-in for a ``RunResult`` (one link, one policy, two posterior draws):

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("wellbeing ~ social_network")
    >>> eff = pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "subgroup": ["all"],
    ...                     "scope": ["population"], "direction": [1], "reachable": [True],
    ...                     "mean": [0.1], "lower": [-0.05], "upper": [0.25], "ci_prob": [0.9],
    ...                     "p_meaningful": [0.6], "suppressed": [False], "reason": [None]})
    >>> post = xr.Dataset({"beta": (("chain", "draw", "edge"), np.full((1, 2, 1), 0.3)),
    ...                    "alpha": (("chain", "draw", "node"), np.zeros((1, 2, 2))),
    ...                    "psi": (("chain", "draw", "node"), np.ones((1, 2, 2)))},
    ...                   coords={"edge": list(g.edge_keys), "node": list(g.nodes)})
    >>> result = SimpleNamespace(graph=g, effects=eff, prior_only=True, policies=None,
    ...                          fit=SimpleNamespace(idata={"posterior": post}))
    >>> md, html = render_brief(result)
    >>> md.startswith("# Policy brief"), "NO SURVEY DATA" in md, html.lstrip().startswith("<!DOCTYPE html>")
    (True, True, True)
    """
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

    Examples
    --------
    A hand-made stand-in for a ``RunResult`` (one link, one policy, two posterior draws):

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from types import SimpleNamespace
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("wellbeing ~ social_network")
    >>> eff = pd.DataFrame({"policy": ["P01"], "outcome": ["wellbeing"], "subgroup": ["all"],
    ...                     "scope": ["population"], "direction": [1], "reachable": [True],
    ...                     "mean": [0.1], "lower": [-0.05], "upper": [0.25], "ci_prob": [0.9],
    ...                     "p_meaningful": [0.6], "suppressed": [False], "reason": [None]})
    >>> post = xr.Dataset({"beta": (("chain", "draw", "edge"), np.full((1, 2, 1), 0.3)),
    ...                    "alpha": (("chain", "draw", "node"), np.zeros((1, 2, 2))),
    ...                    "psi": (("chain", "draw", "node"), np.ones((1, 2, 2)))},
    ...                   coords={"edge": list(g.edge_keys), "node": list(g.nodes)})
    >>> result = SimpleNamespace(graph=g, effects=eff, prior_only=True, policies=None,
    ...                          fit=SimpleNamespace(idata={"posterior": post}))
    >>> import tempfile
    >>> paths = write_brief(result, tempfile.mkdtemp())
    >>> "brief.html" in paths, "figures/forest_wellbeing.svg" in paths
    (True, True)
    >>> paths["brief.md"].read_text(encoding="utf-8").startswith("# Policy brief")
    True
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
