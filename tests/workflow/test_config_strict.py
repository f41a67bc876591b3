"""Run-config settings of the wrong kind are refused: a TOML boolean is not an integer, inf/nan
never enter the model, and the policy doses that a run reads are finite shares in [0, 1]."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli import app
from veerkracht_bayes.errors import ConfigError, VeerkrachtError
from veerkracht_bayes.workflow.config import load_config, parse_config

HEAD = "[inputs]\nprior_only = true\n"


def _refused(body: str) -> ConfigError:
    text = HEAD + body
    with pytest.raises(ConfigError) as ei:
        parse_config(tomllib.loads(text), text=text, source="run.toml")
    return ei.value


@pytest.mark.parametrize("body, field, value", [
    ("[sampler]\nseed = true\n", "seed", True),
    ("[sampler]\nchains = true\n", "chains", True),
    ("[sampler]\ndraws = false\n", "draws", False),
    ("[query]\nhorizon = true\n", "horizon", True),
    ("[query]\nmin_relevant_change = inf\n", "min_relevant_change", float("inf")),
    ("[query]\nci_prob = nan\n", "ci_prob", None),
    ("[diagnostics]\ness_min = inf\n", "ess_min", float("inf")),
    ("[model]\nreliability = nan\n", "reliability", None),
    ("[sampler]\ndraws = 100.5\n", "draws", 100.5),
])
def test_wrong_kind_of_number_is_refused(body: str, field: str, value: object) -> None:
    exc = _refused(body)
    pr = exc.problems[0]
    assert pr.field == field and pr.file == "run.toml" and pr.line == 4
    if value is None:
        assert pr.value != pr.value  # nan
    else:
        assert pr.value == value and type(pr.value) is type(value)
    if isinstance(value, bool):
        assert "boolean" in str(exc)
    if value == float("inf") or value is None:
        assert "finite" in str(exc)


def test_nonfinite_numbers_inside_tables_are_refused() -> None:
    exc = _refused("[query]\ncomposites = {r = {wellbeing = inf}}\nprevalence = {youth = nan}\n")
    fields = {p.location for p in exc.problems}
    assert {"query.composites.r.wellbeing", "query.prevalence.youth"} <= fields


def test_integers_still_read_as_floats_and_good_values_pass() -> None:
    text = HEAD + "[query]\nmin_relevant_change = 0\nci_prob = 0.8\n[sampler]\nseed = 7\n"
    cfg = parse_config(tomllib.loads(text), text=text)
    assert cfg.query.min_relevant_change == 0.0 and cfg.sampler.seed == 7


def test_config_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_bytes(HEAD.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8") as ei:
        load_config(p)
    assert ei.value.problems[0].line == 3


def test_cli_refuses_boolean_seed_with_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text(HEAD + "[sampler]\nseed = true\n[output]\ndir = 'out'\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert f"{p}:4 sampler.seed" in res.stderr and "boolean True" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("coverage, needle", [
    ("{dist: beta, a: .nan, b: 7}", "finite"),
    ("{dist: fixed, value: .inf}", "finite"),
    ("{dist: fixed, value: .nan}", "finite"),
    ("{dist: fixed, value: 1.5}", "outside [0, 1]"),
    ("{dist: fixed, value: -0.1}", "outside [0, 1]"),
])
def test_policy_doses_must_be_finite_shares(tmp_path: Path, coverage: str, needle: str) -> None:
    from veerkracht_bayes.causal.policies import load_policies, policies_path

    text = policies_path().read_text(encoding="utf-8")
    old = "coverage: {dist: beta, a: 3, b: 7}"
    p = tmp_path / "policies.yaml"
    p.write_text(text.replace(old, f"coverage: {coverage}", 1), encoding="utf-8")
    with pytest.raises(VeerkrachtError) as ei:
        load_policies(p)
    pr = ei.value.problems[0]
    assert pr.file == str(p) and pr.line == text.splitlines().index(
        next(ln for ln in text.splitlines() if old in ln)) + 1
    assert "policies[0].levers[0].coverage" in str(pr.location) and needle in str(ei.value)
