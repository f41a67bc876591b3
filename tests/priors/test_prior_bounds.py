"""Numbers in a priors file that pass a finite/positive check but would break the arithmetic later
(e.g. a prior mean of 1e300, which made prior sampling fail with LinAlgError) are refused on load,
each with file, line, YAML path, field and value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli import app
from veerkracht_bayes.errors import PriorError
from veerkracht_bayes.priors.spec import (
    MAX_EDGE_MOMENT,
    MAX_PRIOR_MAGNITUDE,
    MIN_PRIOR_SCALE,
    load_priors,
    marvel_priors_path,
)

BASE = marvel_priors_path().read_text(encoding="utf-8")
ENTRY = "  stress->wellbeing:\n    mean: -0.25\n    sd: 0.08"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(marvel_priors_path().with_name("references.bib"), tmp_path / "references.bib")
    return tmp_path


def _load_bad(work: Path, old: str, new: str) -> PriorError:
    assert old in BASE
    p = work / "bad.yaml"
    p.write_text(BASE.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(PriorError) as ei:
        load_priors(p, "marvel")
    return ei.value


@pytest.mark.parametrize("mean", ["-1e300", "-11", "-1e7"])
def test_huge_edge_mean_is_refused(work: Path, mean: str) -> None:
    exc = _load_bad(work, ENTRY, ENTRY.replace("mean: -0.25", f"mean: {mean}"))
    pr = next(p for p in exc.problems if p.field == "mean")
    assert pr.location == "edges.stress->wellbeing.mean" and pr.value == float(mean)
    assert pr.file and pr.file.endswith("bad.yaml") and pr.line == BASE.splitlines().index(
        "  stress->wellbeing:") + 2
    assert f"<= {MAX_EDGE_MOMENT:g}" in str(exc)


def test_edge_at_the_bound_is_not_refused_for_its_size(work: Path) -> None:
    # -10 breaks nothing in the arithmetic; only the (unrelated) sourced-mean checks may object
    p = work / "ok.yaml"
    p.write_text(BASE.replace(ENTRY, ENTRY.replace("mean: -0.25", "mean: -10")), encoding="utf-8")
    try:
        load_priors(p, "marvel")
    except PriorError as exc:
        assert "too large" not in str(exc)


def test_huge_and_tiny_edge_sd_are_refused(work: Path) -> None:
    big = _load_bad(work, ENTRY, ENTRY.replace("sd: 0.08", "sd: 1e300\n    sd_exception: test"))
    assert any(p.field == "sd" and "too large" in p.message for p in big.problems)
    tiny = _load_bad(work, ENTRY, ENTRY.replace("sd: 0.08", "sd: 1e-300\n    sd_exception: test"))
    assert any(p.field == "sd" and "too small" in p.message and f"{MIN_PRIOR_SCALE:g}" in p.message
               for p in tiny.problems)


def test_huge_default_parameter_prior_is_refused(work: Path) -> None:
    old = "  edge:\n    distribution: half_normal\n    sd: 0.2"
    exc = _load_bad(work, old, old.replace("sd: 0.2", "sd: 1e300"))
    pr = next(p for p in exc.problems if p.field == "sd")
    assert pr.location == "defaults.edge.sd" and f"{MAX_PRIOR_MAGNITUDE:g}" in pr.message


def test_effect_size_value_must_be_finite_and_bounded(work: Path) -> None:
    exc = _load_bad(work, "    value: -0.27\n", "    value: -1e300\n")
    assert any(p.field == "value" and "too large" in p.message for p in exc.problems)


def test_cli_run_with_huge_prior_exits_2_before_sampling(work: Path) -> None:
    (work / "bad.yaml").write_text(BASE.replace(ENTRY, ENTRY.replace("mean: -0.25", "mean: -1e300")),
                                   encoding="utf-8")
    (work / "run.toml").write_text('[inputs]\nprior_only = true\npriors = "bad.yaml"\n'
                                   '[output]\ndir = "out"\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(work / "run.toml")])
    assert res.exit_code == 2, res.output
    assert "edges.stress->wellbeing.mean" in res.stderr and "-1e+300" in res.stderr
    assert not (work / "out").exists()
