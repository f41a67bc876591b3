"""lavaan model syntax: parser, writer, round trips and graph conversion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.errors import SpecError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan, graph_from_lavaan_file
from veerkracht_bayes.graph.lavaan_syntax import (
    LavaanModel,
    LavaanRow,
    edge_label,
    graph_to_lavaan,
    parse_lavaan,
    read_lavaan,
    to_lavaan,
)

# lavaan's classic examples, written as in the lavaan tutorial (lavaan.ugent.be/tutorial)
POLITICAL_DEMOCRACY = """
  # measurement model
    ind60 =~ x1 + x2 + x3
    dem60 =~ y1 + y2 + y3 + y4
    dem65 =~ y5 + y6 + y7 + y8
  # regressions
    dem60 ~ ind60
    dem65 ~ ind60 + dem60
  # residual correlations
    y1 ~~ y5
    y2 ~~ y4 + y6
    y3 ~~ y7
    y4 ~~ y8
    y6 ~~ y8
"""

# the same model with equality constraints on loadings, as in the lavaan tutorial
POLITICAL_DEMOCRACY_EQUAL = """
    ind60 =~ x1 + x2 + x3
    dem60 =~ y1 + a*y2 + b*y3 + c*y4
    dem65 =~ y5 + a*y6 + b*y7 + c*y8
    dem60 ~ ind60
    dem65 ~ ind60 + dem60
    y1 ~~ y5
    y2 ~~ y4 + y6
    y3 ~~ y7
    y4 ~~ y8
    y6 ~~ y8
