"""Tests of veerkracht_bayes.priors.bibliography: BibTeX parsing, errors, formatting, the shipped .bib."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.priors.bibliography import (
    BibEntry,
    bibliography,
    format_authors,
    format_reference,
    latex_to_unicode,
    load_bib,
    parse_bibtex,
    references_html,
    references_markdown,
)
from veerkracht_bayes.errors import PriorError
from veerkracht_bayes.priors.spec import PriorSet, load_priors

ROOT = Path(__file__).resolve().parents[2]
BIB = ROOT / "priors" / "references.bib"

SAMPLE = r"""
% a comment line with an @ sign that is not an entry? no: comments are skipped by entry search
@comment{ignored {nested} text}
@string{jpsp = "J Pers Soc Psychol"}
@preamble{"\newcommand{\noop}[1]{}"}

@Article{Smith2020,
  author = {Smith, John A. and {van der Berg}, Anna},
  title  = "A {Title} with {\"u}mlauts and \& ampersands",
  journal = jpsp # { (online)},
  year = 2020,
  month = mar,
  volume = {12},
  pages = {1--10},
  doi = {10.1000/xyz},
}
@misc(paren_entry, title = {Parenthesised}, year = {1999})
"""


def test_parse_sample():
    bib = parse_bibtex(SAMPLE, "sample.bib")
    assert bib.keys == ["Smith2020", "paren_entry"]
    e = bib["smith2020"]  # case-insensitive look-up
    assert e.type == "article" and e.line == 7
    assert e.fields["journal"] == "J Pers Soc Psychol (online)"
    assert e.fields["year"] == "2020" and e.fields["month"] == "Mar"
    assert e.get("title") == "A Title with ümlauts and & ampersands"
    assert bib["paren_entry"].get("title") == "Parenthesised"
    assert "Smith2020" in bib and "nope" not in bib and len(bib) == 2


def test_latex_to_unicode():
    assert latex_to_unicode(r"Kivim{\"a}ki") == "Kivimäki"
    assert latex_to_unicode(r"Crist{\'o}bal-Narv{\'a}ez") == "Cristóbal-Narváez"
    assert latex_to_unicode(r"{\.Z}urek and Dekovi{\'c}") == "Żurek and Deković"
    assert latex_to_unicode(r"\v{S}koda \c{c} {\ss} 1--10") == "Škoda ç ß 1–10"


def test_format_authors():
    assert format_authors("Bekkers") == "Bekkers"
    assert format_authors("Harris and Orth") == "Harris & Orth"
    assert format_authors("Judge and Erez and Bono and Thoresen") == "Judge, Erez, Bono, & Thoresen"
    assert format_authors("Groh and others") == "Groh et al."
    assert format_authors("Smith, John A. and {van der Berg}, Anna") == "Smith, J. A. & van der Berg, A."
    assert format_authors("{Li Yue} and Zhang") == "Li Yue & Zhang"
    assert format_authors(None) == ""


def test_format_reference_styles():
    e = BibEntry("article", "k", {"author": "Kim and Thibodeau", "year": "2011", "title": "T & t",
                                  "journal": "Psychol Bull", "volume": "137", "pages": "68--96",
                                  "doi": "10.1037/a0021466", "url": "https://ignored.example"})
    assert format_reference(e) == ("Kim & Thibodeau (2011). T & t. Psychol Bull, 137, 68–96. "
                                   "https://doi.org/10.1037/a0021466")
    md = format_reference(e, "markdown")
    assert "*Psychol Bull*, *137*" in md and "<https://doi.org/10.1037/a0021466>" in md
    h = format_reference(e, "html")
    assert "Kim &amp; Thibodeau" in h and "T &amp; t." in h and "<i>Psychol Bull</i>" in h
    assert '<a href="https://doi.org/10.1037/a0021466">' in h
    bare = BibEntry("misc", "m", {"title": "Only a title", "url": "https://x.example"})
    assert format_reference(bare) == "Only a title (n.d.). https://x.example"
    nothing = BibEntry("article", "n", {"journal": "J", "year": "2022", "note": "Authors unknown"})
    assert format_reference(nothing) == "J (2022). [Authors unknown.]"
    # maintainers' notes (x-note) are never printed, nor any placeholder text
    noted = BibEntry("article", "q", {"title": "T", "year": "2020", "doi": "10.1/x",
                                      "x-note": "Title as read; unverified"})
    for style in ("text", "markdown", "html"):
        out = format_reference(noted, style)
        assert "unverified" not in out and "not given" not in out and "doi.org/10.1/x" in out
    with pytest.raises(PriorError, match="did you mean 'markdown'"):
        format_reference(e, "markdwn")


@pytest.mark.parametrize("text, needles", [
    ("@article{a,\n title = {open\n", ["x.bib:2", "unbalanced braces", "'}'"]),
    ("@article{a, title={x}}\n\n@article{A, title={y}}", ["x.bib:3", "duplicate citation key 'A'",
                                                        "first defined on line 1"]),
    ("@article{a,\n  title {x}}", ["x.bib:2", "expected '='"]),
    ("@string{jpsp = {J}}\n@article{a, journal = jpspp}", ["x.bib:2", "undefined @string macro 'jpspp'",
                                                         "did you mean 'jpsp'"]),
    ('@article{a,\n title = "never closed', ["x.bib:2", "unterminated quoted value"]),
    ("@article{a, title={x} year={1}}", ["expected ',' or '}'", "@article{a}"]),
    ("@article{a, title={x}, title={y}}", ["field 'title' given twice"]),
    ("@article a, title={x}}", ["expected '{' after @article"]),
])
def test_malformed_bibtex_is_located(text, needles):
    with pytest.raises(PriorError) as exc:
        parse_bibtex(text, "x.bib")
    msg = str(exc.value)
    for n in needles:
        assert n in msg, (n, msg)


def test_missing_file():
    with pytest.raises(PriorError, match="file not found"):
        load_bib(ROOT / "priors" / "nope.bib")


# ------------------------------------------------------------------------ shipped .bib
def test_shipped_bib_entries_are_complete_and_used():
    bib = load_bib(BIB)
    ps = load_priors("marvel")
    for key in bib.keys:
        e = bib[key]
        # every source has its address, or says (unprinted) why it is not yet known
        assert e.get("url") or e.get("doi") or e.get("x-note"), key
        assert e.get("author") or e.get("title") or e.get("note"), key
    # printed: a DOI or the publisher's address for every entry that has one, no mirror site,
    # no internal note, no space in a link
    mirrors = ("scribd", "vdocuments", "docslib", "researchgate", "academia.edu", "semanticscholar")
    for key in bib.keys:
        out = format_reference(bib[key], "html")
        if bib[key].get("doi") or bib[key].get("url"):
            assert '<a href="https://' in out, key
        assert not any(m in out for m in mirrors), key
        assert "not given" not in out and "x-note" not in out, key
        x_note = bib[key].get("x-note")
        assert not x_note or x_note[:30] not in out, key
        for href in __import__("re").findall(r'href="([^"]+)"', out):
            assert " " not in href, key
    # every entry is cited by some prior and every citation resolves
    assert set(bib.keys) == set(ps.citations_used())


def test_bibliography_for_marvel_priors():
    ps = load_priors("marvel")
    refs = bibliography(ps)  # uses the set's own bib_path
    assert len(refs) == len(ps.citations_used())
    # sorted by first author (case-insensitively), then year
    assert refs[0].startswith("Aldao, Nolen-Hoeksema, & Schweizer (2010).")
    assert refs[-1].startswith("Zell & Stockus (2024).")
    authored = [r for r in refs if not r.startswith(("[", "Hope", "Dealing"))]
    assert authored == sorted(authored, key=str.casefold)
    assert any(r.startswith("Kivimäki et al. (2012). Lancet, 380, 1491–1497.") for r in refs)
    md = references_markdown(ps)
    assert md.startswith("## References\n\n- ") and md.count("\n- ") == len(refs)
    html = references_html(ps, heading="Sources")
    assert html.startswith("<h2>Sources</h2>") and html.count("<li>") == len(refs)


def test_bibliography_missing_key_gets_did_you_mean():
    ps = load_priors("marvel")
    broken = PriorSet(graph="marvel", edges={
        "stress->wellbeing": ps.for_edge("stress->wellbeing").model_copy(update={"citations": ["ansari2052"]})})
    with pytest.raises(PriorError) as exc:
        bibliography(broken, BIB)
    assert "citation key 'ansari2052' is not in the bibliography" in str(exc.value)
    assert "did you mean 'ansari2025'" in str(exc.value)
    with pytest.raises(PriorError, match="no bibliography given"):
        bibliography(broken)


def _citation_keys(obj) -> set[str]:
    """Every value of a 'citation' (one key) or 'citations' (a list) field, at any depth."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "citation" and isinstance(v, str):
                out.add(v)
            elif k == "citations" and isinstance(v, list):
                out |= {str(c) for c in v}
            else:
                out |= _citation_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _citation_keys(v)
    return out


def test_every_citation_key_in_priors_and_policies_is_in_the_bib():
    import re

    import yaml

    bib = {m.lower() for m in re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", BIB.read_text(encoding="utf-8"))}
    used = {}
    for path in (ROOT / "priors" / "marvel.yaml", ROOT / "src" / "veerkracht_bayes" / "data" / "policies.yaml"):
        for key in _citation_keys(yaml.safe_load(path.read_text(encoding="utf-8"))):
            used[key] = path.name
    assert len(used) > 20
    missing = sorted(f"{k} ({f})" for k, f in used.items() if k.lower() not in bib)
    assert not missing, f"citation keys missing from priors/references.bib: {missing}"


def test_citation_key_collector_finds_nested_keys():
    doc = {"a": [{"citation": "X1"}, {"citations": ["Y2", "Z3"]}], "b": {"c": {"citation": None}}}
    assert _citation_keys(doc) == {"X1", "Y2", "Z3"}
