"""Tests for the policy brief (brief.md / brief.html), on a real prior-only MARVEL run."""

from __future__ import annotations

import html as _html
import json
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
        self.svgs: list[dict[str, str]] = []
        self.ids: list[str] = []
        self._figure = False
        self.page_one = ""
        self.text = ""
        self._table = None
        self._cell = None
        self._section = 0
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "figure":
            self._figure = True
        elif tag == "svg" and self._figure:
            self.svgs.append(a)
            self._figure = False
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
    # every figure is inlined as SVG markup: no <img>, no data: URI, no XML prologue, and the
    # ids of the figures never clash
    page = paths["brief.html"].read_text(encoding="utf-8")
    assert len(doc.svgs) >= 7 and not doc.imgs
    assert "data:image" not in page and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert len(doc.ids) == len(set(doc.ids)), [i for i in doc.ids if doc.ids.count(i) > 1][:5]
    for a in doc.svgs:
        assert a.get("role") == "img" and a.get("aria-label") and a.get("viewbox")
    assert doc.scripts == 0
    # every table scrolls inside its own wrapper on a narrow screen
    assert page.count("<table") == page.count('<div class="table-wrap"><table')


def test_page_one_both_languages_and_banners(written):
    _, paths = written
    doc = _parse(paths["brief.html"].read_text(encoding="utf-8"))
    p1 = doc.page_one
    assert "In short (English)" in p1 and "In het kort (Nederlands)" in p1
    assert "probability it helps" in p1 and "kans dat het helpt" in p1
    assert "lower stress" in p1 and "verlaagt" in p1
    # the sentence that doses are assumptions links to the dose table, in both languages
    page = paths["brief.html"].read_text(encoding="utf-8")
    first = page.split('<section class="technical">')[0]
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


_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    _CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")

#: Written into the page by the narrow-screen check: the viewport width, the document's
#: scrollWidth and every visible element that sticks out of the viewport without a scrolling
#: ancestor (overflow-x auto/scroll, as the table wrappers have).
_PROBE = """<script>
(function () {
  var vw = document.documentElement.clientWidth, bad = [];
  var all = document.querySelectorAll('body *');
  for (var i = 0; i < all.length; i++) {
    var el = all[i], r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > vw + 1 || r.left < -1) {
      var p = el.parentElement, ok = false;
      while (p) {
        var st = getComputedStyle(p);
        if (st.overflowX === 'auto' || st.overflowX === 'scroll') { ok = true; break; }
        p = p.parentElement;
      }
      if (!ok) bad.push(el.tagName + '.' + el.className + '#' + el.id + ' right=' + Math.round(r.right));
    }
  }
  var out = document.createElement('pre');
  out.id = 'probe-result';
  out.textContent = JSON.stringify({vw: vw, scrollWidth: document.documentElement.scrollWidth,
                                    overflow: bad.slice(0, 30)});
  parent.document.body.appendChild(out);
})();
</script>"""


