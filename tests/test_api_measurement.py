"""``vb.fit(measurement="auto")``, the default: the codebook decides the measurement route, and the
route and its reason are recorded in the fit's attributes. The samplers are stubbed (the fits
themselves are tested in tests/inference and tests/workflow)."""

from __future__ import annotations

import numpy as np
import pytest

import veerkracht_bayes as vb
from veerkracht_bayes.inference import polychoric_fit, sampling
from veerkracht_bayes.survey.codebook import Codebook, ConstructSpec, ItemSpec, resolve_measurement

from _small_fit import StopBeforeSampling, small_marvel_survey, small_data, small_graph


@pytest.fixture(scope="module")
def survey():
    return small_marvel_survey()


def test_auto_takes_the_polychoric_route_for_likert_and_binary_items(monkeypatch, survey) -> None:
    seen: dict = {}

    def fake(graph, data, priors=None, *, settings=None, polychoric=None, item_construct=None):
        seen.update(polychoric=polychoric)
        raise StopBeforeSampling

    monkeypatch.setattr(polychoric_fit, "fit_polychoric", fake)
    with pytest.raises(StopBeforeSampling):
        vb.fit("marvel", survey, draws=10, progress=False)
    assert seen["polychoric"].unmeasured == "joint"  # auto's default: the cut system is misspecified
    with pytest.raises(StopBeforeSampling):
        vb.fit("marvel", survey, unmeasured="cut", item_reliability={"prof_help": 0.5}, draws=10, progress=False)
    assert (seen["polychoric"].unmeasured, dict(seen["polychoric"].item_reliability)) == ("cut", {"prof_help": 0.5})


def test_auto_falls_back_to_continuous_where_the_polychoric_route_cannot_go(monkeypatch, survey) -> None:
    real = sampling.fit

    def stub(graph, md, priors, **kwargs):
        return real(graph, None, priors, prior_only=True, prior_draws=20, random_seed=1)

    monkeypatch.setattr(sampling, "fit", stub)
    f = vb.fit("marvel", survey, sampler="pymc", draws=10, progress=False)
    attrs = f.idata.attrs
    assert (attrs["measurement_requested"], attrs["measurement_resolved"]) == ("auto", "continuous")
    assert "numpyro" in attrs["measurement_reason"] and "ordinal" in attrs["measurement_reason"]
    f = vb.fit("marvel", survey, log_likelihood=True, draws=10, progress=False)
    assert f.idata.attrs["measurement_resolved"] == "continuous"
    assert "log_likelihood" in f.idata.attrs["measurement_reason"]
    # data without a codebook (prepared ModelData) -> continuous
    f = vb.fit(small_graph(), small_data(), priors="default", draws=10, progress=False)
    assert f.idata.attrs["measurement_resolved"] == "continuous"
    assert "without a codebook" in f.idata.attrs["measurement_reason"]
    # an explicit choice is recorded as given
    f = vb.fit("marvel", survey, measurement="continuous", draws=10, progress=False)
    assert f.idata.attrs["measurement_reason"] == "measurement = continuous (given)"


def test_resolution_rule_reads_scales_and_categories() -> None:
    def cb(*items: ItemSpec, node: str = "a") -> Codebook:
        return Codebook(id_column="id", constructs={node: ConstructSpec(items=list(items))})

    assert resolve_measurement(cb(ItemSpec(column="q", scale="likert", categories=7))).measurement == "polychoric"
    assert resolve_measurement(cb(ItemSpec(column="q", scale="likert", categories=8))).measurement == "continuous"
    assert resolve_measurement(cb(ItemSpec(column="q", scale="continuous"),
                                  ItemSpec(column="r", scale="count"))).measurement == "continuous"
    ch = resolve_measurement(cb(ItemSpec(column="q", scale="continuous"), ItemSpec(column="b", scale="binary")))
    assert (ch.measurement, ch.unmeasured, ch.ordinal_items) == ("polychoric", "joint", ("b",))
    assert "1 binary" in ch.reason
    # items of constructs that are not graph nodes do not count
    g = small_graph()
    assert "not_a_node" not in g.nodes
    assert resolve_measurement(cb(ItemSpec(column="b", scale="binary"), node="not_a_node"), g).measurement \
        == "continuous"


def test_item_reliability_reaches_every_route(monkeypatch, survey) -> None:
    """vb.fit(item_reliability=...) on the continuous path (converted to the observed scale like
    the codebook's values, which it replaces item by item) and on the exact ordinal route (as given);
    a name that is not a single item, and prepared ModelData, are refused with located errors."""
    from veerkracht_bayes.errors import ConfigError, SurveyError
    from veerkracht_bayes.inference import ordinal_fit
    from veerkracht_bayes.survey.codebook import continuous_path_reliabilities

    seen: dict = {}

    def fake_fit(graph, md, priors, **kwargs):
        seen.update(kwargs)
        raise StopBeforeSampling

    monkeypatch.setattr(sampling, "fit", fake_fit)
    with pytest.raises(StopBeforeSampling):
        vb.fit("marvel", survey, measurement="continuous", item_reliability={"prof_help": 0.5}, progress=False)
    g = vb.load_graph("marvel")
    codebook_only = continuous_path_reliabilities(survey, g, 0.8)
    overridden = continuous_path_reliabilities(survey, g, 0.8, {"prof_help": 0.5})
    assert seen["item_reliability"] == overridden
    # the override replaces the codebook's 0.4225 for prof_help (converted: below 2/pi x 0.5), the rest stays
    assert overridden["prof_help"] != codebook_only["prof_help"] and 0 < overridden["prof_help"] < 0.5 * 2 / np.pi
    assert {k: v for k, v in overridden.items() if k != "prof_help"} == \
        {k: v for k, v in codebook_only.items() if k != "prof_help"}

    def fake_ordinal(graph, data, priors=None, *, settings=None, ordinal=None, **kw):
        seen.update(ordinal=ordinal)
        raise StopBeforeSampling

    monkeypatch.setattr(ordinal_fit, "fit_ordinal", fake_ordinal)
    with pytest.raises(StopBeforeSampling):
        vb.fit("marvel", survey, measurement="ordinal", item_reliability={"prof_help": 0.5}, progress=False)
    assert dict(seen["ordinal"].item_reliability) == {"prof_help": 0.5}

    with pytest.raises(SurveyError, match="item_reliability names 'not_an_item'"):
        vb.fit("marvel", survey, measurement="continuous", item_reliability={"not_an_item": 0.5}, progress=False)
    with pytest.raises(ConfigError, match="needs the survey"):
        vb.fit(small_graph(), small_data(), priors="default", measurement="continuous",
               item_reliability={"a1": 0.5}, progress=False)
