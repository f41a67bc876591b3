"""Bad survey inputs that used to get through: each is refused at its root with a located error.

Classes: weights whose sum overflows or whose normalised values underflow; ragged CSV rows and
repeated header names; nested (list) Parquet columns; text in a numeric column that a subgroup
condition compares with a number (the DATA is blamed, with file, row, column and value).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli import app
from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.reading import read_survey


def _load_helpers():  # the small survey of test_survey_data.py (one definition, reused here)
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_survey_cases", Path(__file__).with_name("test_survey_data.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


_H = _load_helpers()
CODEBOOK_YAML, make_codebook, make_frame, write_csv = (_H.CODEBOOK_YAML, _H.make_codebook,
                                                        _H.make_frame, _H.write_csv)


def _err(src: object, **kw: object) -> SurveyError:
    with pytest.raises(SurveyError) as ei:
        read_survey(src, make_codebook(), **kw)  # type: ignore[arg-type]
    return ei.value


# ------------------------------------------------------------------------- weights
def test_weights_whose_sum_overflows_are_refused(tmp_path: Path) -> None:
    df = make_frame()
    df.loc[[3, 7], "weight"] = 1e308
    p = write_csv(df, tmp_path / "w.csv")
    exc = _err(p)
    msg = str(exc)
    assert "too large" in msg and "'weight'" in msg and str(p) in msg
    assert "data row 4 (file line 5)" in msg  # the largest weight, located
    assert exc.problems[0].line == 5 and exc.problems[0].field == "weight"


def test_weights_whose_normalised_values_underflow_are_refused() -> None:
    df = make_frame()
    df.loc[0, "weight"] = 1e-200
    df.loc[1, "weight"] = 1e150
    msg = str(_err(df))
    assert "orders of magnitude" in msg and "row 1" in msg and "1e-200" in msg


def test_ordinary_extreme_but_safe_weights_still_read() -> None:
    df = make_frame()
    df.loc[0, "weight"] = 1e-6
    df.loc[1, "weight"] = 1e6
    sd = read_survey(df, make_codebook())
    assert np.all(np.isfinite(sd.weights)) and sd.weights.sum() == pytest.approx(sd.n)
    assert sd.weights[0] > 0


def test_validate_does_not_print_valid_for_overflowing_weights(tmp_path: Path) -> None:
    df = make_frame()
    df.loc[[3, 7], "weight"] = 1e308
    p = write_csv(df, tmp_path / "w.csv")
    cbp = tmp_path / "cb.yaml"
    cbp.write_text(CODEBOOK_YAML, encoding="utf-8")
    res = CliRunner().invoke(app, ["validate", "--survey", str(p), "--codebook", str(cbp)])
    assert res.exit_code == 2, res.output
    assert "VALID" not in res.stdout and "too large" in res.stderr


# ------------------------------------------------------------------------- CSV structure
def _csv_lines(tmp_path: Path) -> tuple[list[str], Path]:
    p = write_csv(make_frame(), tmp_path / "s.csv")
    return p.read_text(encoding="utf-8").splitlines(), p


def test_short_row_is_refused_with_its_line(tmp_path: Path) -> None:
    lines, p = _csv_lines(tmp_path)
    lines[5] = ",".join(lines[5].split(",")[:-2])  # file line 6 loses two fields
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    exc = _err(p)
    assert exc.problems[0].line == 6 and exc.problems[0].file == str(p)
    assert "fewer than the header's 11" in str(exc) and "'single_parent'" in str(exc)


def test_long_row_is_refused_with_its_line(tmp_path: Path) -> None:
    lines, p = _csv_lines(tmp_path)
    lines[9] += ",surplus"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    exc = _err(p)
    assert exc.problems[0].line == 10 and "more than the header's" in str(exc)
    assert "'surplus'" in str(exc)


def test_every_row_one_field_longer_is_not_read_as_an_index(tmp_path: Path) -> None:
    lines, p = _csv_lines(tmp_path)
    p.write_text("\n".join([lines[0]] + [ln + ",x" for ln in lines[1:]]) + "\n", encoding="utf-8")
    exc = _err(p)
    assert exc.problems[0].line == 2


def test_duplicate_header_name_is_refused(tmp_path: Path) -> None:
    lines, p = _csv_lines(tmp_path)
    header = lines[0].split(",")
    header[-1] = "wb1"  # 'unused' renamed to a name already used
    p.write_text("\n".join([",".join(header)] + lines[1:]) + "\n", encoding="utf-8")
    exc = _err(p)
    pr = exc.problems[0]
    assert pr.line == 1 and pr.field == "wb1" and "duplicate column name 'wb1'" in str(exc)
    assert "columns 6 and 11" in str(exc)


def test_duplicate_dataframe_columns_are_refused() -> None:
    df = make_frame()
    df.columns = [*df.columns[:-1], "age"]
    assert "duplicate column name 'age'" in str(_err(df))


def test_quoted_separator_and_blank_lines_are_fine(tmp_path: Path) -> None:
    df = make_frame()
    df["origin"] = df["origin"].astype(object)
    df.loc[0, "origin"] = "nl, rotterdam"
    p = write_csv(df, tmp_path / "q.csv")
    p.write_text(p.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    sd = read_survey(p, make_codebook())
    assert sd.n == len(df) and sd.data["origin"].iloc[0] == "nl, rotterdam"


# ------------------------------------------------------------------------- Parquet types
def test_parquet_list_typed_group_column_gives_a_located_error(tmp_path: Path) -> None:
    df = make_frame()
    df["wijk"] = [["W01", "W02"] if i == 2 else [f"W0{i % 3 + 1}"] for i in range(len(df))]
    p = tmp_path / "s.parquet"
    df.to_parquet(p, index=False)
    exc = _err(p)
    pr = exc.problems[0]
    assert pr.file == str(p) and pr.field == "wijk"
    assert "row 1" in str(exc) and "Parquet list or struct column" in str(exc)


def test_list_typed_item_column_in_a_dataframe_is_refused() -> None:
    df = make_frame()
    df["wb1"] = df["wb1"].astype(object)
    df.at[4, "wb1"] = [1, 2]
    exc = _err(df)
    assert exc.problems[0].field == "wb1" and "row 5" in str(exc)


# ------------------------------------------------------------------------- who is blamed
def test_text_in_a_numeric_subgroup_column_blames_the_data(tmp_path: Path) -> None:
    df = make_frame()
    df["age"] = df["age"].map(lambda v: f"{v:g}").astype(object)
    df.loc[6, "age"] = "17 jaar"
    p = write_csv(df, tmp_path / "ages.csv")
    exc = _err(p)
    pr = exc.problems[0]
    msg = str(exc)
    assert pr.file == str(p) and pr.line == 8 and pr.field == "age" and pr.value == "17 jaar"
    assert "'17 jaar' at data row 7 (file line 8)" in msg and "subgroup 'youth'" in msg


def test_a_genuine_text_column_still_blames_the_condition() -> None:
    import yaml

    from veerkracht_bayes.survey.codebook import Codebook

    data = yaml.safe_load(CODEBOOK_YAML)
    data["subgroups"]["bad"] = {"label_en": "Bad", "where": "origin >= 3"}
    with pytest.raises(SurveyError, match="holds text but is compared with the number"):
        read_survey(make_frame(), Codebook.model_validate(data))


def test_validate_json_is_pure_json(tmp_path: Path) -> None:
    p = write_csv(make_frame(), tmp_path / "ok.csv")
    cbp = tmp_path / "cb.yaml"
    cbp.write_text(CODEBOOK_YAML, encoding="utf-8")
    res = CliRunner().invoke(app, ["validate", "--survey", str(p), "--codebook", str(cbp), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["valid"] is True


# ------------------------------------------------------------------------- codebook numbers
@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf"])
def test_codebook_bounds_must_be_finite(tmp_path: Path, bad: str) -> None:
    from veerkracht_bayes.survey.codebook import load_codebook

    text = CODEBOOK_YAML.replace("valid_min: 0, valid_max: 3", f"valid_min: {bad}, valid_max: 3")
    p = tmp_path / "cb.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SurveyError) as ei:
        load_codebook(p)
    pr = ei.value.problems[0]
    assert pr.file == str(p) and "valid_min" in str(pr.location) and "finite" in str(ei.value)
    assert pr.line == next(i for i, ln in enumerate(text.splitlines(), 1) if "st1" in ln)
