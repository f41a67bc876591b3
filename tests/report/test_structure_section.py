"""The brief's "How sure is the diagram?" / "What to measure next" blocks."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pandas as pd

from veerkracht_bayes.report.brief import Block
from veerkracht_bayes.report.structure_section import structure_section


def _result(evsi=(0.01, 0.0)):
    links = pd.DataFrame({"link": ["a->b", "c->d", "e->f"], "inferred": [True, True, False],
                          "informed": [True, False, True], "prior_inclusion": [0.5, 0.5, 1.0],
                          "p_include": [0.2, 0.5, 1.0]})
    rob = pd.DataFrame({"policy": ["P1", "P2"], "outcome": ["wellbeing"] * 2, "rank": [1, 2],
                        "p_rank_holds": [0.9, 0.8], "p_sign_holds": [1.0, 0.95]})
    tor = pd.DataFrame({"policy": ["P1", "P1"], "outcome": ["wellbeing"] * 2,
                        "input": ["a->b", "dose:L"], "share": [0.7, 0.3]})
    voi = pd.DataFrame({"construct": ["x", "y"], "n": [2000, 2000], "evsi": list(evsi),
                        "evpi": [0.05, 0.05], "outcome": ["wellbeing"] * 2})
    return NS(structure=NS(links=links, robustness=rob), tornado=tor, voi=voi)


def test_blocks_render_as_brief_blocks():
    blocks = [Block(**d) for d in structure_section(_result())]
    heads = [b.text for b in blocks if b.kind == "h2"]
    assert heads == ["How sure is the diagram?", "What to measure next"]
    text = " ".join(b.text for b in blocks)
    assert "2 of the diagram's 3 links" in text and "inform 1 of them" in text
    table = next(b for b in blocks if b.css == "robustness")
    assert table.rows[0] == ["P1", "1", "0.90", "1.00"]
    tornado = next(b for b in blocks if b.css == "tornado")
    assert tornado.items[0].startswith("a->b: 70%")
    measure = next(b for b in blocks if b.css == "measure-next")
    assert measure.items == ["x: 0.0100"]  # zero-EVSI constructs are not listed


def test_nothing_to_say():
    assert structure_section(NS(structure=None, voi=None, tornado=None)) == []
    blocks = structure_section(_result(evsi=(0.0, 0.0)))
    assert any("No single construct" in b["text"] for b in blocks)
