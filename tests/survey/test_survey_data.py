"""Tests of read_survey: every format, every bad input, weights, subgroups, immutability."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from veerkracht_bayes.survey.codebook import Codebook
from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.cli.main import validate_survey_main
from veerkracht_bayes.survey.reading import (
    SurveyData,
    kish_effective_n,
    read_survey,
)

CODEBOOK_YAML = """\
name: test_survey
id_column: respondent_id
weight_column: weight
group_columns: {neighbourhood: wijk}
min_cell_size: 5
extra_columns: [age, origin]
constructs:
  wellbeing:
    instrument: WHO-5 like
    items:
      - {column: wb1, scale: likert, categories: 5, missing_codes: [-9, "weet niet"]}
      - {column: wb2, scale: likert, categories: 5, reverse: true, missing_codes: [-9]}
  stress:
    items:
      - {column: st1, scale: likert, categories: 4, valid_min: 0, valid_max: 3}
  financial_means:
    items:
      - {column: income, scale: continuous, valid_min: 0, missing_codes: [99999]}
  single_parent_household:
    items: [{column: single_parent, scale: binary}]
subgroups:
  youth: {label_en: Youth, where: "age >= 12 and age <= 25"}
  single_parent: {label_en: Single parents, where: "single_parent == 1"}
  migration: {label_en: Migration background, where: "origin in ['syria', 'eritrea']"}
