"""Tests for the Jupyter HTML display helpers."""

from __future__ import annotations

from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from veerkracht_bayes.report.display import EffectsTable, effects_html, fit_summary_html, run_result_html

from _brief_fixture import build_run_result


@pytest.fixture(scope="module")
def run_result():
    return build_run_result()


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _rows(text):
    p = _Rows()
    p.feed(text)
    return p.rows


def test_fit_summary_html(run_result):
    h = fit_summary_html(run_result.fit, run_result.diagnostics)
    assert "Prior only" in h and "marvel" in h
    rows = _rows(h)
    d = dict(r for r in rows if len(r) == 2)
    assert d["nodes / links"] == "42 / 72"
    assert d["diagnostics"] == "passed"
    link_rows = [r for r in rows if len(r) == 5 and "->" in r[0]]
    assert len(link_rows) == 72
    # largest |mean| first
    vals = [abs(float(r[1].replace("\u2212", "-"))) for r in link_rows]
    assert vals == sorted(vals, reverse=True)


def test_effects_table_and_suppression(run_result):
    eff = run_result.effects.copy()
    sup = eff.suppressed.astype(bool)
    eff.loc[sup, "mean"] = 9.999
    t = EffectsTable(eff)
    h = t._repr_html_()
    assert h == effects_html(eff)
    assert "9.999" not in h and "10.000" not in h
    rows = _rows(h)
    assert len(rows) == len(eff) + 1
    p02 = [r for r in rows if r[0] == "P02"]
    assert p02 and all(r[4] == "suppressed" and "23" not in r[8] for r in p02)
    assert len(t.filter(outcome="stress", scope="within")) == 10
    assert "EffectsTable" in repr(t)


def test_escaping_and_run_result(run_result):
    eff = run_result.effects.copy()
    eff.loc[0, "policy"] = "<b>x</b>"
    h = effects_html(eff)
    assert "<b>x</b>" not in h and "&lt;b&gt;x&lt;/b&gt;" in h
    res = SimpleNamespace(**{**vars(run_result), "forced": True})
    h2 = run_result_html(res)
    assert "PRIOR ONLY" in h2 and "DIAGNOSTICS FAILED" in h2 and "SYNTHETIC" not in h2
