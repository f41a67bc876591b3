"""Tests for the policy brief (brief.md / brief.html), on a real prior-only MARVEL run."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from veerkracht_bayes.report.brief import REPORT_REFERENCE, render_brief, write_brief

from _brief_fixture import build_run_result


@pytest.fixture(scope="session")
def run_result():
    return build_run_result()


@pytest.fixture(scope="session")
def written(run_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("brief")
    return out, write_brief(run_result, out)


class _Doc(HTMLParser):
    """Collects tables (id, class, rows of cell text), images and text per section."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table_class: dict[str, str] = {}
        self.imgs: list[dict[str, str]] = []
        self.page_one = ""
        self.text = ""
        self._table = None
        self._cell = None
        self._section = 0
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section += 1
        if tag == "table":
            self._table = a.get("id") or f"t{len(self.tables)}"
            self.tables[self._table] = []
            self.table_class[self._table] = a.get("class", "")
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = ""
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._section == 1:
            self.page_one += data
        self.text += data


def _parse(text: str) -> _Doc:
    d = _Doc()
    d.feed(text)
    return d


def test_write_brief_files(written):
    out, paths = written
    assert paths["brief.md"] == out / "brief.md" and paths["brief.html"] == out / "brief.html"
    for name in ("forest_wellbeing", "forest_stress", "subgroups", "diagram_posterior",
                 "loop_gains", "trajectories"):
        for fmt in ("svg", "png"):
            p = paths[f"figures/{name}.{fmt}"]
            assert p.is_file() and p.stat().st_size > 1000


def test_html_ranking_tables_and_figures(written, run_result):
    out, paths = written
    doc = _parse(paths["brief.html"].read_text(encoding="utf-8"))
    for o in ("wellbeing", "stress", "mental_problems"):
        rows = doc.tables[f"ranking-{o}"]
        assert rows[0][1] == "Recommendation"
        # one row per policy (header excluded)
        assert sorted(r[1].split()[0] for r in rows[1:]) == sorted(run_result.policies.ids())
    # ranks 1..k follow the probability it helps (p_meaningful), decreasing, and the table
    # order is the forest plot's order
    from veerkracht_bayes.report.figures import ranked_policies

    rows = doc.tables["ranking-stress"][1:]
    assert rows[0][5] == "Probability it helps" or doc.tables["ranking-stress"][0][5] == \
        "Probability it helps"
    eff = run_result.effects
    w = eff[(eff.outcome == "stress") & (eff.scope == "within")].set_index("policy")
    ranked = [r[1].split()[0] for r in rows if r[0] != "–"]
    pm = [w.loc[p, "p_meaningful"] for p in ranked]
    assert pm == sorted(pm, reverse=True)
    assert [r[1].split()[0] for r in rows] == ranked_policies(eff, "stress", "within")
    # the rank interval column holds integers "a–b" or "a"
    assert all(re.fullmatch(r"\d+(–\d+)?|–", r[6]) for r in rows)
    # every figure is embedded as an SVG data URI that decodes to an <svg> document
    srcs = [i["src"] for i in doc.imgs]
    assert len(srcs) >= 7
    for s in srcs:
        assert s.startswith("data:image/svg+xml;base64,")
        assert b"<svg" in base64.b64decode(s.split(",", 1)[1])[:2000]
    assert doc.scripts == 0


def test_page_one_both_languages_and_banners(written):
    _, paths = written
    doc = _parse(paths["brief.html"].read_text(encoding="utf-8"))
    p1 = doc.page_one
    assert "In short (English)" in p1 and "In het kort (Nederlands)" in p1
    assert "probability it helps" in p1 and "kans dat het helpt" in p1
    assert "lower stress" in p1 and "verlaagt" in p1
    # the sentence that doses are assumptions links to the dose table, in both languages
    page = paths["brief.html"].read_text(encoding="utf-8")
    first = page.split('<section>')[0] if '<section>' in page else page
    assert first.count('<a href="#doses">') == 2 and 'id="doses"' in page
    assert "are assumptions, not measurements" in p1 and "zijn aannames, geen metingen" in p1
    assert 'lang="nl"' in first
    # MRC is explained; the diagnostics verdict and the sensitivity checks are on page one
    assert "minimal relevant change (MRC)" in p1 and "Model checks:" in p1
    assert "Is the first place of" in p1 and "Is de eerste plaats van" in p1
    assert "NO SURVEY DATA (PRIOR ONLY)" in p1 and "GEEN ENQUÊTEGEGEVENS" in p1
    # no synthetic or forced banner for this run
    assert "SYNTHETIC DATA" not in p1 and "DIAGNOSTICS FAILED" not in p1
    # Dutch numbers use a decimal comma
    assert re.search(r"gemiddeld met \d+,\d+ SD", p1)
    # the first English bullet's numbers come from the effects table
    md = paths["brief.md"].read_text(encoding="utf-8")
    assert "## In short (English)" in md and "## In het kort (Nederlands)" in md


