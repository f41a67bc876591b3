"""A run on the demo config passes the codebook's single-item reliabilities to the group and
neighbourhood fits, converted to the observed scale as for the main fit.

The demo's ``[model]`` and ``[neighbourhoods]`` tables on a small synthetic survey (the shipped
codebook's fields: ``prof_help`` 0.4225 on the latent-response scale, ``household_income`` 0.5776);
the neighbourhood constructs gain ``professional_help`` so that the two-level model has a single
item. The fits themselves are replaced by a stand-in that records its arguments (the fits are
checked in ``tests/inference/test_item_reliability_groups.py``); the expected observed-scale value
of the 0/1 item is computed here from its weighted share ``p`` in closed form:
``0.4225 * phi(Phi^-1(p))^2 / (p (1 - p))``.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from scipy.stats import norm

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.resources import package_data_path
from veerkracht_bayes.workflow import for_whom, neighbourhoods
from veerkracht_bayes.workflow.config import parse_config, validate_inputs

LATENT_PROF_HELP = 0.4225
INCOME = 0.5776


class Captured(ModelError):
    """Raised by the stand-in fits after recording their keyword arguments."""


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory):
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    d = tmp_path_factory.mktemp("item_reliability_runs")
    files = write_synthetic(d, n=1500, seed=2)
    cfg = tomllib.loads(package_data_path("demo.toml").read_text(encoding="utf-8"))
    cfg["inputs"].update({"survey": files["data"].name, "codebook": files["codebook"].name})
    cfg["neighbourhoods"]["constructs"] = [*cfg["neighbourhoods"]["constructs"], "professional_help"]
    cfg["output"] = {"dir": str(d / "out")}
    cfg = parse_config(cfg, base=d)
    return cfg, validate_inputs(cfg)


def _expected_prof_help(vi) -> float:
    y, cols = vi.survey.item_matrix(reverse=True)   # missing codes as NaN
    x = np.asarray(y[:, cols.index("prof_help")], dtype=float)
    w = np.ones_like(x) if vi.survey.weights is None else np.asarray(vi.survey.weights, dtype=float)
    ok = np.isfinite(x)
    p = float(w[ok] @ (x[ok] == x[ok].max()) / w[ok].sum())
    return LATENT_PROF_HELP * norm.pdf(norm.ppf(p)) ** 2 / (p * (1 - p))


def test_group_fits_get_the_codebook_reliabilities(demo_inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    from veerkracht_bayes.inference import multigroup_fit

    cfg, vi = demo_inputs
    assert cfg.model.groups == ["low_income"] and cfg.model.reliability == 0.8
    seen: list[dict] = []

    def stand_in(graph, data, priors, **kwargs):
        seen.append({**kwargs, "items": tuple(data.pooled.item_names)})
        raise Captured("recorded")

    monkeypatch.setattr(multigroup_fit, "fit_multigroup", stand_in)
    fits, _ = for_whom.fit_groupings(cfg, vi, draws=10, tune=10)
    assert len(seen) == 1, [f.reason for f in fits]
    rel = seen[0]["item_reliability"]
    assert set(rel) == {"prof_help", "household_income"} <= set(seen[0]["items"])
    assert rel["prof_help"] == pytest.approx(_expected_prof_help(vi), rel=1e-6)
    assert 0.1 < rel["prof_help"] < 0.3                       # far from the global 0.8
    assert rel["household_income"] == pytest.approx(INCOME)   # continuous (log): as given
    assert seen[0]["reliability"] == 0.8
    # group_fits.json records them
    assert fits[0].to_dict()["settings"] == {"reliability": 0.8, "item_reliability": rel}


def test_neighbourhood_fit_gets_the_codebook_reliabilities(demo_inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    from veerkracht_bayes.inference import twolevel_fit

    cfg, vi = demo_inputs
    seen: list[dict] = []

    def stand_in(stats, item_construct, graph=None, **kwargs):
        seen.append({**kwargs, "item_construct": dict(item_construct)})
        raise Captured("recorded")

    monkeypatch.setattr(twolevel_fit, "fit_twolevel", stand_in)
    with pytest.raises(Captured):
        neighbourhoods.run_neighbourhoods(cfg, vi, None)
    assert seen[0]["item_construct"]["prof_help"] == "professional_help"
    # only the two-level model's single items (household_income is not in it)
    assert seen[0]["item_reliability"] == {"prof_help": pytest.approx(_expected_prof_help(vi), rel=1e-6)}
    assert seen[0]["reliability"] == 0.8
