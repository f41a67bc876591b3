"""Tests for the run config: schema, paths, cross-checks; every bad input fails before sampling."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.inference import sampling
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.workflow.pipeline import run
from veerkracht_bayes.workflow.config import (
    FAST_DRAWS,
    fast_settings,
    load_config,
    parse_config,
    validate_inputs,
)

DEMO = Path(__file__).resolve().parents[2] / "src" / "veerkracht_bayes" / "data" / "demo.toml"
SYN = Path(__file__).resolve().parents[2] / "data" / "synthetic"


@pytest.fixture(autouse=True)
def no_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call to the sampler fails the test: config errors must come before sampling."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("fit was called")

    monkeypatch.setattr(sampling, "fit", boom)


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


PRIOR_ONLY = """\
[inputs]
prior_only = true
[output]
dir = "out"
"""


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, PRIOR_ONLY))
    assert cfg.sampler.seed == 2023 and cfg.query.ci_prob == 0.90
    assert cfg.query.min_relevant_change == 0.05 and cfg.query.horizon == 20
    assert cfg.out_dir == tmp_path.resolve() / "out"
    assert cfg.resolve("a/b.csv") == tmp_path.resolve() / "a" / "b.csv"


def test_unknown_key_did_you_mean_with_path_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, PRIOR_ONLY + "[query]\noutcomes = ['wellbeing']\nhorizn = 10\n")
    with pytest.raises(ConfigError) as ei:
        run(p, progress=False)
    msg = str(ei.value)
    assert "query.horizn" in msg and "did you mean 'horizon'" in msg
    assert f"{p}:7" in msg  # the line of `horizn = 10`


def test_unknown_section(tmp_path: Path) -> None:
    p = _write(tmp_path, PRIOR_ONLY + "[sampeler]\ndraws = 10\n")
    with pytest.raises(ConfigError, match=r"did you mean 'sampler'"):
        load_config(p)


def test_bad_value_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sampler\.chains"):
        load_config(_write(tmp_path, PRIOR_ONLY + "[sampler]\nchains = 0\n"))
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(_write(tmp_path, "[inputs\n", "bad.toml"))
    with pytest.raises(ConfigError, match=r"survey and codebook must be given together"):
        load_config(_write(tmp_path, "[inputs]\nsurvey = 'x.csv'\n", "half.toml"))
    with pytest.raises(ConfigError, match=r"prior_only = true"):
        load_config(_write(tmp_path, "[inputs]\ngraph = 'marvel'\n", "nothing.toml"))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found"):
        run(tmp_path / "nope.toml", progress=False)


def test_missing_input_files_named_with_key(tmp_path: Path) -> None:
    p = _write(tmp_path, "[inputs]\nsurvey = 'data/s.csv'\ncodebook = 'cb.yaml'\n"
               "priors = 'my_priors.yaml'\n[output]\ndir = 'out'\n")
    with pytest.raises(ConfigError) as ei:
        run(p, progress=False)
    msg = str(ei.value)
    for key, name in (("inputs.survey", "s.csv"), ("inputs.codebook", "cb.yaml"),
                      ("inputs.priors", "my_priors.yaml")):
        assert key in msg and name in msg
    assert "file not found" in msg


def test_nonempty_output_folder_refused_unless_overwrite(tmp_path: Path) -> None:
    p = _write(tmp_path, PRIOR_ONLY)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"not empty.*--overwrite"):
        run(p, progress=False)
    vi = validate_inputs(load_config(p), overwrite=True)
    assert vi.out_dir == tmp_path.resolve() / "out"
    # An existing *empty* folder is fine without --overwrite.
    (tmp_path / "out" / "old.txt").unlink()
    validate_inputs(load_config(p))


def test_unknown_outcome_policy_subgroup_composite(tmp_path: Path) -> None:
    p = _write(tmp_path, PRIOR_ONLY + "[query]\noutcomes = ['wellbeing', 'wellbeeing']\n"
               "policies = ['P01', 'P1O']\nsubgroups = ['yuoth']\n"
               "composites = {mix = {stres = 1.0}}\n")
    with pytest.raises(ConfigError) as ei:
        run(p, progress=False)
    msg = str(ei.value)
    assert "query.outcomes[1]" in msg and "did you mean 'wellbeing'" in msg
    assert "query.policies[1]" in msg and "'P10'" in msg
    assert "query.subgroups[0]" in msg and "did you mean 'youth'" in msg
    assert "query.composites.mix.stres" in msg and "did you mean 'stress'" in msg


def test_policy_file_node_not_in_graph(tmp_path: Path) -> None:
    from veerkracht_bayes.causal.policies import policies_path

    text = policies_path().read_text(encoding="utf-8")
    assert "node: parenting_support" in text
    (tmp_path / "pol.yaml").write_text(text.replace("node: parenting_support",
                                                    "node: parenting_suport"), encoding="utf-8")
    p = _write(tmp_path, "[inputs]\nprior_only = true\npolicies = 'pol.yaml'\n")
    with pytest.raises(ConfigError) as ei:
        run(p, progress=False)
    assert "pol.yaml" in str(ei.value) and "did you mean 'parenting_support'" in str(ei.value)


def test_demo_config_with_survey_validates(tmp_path: Path) -> None:
    """The shipped demo config validates; the codebook gives subgroups and the cell size."""
    cfg = load_config(DEMO)
    assert not cfg.inputs.prior_only
    cfg.query.subgroups = ["refugee"]
    cfg.output.dir = str(tmp_path / "out")
    vi = validate_inputs(cfg)
    assert len(vi.interventions) == 10
    assert vi.subgroups == ["refugee"]
    assert vi.min_cell_size == vi.survey.codebook.min_cell_size
    assert {"survey", "codebook", "graph", "priors", "policies"} <= set(vi.files)
    assert vi.files["survey"] is not None and vi.files["survey"].resolve() == (
        SYN / "veerkracht_synthetic.csv.gz").resolve()


def test_fast_settings_scale_thresholds(tmp_path: Path) -> None:
    cfg = parse_config({"inputs": {"prior_only": True},
                        "sampler": {"draws": 1000, "tune": 800, "prior_draws": 2000},
                        "diagnostics": {"ess_min": 400, "rhat_max": 1.01}}, base=tmp_path)
    f = fast_settings(cfg)
    assert f.sampler.draws == FAST_DRAWS and f.sampler.tune == FAST_DRAWS
    assert f.diagnostics.ess_min == pytest.approx(400 * FAST_DRAWS / 1000)
    assert f.diagnostics.rhat_max == 1.05
    assert f.base_dir == cfg.base_dir
    assert cfg.sampler.draws == 1000  # the original is not modified
