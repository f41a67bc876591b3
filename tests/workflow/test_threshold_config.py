"""``[[query.thresholds]]`` in the run config: parsed into ThresholdSpec, unknown keys and outcomes
refused with their TOML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.workflow.config import load_config, validate_inputs

BASE = """\
[inputs]
prior_only = true
[output]
dir = "out"
"""

TH = """
[[query.thresholds]]
name = "psychisch_ongezond"
outcome = "{outcome}"
items = ["mhi_1", "mhi_2"]
weights = [-4.0, -4.0]
offset = 108.0
cutoff = 60.0
direction = "below"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_thresholds_parsed_and_checked(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE + TH.format(outcome="mental_problems")))
    (th,) = cfg.query.thresholds
    assert th.name == "psychisch_ongezond" and th.cutoff == 60.0 and th.weights == [-4.0, -4.0]
    validate_inputs(cfg)
    bad = load_config(_write(tmp_path, BASE + TH.format(outcome="mental_problemz")))
    with pytest.raises(ConfigError, match=r"query\.thresholds\[0\]\.outcome.*did you mean 'mental_problems'"):
        validate_inputs(bad, overwrite=True)
    with pytest.raises(ConfigError, match=r"cutof"):
        load_config(_write(tmp_path, BASE + TH.format(outcome="mental_problems") + "cutof = 1\n"))
