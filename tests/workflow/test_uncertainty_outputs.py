"""The run writes tornado.csv always, structure.csv/robustness.csv with [structure] and voi.csv
with [voi] (prior-only MARVEL run: the data inform no link, so the structure stays at its prior and
no single construct has sample information)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from veerkracht_bayes.workflow.config import RunConfig
from veerkracht_bayes.workflow.pipeline import run

CONFIG = """\
[inputs]
prior_only = true
[sampler]
prior_draws = 100
seed = 3
[query]
outcomes = ["wellbeing"]
prevalence = {single_parent = 0.1, pupils_and_parents = 0.2, mental_health_problems = 0.1, refugee = 0.02, bottom_labour_market = 0.1}
horizon = 3
[structure]
variants = "inferred"
n_structures = 30
draws_per_structure = 30
[voi]
candidates = "unmeasured"
n = [500, 2000]
outcome = "wellbeing"
[output]
dir = "out"
formats = ["csv"]
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("uncertainty")
    (d / "run.toml").write_text(CONFIG, encoding="utf-8")
    mod = types.ModuleType("veerkracht_bayes.report.brief")
    mod.write_brief = lambda result, out_dir: None  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "veerkracht_bayes.report.brief", mod)
        run(d / "run.toml", progress=False)
    return d / "out"


def test_csvs_written(out: Path) -> None:
    tor = pd.read_csv(out / "tornado.csv")
    assert {"policy", "outcome", "input", "share", "linearised_var"} <= set(tor.columns)
    assert (tor.groupby("policy")["rank"].min() == 1).all()
    st = pd.read_csv(out / "structure.csv")
    assert {"link", "inferred", "p_include"} <= set(st.columns)
    assert (st.loc[st["inferred"], "p_include"] == 0.5).all()  # prior only: stays at the prior
    assert (st.loc[~st["inferred"], "p_include"] == 1.0).all()
    rob = pd.read_csv(out / "robustness.csv")
    assert {"policy", "outcome", "p_rank_holds", "p_sign_holds"} <= set(rob.columns)
    assert rob["p_rank_holds"].between(0, 1).all() and (rob["n_structures"] == 30).all()
    voi = pd.read_csv(out / "voi.csv")
    assert list(voi.columns[:4]) == ["construct", "n", "evsi", "evpi"]
    assert (voi["evsi"] == 0).all() and (voi["evpi"] >= 0).all()
    assert sorted(voi["n"].unique()) == [500, 2000]


def test_config_sections_are_optional_and_checked() -> None:
    cfg = RunConfig.model_validate({"inputs": {"prior_only": True}})
    assert cfg.structure is None and cfg.voi is None
    with pytest.raises(Exception, match="n must be a positive"):
        RunConfig.model_validate({"inputs": {"prior_only": True}, "voi": {"n": [0]}})
    with pytest.raises(Exception):
        RunConfig.model_validate({"inputs": {"prior_only": True}, "structure": {"variants": "all"}})
