"""Per-item reliabilities of single items on the exact ordinal path (``OrdinalSettings.item_reliability``)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
from veerkracht_bayes.sem.ordinal import OrdinalData, OrdinalSettings, build_ordinal_model


def _data() -> OrdinalData:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(200, 3))
    return OrdinalData(item_names=("a1", "a2", "b1"), item_construct=("a", "a", "b"),
                       n_categories=np.array([3, 3, 3]), codes=codes)


def _fixed_lambda(settings: OrdinalSettings) -> float:
    model, layout = build_ordinal_model(graph_from_lavaan("b ~ a"), _data(), settings=settings)
    lam = model.compile_fn(model["lambda"], inputs=model.value_vars, on_unused_input="ignore")(model.initial_point())
    return float(lam[2]), layout


def test_a_single_items_own_reliability_fixes_its_loading():
    """theta parameterisation: a single item of latent-response reliability r has loading
    sqrt(r / (1 - r)); the others keep the global value; the layout records the item's value."""
    lam, layout = _fixed_lambda(OrdinalSettings(reliability=0.8, item_reliability={"b1": 0.3}))
    assert lam == pytest.approx(np.sqrt(0.3 / 0.7), rel=1e-12)
    assert layout.item_reliability == {"b1": 0.3}
    lam0, layout0 = _fixed_lambda(OrdinalSettings(reliability=0.8))
    assert lam0 == pytest.approx(2.0, rel=1e-12) and layout0.item_reliability == {}


@pytest.mark.parametrize("bad", [{"zz": 0.5}, {"b1": 1.0}, {"b1": -0.2}])
def test_bad_item_reliability_is_located(bad):
    with pytest.raises(ModelError, match="item_reliability"):
        build_ordinal_model(graph_from_lavaan("b ~ a"), _data(), settings=OrdinalSettings(item_reliability=bad))


def test_fit_ordinal_reads_the_codebooks_reliabilities(monkeypatch):
    """Given a survey, fit_ordinal passes the codebook's per-item reliabilities (latent-response
    scale, this path's own) to the model; an explicit setting wins item by item."""
    import veerkracht_bayes as vb
    import veerkracht_bayes.inference.ordinal_fit as ordinal_fit
    from veerkracht_bayes.resources import shipped_path

    d = shipped_path("data", "synthetic")
    graph = vb.load_graph("marvel")
    survey = vb.read_survey(d / "veerkracht_synthetic.csv.gz", d / "codebook_synthetic.yaml", graph=graph)
    declared = survey.codebook.item_reliabilities()
    seen = {}

    class Stop(Exception):
        pass

    def spy(graph, data, priors=None, *, settings=None, **kw):
        seen["settings"] = settings
        seen["items"] = set(data.item_names) | set(data.cont_names)
        raise Stop

    monkeypatch.setattr(ordinal_fit, "build_ordinal_model", spy)
    with pytest.raises(Stop):
        ordinal_fit.fit_ordinal(graph, survey, ordinal=OrdinalSettings(item_reliability={"prof_help": 0.5}))
    got = dict(seen["settings"].item_reliability)
    expected = {k: v for k, v in declared.items() if k in seen["items"]}
    assert expected and "prof_help" in expected and expected["prof_help"] != 0.5
    assert got == {**expected, "prof_help": 0.5}