def test_sentence_numbers_match_effects(run_result):
    md, _ = render_brief(run_result)
    eff = run_result.effects
    r = eff[(eff.policy == "P01") & (eff.outcome == "stress") & (eff.scope == "within")].iloc[0]
    # stress: lower is better, so the sentence reports the reduction -mean
    assert f"on average by {-r['mean']:.2f} SD" in md


def test_banners_synthetic_and_forced(run_result):
    res = SimpleNamespace(**{**vars(run_result), "forced": True, "prior_only": False,
                             "survey_report": SimpleNamespace(synthetic=True)})
    res.diagnostics = SimpleNamespace(**{**vars(run_result.diagnostics), "passed": False,
                                         "problems": ["max R-hat 1.08 > 1.01"]})
    _, page = render_brief(res)
    p1 = _parse(page).page_one
    assert "SYNTHETIC DATA" in p1 and "SYNTHETISCHE DATA" in p1
    assert "DIAGNOSTICS FAILED" in p1 and "--force" in p1 and "R-hat 1.08" in p1
    assert "CONTROLES MISLUKT" in p1


def test_suppressed_cells_show_no_numbers(run_result):
    eff = run_result.effects.copy()
    sup = eff["suppressed"].astype(bool)
    assert sup.any()
    # even if a table carried numbers in suppressed cells, they must not be printed
    eff.loc[sup, ["mean", "lower", "upper"]] = [7.777, 6.666, 8.888]
    eff.loc[sup, ["p_positive", "p_best", "p_meaningful"]] = 0.5
    res = SimpleNamespace(**{**vars(run_result), "effects": eff})
    md, page = render_brief(res)
    cut = lambda t: t.split("## References")[0].split('<ol class="references">')[0]  # noqa: E731
    for text in (cut(md), cut(page)):
        for v in ("7.78", "6.67", "8.89", "7,78", "6,67", "8,89", "7.8", "8.9"):
            assert v not in text
        # the subgroup's respondent count (23) is never printed
        assert "n=23" not in text and "23 respondents" not in text
    doc = _parse(page)
    for o in ("wellbeing", "stress"):
        row = [r for r in doc.tables[f"ranking-{o}"][1:] if r[1].startswith("P02")][0]
        assert row[0] == "–" and row[3].startswith("suppressed")
        assert not any(re.search(r"\d\.\d", c) for c in row[3:])
    sizes = doc.tables["subgroup-sizes"]
    youth = [r for r in sizes if r[0] == "youth"][0]
    assert "suppressed" in youth[1] and not re.search(r"\d", youth[1] + youth[2])


def test_bibliography_lists_cited_priors(written, run_result):
    from veerkracht_bayes.priors.bibliography import format_reference, load_bib

    _, paths = written
    page = paths["brief.html"].read_text(encoding="utf-8")
    bib = load_bib(run_result.priors.bib_path)
    used = run_result.priors.citations_used()
    assert used
    for k in used:
        assert format_reference(bib[k], "html") in page
    import html as _h
    assert _h.escape(REPORT_REFERENCE) in page
    # a key the priors do not use (and no policy cites) is not listed
    unused = [k for k in bib.keys if k.lower() not in {u.lower() for u in used}
              and k.lower() not in {(lv.citation or "").lower() for p in run_result.policies.policies
                                    for lv in p.levers}]
    if unused:
        assert format_reference(bib[unused[0]], "html") not in page


def test_user_text_is_escaped(run_result):
    pols = run_result.policies
    p0 = pols.policies[0].model_copy(update={"title_en": "<script>alert(1)</script>"})
    evil = pols.model_copy(update={"policies": [p0] + pols.policies[1:]})
    res = SimpleNamespace(**{**vars(run_result), "policies": evil,
                             "warnings": ["<img src=x onerror=alert(2)>"]})
    _, page = render_brief(res)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page
    assert _parse(page).scripts == 0


