"""The brief's "How sure is the diagram?" / "What to measure next" blocks."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
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


def test_measure_next_shows_monte_carlo_error_and_flags_degenerate_weights():
    r = _result(evsi=(0.01, 0.004))
    r.voi["evsi_se"] = [0.001, 0.0005]
    r.voi["share_k_bad"] = [0.9, 0.1]
    blocks = structure_section(r)
    measure = next(b for b in blocks if b.get("css") == "measure-next")
    assert measure["items"] == ["x: 0.0100 (± 0.0010) — rough", "y: 0.0040 (± 0.0005)"]
    assert any(b["text"].startswith("Rough:") for b in blocks)


def test_measure_next_refuses_a_value_that_is_not_estimable():
    r = _result(evsi=(0.01, 0.004))
    r.voi["status"] = ["not_estimable", "ok"]
    r.voi["evsi_gaussian"] = [2e-6, 0.0039]
    r.voi.loc[r.voi["status"] == "not_estimable", "evsi"] = np.nan
    blocks = structure_section(r)
    measure = next(b for b in blocks if b.get("css") == "measure-next")
    assert [i.split(":")[0] for i in measure["items"]] == ["y"]
    note = next(b for b in blocks if b.get("text", "").startswith("Not estimable"))
    assert "x" in note["text"] and "Gaussian approximation" in note["text"]


def test_measure_next_says_when_no_candidate_is_worth_measuring():
    """The 'value lies elsewhere' sentence appears only when every candidate's Gaussian EVSI is
    below 1 % of the EVPI (0.05 here, so the bound is 5e-4)."""
    r = _result(evsi=(np.nan, np.nan))
    r.voi["status"] = ["not_estimable", "not_estimable"]
    r.voi["evsi_gaussian"] = [2e-6, 4e-4]
    text = " ".join(b.get("text", "") for b in structure_section(r))
    assert "Gaussian EVSI reaches 1 % of the EVPI (largest 0.0004 SD)" in text
    r.voi["evsi_gaussian"] = [2e-6, 6e-4]
    text = " ".join(b.get("text", "") for b in structure_section(r))
    assert "Gaussian EVSI reaches 1 % of the EVPI" not in text


def test_measure_next_lists_only_values_that_could_change_the_decision():
    """Values under 1 % of the EVPI (0.05 here) are not listed, and tiny values never print as a
    false 0.0000."""
    r = _result(evsi=(0.01, 3e-4))
    r.voi["evsi_se"] = [0.001, 2e-5]
    measure = next(b for b in structure_section(r) if b.get("css") == "measure-next")
    assert measure["items"] == ["x: 0.0100 (± 0.0010)"]
    r = _result(evsi=(3e-4, 1e-4))
    text = " ".join(b.get("text", "") for b in structure_section(r))
    assert "No single construct, measured next, is expected to change the decision." in text
