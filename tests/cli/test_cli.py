"""The ``veerkracht-bayes`` command line: graph info/loops/draw and validate."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veerkracht_bayes.graph import drawing
from veerkracht_bayes.cli.main import EXIT_INPUT_ERROR, app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """The CLI configures the 'veerkracht_bayes' logger; undo it so other tests are unaffected."""
    log = logging.getLogger("veerkracht_bayes")
    saved = (log.level, list(log.handlers), log.propagate)
    yield
    log.setLevel(saved[0])
    log.handlers[:] = saved[1]
    log.propagate = saved[2]

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
    role: construct
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


def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln)


def _nth_line(text: str, needle: str, n: int) -> int:
    return [i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln][n - 1]


def _invoke(*args: str):
    return runner.invoke(app, list(args))


# ---------------------------------------------------------------------------- good input
def test_named_loops_json_marvel(marvel) -> None:
    res = _invoke("graph", "loops", "--named", "--json", "--graph", "marvel")
    assert res.exit_code == 0, res.stderr
    loops = json.loads(res.stdout)
    assert len(loops) == 6
    assert [lp["id"] for lp in loops] == [lp.id for lp in marvel.loops]
    for lp in loops:
        assert lp["found"] is True and lp["polarity"] == "R"
        assert {"id", "nodes", "polarity", "found"} <= set(lp)
        assert lp["nodes"] == next(x.nodes for x in marvel.loops if x.id == lp["id"])


def test_all_cycles_json(marvel) -> None:
    res = _invoke("graph", "loops", "--json", "--graph", "marvel")
    assert res.exit_code == 0, res.stderr
    cycles = json.loads(res.stdout)
    expected = marvel.simple_cycles()
    assert [c["id"] for c in cycles] == [f"C{i}" for i in range(1, len(expected) + 1)]
    assert [tuple(c["nodes"]) for c in cycles] == [c.nodes for c in expected]
    assert [c["polarity"] for c in cycles] == [c.polarity for c in expected]
    assert [c["length"] for c in cycles] == [c.length for c in expected]
    named = sorted(x for c in cycles for x in c["named"])
    assert named == sorted(lp.id for lp in marvel.loops)


def test_graph_info_reports_simple_cycle_count(marvel) -> None:
    res = _invoke("graph", "info", "--json", "--graph", "marvel")
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["n_simple_cycles"] == len(marvel.simple_cycles())
    assert info["n_nodes"] == len(marvel.nodes) and info["n_edges"] == len(marvel.edges)
    assert len(info["nodes"]) == info["n_nodes"] and len(info["edges"]) == info["n_edges"]
    assert [lp["found"] for lp in info["loops"]] == [True] * 6
    table = _invoke("graph", "info")
    assert table.exit_code == 0
    assert re.search(rf"simple cycles\s+│\s+{info['n_simple_cycles']}\s", table.stdout)


def test_tables_without_json() -> None:
    res = _invoke("graph", "loops", "--named")
    assert res.exit_code == 0 and "L6" in res.stdout
    res = _invoke("graph", "loops")
    assert res.exit_code == 0 and "C1" in res.stdout


def test_validate_valid_files(tmp_path: Path) -> None:
    res = _invoke("validate", "--graph", "marvel")
    assert res.exit_code == 0, res.stderr
    assert "valid" in res.stdout and "6 of 6" in res.stdout
    f = tmp_path / "tiny.yaml"
    f.write_text(BASE, encoding="utf-8")
    res = _invoke("validate", "--graph", str(f))
    assert res.exit_code == 0 and "3 nodes, 3 edges" in res.stdout
    lav = tmp_path / "m.lav"
    lav.write_text("y ~ b*x\nb < 0\n", encoding="utf-8")
    res = _invoke("validate", "--graph", str(lav))
    assert res.exit_code == 0 and "2 nodes, 1 edges" in res.stdout


def test_validate_nothing_given() -> None:
    res = _invoke("validate")
    assert res.exit_code == EXIT_INPUT_ERROR and "nothing to validate" in res.stderr


def test_draw_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drawing, "dot_available", lambda: False)
    drawing.reset_dot_warning()
    out = tmp_path / "m.svg"
    res = _invoke("graph", "draw", "--out", str(out), "--highlight", "L1,L3")
    assert res.exit_code == 0, res.stderr
    assert "<svg" in out.read_text(encoding="utf-8") and str(out) in res.stdout
    assert "apt-get install graphviz" in res.stderr  # the warning goes to stderr via logging
    quiet = runner.invoke(app, ["--quiet", "graph", "draw", "--out", str(tmp_path / "q.png")])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_draw_errors(tmp_path: Path) -> None:
    res = _invoke("graph", "draw", "--out", str(tmp_path / "m.svg"), "--highlight", "L1,L7")
    assert res.exit_code == EXIT_INPUT_ERROR and "unknown loop 'L7'" in res.stderr
    res = _invoke("graph", "draw", "--out", str(tmp_path / "m.gif"))
    assert res.exit_code == EXIT_INPUT_ERROR and "unsupported drawing format 'gif'" in res.stderr
    res = _invoke("--quiet", "graph", "draw", "--out", str(tmp_path / "no" / "dir" / "m.svg"))
    assert res.exit_code == EXIT_INPUT_ERROR and "cannot write the drawing" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


# ---------------------------------------------------------------------------- bad input
def _edge_dup(text: str) -> str:
    return text.replace("loops:", "  - source: stress\n    target: wellbeing\n    sign: \"-\"\n"
                        "    evidence: again\nloops:")


# (case, mutate, needle or function giving the expected line, strings the message must contain)
BAD_CASES = [
    ("unknown_node", lambda t: t.replace("    target: income\n", "    target: incme\n"),
     "target: incme",
     ["edges[1].target", "'incme'", "not a node", "expected one of", "did you mean 'income'"]),
    ("duplicate_node", lambda t: t.replace("  - id: income", "  - id: wellbeing"),
     lambda t: _nth_line(t, "- id: wellbeing", 2),
     ["nodes[2].id", "duplicate node id 'wellbeing'", "expected each node id once"]),
    ("duplicate_edge", _edge_dup, lambda t: _nth_line(t, "- source: stress", 2),
     ["edges[3]", "duplicate edge", "source 'stress', target 'wellbeing'", "edges[0]",
      "expected each"]),
    ("self_loop", lambda t: t.replace("    target: income\n", "    target: wellbeing\n"),
     lambda t: _nth_line(t, "target: wellbeing", 2),
     ["edges[1].target", "self-loop", "'wellbeing'", "expected an edge between two different"]),
    ("bad_sign", lambda t: t.replace('sign: "+"', 'sign: "plus"'), 'sign: "plus"',
     ["edges[1].sign", "field 'sign'", "'plus'", "expected '+' or '-'"]),
    ("bad_resource", lambda t: t.replace("resource: societal", "resource: societl"),
     "resource: societl",
     ["nodes[2].resource", "field 'resource'", "'societl'",
      "expected 'individual', 'societal' or 'organisational'", "did you mean 'societal'"]),
    ("bad_role", lambda t: t.replace("role: construct", "role: exogenus", 1), "role: exogenus",
     ["nodes[0].role", "field 'role'", "'exogenus'", "expected 'construct', 'exogenous' or "
      "'policy_lever'", "did you mean 'exogenous'"]),
    ("loop_not_cycle", lambda t: t.replace("nodes: [stress, wellbeing, income]",
                                           "nodes: [stress, income, wellbeing]"),
     "nodes: [stress, income",
     ["loops[0].nodes", "loop 'L1'", "not a directed cycle", "missing edge(s) stress->income", "expected an edge from each node"]),
    ("loop_wrong_polarity", lambda t: t.replace("polarity: R", "polarity: B"), "polarity: B",
     ["loops[0].polarity", "loop 'L1' is stated 'B'", "signs give 'R'", "expected R for an even"]),
    ("missing_field", lambda t: t.replace("    label_nl: Welbevinden\n", ""), "- id: wellbeing",
     ["nodes[1].label_nl", "missing required field 'label_nl'", "expected a 'label_nl' entry"]),
    ("wrong_spec_version", lambda t: t.replace("spec_version: 1", "spec_version: 7"),
     "spec_version", ["spec_version", "unsupported spec_version 7", "expected 1"]),
    ("malformed_yaml", lambda t: t.replace("nodes: [stress, wellbeing, income]",
                                           "nodes: [stress, wellbeing, income"),
     "polarity: R", ["malformed YAML", "expected ',' or ']'", "expected valid YAML syntax"]),
]


@pytest.mark.parametrize(("case", "mutate", "needle", "expected"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_validate_bad_graph(tmp_path: Path, case: str, mutate, needle,
                            expected: list[str]) -> None:
    text = mutate(BASE)
    assert text != BASE
    path = tmp_path / f"{case}.yaml"
    path.write_text(text, encoding="utf-8")
    res = _invoke("validate", "--graph", str(path))
    assert res.exit_code == EXIT_INPUT_ERROR
    err = res.stderr
    assert "Traceback" not in err + res.stdout
    line = needle(text) if callable(needle) else _line(text, needle)
    assert f"{path}:{line}" in err, err
    for s in expected:
        assert s in err, (s, err)


def test_validate_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("Welbevinden", "W\u00e9lbevinden").encode("latin-1"))
    res = _invoke("validate", "--graph", str(path))
    assert res.exit_code == EXIT_INPUT_ERROR
    line = _line(BASE, "Welbevinden")
    assert f"{path}:{line}" in res.stderr
    assert "not valid UTF-8: byte 0xe9" in res.stderr and "expected a UTF-8" in res.stderr


def test_validate_alias_bomb_refused_fast(tmp_path: Path) -> None:
    # billion laughs: 9 levels, each 10 aliases of the level below -> 10**9 leaves
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, 10):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t0 = time.perf_counter()
    res = _invoke("validate", "--graph", str(path))
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, elapsed
    assert res.exit_code == EXIT_INPUT_ERROR
    assert f"{path}:1" in res.stderr and "alias" in res.stderr and "refused" in res.stderr


def test_validate_missing_file(tmp_path: Path) -> None:
    res = _invoke("validate", "--graph", str(tmp_path / "nope.yaml"))
    assert res.exit_code == EXIT_INPUT_ERROR and "file not found" in res.stderr


def test_validate_bad_lavaan(tmp_path: Path) -> None:
    path = tmp_path / "m.lavaan"
    path.write_text("y ~ x\nz = y\n", encoding="utf-8")
    res = _invoke("validate", "--graph", str(path))
    assert res.exit_code == EXIT_INPUT_ERROR
    assert f"{path}:2: lavaan syntax, column 3" in res.stderr and "'=~' or '=='" in res.stderr


def test_graph_commands_report_bad_graph(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(BASE.replace("polarity: R", "polarity: B"), encoding="utf-8")
    for cmd in (["graph", "info"], ["graph", "loops", "--named", "--json"]):
        res = _invoke(*cmd, "--graph", str(path))
        assert res.exit_code == EXIT_INPUT_ERROR and "stated 'B'" in res.stderr
        assert res.stdout == ""


def test_verbose_and_quiet_control_diagnostics(tmp_path: Path) -> None:
    lav = tmp_path / "pd.lav"
    lav.write_text("f =~ x1 + x2\ny ~ f\nx1 ~~ x2\n", encoding="utf-8")
    loud = _invoke("--verbose", "validate", "--graph", str(lav))
    assert loud.exit_code == 0
    assert "DEBUG: loading graph" in loud.stderr
    assert "left out" in loud.stderr and "x1 ~~ x2" in loud.stderr  # nothing dropped silently
    assert "valid" in loud.stdout and "DEBUG" not in loud.stdout
    normal = _invoke("validate", "--graph", str(lav))
    assert normal.exit_code == 0 and normal.stderr == ""


def test_policies_json_prints_only_json(tmp_path: Path) -> None:
    res = runner.invoke(app, ["policies", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # nothing but JSON on stdout
    assert [p["id"] for p in data] == [f"P{i:02d}" for i in range(1, 11)]
    for p in data:
        assert {"id", "advice", "subgroup", "target_group", "levers"} <= set(p)
        for lv in p["levers"]:
            assert {"node", "coverage", "effect_prior", "source"} <= set(lv)
    text = runner.invoke(app, ["policies"])
    assert text.exit_code == 0 and "target group" in text.stdout and not text.stdout.lstrip().startswith("[")
    bad = tmp_path / "p.yaml"
    bad.write_text("spec_version: 2\npolicies:\n  - id: X\n    advice: 1\n    title_en: t\n    title_nl: t\n"
                   "    subgroup: null\n    target_group: {quote: q, section: s}\n    levers:\n"
                   "      - node: stress\n        coverage: {dist: fixed, value: 0.5}\n"
                   "        coverage_source: 'assumption: x'\n")
    res = runner.invoke(app, ["policies", "--json", "--policies", str(bad)])
    assert res.exit_code == EXIT_INPUT_ERROR and "not a policy lever" in res.output


def test_help_shows_flags_as_flags() -> None:
    res = CliRunner().invoke(app, ["run", "--help"])
    assert res.exit_code == 0
    assert "--overwrite" in res.output and "<bool>" not in res.output