"""


def make_codebook() -> Codebook:
    import yaml

    return Codebook.model_validate(yaml.safe_load(CODEBOOK_YAML))


def make_frame(n: int = 40, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "respondent_id": np.arange(1, n + 1),
        "weight": rng.uniform(0.5, 2.0, n).round(3),
        "wijk": rng.choice(["W01", "W02", "W03"], n),
        "age": rng.integers(12, 80, n).astype(float),
        "origin": rng.choice(["nl", "syria", "eritrea"], n),
        "wb1": rng.integers(1, 6, n).astype(float),
        "wb2": rng.integers(1, 6, n).astype(float),
        "st1": rng.integers(0, 4, n).astype(float),
        "income": rng.gamma(4.0, 500.0, n).round(2),
        "single_parent": rng.integers(0, 2, n).astype(float),
        "unused": rng.normal(size=n),
    })


@pytest.fixture
def cb() -> Codebook:
    return make_codebook()


@pytest.fixture
def cb_path(tmp_path: Path) -> Path:
    p = tmp_path / "codebook.yaml"
    p.write_text(CODEBOOK_YAML, encoding="utf-8")
    return p


def write_csv(df: pd.DataFrame, path: Path, sep: str = ",", decimal: str = ".",
              encoding: str = "utf-8") -> Path:
    df.to_csv(path, sep=sep, decimal=decimal, index=False, encoding=encoding)
    return path


def assert_same_values(sd: SurveyData, df: pd.DataFrame) -> None:
    for col in ["wb1", "wb2", "st1", "income", "single_parent", "weight", "age"]:
        np.testing.assert_allclose(sd.data[col].to_numpy(dtype=float), df[col].to_numpy(dtype=float))
    assert sd.data["respondent_id"].tolist() == df["respondent_id"].tolist()
    assert sd.data["wijk"].tolist() == df["wijk"].tolist()


# ============================================================================ formats
def test_dataframe_roundtrip_and_not_mutated(cb: Codebook) -> None:
    df = make_frame()
    df.loc[3, "wb1"] = -9
    before = df.copy(deep=True)
    sd = read_survey(df, cb)
    pd.testing.assert_frame_equal(df, before)  # caller's frame untouched
    assert sd.source == "<DataFrame>"
    assert sd.n == 40
    assert "unused" not in sd.data.columns  # restricted to the codebook's columns
    assert np.isnan(sd.data.loc[3, "wb1"])
    # mutating the returned data or weights does not change the SurveyData
    d = sd.data
    d.loc[0, "wb1"] = 123
    w = sd.weights
    w[:] = 0
    assert sd.data.loc[0, "wb1"] != 123 and sd.weights.sum() == pytest.approx(40)
    with pytest.raises(Exception):
        sd.source = "x"  # type: ignore[misc]
    # sha256 is deterministic and changes with the data
    assert read_survey(df, cb).sha256 == sd.sha256
    df2 = df.copy()
    df2.loc[0, "wb2"] = 5 if df2.loc[0, "wb2"] != 5 else 4
    assert read_survey(df2, cb).sha256 != sd.sha256


@pytest.mark.parametrize("sep, decimal", [(",", "."), (";", ",")])
def test_csv_comma_and_semicolon_decimal_comma(tmp_path: Path, cb: Codebook, sep: str, decimal: str) -> None:
    df = make_frame()
    p = write_csv(df, tmp_path / "s.csv", sep=sep, decimal=decimal)
    if decimal == ",":
        assert "," in p.read_text().splitlines()[1]  # really has decimal commas
    sd = read_survey(p, cb)
    assert_same_values(sd, df)
    assert sd.metadata["sep"] == sep and sd.metadata["decimal"] == decimal
    import hashlib
    assert sd.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_csv_bom_and_latin1(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    df["wijk"] = np.where(df["wijk"] == "W01", "Zuidoost-Béthune", df["wijk"])
    p = write_csv(df, tmp_path / "bom.csv", encoding="utf-8-sig")
    assert p.read_bytes()[:3] == b"\xef\xbb\xbf"
    sd = read_survey(p, cb)
    assert "respondent_id" in sd.data.columns
    assert_same_values(sd, df)
    p2 = write_csv(df, tmp_path / "latin.csv", encoding="latin-1")
    assert_same_values(read_survey(p2, cb, encoding="latin-1"), df)
    with pytest.raises(SurveyError, match=r"latin.csv:\d+.*not valid UTF-8.*encoding='latin-1'"):
        read_survey(p2, cb)


def test_csv_gz(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    p = tmp_path / "s.csv.gz"
    p.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    assert_same_values(read_survey(p, cb), df)


def test_parquet(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    p = tmp_path / "s.parquet"
    df.to_parquet(p)
    sd = read_survey(p, cb)
    assert_same_values(sd, df)
    assert sd.report.format == "Parquet"


@pytest.mark.parametrize("ext", ["sav", "dta"])
def test_spss_stata_keep_value_labels(tmp_path: Path, cb: Codebook, ext: str) -> None:
    df = make_frame()
    p = tmp_path / f"s.{ext}"
    labels = {"wb1": {1.0: "never", 5.0: "always"}, "single_parent": {0.0: "no", 1.0: "yes"}}
    writer = pyreadstat.write_sav if ext == "sav" else pyreadstat.write_dta
    writer(df, str(p), variable_value_labels=labels, column_labels={"wb1": "I felt cheerful"})
    sd = read_survey(p, cb)
    assert_same_values(sd, df)
    assert sd.metadata["value_labels"]["wb1"] == {1: "never", 5: "always"}
    assert sd.metadata["value_labels"]["single_parent"][1] == "yes"
    assert sd.metadata["column_labels"]["wb1"] == "I felt cheerful"


def test_codebook_path_accepted(tmp_path: Path, cb_path: Path) -> None:
    sd = read_survey(make_frame(), cb_path, graph="marvel")
    assert sd.codebook.name == "test_survey"


# ============================================================================ content
def test_missing_codes_numeric_and_text(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame().astype({"wb1": object})
    df.loc[[1, 2], "wb1"] = "weet niet"
    df.loc[4, "wb1"] = -9
    df.loc[5, "wb1"] = "  Weet Niet "  # case and space insensitive
    df.loc[6, "income"] = 99999
    p = write_csv(df, tmp_path / "s.csv")
    sd = read_survey(p, cb)
    rep = {i.column: i for i in sd.report.items}
    assert rep["wb1"].n_missing_codes == 4 and rep["wb1"].n_missing == 4
    assert rep["income"].n_missing_codes == 1
    assert np.isnan(sd.data["wb1"].to_numpy()[[1, 2, 4, 5]]).all()


def test_reverse_coding_and_ordinal_codes(cb: Codebook) -> None:
    df = make_frame()
    df.loc[0, "wb2"] = np.nan
    sd = read_survey(df, cb)
    x, cols = sd.item_matrix(reverse=True)
    raw, _ = sd.item_matrix(reverse=False)
    j = cols.index("wb2")
    np.testing.assert_array_equal(x[1:, j], 6 - df["wb2"].to_numpy()[1:])  # (1 + 5) - x
    np.testing.assert_array_equal(raw[1:, j], df["wb2"].to_numpy()[1:])
    assert np.isnan(x[0, j])
    codes = sd.ordinal_codes()
    assert set(codes) == {"wb1", "wb2", "st1"}  # Likert items only
    assert codes["wb2"][0] == -1
    np.testing.assert_array_equal(codes["wb2"][1:], 5 - df["wb2"].to_numpy()[1:].astype(int))
    np.testing.assert_array_equal(codes["st1"], df["st1"].to_numpy().astype(int))  # 0..3 already
    np.testing.assert_array_equal(codes["wb1"], df["wb1"].to_numpy().astype(int) - 1)
    assert sd.constructs["wellbeing"] == ["wb1", "wb2"]


def test_weights_normalised_kish_and_design_effect(cb: Codebook) -> None:
    df = make_frame()
    sd = read_survey(df, cb)
    w = df["weight"].to_numpy()
    assert sd.weights.sum() == pytest.approx(sd.n, rel=1e-12)
    np.testing.assert_allclose(sd.weights, w * len(w) / w.sum())
    ws = sd.report.weights
    n_eff = w.sum() ** 2 / (w**2).sum()
    assert ws.kish_n_eff == pytest.approx(n_eff)
    assert ws.design_effect == pytest.approx(len(w) / n_eff)
    assert (ws.min, ws.max, ws.mean) == pytest.approx((w.min(), w.max(), w.mean()))
    # equal weights: n_eff = n, deff = 1; unweighted codebook: ones
    assert kish_effective_n(np.full(7, 3.0)) == pytest.approx(7)
    cb2 = cb.model_copy(update={"weight_column": None})
    sd2 = read_survey(df, cb2)
    np.testing.assert_array_equal(sd2.weights, np.ones(40))
    assert sd2.report.weights.design_effect == pytest.approx(1.0)


def test_zero_weights_allowed_and_reported(cb: Codebook) -> None:
    df = make_frame()
    df.loc[[0, 1], "weight"] = 0.0
    sd = read_survey(df, cb)
    assert sd.report.weights.n_zero == 2
    assert any("weight 0" in w for w in sd.report.warnings)


def test_subgroups_and_groups(cb: Codebook) -> None:
    df = make_frame()
    df.loc[0, "age"] = np.nan
    sd = read_survey(df, cb)
    youth = sd.subgroup_mask("youth")
    want = ((df["age"] >= 12) & (df["age"] <= 25)).to_numpy()
    np.testing.assert_array_equal(youth, want)
    sizes = sd.subgroup_sizes()
    assert sizes.loc["youth", "n"] == want.sum()
    assert sizes.loc["youth", "weighted_n"] == pytest.approx(sd.weights[want].sum())
    assert sizes.loc["youth", "below_min_cell_size"] == (want.sum() < 5)
    assert sizes.loc["migration", "n"] == df["origin"].isin(["syria", "eritrea"]).sum()
    rep = {s.name: s for s in sd.report.subgroups}
    assert rep["youth"].n_undetermined == 1
    with pytest.raises(SurveyError, match=r"unknown subgroup 'yuth'.*did you mean 'youth'"):
        sd.subgroup_mask("yuth")
    codes, levels = sd.group_codes("neighbourhood")
    assert levels == ["W01", "W02", "W03"]
    np.testing.assert_array_equal(np.array(levels)[codes], df["wijk"].to_numpy())
    with pytest.raises(SurveyError, match="did you mean 'neighbourhood'"):
        sd.group_codes("neighbourhod")


def test_small_cell_flagged() -> None:
    cb = make_codebook().model_copy(update={"min_cell_size": 1000})
    sd = read_survey(make_frame(), cb)
    assert sd.subgroup_sizes()["below_min_cell_size"].all()
    assert any("below min_cell_size 1000" in w for w in sd.report.warnings)


def test_unobserved_constructs(cb: Codebook) -> None:
    sd = read_survey(make_frame(), cb, graph="marvel")
    unobs = sd.unobserved_constructs("marvel")
    assert "social_network" in unobs and "wellbeing" not in unobs and "stress" not in unobs
    assert "single_parent_household" not in unobs  # exogenous role, observed anyway
    assert "meeting_places" not in unobs  # policy levers are not constructs
    assert list(sd.report.unobserved_constructs) == unobs


def test_missing_id_rows_excluded_and_reported(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame().astype({"respondent_id": object})
    df.loc[[2, 9], "respondent_id"] = None
    p = write_csv(df, tmp_path / "s.csv")
    sd = read_survey(p, cb)
    r = sd.report
    assert (r.rows_read, r.rows_kept, r.rows_excluded) == (40, 38, 2)
    assert r.exclusions[0].rows == (3, 10) and "missing respondent id" in r.exclusions[0].reason
    assert sd.source_rows.tolist() == [i for i in range(1, 41) if i not in (3, 10)]
    assert "excluded 2: missing respondent id" in r.to_text()
    assert r.to_dict()["rows_excluded"] == 2


def test_out_of_range_missing_option_counts(cb: Codebook) -> None:
    df = make_frame()
    df.loc[[3, 8], "wb1"] = 7
    df.loc[5, "st1"] = 2.5  # not a category
    sd = read_survey(df, cb, out_of_range="missing")
    rep = {i.column: i for i in sd.report.items}
    assert rep["wb1"].n_out_of_range == 2 and rep["st1"].n_out_of_range == 1
    assert np.isnan(sd.data["wb1"].to_numpy()[[3, 8]]).all()
    assert rep["wb1"].n_missing == 2


def test_report_text_and_json(cb: Codebook) -> None:
    sd = read_survey(make_frame(), cb, graph="marvel")
    text = sd.report.to_text()
    for s in ["rows read: 40; kept: 40; excluded: 0", "Kish effective n", "design effect",
              "wb1", "youth", "status: VALID", "unobserved constructs"]:
        assert s in text
    d = json.loads(json.dumps(sd.report.to_dict()))
    assert d["rows_kept"] == 40 and d["weights"]["column"] == "weight"
    assert {i["column"] for i in d["items"]} == {"wb1", "wb2", "st1", "income", "single_parent"}


def test_validate_survey_main(tmp_path: Path, cb_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_csv(make_frame(), tmp_path / "s.csv")
    assert validate_survey_main(str(p), str(cb_path)) == 0
    assert "status: VALID" in capsys.readouterr().out
    assert validate_survey_main(str(p), str(cb_path), as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    bad = make_frame()
    bad.loc[0, "wb1"] = 7
    p2 = write_csv(bad, tmp_path / "bad.csv")
    with pytest.raises(SurveyError, match="out of range"):
        validate_survey_main(str(p2), str(cb_path))
    assert validate_survey_main(str(p2), str(cb_path), out_of_range="missing") == 0


# ============================================================================ bad input
def _err(src: object, cb: Codebook, **kw: object) -> str:
    with pytest.raises(SurveyError) as ei:
        read_survey(src, cb, **kw)  # type: ignore[arg-type]
    return str(ei.value)


def test_bad_missing_column_did_you_mean(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame().rename(columns={"wb2": "wb_2"})
    p = write_csv(df, tmp_path / "s.csv")
    msg = _err(p, cb)
    assert str(p) in msg and "item 'wb2' is missing from the data" in msg
    assert "did you mean 'wb_2'" in msg


def test_bad_likert_out_of_range(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    df.loc[6, "wb1"] = 7
    p = write_csv(df, tmp_path / "s.csv")
    msg = _err(p, cb)
    # file, CSV line (data row 7 -> file line 8), column, value, expectation
    assert f"{p}:8" in msg and "column 'wb1'" in msg
    assert "7 at data row 7 (file line 8)" in msg
    assert "expected an integer in 1..5 (likert item with 5 categories)" in msg
    assert "out_of_range='missing'" in msg


def test_bad_out_of_range_dataframe_names_row_and_index(cb: Codebook) -> None:
    df = make_frame()
    df.index = [f"r{i}" for i in range(40)]
    df.loc["r2", "st1"] = -1
    msg = _err(df, cb)
    assert "<DataFrame>" in msg and "-1 at row 3 (index label 'r2')" in msg
    assert "expected an integer in 0..3" in msg


def test_bad_text_in_numeric_item(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame().astype({"wb2": object})
    df.loc[11, "wb2"] = "geen idee"
    p = write_csv(df, tmp_path / "s.csv")
    msg = _err(p, cb)
    assert f"{p}:13" in msg and "text in numeric item 'wb2'" in msg
    assert "'geen idee' at data row 12 (file line 13)" in msg
    assert "declared missing code [-9]" in msg


def test_bad_decimal_comma_hint(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    p = write_csv(df, tmp_path / "s.csv", sep=";", decimal=",")
    msg = _err(p, cb, decimal=".")
    assert "text in numeric item 'income'" in msg and "pass decimal=','" in msg


def test_bad_duplicate_ids(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    df.loc[[4, 20], "respondent_id"] = 99
    p = write_csv(df, tmp_path / "s.csv")
    msg = _err(p, cb)
    assert "duplicate respondent ids in column 'respondent_id'" in msg
    assert "99 at data row 5 (file line 6), data row 21 (file line 22)" in msg
    assert "expected each id exactly once" in msg


@pytest.mark.parametrize("setup, expect", [
    (lambda d: d.__setitem__("weight", d["weight"].where(d.index != 2, -0.5)),
     "negative weight in column 'weight': -0.5 at row 3"),
    (lambda d: d.__setitem__("weight", 0.0), "all 40 weights in column 'weight' are zero"),
    (lambda d: d.__setitem__("weight", d["weight"].where(d.index != 4, np.nan)),
     "missing (NaN) weight in column 'weight' at 1 row(s): row 5"),
    (lambda d: d.__setitem__("weight", d["weight"].where(d.index != 4, np.inf)),
     "infinite weight in column 'weight'"),
])
def test_bad_weights(cb: Codebook, setup: object, expect: str) -> None:
    df = make_frame()
    setup(df)  # type: ignore[operator]
    msg = _err(df, cb)
    assert "<DataFrame>" in msg and expect in msg


def test_bad_text_weight(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame().astype({"weight": object})
    df.loc[0, "weight"] = "heavy"
    msg = _err(write_csv(df, tmp_path / "w.csv"), cb)
    assert "non-numeric weight in column 'weight': 'heavy' at data row 1" in msg


def test_bad_item_all_missing(cb: Codebook) -> None:
    df = make_frame()
    df["st1"] = np.nan
    msg = _err(df, cb)
    assert "every value of item 'st1' (construct 'stress') is missing (40 rows" in msg
    assert "expected at least one observed value" in msg
    df2 = make_frame()
    df2["wb2"] = -9  # all missing codes
    assert "every value of item 'wb2'" in _err(df2, cb)


def test_bad_empty_files(tmp_path: Path, cb: Codebook) -> None:
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    msg = _err(p, cb)
    assert f"{p}:1" in msg and "empty file" in msg
    p2 = tmp_path / "header_only.csv"
    p2.write_text(",".join(make_frame().columns) + "\n")
    assert "no data rows" in _err(p2, cb)
    p3 = tmp_path / "empty.parquet"
    p3.write_bytes(b"")
    assert "empty file" in _err(p3, cb)
    assert "no data rows" in _err(make_frame().iloc[:0], cb)


@pytest.mark.parametrize("sep, name", [("\t", "tabs"), ("|", "pipes")])
def test_bad_delimiter(tmp_path: Path, cb: Codebook, sep: str, name: str) -> None:
    p = write_csv(make_frame(), tmp_path / "s.csv", sep=sep)
    msg = _err(p, cb)
    assert f"{p}:1" in msg and "the delimiter does not parse" in msg
    assert "single column" in msg and f"header contains {name}" in msg
    # naming the separator explicitly works
    assert read_survey(p, cb, sep=sep).n == 40


def test_bad_ragged_csv(tmp_path: Path, cb: Codebook) -> None:
    p = write_csv(make_frame(), tmp_path / "s.csv")
    lines = p.read_text().splitlines()
    lines[3] += ",extra,fields"
    p.write_text("\n".join(lines) + "\n")
    msg = _err(p, cb)
    assert "cannot parse as CSV" in msg and "line 4" in msg


def test_bad_item_two_constructs_and_unknown_construct() -> None:
    import yaml

    d = yaml.safe_load(CODEBOOK_YAML)
    d["constructs"]["stress"]["items"].append({"column": "wb1", "scale": "likert", "categories": 5})
    cb = Codebook.model_validate(d)
    msg = _err(make_frame(), cb)
    assert "item column 'wb1' is mapped to 2 constructs (stress, wellbeing)" in msg
    d = yaml.safe_load(CODEBOOK_YAML)
    d["constructs"]["welbeing"] = d["constructs"].pop("wellbeing")
    msg = _err(make_frame(), Codebook.model_validate(d), graph="marvel")
    assert "construct 'welbeing' is not a node of graph" in msg and "did you mean 'wellbeing'" in msg


def test_bad_file_kinds(tmp_path: Path, cb: Codebook) -> None:
    assert "file not found" in _err(tmp_path / "nope.csv", cb)
    p = tmp_path / "s.xlsx"
    p.write_bytes(b"x")
    assert "unsupported file type '.xlsx'" in _err(p, cb)
    p = tmp_path / "junk.parquet"
    p.write_bytes(b"not parquet at all")
    assert "cannot read as Parquet" in _err(p, cb)
    p = tmp_path / "junk.sav"
    p.write_bytes(b"not spss at all")
    assert "cannot read as SPSS .sav" in _err(p, cb)
    p = tmp_path / "junk.csv.gz"
    p.write_bytes(b"not gzip")
    assert "not a valid gzip file" in _err(p, cb)
    assert "out_of_range must be" in _err(make_frame(), cb, out_of_range="drop")


def test_all_problems_reported_together(cb: Codebook) -> None:
    df = make_frame()
    df.loc[0, "wb1"] = 9
    df.loc[1, "weight"] = -1
    msg = _err(df, cb)
    assert msg.startswith("2 problems found") and "wb1" in msg and "negative weight" in msg


def test_value_labels_decode_text(tmp_path: Path) -> None:
    import yaml

    d = yaml.safe_load(CODEBOOK_YAML)
    d["constructs"]["single_parent_household"]["items"][0]["value_labels"] = {0: "nee", 1: "ja"}
    cb = Codebook.model_validate(d)
    df = make_frame().astype({"single_parent": object})
    want = df["single_parent"].to_numpy(dtype=float).copy()
    df["single_parent"] = np.where(want == 1, "Ja", "nee")
    sd = read_survey(write_csv(df, tmp_path / "s.csv"), cb)
    np.testing.assert_array_equal(sd.data["single_parent"].to_numpy(), want)
    assert {i.column: i for i in sd.report.items}["single_parent"].n_label_decoded == 40
    df.loc[2, "single_parent"] = "misschien"
    msg = _err(df, cb)
    assert "text in numeric item 'single_parent'" in msg and "'misschien' at row 3" in msg


def test_shipped_synthetic_survey_validates() -> None:
    """Integration: the shipped synthetic survey (written by veerkracht_bayes.datasets.synthetic) validates."""
    root = Path(__file__).resolve().parents[2] / "data" / "synthetic"
    data, cbp = root / "veerkracht_synthetic.csv.gz", root / "codebook_synthetic.yaml"
    if not (data.exists() and cbp.exists()):
        pytest.skip("shipped synthetic survey not present")
    sd = read_survey(data, cbp, graph="marvel")
    assert sd.codebook.synthetic is True and sd.report.synthetic is True
    assert sd.n >= 10_000 and sd.report.rows_excluded == 0
    assert sd.weights.sum() == pytest.approx(sd.n)
    for name in ["single_parent", "low_income", "youth", "welfare_recipient", "mental_health_problems"]:
        assert sd.subgroup_sizes().loc[name, "n"] > 0


def test_integer_group_codes_from_csv(tmp_path: Path, cb: Codebook) -> None:
    df = make_frame()
    df["wijk"] = np.where(df["wijk"] == "W01", 3630101, 3630202)
    sd = read_survey(write_csv(df, tmp_path / "s.csv"), cb)
    codes, levels = sd.group_codes("neighbourhood")
    assert levels == [3630101, 3630202] and all(isinstance(v, int) for v in levels)
    np.testing.assert_array_equal(np.array(levels)[codes], df["wijk"].to_numpy())


def test_subgroup_type_mismatch_is_reported(cb: Codebook) -> None:
    import yaml

    d = yaml.safe_load(CODEBOOK_YAML)
    d["subgroups"]["bad"] = {"label_en": "Bad", "where": "origin == 1"}
    msg = _err(make_frame(), Codebook.model_validate(d))
    assert "subgroup 'bad'" in msg and "holds text but is compared with the number 1" in msg


def test_numeric_fast_path_agrees_with_string_handling() -> None:
    """Text columns: entries that parse as numbers take a fast path; the rest (blanks, codes,
    labels, decimal commas, bad values) the full string handling. The outcome per entry must be
    what the full handling gives for that entry alone, and bad entries keep their positions."""
    from veerkracht_bayes.survey.reading import coerce_numeric

    raw = ["1", " 2 ", "3,5", "oops", "", "NA", "99", "Zeer eens", "-9", "4.0", None, "weet niet"]
    codes = [99, "-9", "NA", "weet niet"]
    labels = {5: "Zeer eens"}
    s = pd.Series(raw, dtype=object)
    got = coerce_numeric(s, ",", codes, labels)
    for i, v in enumerate(raw):
        one = coerce_numeric(pd.Series([v, "x y z"], dtype=object), ",", codes, labels)  # never all-numeric
        assert np.array_equal(got.values[i], one.values[0], equal_nan=True), (i, v)
        assert got.code_mask[i] == one.code_mask[0], (i, v)
    assert list(got.bad_pos) == [3]
    assert got.bad_vals == ["oops"]
    assert got.n_decoded == 1
    np.testing.assert_array_equal(got.values[[0, 1, 2, 7, 9]], [1.0, 2.0, 3.5, 5.0, 4.0])
    assert got.code_mask[[5, 6, 8, 11]].all()
