"""``[model] groups`` / ``group_*`` and ``[[query.thresholds]]`` items in the run config: parsed,
cross-checked against the survey and the graph, refused with located errors (no sampling here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.workflow.config import (
    FAST_DRAWS,
    FAST_GROUP_DRAWS,
    fast_settings,
    load_config,
    validate_inputs,
)


@pytest.fixture(scope="module")
def survey_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    d = tmp_path_factory.mktemp("groups_cfg")
    files = write_synthetic(d, n=400, seed=3)
    (d / "names.txt").write_text(f"{files['data'].name}\n{files['codebook'].name}\n")
    return d


def _write(d: Path, model: str, extra: str = "", prior_only: bool = False) -> Path:
    data, codebook = (d / "names.txt").read_text().split()
    p = d / "run.toml"
    p.write_text(f"""\
[inputs]
survey = "{data}"
codebook = "{codebook}"
prior_only = {str(prior_only).lower()}
[model]
{model}
{extra}
[output]
dir = "out"
""", encoding="utf-8")
    return p


def test_defaults_and_pooled_links() -> None:
    from veerkracht_bayes.workflow.config import ModelConfig

    m = ModelConfig()
    assert m.groups == [] and m.group_equal == ["loadings", "intercepts"] and m.group_pool == ["regressions"]
    assert m.pooled_links is None  # every data-informed link
    assert ModelConfig(group_equal=["loadings", "intercepts", "regressions"], group_pool=[]).pooled_links == []
    assert ModelConfig(group_equal=["loadings", "intercepts", "regressions"]).pooled_links == []
    assert ModelConfig(group_pool=["stress -> wellbeing"]).pooled_links == ["stress->wellbeing"]


@pytest.mark.parametrize("model, match", [
    ('group_equal = ["loadings"]', r"group_equal.*'intercepts'.*group_free_intercepts"),
    ('group_pool = ["loadings"]', r"group_pool.*'regressions' or links"),
    ('group_equal = ["loadings", "intercepts", "regressions"]\ngroup_pool = ["regressions"]',
     r"both in group_equal and pooled"),
    ('group_pool = []', r"neither equal .* nor pooled"),
    ('groups = ["youth", "youth"]', r"twice"),
    ('group_tau_sd = 0.0', r"group_tau_sd"),
    ('grups = ["youth"]', r"did you mean 'groups'"),
])
def test_schema_errors_are_located(survey_dir: Path, model: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        load_config(_write(survey_dir, model))
    assert any(p.line is not None for p in exc.value.problems)


def test_groups_checked_against_survey(survey_dir: Path) -> None:
    cfg = load_config(_write(survey_dir, 'groups = ["single_parent", "sex"]'))
    vi = validate_inputs(cfg, overwrite=True)
    assert set(vi.groupings) == {"single_parent", "sex"}
    labels = vi.groupings["single_parent"]
    assert len(labels) == vi.survey.n and set(labels) == {"single_parent", "not single_parent"}
    assert sum(v == "single_parent" for v in labels) == int(vi.survey.subgroup_mask("single_parent").sum())
    # every problem at once, each at its TOML path
    bad = load_config(_write(survey_dir, 'groups = ["single_parnt", "respondent_id"]\n'
                             'group_pool = ["stress->wellbeeing"]\ngroup_free_loadings = ["pss99"]'))
    with pytest.raises(ConfigError) as exc:
        validate_inputs(bad, overwrite=True)
    text = str(exc.value)
    for pat in (r"model\.groups\[0\].*did you mean 'single_parent'", r"model\.groups\[1\].*distinct values",
                r"model\.group_pool\[0\].*unknown link", r"model\.group_free_loadings\[0\].*unknown item"):
        assert re.search(pat, text), (pat, text)
    prior = load_config(_write(survey_dir, 'groups = ["youth"]', prior_only=True))
    with pytest.raises(ConfigError, match=r"model\.groups.*need a fit to survey data"):
        validate_inputs(prior, overwrite=True)


TH = """
[[query.thresholds]]
name = "psychisch_ongezond"
outcome = "mental_problems"
items = ["mhi1", "{item}"]
cutoff = 5.0
"""


def test_threshold_items_must_belong_to_the_outcome(survey_dir: Path) -> None:
    validate_inputs(load_config(_write(survey_dir, "", TH.format(item="mhi2"))), overwrite=True)
    bad = load_config(_write(survey_dir, "", TH.format(item="pss1")))
    with pytest.raises(ConfigError, match=r"query\.thresholds\[0\]\.items\[1\].*not an item of 'mental_problems'"):
        validate_inputs(bad, overwrite=True)


def test_fast_caps_group_draws(survey_dir: Path) -> None:
    cfg = load_config(_write(survey_dir, 'groups = ["youth"]\ngroup_draws = 900'))
    fast = fast_settings(cfg)
    assert fast.model.group_draws == FAST_GROUP_DRAWS and fast.model.group_tune <= FAST_DRAWS
    assert cfg.model.group_draws == 900  # the original is untouched