"""

HOLZINGER_SWINEFORD = """
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
"""


# ---------------------------------------------------------------------------- parser
def test_political_democracy() -> None:
    m = parse_lavaan(POLITICAL_DEMOCRACY)
    assert len(m.measurement()) == 11 and len(m.regressions()) == 3
    assert len(m.covariances()) == 6 and len(m) == 20
    assert m.latent_variables() == ["ind60", "dem60", "dem65"]
    assert m.observed_variables() == [f"x{i}" for i in (1, 2, 3)] + [f"y{i}" for i in range(1, 9)]
    assert m.indicators()["dem65"] == ["y5", "y6", "y7", "y8"]
    assert m.endogenous() == ["dem60", "dem65"]
    assert m.exogenous_observed() == []
    assert [r.key for r in m.regressions()] == [("dem60", "~", "ind60"), ("dem65", "~", "ind60"),
                                                ("dem65", "~", "dem60")]
    assert {(r.lhs, r.rhs) for r in m.covariances()} == {
        ("y1", "y5"), ("y2", "y4"), ("y2", "y6"), ("y3", "y7"), ("y4", "y8"), ("y6", "y8")}
    # line numbers point at the source statements
    assert {r.line for r in m.covariances() if r.lhs == "y2"} == {11}
    assert m.fixed_values() == {}


def test_political_democracy_labels() -> None:
    m = parse_lavaan(POLITICAL_DEMOCRACY_EQUAL)
    labels = m.labels()
    assert sorted(labels) == ["a", "b", "c"]
    assert [r.rhs for r in labels["a"]] == ["y2", "y6"]


def test_holzinger_swineford() -> None:
    m = parse_lavaan(HOLZINGER_SWINEFORD)
    assert m.indicators() == {"visual": ["x1", "x2", "x3"], "textual": ["x4", "x5", "x6"],
                              "speed": ["x7", "x8", "x9"]}
    assert m.observed_variables() == [f"x{i}" for i in range(1, 10)]
    assert m.regressions() == [] and len(m) == 9


def test_modifiers_and_operators() -> None:
    text = """
    f =~ NA*x1 + 1*x2 + start(0.3)*x3 + label("lam 4")*x4 + 0.5?x5
    y ~ 1 + -0.25*x1 + a*f + start(1)*b*z   ! lavaan also allows '!' comments
    y ~~ 0.5*y; z ~ 0*1
    ab := a*b
    a > 0
    b < -0.1
    a == 2 * b
    """
    m = parse_lavaan(text)
    rows = {(r.lhs, r.op, r.rhs): r for r in m}
    assert rows[("f", "=~", "x1")].freed and rows[("f", "=~", "x1")].fixed is None
    assert rows[("f", "=~", "x2")].fixed == 1.0
    assert rows[("f", "=~", "x3")].start == 0.3
    assert rows[("f", "=~", "x4")].label == "lam 4"
    assert rows[("f", "=~", "x5")].start == 0.5 and rows[("f", "=~", "x5")].fixed is None
    assert rows[("y", "~1", "")].fixed is None
    assert rows[("y", "~", "x1")].fixed == -0.25
    assert rows[("y", "~", "f")].label == "a"
    assert rows[("y", "~", "z")].label == "b" and rows[("y", "~", "z")].start == 1.0
    assert rows[("y", "~~", "y")].fixed == 0.5
    assert rows[("z", "~1", "")].fixed == 0.0
    assert rows[("ab", ":=", "a * b")].line == 5
    assert [(r.lhs, r.op, r.rhs) for r in m.constraints()] == [
        ("a", ">", "0"), ("b", "<", "-0.1"), ("a", "==", "2 * b")]
    assert m.fixed_values()[("f", "=~", "x2")] == 1.0


def test_multiline_statements_and_multiple_lhs() -> None:
    text = "f =~ x1 +\n   x2\n   + x3\ny1 + y2 ~\n  f\nz ~ start(\n0.5)*f\n"
    m = parse_lavaan(text)
    assert m.indicators() == {"f": ["x1", "x2", "x3"]}
    assert [(r.lhs, r.rhs, r.line) for r in m.regressions()] == [
        ("y1", "f", 4), ("y2", "f", 4), ("z", "f", 6)]
    assert m.regressions()[2].start == 0.5


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        ("f =~ x1\ny = x", 2, 3, "unexpected character '=' (did you mean '=~' or '=='?)"),
        ("y ~ x +", 1, 8, "statement ends with '+'; expected another term"),
        ("y ~ x z", 1, 7, "unexpected 'z'; expected '*'"),
        ("f =~ x1 + 2*", 1, 13, "nothing after '*'; expected a variable name"),
        ("y ~ start(a)*x", 1, 5, "start(a) needs one number"),
        ("y ~ strat(1)*x", 1, 5, "unknown modifier function 'strat' (did you mean 'start'?)"),
        ("y x", 1, 4, "incomplete statement; expected one of the operators"),
        ("y ~ x ~ z", 1, 7, "a second operator '~'"),
        ("f <~ x1 + x2", 1, 3, "formative indicators ('<~') are not supported"),
        ("group: 1\ny ~ x", 1, 6, "blocks ('group:', 'level:') are not supported"),
        ("y ~ a*x\nab := a*bb", 2, 9, "unknown parameter label 'bb'"),
        ("y ~ 1*2*x", 1, 7, "a second fixed value for 'x'"),
        ('y ~ "a"*x', 1, 5, 'a bare string "a"; expected label("a")*variable'),
        ("y ~ label(\"a\"*x", 1, 10, "unclosed '('"),
        ("f =~ 1", 1, 6, "intercepts '1' only go with '~'"),
        ("y ~ c(a, b)*x", 1, 5, "multi-group modifiers c(...) are not supported"),
        ("y ~ NA*1*x", 1, 8, "both NA (free) and a fixed value"),
        ("~ x", 1, 1, "nothing before '~'"),
        ("y ~ x\n\n# c\ny ~ x", 4, None, "duplicate model element 'y ~ x' (first given on line 1)"),
        ("x ~~ y\ny ~~ x", 2, None, "duplicate model element 'y ~~ x'"),
        ("y ~ y", 1, None, "relates a variable to itself"),
    ],
)
def test_parse_errors_are_located(text: str, line: int, column: int | None, needle: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_lavaan(text, path="model.lav")
    msg = str(exc.value)
    assert msg.startswith(f"model.lav:{line}: lavaan syntax")
    if column is not None:
        assert f"column {column}:" in msg
    assert needle in msg
    assert exc.value.problems[0].line == line


# ---------------------------------------------------------------------------- writer
@pytest.mark.parametrize("text", [POLITICAL_DEMOCRACY, POLITICAL_DEMOCRACY_EQUAL,
                                  HOLZINGER_SWINEFORD])
def test_parse_write_parse_identity_classics(text: str) -> None:
    m = parse_lavaan(text)
    again = parse_lavaan(to_lavaan(m))
    assert again.rows == m.rows
    assert to_lavaan(again) == to_lavaan(m)


_NAMES = ["x1", "y", "eta_2", "f.a", "visual"]
_LABELS = ["a", "b1", "c", "lab.x", "NA", "my label", "start"]
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def _rows(draw: st.DrawFn) -> list[LavaanRow]:
    rows: list[LavaanRow] = []
    keys: set[tuple[str, str, str]] = set()
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["=~", "~", "~~", "~1"]))
        lhs = draw(st.sampled_from(_NAMES))
        rhs = "" if op == "~1" else draw(st.sampled_from(_NAMES))
        if op in ("=~", "~") and lhs == rhs:
            continue
        key = (min(lhs, rhs), op, max(lhs, rhs)) if op == "~~" else (lhs, op, rhs)
        if key in keys:
            continue
        keys.add(key)
        freed = draw(st.booleans())
        fixed = None if freed else draw(st.none() | _finite)
        rows.append(LavaanRow(lhs, op, rhs, fixed=fixed, label=draw(st.none() | st.sampled_from(
            _LABELS)), start=draw(st.none() | _finite), freed=freed))
    labels = [r.label for r in rows if r.label is not None]
    if labels:
        lab = draw(st.sampled_from(labels))
        rows.append(LavaanRow("d1", ":=", f"{lab} * 2" if " " not in lab else "3"))
        if " " not in lab and lab not in ("NA",):
            rows.append(LavaanRow(lab, draw(st.sampled_from(["<", ">", "=="])), "-0.5"))
    return rows


@settings(max_examples=150, deadline=None)
@given(_rows())
def test_parse_write_parse_identity_property(rows: list[LavaanRow]) -> None:
    text = to_lavaan(rows)
    parsed = parse_lavaan(text)
    assert list(parsed.rows) == rows, text
    for r in parsed:
        if r.fixed is not None:
            assert math.isfinite(r.fixed)


def test_written_rows_get_new_line_numbers() -> None:
    m = parse_lavaan("\n\nf =~ x1 + x2\n")
    assert [r.line for r in m] == [3, 3]
    assert [r.line for r in parse_lavaan(to_lavaan(m))] == [1, 1]


# ---------------------------------------------------------------------------- graphs
def test_marvel_to_lavaan_to_graph_keeps_edges_signs_measurement(marvel) -> None:
    measurement = {"stress": ["pss1", "pss2", "pss3"], "wellbeing": ["who1", "who2"]}
    g = load_graph(marvel.spec.model_copy(update={"measurement": measurement}))
    text = graph_to_lavaan(g)
    back = graph_from_lavaan(text, name="marvel_back")
    assert {(e.source, e.target, e.sign) for e in back.edges} == {
        (e.source, e.target, e.sign) for e in g.edges}
    assert len(back.edges) == len(g.edges)
    assert not any(e.inferred for e in back.edges)
    assert back.spec.measurement == measurement
    assert set(back.nodes) == set(g.nodes)
    assert {c.nodes for c in back.simple_cycles()} == {c.nodes for c in g.simple_cycles()}
    # roles: exogenous exactly when a node has no parents
    for n in back.spec.nodes:
        assert (n.role == "exogenous") == (g.parents(n.id) == []), n.id
        assert n.resource == "individual"
    # the written syntax is valid lavaan with one sign constraint per edge
    m = parse_lavaan(text)
    assert len(m.constraints()) == len(g.edges)
    assert len(m.regressions()) == len(g.edges)
    assert f"{edge_label('stress', 'wellbeing')} < 0" in text
    row = next(r for r in m.regressions() if r.key == ("wellbeing", "~", "stress"))
    assert row.label == "b_stress__wellbeing" and row.fixed is None


def test_graph_to_lavaan_keeps_isolated_nodes(marvel) -> None:
    sub = marvel.subgraph(["stress", "wellbeing", "meeting_places"])
    back = graph_from_lavaan(graph_to_lavaan(sub))
    assert set(back.nodes) == {"stress", "wellbeing", "meeting_places"}
    assert [(e.key, e.sign) for e in back.edges] == [("stress->wellbeing", "-")]


def test_political_democracy_as_graph() -> None:
    g = graph_from_lavaan(POLITICAL_DEMOCRACY, name="pd")
    assert g.name == "pd"
    assert g.nodes == ["ind60", "dem60", "dem65"]
    assert {e.key for e in g.edges} == {"ind60->dem60", "ind60->dem65", "dem60->dem65"}
    assert g.spec.measurement["ind60"] == ["x1", "x2", "x3"]
    assert g.node("ind60").role == "exogenous" and g.node("dem65").role == "construct"
    for e in g.edges:
        assert e.sign == "+" and e.inferred
        assert "sign not given" in e.evidence


def test_holzinger_swineford_as_graph() -> None:
    g = graph_from_lavaan(HOLZINGER_SWINEFORD)
    assert g.nodes == ["visual", "textual", "speed"] and g.edges == []
    assert all(g.node(n).role == "exogenous" for n in g.nodes)


def test_signs_from_constraints_and_fixed_values() -> None:
    text = """
    y ~ a*x1 + b*x2 + c*x3 + -0.4*x4 + d*x5 + x6
    a < 0
    0 < b
    c > 0.2
    d < 0.5
    """
    g = graph_from_lavaan(text)
    signs = {e.source: (e.sign, e.inferred) for e in g.edges}
    assert signs == {"x1": ("-", False), "x2": ("+", False), "x3": ("+", False),
                     "x4": ("-", False), "x5": ("+", True), "x6": ("+", True)}
    assert "constraint 'a < 0' (line 3)" in g.edge("x1", "y").evidence


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("y ~ a*x\na < 0\na > 0", 3, "contradictory sign constraints on 'a'"),
        ("y ~ 0*x", 1, "fixed at 0"),
        ("y ~ a*-0.3*x\na > 0", 1, "fixed at -0.3 but constrained 'a > 0'"),
        ("y ~ x\n_z ~ y", 2, "'_z' is not a valid node id"),
        ("d := 2", 1, "no structural part"),
    ],
)
def test_graph_from_lavaan_errors(text: str, line: int, needle: str) -> None:
    with pytest.raises(SpecError) as exc:
        graph_from_lavaan(text, path="m.lav")
    assert needle in str(exc.value)
    assert exc.value.problems[0].line == line
    assert exc.value.problems[0].file == "m.lav"


def test_lavaan_file_through_load_graph(tmp_path: Path) -> None:
    path = tmp_path / "pd.lav"
    path.write_text(POLITICAL_DEMOCRACY, encoding="utf-8")
    g = load_graph(path)
    assert g.name == "pd" and g.path == path
    assert len(graph_from_lavaan_file(path).edges) == 3
    assert isinstance(read_lavaan(path), LavaanModel)
    bad = tmp_path / "bad.lavaan"
    bad.write_bytes("y ~ x # caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not valid UTF-8"):
        load_graph(bad)
    broken = tmp_path / "broken.txt"
    broken.write_text("y ~ x\nz ~ \n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.txt:2: lavaan syntax.*nothing after '~'"):
        load_graph(broken)