def test_sections_in_order(written):  # noqa: C901
    _, paths = written
    md = paths["brief.md"].read_text(encoding="utf-8")
    heads = ["## In short (English)", "## In het kort (Nederlands)", "## Ranking of the",
             "## For whom: subgroups", "## The diagram with posterior", "## Feedback loops",
             "## Diagnostics", "## What rests on assumptions", "## Methods", "## References",
             "## Provenance", "## Appendix: diagnostics details"]
    pos = [md.index(h) for h in heads]
    assert pos == sorted(pos)
    # assumptions: the dose table has every lever with its coverage source; findings are there
    assump = md[md.index("## What rests on assumptions"):md.index("## Methods")]
    flat = " ".join(assump.split())
    res = build_run_result()
    for p in res.policies.policies:
        for lv in p.levers:
            src = getattr(lv, "coverage_source", None) or getattr(lv, "dose_source", "")
            assert " ".join(src.split(":", 1)[-1].split())[:25] in flat
    assert "| Policy | Lever | Coverage (share of the target group reached) |" in assump
    for f in (res.diagnostics.identification_findings + res.diagnostics.cut_routing_findings):
        assert f in assump
    # the markdown refers to the figures relatively
    assert "](figures/forest_stress.svg)" in md


def test_no_respondent_level_data(written):
    out, paths = written
    # the brief carries summaries only: no long numeric columns
    page = paths["brief.html"].read_text(encoding="utf-8")
    doc = _parse(page)
    for rows in doc.tables.values():
        assert len(rows) <= 120


def _nonblank(png: Path) -> tuple[float, float]:
    from PIL import Image

    im = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float(im.std()), float((im < 200).mean())


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="headless Chromium is not installed (apt-get install chromium)")
def test_renders_in_headless_chromium(written, tmp_path):
    _, paths = written
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,3000", paths["brief.html"].resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    std, dark = _nonblank(shot)
    # a blank (white) page has std 0 and no dark pixels; text and figures give both
    assert std > 20 and dark > 0.01


def _with_effects(run_result, eff, **extra):
    return SimpleNamespace(**{**vars(run_result), "effects": eff, **extra})


def _page_one_en(page: str) -> str:
    p1 = _parse(page).page_one
    return p1.split("In het kort (Nederlands)")[0]


def test_page_one_uses_p_meaningful_not_p_positive(run_result):
    eff = run_result.effects.copy()
    sel = (eff.outcome == "stress") & (eff.scope == "within")
    eff.loc[sel, "p_meaningful"] = 0.0
    row = sel & (eff.policy == "P05")
    eff.loc[row, ["p_positive", "p_meaningful"]] = [0.98, 0.01]
    md, page = render_brief(_with_effects(run_result, eff))
    doc = _parse(page)
    en = _page_one_en(page)
    nl = doc.page_one.split("In het kort (Nederlands)")[1]
    s_en = [x for x in en.split("\n") if "(P05)" in x and "stress" in x]
    s_nl = [x for x in nl.split("\n") if "(P05)" in x and "stress" in x]
    assert s_en and s_nl
    for x in s_en:
        assert "likely lowers" not in x and "probability it helps: 1%." in x
        assert "98%" not in x and "unlikely to lower stress" in x
    for x in s_nl:
        assert "waarschijnlijk verlaagt" not in x and "zeer waarschijnlijk" not in x
        assert "kans dat het helpt: 1%." in x and "niet merkbaar" in x
    # the ranking table shows the same 1%, and ranks P05 first (highest p_meaningful)
    rows = doc.tables["ranking-stress"][1:]
    top = rows[0]
    assert top[1].startswith("P05") and top[5] == "1%"


def test_likely_words_follow_p_meaningful(run_result):
    from veerkracht_bayes.report.brief import _likely

    assert _likely(0.95, "en") == "most likely" and _likely(0.49, "en") == ""
    assert _likely(0.5, "nl") == "mogelijk" and _likely(float("nan"), "en") == ""


def test_unreachable_rows_show_no_path(run_result):
    eff = run_result.effects.copy()
    for pol, o in (("P05", "stress"), ("P03", "wellbeing")):
        sel = (eff.policy == pol) & (eff.outcome == o)
        eff.loc[sel, "reachable"] = False
        eff.loc[sel, "evidence"] = "no path"
        eff.loc[sel, ["p_meaningful", "p_positive"]] = 0.0
    # one as the summary writes it (NaN numbers), one as an exact zero
    eff.loc[(eff.policy == "P05") & (eff.outcome == "stress"), ["mean", "lower", "upper"]] = np.nan
    eff.loc[(eff.policy == "P03") & (eff.outcome == "wellbeing"), ["mean", "lower", "upper"]] = 0.0
    md, page = render_brief(_with_effects(run_result, eff))
    doc = _parse(page)
    for pol, o in (("P05", "stress"), ("P03", "wellbeing")):
        row = [r for r in doc.tables[f"ranking-{o}"][1:] if r[1].startswith(pol)][0]
        assert row[0] == "–" and row[3] == "no path" and row[4] == "no path"
        assert row[8] == "no path" and "0.00" not in "".join(row)
        # not ranked: after every ranked row
        rows = doc.tables[f"ranking-{o}"][1:]
        assert all(r[0] == "–" for r in rows[rows.index(row):])
    p1 = doc.page_one
    assert not any("(P05)" in x and "stress" in x for x in p1.split("\n"))
    assert "+0.00 [+0.00, +0.00]" not in md


