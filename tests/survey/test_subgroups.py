"""Tests of the safe subgroup condition language."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.subgroups import parse_condition, tokenize


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [10, 15, np.nan, 30, 25],
        "income": [1, 2, 3, np.nan, 1],
        "origin": ["nl", "syria", None, "nl", "eritrea"],
    })


@pytest.mark.parametrize("text, expected", [
    ("age >= 12 and age <= 25", [False, True, False, False, True]),
    ("age == 30", [False, False, False, True, False]),
    ("age != 30", [True, True, False, False, True]),
    ("age < 15", [True, False, False, False, False]),
    ("age > 15", [False, False, False, True, True]),
    ("income in [1, 3]", [True, False, True, False, True]),
    ("income not in [1, 3]", [False, True, False, False, False]),
    ("origin in ['syria', \"eritrea\"]", [False, True, False, False, True]),
    ("origin == 'nl'", [True, False, False, True, False]),
    ("origin != 'nl'", [False, True, False, False, True]),
    ("not (age < 12)", [False, True, False, True, True]),
    ("age < 12 or origin == 'syria'", [True, True, False, False, False]),
    ("(age < 12 or age > 26) and income == 1", [True, False, False, False, False]),
    ("NOT age < 12 AND income <= 1.5", [False, False, False, False, True]),
    ("age >= 1.2e1", [False, True, False, True, True]),
])
def test_conditions_evaluate(df: pd.DataFrame, text: str, expected: list[bool]) -> None:
    assert parse_condition(text, "g").evaluate(df).mask.tolist() == expected


def test_three_valued_logic_reports_undetermined(df: pd.DataFrame) -> None:
    # row 3 (age NaN): "age < 12 or income == 3" is True through income despite missing age
    r = parse_condition("age < 12 or income == 3", "g").evaluate(df)
    assert r.mask.tolist() == [True, False, True, False, False]
    # row 4: age 30 known False, income NaN -> "age < 12 or income == 3" unknown
    assert r.n_undetermined == 1
    # "and" with a known False is determined even if the other side is missing
    r2 = parse_condition("age < 12 and income == 3", "g").evaluate(df)
    assert r2.n_undetermined == 1  # only row 3 (age missing, income 3 True) is unknown
    # not of unknown stays unknown and is False in the mask
    r3 = parse_condition("not age < 12", "g").evaluate(df)
    assert r3.mask[2] == np.False_ and r3.n_undetermined == 1


def test_columns_collected() -> None:
    c = parse_condition("(a == 1 or b in [1,2]) and not c != 'x'")
    assert c.columns == {"a", "b", "c"}


def test_backquoted_column(df: pd.DataFrame) -> None:
    d = df.rename(columns={"age": "leeftijd (jaren)"})
    assert parse_condition("`leeftijd (jaren)` > 20").evaluate(d).n == 2


@pytest.mark.parametrize("text, pos, expect", [
    ("age = 3", 5, "expected '=='"),
    ("age >= ", 8, "expected a number or a quoted string, got end of condition"),
    ("(age > 3", 9, "expected ')'"),
    ("age 3", 5, "expected a comparison operator"),
    ("age >= 3 and", 13, "expected a column name"),
    ("age in 3", 8, "expected '['"),
    ("age in [1 2]", 11, "expected ',' or ']'"),
    ("age > 'x", 7, "unterminated string"),
    ("age > 3 $", 9, "unexpected character '$'"),
    ("age > 3 age < 2", 9, "expected 'and', 'or' or the end"),
    ("age not 3", 9, "expected 'in' after 'not'"),
    ("", 1, "expected a condition"),
])
def test_syntax_errors_name_subgroup_position_expected(text: str, pos: int, expect: str) -> None:
    with pytest.raises(SurveyError) as ei:
        parse_condition(text, "youth")
    msg = str(ei.value)
    assert "subgroup 'youth'" in msg
    assert f"at position {pos}" in msg
    assert expect in msg
    assert "subgroups.youth.where" in msg


def test_unknown_column_did_you_mean(df: pd.DataFrame) -> None:
    with pytest.raises(SurveyError, match=r"unknown column 'agee'.*did you mean 'age'"):
        parse_condition("agee > 3", "youth").evaluate(df)


@pytest.mark.parametrize("text, expect", [
    ("age == 'x'", "is numeric but is compared with the text 'x'"),
    ("origin == 1", "holds text but is compared with the number 1"),
    ("origin < 'b'", "operator '<' needs a number"),
    ("age in ['a']", "is numeric but the list holds text"),
    ("origin in [1]", "holds text but the list holds numbers"),
])
def test_type_errors(df: pd.DataFrame, text: str, expect: str) -> None:
    with pytest.raises(SurveyError, match=expect):
        parse_condition(text, "g").evaluate(df)


def test_never_evaluates_python() -> None:
    # things eval would run are syntax errors here
    for text in ["__import__('os').system('true')", "age.__class__ == 1 or 1", "lambda: 1"]:
        with pytest.raises(SurveyError):
            parse_condition(text, "evil").evaluate(pd.DataFrame({"age": [1]}))


def test_deep_nesting_refused() -> None:
    with pytest.raises(SurveyError, match="at most 100 nested parentheses"):
        parse_condition("(" * 150 + "a == 1" + ")" * 150, "deep")


def test_tokenize_positions() -> None:
    toks = tokenize("a<=1 and b in ['x']")
    assert [(t.kind, t.pos) for t in toks] == [
        ("name", 1), ("op", 2), ("number", 4), ("and", 6), ("name", 10), ("in", 12),
        ("lbrack", 15), ("string", 16), ("rbrack", 19), ("end", 20)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=1, max_size=30),
       st.integers(-5, 5), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
def test_comparison_matches_numpy(vals: list[int | None], v: int, op: str) -> None:
    x = np.array([np.nan if a is None else a for a in vals], dtype=float)
    got = parse_condition(f"x {op} {v}").evaluate(pd.DataFrame({"x": x}))
    ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
           ">": np.greater, ">=": np.greater_equal}
    with np.errstate(invalid="ignore"):
        want = ops[op](x, v) & ~np.isnan(x)
    assert got.mask.tolist() == want.tolist()
    assert got.n_undetermined == int(np.isnan(x).sum())
    # De Morgan on the determined rows: not(x op v) == complement among observed
    neg = parse_condition(f"not x {op} {v}").evaluate(pd.DataFrame({"x": x}))
    assert (neg.mask | got.mask).tolist() == (~np.isnan(x)).tolist()
