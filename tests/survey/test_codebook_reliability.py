"""The codebook's per-item ``reliability`` field (single-item constructs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.resources import shipped_path
from veerkracht_bayes.survey.codebook import load_codebook

BASE = """\
id_column: rid
constructs:
  professional_help:
    items:
      - {{column: prof_help, scale: binary{single}}}
  wellbeing:
    items:
      - {{column: wb1, scale: likert, categories: 5{multi}}}
      - {{column: wb2, scale: likert, categories: 5}}
"""


def _write(tmp_path: Path, single: str = "", multi: str = "") -> Path:
    p = tmp_path / "codebook.yaml"
    p.write_text(BASE.format(single=single, multi=multi), encoding="utf-8")
    return p


def test_single_item_reliability_is_read(tmp_path: Path) -> None:
    cb = load_codebook(_write(tmp_path, single=", reliability: 0.42"), graph="marvel")
    assert cb.item("prof_help").reliability == 0.42
    assert cb.item("wb1").reliability is None
    assert cb.item_reliabilities() == {"prof_help": 0.42}


@pytest.mark.parametrize("value", ["0", "1", "1.3", "-0.2", "nan", "'high'"])
def test_reliability_outside_the_open_unit_interval_is_a_located_error(tmp_path: Path, value: str) -> None:
    p = _write(tmp_path, single=f", reliability: {value}")
    with pytest.raises(SurveyError) as exc:
        load_codebook(p, graph="marvel")
    prob = exc.value.problems[0]
    assert prob.file == str(p) and prob.line == 5 and prob.field == "reliability"
    assert "reliability" in str(exc.value)


def test_reliability_on_a_multi_item_construct_is_a_located_error(tmp_path: Path) -> None:
    p = _write(tmp_path, multi=", reliability: 0.7")
    with pytest.raises(SurveyError) as exc:
        load_codebook(p, graph="marvel")
    prob = exc.value.problems[0]
    assert prob.file == str(p) and prob.line == 8 and prob.field == "reliability"
    assert "wellbeing" in prob.message and "2 items" in prob.message


def test_shipped_codebook_declares_the_generator_reliabilities() -> None:
    """The shipped synthetic codebook carries the generator's loading squared for its two
    single-item endogenous constructs (and says so in a comment)."""
    from veerkracht_bayes.datasets.synthetic import default_truth

    path = shipped_path("data", "synthetic", "codebook_synthetic.yaml")
    cb = load_codebook(path, graph="marvel")
    loading = {it.column: it.loading for it in default_truth().items}
    got = cb.item_reliabilities()
    assert set(got) == {"prof_help", "household_income"}
    for col, r in got.items():
        assert r == pytest.approx(loading[col] ** 2, abs=1e-6)
    text = path.read_text(encoding="utf-8")
    assert text.count("# reliability: the synthetic generator's loading squared") == 2
