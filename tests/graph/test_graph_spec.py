"""Graph spec schema: round trip, the shipped MARVEL data, located problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.errors import SpecError
from veerkracht_bayes.graph.spec import (
    SPEC_VERSION,
    GraphSpec,
    dump_graph_spec,
    load_graph_spec,
    parse_graph_spec,
)
from veerkracht_bayes.yaml_io import load_yaml

BASE = """\
spec_version: 1
name: tiny
nodes:
  - id: stress
    label_en: Stress
    label_nl: Stress
    resource: individual
    role: construct
  - id: wellbeing
    label_en: Wellbeing
    label_nl: Welbevinden
    resource: individual
    role: construct
  - id: income
    label_en: Income
    label_nl: Inkomen
    resource: societal
    role: exogenous
edges:
  - source: stress
    target: wellbeing
    sign: "-"
    evidence: "made up"
  - source: wellbeing
    target: income
    sign: "+"
    evidence: "made up"
  - source: income
    target: stress
    sign: "-"
    evidence: "made up"
loops:
  - id: L1
    title: the loop
    nodes: [stress, wellbeing, income]
    polarity: R
"""


def _parse(text: str, name: str = "g.yaml") -> GraphSpec:
    return parse_graph_spec(load_yaml(name, text=text, error_cls=SpecError))


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln]
    return hits[occurrence - 1]


def test_base_is_valid() -> None:
    spec = _parse(BASE)
    assert [n.id for n in spec.nodes] == ["stress", "wellbeing", "income"]
    assert spec.spec_version == SPEC_VERSION


def test_schema_round_trip_marvel(marvel, tmp_path: Path) -> None:
    text = dump_graph_spec(marvel.spec)
    path = tmp_path / "marvel_copy.yaml"
    path.write_text(text, encoding="utf-8")
    again = load_graph_spec(path)
    assert again == marvel.spec
    assert dump_graph_spec(again) == text


def test_schema_round_trip_with_measurement(tmp_path: Path) -> None:
    spec = _parse(BASE).model_copy(update={"measurement": {"stress": ["pss1", "pss2", "pss3"]}})
    path = tmp_path / "m.yaml"
    path.write_text(dump_graph_spec(spec), encoding="utf-8")
    assert load_graph_spec(path) == spec


def test_every_marvel_edge_has_evidence(marvel) -> None:
    for e in marvel.edges:
        assert isinstance(e.evidence, str) and e.evidence.strip(), e.key
    # inferred edges are flagged and say so in their evidence or are our recommendation mapping
    inferred = [e for e in marvel.edges if e.inferred]
    assert inferred, "MARVEL has edges that are our reading; they must be flagged"
    for e in inferred:
        assert "Inferred" in e.evidence or "Recommendation" in e.evidence, e.key


def test_every_marvel_node_is_documented(marvel) -> None:
    for n in marvel.spec.nodes:
        assert n.label_en and n.label_nl and n.description and n.source, n.id


def test_problems_are_located() -> None:
    text = BASE.replace("    target: income\n", "    target: incme\n")
    with pytest.raises(SpecError) as exc:
        _parse(text)
    p = exc.value.problems[0]
    assert p.file == "g.yaml"
    assert p.line == _line_of(text, "target: incme")
    assert p.location == "edges[1].target"
    assert p.field == "target" and p.value == "incme"
    assert "did you mean 'income'" in p.message


def test_missing_field_line_points_at_item() -> None:
    text = BASE.replace("    evidence: \"made up\"\n", "", 1)
    with pytest.raises(SpecError) as exc:
        _parse(text)
    p = exc.value.problems[0]
    assert p.location == "edges[0].evidence" and p.field == "evidence"
    assert p.line == _line_of(text, "- source: stress")
    assert "missing required field 'evidence'" in str(exc.value)


def test_all_problems_reported_together() -> None:
    text = BASE.replace("resource: societal", "resource: societl").replace(
        "role: construct", "role: exogenus", 1)
    with pytest.raises(SpecError) as exc:
        _parse(text)
    fields = sorted(p.field for p in exc.value.problems)
    assert fields == ["resource", "role"]


def test_unknown_field_did_you_mean() -> None:
    text = BASE.replace("name: tiny", "name: tiny\nedgse: []")
    with pytest.raises(SpecError, match=r"unknown field 'edgse'.*did you mean 'edges'"):
        _parse(text)


def test_unknown_node_field_lists_node_fields() -> None:
    text = BASE.replace("    role: exogenous\n", "    role: exogenous\n    colour: red\n")
    with pytest.raises(SpecError, match=r"nodes\[2\]\.colour: unknown field 'colour'.*label_en"):
        _parse(text)


def test_duplicate_yaml_key_is_refused() -> None:
    text = BASE.replace("    role: exogenous\n", "    role: exogenous\n    role: construct\n")
    with pytest.raises(SpecError, match=r"duplicate key 'role'.*first on line 18") as exc:
        _parse(text)
    assert exc.value.problems[0].line == 19


def test_typographic_minus_hint() -> None:
    text = BASE.replace('sign: "-"', 'sign: "\u2212"', 1)
    with pytest.raises(SpecError, match="typographic dash"):
        _parse(text)


def test_bare_minus_sign_hint() -> None:
    text = BASE.replace('sign: "-"', "sign: -", 1)
    with pytest.raises(SpecError, match=r"malformed YAML at column \d+.*quote it"):
        _parse(text)


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="expected a YAML mapping"):
        _parse("- a\n- b\n")
