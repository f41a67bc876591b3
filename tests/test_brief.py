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
    # ranks 1..k of non-suppressed policies follow P(best for population), decreasing
    rows = doc.tables["ranking-stress"][1:]
    pb = [float(r[6].strip("<>%")) for r in rows if r[0] != "–"]
    assert pb == sorted(pb, reverse=True)
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
    assert "lowers stress" in p1 and "verlaagt" in p1
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
    eff.loc[sup, ["p_positive", "p_best"]] = 0.5
    res = SimpleNamespace(**{**vars(run_result), "effects": eff})
    md, page = render_brief(res)
    for text in (md, page):
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


def test_sections_in_order(written):
    _, paths = written
    md = paths["brief.md"].read_text(encoding="utf-8")
    heads = ["## In short (English)", "## In het kort (Nederlands)", "## Ranking of the",
             "## For whom: subgroups", "## The diagram with posterior", "## Feedback loops",
             "## Diagnostics", "## What rests on assumptions", "## Methods", "## References",
             "## Provenance"]
    pos = [md.index(h) for h in heads]
    assert pos == sorted(pos)
    # assumptions: every lever dose source and every inferred link appear
    for p in ("Triple P parenting programmes", "documented default"):
        assert p in md
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