def test_data_label_needs_share_data_above_half(run_result):
    from veerkracht_bayes.report.brief import _evidence_cell, _evidence_label

    eff = run_result.effects.copy()
    w = (eff.scope == "within") & (eff.outcome == "wellbeing")
    bad = w & (eff.policy == "P01")
    good = w & (eff.policy == "P05")
    # a contradictory row: labelled data with share_data 0.45 (the largest share)
    eff.loc[bad, ["share_assumption", "share_literature", "share_data", "evidence"]] = \
        [0.20, 0.35, 0.45, "data"]
    eff.loc[good, ["share_assumption", "share_literature", "share_data", "evidence"]] = \
        [0.12, 0.08, 0.80, "data"]
    md, page = render_brief(_with_effects(run_result, eff))
    doc = _parse(page)
    rows = {r[1].split()[0]: r for r in doc.tables["ranking-wellbeing"][1:]}
    assert rows["P01"][8] == "literature: assumption 20% · literature 35% · data 45%"
    assert rows["P05"][8] == "data: assumption 12% · literature 8% · data 80%"
    # no cell anywhere labels data with share_data <= 0.5
    for o in ("wellbeing", "stress", "mental_problems"):
        for r in doc.tables[f"ranking-{o}"][1:]:
            if r[8].startswith("data"):
                x = eff[(eff.policy == r[1].split()[0]) & (eff.outcome == o)
                        & (eff.scope == "within")].iloc[0]
                assert x["share_data"] > 0.5
    for _, r in eff.iterrows():
        if _evidence_label(r) == "data":
            assert r["share_data"] > 0.5
        assert _evidence_cell(r).split(":")[0] == _evidence_label(r)
    # prior-only: nothing rests on data
    for _, r in run_result.effects.iterrows():
        assert _evidence_label(r) != "data"


def _diag(run_result, **kw):
    return SimpleNamespace(**{**vars(run_result.diagnostics), **kw})


def test_verdict_model_misfit_on_page_one(run_result):
    for diag in (_diag(run_result, verdict="model misfit"),
                 # no verdict field: a misfit in the notes must still win over passed=True
                 _diag(run_result, verdict=None, passed=True,
                       notes=["MODEL MISFIT (small): PPP 0.015 < 0.05"],
                       to_dict=lambda: {"passed": True})):
        res = SimpleNamespace(**{**vars(run_result), "diagnostics": diag, "prior_only": False})
        md, page = render_brief(res)
        p1 = _parse(page).page_one
        assert "model misfit" in p1 and "passed" not in p1
        assert "model misfit" in md.split("## Ranking")[0] and "passed" not in md.split("## Ranking")[0]
        # the verdict table says it too, and never "passed" beside it
        table = _parse(page).tables["diagnostics"]
        verdict = [r for r in table if r[0] == "overall verdict"][0]
        assert verdict[1] == "model misfit" and verdict[3] == "PROBLEM"
    both = _diag(run_result, verdict="model misfit; sampling problems")
    res = SimpleNamespace(**{**vars(run_result), "diagnostics": both, "prior_only": False})
    p1 = _parse(render_brief(res)[1]).page_one
    assert "model misfit" in p1 and "sampling problems" in p1 and "passed" not in p1


def test_diagnostics_is_a_verdict_table_with_appendix(written):
    _, paths = written
    doc = _parse(paths["brief.html"].read_text(encoding="utf-8"))
    t = doc.tables["diagnostics"]
    assert t[0] == ["Check", "Value", "Threshold", "Status"]
    assert len(t) <= 16
    md = paths["brief.md"].read_text(encoding="utf-8")
    # the raw dump is in the appendix, after the provenance; its headings are demoted
    raw = md.index("## Appendix: diagnostics details")
    assert md.index("## Provenance") < raw and "| Item | Value |" in md[raw:]
    assert md.count("\n## Diagnostics") == 1


def test_no_sensitivity_frame_and_old_effects(run_result):
    # while other parts land: no sensitivity frame, an older effects table
    eff = run_result.effects.rename(columns={"p_meaningful": "p_improve"}).drop(
        columns=["reachable", "rank_lower", "rank_upper", "share_data"])
    res = _with_effects(run_result, eff, sensitivity=None)
    md, page = render_brief(res)
    assert "Is the first place of" not in md and "probability it helps" in md
