"""Tests of codebook loading and its cross-reference checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.survey.codebook import Codebook, ItemSpec, check_codebook, load_codebook
from veerkracht_bayes.errors import SurveyError

GOOD = """\
name: t
id_column: rid
weight_column: w
group_columns: {neighbourhood: wijk}
extra_columns: [age]
constructs:
  wellbeing:
    items:
      - {column: wb1, scale: likert, categories: 6, valid_min: 0, valid_max: 5}
      - {column: wb2, scale: likert, categories: 5, reverse: true}
  social_network:
    items: []
subgroups:
  youth: {label_en: Youth, where: "age >= 12 and age <= 25"}
  low: {label_en: Low wellbeing, where: "wb1 <= 1 or wb2 in [4, 5]"}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "codebook.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_good_codebook_loads(tmp_path: Path) -> None:
    cb = load_codebook(write(tmp_path, GOOD), graph="marvel")
    assert cb.item_columns() == ["wb1", "wb2"]
    assert cb.observed_constructs() == ["wellbeing"]
    assert cb.known_columns() == ["wb1", "wb2", "rid", "w", "wijk", "age"]
    assert cb.item("wb2").reverse is True
    assert [k for k, _ in cb.item_specs()] == ["wellbeing", "wellbeing"]
    with pytest.raises(SurveyError, match="did you mean 'wb2' or 'wb1'"):
        cb.item("wb3")
    # the graph may be given as an object too
    assert load_codebook(write(tmp_path, GOOD), graph=load_graph("marvel")).name == "t"


def test_item_ranges() -> None:
    assert ItemSpec(column="a", scale="likert", categories=5).range == (1, 5)
    assert ItemSpec(column="a", scale="likert", categories=4, valid_min=0).range == (0, 3)
    assert ItemSpec(column="a", scale="binary").range == (0, 1)
    assert ItemSpec(column="a", scale="count").range == (0, None)
    assert ItemSpec(column="a", scale="continuous").range == (None, None)


def _msg(tmp_path: Path, text: str, graph: str | None = "marvel") -> str:
    with pytest.raises(SurveyError) as ei:
        load_codebook(write(tmp_path, text), graph=graph)
    return str(ei.value)


def test_unknown_construct_did_you_mean_with_line(tmp_path: Path) -> None:
    msg = _msg(tmp_path, GOOD.replace("  wellbeing:", "  welbeing:"))
    assert "codebook.yaml:7" in msg and "constructs.welbeing" in msg
    assert "construct 'welbeing' is not a node of graph" in msg and "did you mean 'wellbeing'" in msg
    # without a graph any key is accepted
    assert load_codebook(write(tmp_path, GOOD.replace("  wellbeing:", "  welbeing:"))).name == "t"


def test_item_in_two_constructs(tmp_path: Path) -> None:
    text = GOOD.replace("    items: []", "    items: [{column: wb1, scale: likert, categories: 6, "
                                        "valid_min: 0, valid_max: 5}]")
    msg = _msg(tmp_path, text)
    assert "item column 'wb1' is mapped to 2 constructs (social_network, wellbeing)" in msg
    assert "constructs.social_network.items[0].column" in msg and "codebook.yaml:12" in msg  # line of `items: [...]`


def test_item_twice_in_one_construct(tmp_path: Path) -> None:
    text = GOOD.replace("      - {column: wb2,", "      - {column: wb1,")
    assert "listed 2 times under construct 'wellbeing'" in _msg(tmp_path, text)


def test_item_is_also_id(tmp_path: Path) -> None:
    text = GOOD.replace("id_column: rid", "id_column: wb2")
    assert "column 'wb2' is both the id_column and an item" in _msg(tmp_path, text)


def test_categories_disagree_with_range(tmp_path: Path) -> None:
    text = GOOD.replace("categories: 6, valid_min: 0", "categories: 5, valid_min: 0")
    msg = _msg(tmp_path, text)
    assert "categories=5 but valid_min..valid_max = 0..5 spans 6 values" in msg
    assert "constructs.wellbeing.items[0].categories" in msg


def test_subgroup_bad_syntax_and_unknown_column(tmp_path: Path) -> None:
    msg = _msg(tmp_path, GOOD.replace("age >= 12 and", "age >= 12 and and"))
    assert "subgroup 'youth'" in msg and "at position 15" in msg and "codebook.yaml:14" in msg
    msg = _msg(tmp_path, GOOD.replace("age >= 12", "agee >= 12"))
    assert "unknown column 'agee'" in msg and "did you mean 'age'" in msg
    assert "subgroups.youth.where" in msg


@pytest.mark.parametrize("old, new, expect", [
    ("id_column: rid\n", "", "missing required field 'id_column'"),
    ("scale: likert, categories: 5, reverse", "scale: likret, categories: 5, reverse",
     "did you mean 'likert'"),
    ("reverse: true", "reverse: true, revers: true", "unknown field 'revers'"),
    ("categories: 5, reverse", "reverse", "a likert item needs 'categories'"),
])
def test_schema_errors_located(tmp_path: Path, old: str, new: str, expect: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    msg = _msg(tmp_path, text)
    assert "codebook.yaml" in msg and expect in msg


def test_bad_yaml_and_version(tmp_path: Path) -> None:
    assert "malformed YAML" in _msg(tmp_path, "a: [1, 2\n")
    assert "expected a YAML mapping" in _msg(tmp_path, "- 1\n- 2\n")
    assert "unsupported codebook_version 2" in _msg(tmp_path, "codebook_version: 2\n" + GOOD)


def test_check_codebook_in_memory() -> None:
    import yaml

    cb = Codebook.model_validate(yaml.safe_load(GOOD))
    assert check_codebook(cb, "marvel") == []
    d = yaml.safe_load(GOOD)
    d["constructs"]["wellbeeing"] = d["constructs"].pop("wellbeing")
    probs = check_codebook(Codebook.model_validate(d), "marvel")
    assert len(probs) == 1 and probs[0].value == "wellbeeing"
