"""The public API: the names ``import veerkracht_bayes as vb`` gives, their docstring examples
(run as doctests), the front doors' refusals, and CLI habits (--version, simulate's refusal)."""

from __future__ import annotations

import doctest
import importlib

import pytest
from typer.testing import CliRunner

import veerkracht_bayes as vb
from veerkracht_bayes.cli import app
from veerkracht_bayes.errors import ModelError

PUBLIC = ["load_graph", "load_priors", "read_survey", "load_policies", "fit", "do", "trajectories", "run",
          "brief", "draw", "Shift", "Set", "MechanismChange", "Intervention", "Outcome", "configure"]


def test_public_names() -> None:
    assert set(PUBLIC) <= set(vb.__all__)
    for name in PUBLIC:
        obj = getattr(vb, name)
        assert obj.__doc__, f"vb.{name} has no docstring"


@pytest.mark.parametrize("module", ["veerkracht_bayes.api", "veerkracht_bayes.runtime",
                                    "veerkracht_bayes.resources", "veerkracht_bayes.graph.causal_graph"])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} doctest(s) failed in {module}"
    assert res.attempted > 0


def test_fit_without_data_refuses() -> None:
    with pytest.raises(ModelError, match="prior_only=True"):
        vb.fit("marvel")


def test_prior_only_fit_and_do_label_nothing_data() -> None:
    f = vb.fit("marvel", prior_only=True, prior_draws=80, seed=3)
    eff = vb.do(f, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing", "stress"])
    tab = eff.summary()
    assert {"mean", "lower", "upper", "p_meaningful", "p_positive", "p_stable", "evidence"} <= set(tab.columns)
    assert not (tab["evidence"] == "data").any()
    assert (tab["share_data"].fillna(0) == 0).all()
    s = f.summary()
    assert len(s) == len(f.graph.edges) and not (s["evidence"] == "data").any()


def test_cli_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("veerkracht-bayes ")


def test_simulate_refuses_non_empty_folder(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["simulate", "--n", "50", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "truth.yaml").exists()
