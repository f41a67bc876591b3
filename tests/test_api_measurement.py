"""``vb.fit(measurement="auto")``, the default: the codebook decides the measurement route, and the
route and its reason are recorded in the fit's attributes. The samplers are stubbed (the fits
themselves are tested in tests/inference and tests/workflow)."""

from __future__ import annotations

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