def _chromium(tmp_path: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile and nothing that reaches the network."""
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    cmd = [_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _narrow_page(page: str, width: int, tmp_path: Path) -> Path:
    """A page showing the brief in an iframe ``width`` px wide (Chromium's window has a
    minimum width of 500 px, an iframe does not), with the probe script added to the copy."""
    child = page.replace("</body>", _PROBE + "</body>")
    wrap = (f'<!DOCTYPE html><html><body style="margin:0"><iframe style="width:{width}px;'
            f'height:2400px;border:0" srcdoc="{_html.escape(child, quote=True)}"></iframe>'
            "</body></html>")
    out = tmp_path / f"narrow{width}.html"
    out.write_text(wrap, encoding="utf-8")
    return out


@needs_chromium
def test_renders_in_headless_chromium(written, tmp_path):
    """Screenshots at 1280 px and 420 px are not blank; at 420 px nothing but the table (and
    diagram) wrappers is wider than the screen."""
    _, paths = written
    page = paths["brief.html"].read_text(encoding="utf-8")
    wide = tmp_path / "shot1280.png"
    _chromium(tmp_path, f"--screenshot={wide}", "--window-size=1280,3000",
              paths["brief.html"].resolve().as_uri())
    assert wide.is_file(), "chromium wrote no screenshot"
    std, dark = _nonblank(wide)
    # a blank (white) page has std 0 and no dark pixels; text and figures give both
    assert std > 20 and dark > 0.01
    narrow = _narrow_page(page, 420, tmp_path)
    shot = tmp_path / "shot420.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=600,2400", narrow.as_uri())
    assert shot.is_file()
    from PIL import Image

    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im[:, :400].std() > 20 and (im[:, :400] < 200).mean() > 0.01
    dom = _chromium(tmp_path, "--dump-dom", "--window-size=600,900", narrow.as_uri()).stdout
    m = re.search(r'<pre id="probe-result">([^<]*)</pre>', dom)
    assert m, "the probe did not run"
    probe = json.loads(_html.unescape(m.group(1)))
    assert 380 <= probe["vw"] <= 420
    assert probe["scrollWidth"] <= probe["vw"], probe
    assert probe["overflow"] == [], probe["overflow"]


@needs_chromium
def test_page_one_prints_on_one_a4_page(written, tmp_path):
    """Printed (A4, the brief's print stylesheet), page one — both languages — is the first
    page and the technical part starts on the second."""
    pypdf = pytest.importorskip("pypdf", reason="pypdf (test extra) is not installed")
    _, paths = written
    pdf = tmp_path / "brief.pdf"
    _chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
              paths["brief.html"].resolve().as_uri(), timeout=180)
    assert pdf.is_file(), "chromium wrote no PDF"
    reader = pypdf.PdfReader(str(pdf))
    w, h = (float(x) for x in reader.pages[0].mediabox[2:])
    assert abs(w - 595.3) < 2 and abs(h - 841.9) < 2, "not A4"
    texts = [" ".join(p.extract_text().split()) for p in reader.pages]
    assert len(texts) >= 3
    one = texts[0]
    for needle in ("In short (English)", "In het kort (Nederlands)", "Best candidates to lower",
                   "Beste kandidaten om de stress te verlagen", "minimal relevant change (MRC)",
                   "te klein in de enquête"):
        assert needle in one, needle
    assert "Ranking of the recommendations" not in one
    assert texts[1].startswith("Ranking of the recommendations")
    # printed at its own size (Chromium shrinks a page whose content is too wide, which would
    # make page one fit by making it illegible): no text on page one is below 8 pt
    sizes: list[float] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            sizes.append(size * abs(tm[3]) * abs(cm[3]))

    reader.pages[0].extract_text(visitor_text=visit)
    assert sizes and min(sizes) >= 7.9, min(sizes)


def test_html_is_small_and_self_contained(written):
    _, paths = written
    page = paths["brief.html"].read_text(encoding="utf-8")
    assert len(page.encode("utf-8")) < 500_000
    # nothing is fetched: no external stylesheet, script, image or font
    assert not re.search(r'<(link|script|img)\b', page)
    assert not re.search(r'(src|href)="(https?:)?//(?!doi\.org)', page.split('id="references"')[0])


def test_diagram_legend_is_the_drawings_legend(written, run_result):
    """One legend: the brief prints the entries of graph.drawing.legend_entries with the same
    line styles and arrowheads that the drawings use for those links."""
    from veerkracht_bayes.graph.drawing import legend_entries, link_style
    from veerkracht_bayes.report.figures import edge_posterior_means, posterior_digraph

    _, paths = written
    page = paths["brief.html"].read_text(encoding="utf-8")
    legend = page[page.index('class="legend"'):]
    legend = legend[:legend.index("</div>")]
    samples = re.findall(r'data-style="(\w+)" data-arrowhead="(\w+)".*?</svg>\s*([^<]+)</span>',
                         legend, re.S)
    entries = legend_entries(posterior=True)
    assert [(a, b, _html.unescape(t).strip()) for a, b, t in samples] == \
        [(e.style, e.arrowhead, e.label) for e in entries]
    # dashed samples are drawn dashed, solid ones not
    for svg, e in zip(re.findall(r"<svg[^>]*data-style.*?</svg>", legend, re.S), entries):
        assert ("stroke-dasharray" in svg) == (e.style == "dashed")
    # the drawing: every link's style and arrowhead are the legend's
    cls = {e.key: ("data-informed" if i % 2 else "prior-dominated")
           for i, e in enumerate(run_result.graph.edges)}
    src = posterior_digraph(run_result.graph, edge_posterior_means(run_result.fit.idata,
                                                                   run_result.graph), cls).source
    by_key = {e.key: e for e in entries}
    for e in run_result.graph.edges:
        line = [x for x in src.splitlines() if re.match(rf"\s*{e.source} -> {e.target} \[", x)][0]
        style, head = link_style(e, cls)
        assert f"style={style}" in line and f"arrowhead={head}" in line
        assert style == by_key[cls[e.key]].style
        assert head == (by_key["inferred"].arrowhead if e.inferred else "normal")
    # the drawing's own legend text uses the same words
    for e in entries:
        assert e.label in src


def test_provenance_has_no_absolute_paths(run_result, tmp_path):
    cfg = tmp_path / "runs" / "my.toml"
    cfg.parent.mkdir()
    cfg.write_text("seed = 1\n", encoding="utf-8")
    prov = {"seed": 1, "command_line": ["/opt/venv/bin/veerkracht-bayes", "run", str(cfg),
                                        "--out", str(tmp_path / "runs" / "out")],
            "inputs": {"survey": {"path": str(tmp_path / "data" / "s.csv"), "sha256": "ab" * 32},
                       "graph": {"path": "marvel.yaml", "sha256": "cd" * 32}}}
    res = SimpleNamespace(**{**vars(run_result), "provenance": prov, "config_path": cfg})
    md, page = render_brief(res)
    doc = _parse(page)
    for text in (md, page):
        assert str(tmp_path) not in text and "/opt/venv" not in text
    rows = {r[0]: r for r in doc.tables["inputs"][1:]}
    assert rows["survey"][1] == "../data/s.csv" and rows["graph"][1] == "marvel.yaml"
    import hashlib

    assert rows["config"][1] == "my.toml"
    assert rows["config"][2] == hashlib.sha256(cfg.read_bytes()).hexdigest()
    cmd = {r[0]: r[1] for r in doc.tables["provenance"][1:]}["command"]
    assert cmd == "veerkracht-bayes run my.toml --out out"


def test_markdown_goes_through_markdown_it(run_result):
    from veerkracht_bayes.report.brief import markdown_html

    h = markdown_html("# T\n\n| a | b |\n|---|---|\n| `x` | <b>y</b> |\n\n- one\n- **two**")
    assert "<h1>T</h1>" in h and '<div class="table-wrap"><table>' in h
    assert "<code>x</code>" in h and "&lt;b&gt;y&lt;/b&gt;" in h and "<strong>two</strong>" in h


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
    from veerkracht_bayes.report.brief import likely_words

    assert likely_words(0.95, "en") == "most likely" and likely_words(0.49, "en") == ""
    assert likely_words(0.5, "nl") == "mogelijk" and likely_words(float("nan"), "en") == ""


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
    from veerkracht_bayes.report.brief import effect_evidence_cell, effect_evidence_label

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
        if effect_evidence_label(r) == "data":
            assert r["share_data"] > 0.5
        assert effect_evidence_cell(r).split(":")[0] == effect_evidence_label(r)
    # prior-only: nothing rests on data
    for _, r in run_result.effects.iterrows():
        assert effect_evidence_label(r) != "data"


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


def test_findings_are_sentences_never_dumps(run_result):
    """The diagnostics' identification report (a dict with ``findings``) and cut-routing
    records (dicts per link) are printed as sentences, never as Python reprs."""
    ident = {"unmeasured": "cut", "counts": {"likelihood": 3},
             "links": [{"link": "a->b", "status": "cut"}],
             "findings": ["3 of 72 links enter the likelihood.", "Link a->b is cut."]}
    routing = [{"link": "stress->wellbeing", "share": 0.4, "share_q95": 0.5, "flagged": True},
               {"link": "x->y", "share": 0.01, "share_q95": 0.02, "flagged": False}]
    diag = SimpleNamespace(**{k: v for k, v in vars(run_result.diagnostics).items()
                              if k not in ("identification_findings", "cut_routing_findings")},
                           identification=ident, cut_routing=routing)
    md, page = render_brief(SimpleNamespace(**{**vars(run_result), "diagnostics": diag}))
    assump = md[md.index("## What rests on assumptions"):md.index("## Methods")]
    assert "- 3 of 72 links enter the likelihood." in assump and "- Link a->b is cut." in assump
    assert "stress->wellbeing (40 %)" in assump and "x->y" not in assump
    assert "{'" not in md and "&#39;link&#39;" not in page
