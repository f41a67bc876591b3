"""``vb.fit(..., measurement="polychoric")`` passes ``unmeasured`` and the reliabilities through, and
the codebook's per-item ``reliability`` fields reach the polychoric settings."""

from __future__ import annotations

import pytest

import veerkracht_bayes as vb
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.inference import polychoric_fit
from veerkracht_bayes.inference.polychoric_fit import polychoric_data_from_survey, with_codebook_reliabilities
from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings


@pytest.fixture(scope="module")
def survey():
    from veerkracht_bayes.datasets.synthetic import simulate_population

    s = simulate_population(1500, 3)
    return vb.read_survey(s.data, s.codebook, graph="marvel")


def test_fit_passes_unmeasured_and_reliabilities(monkeypatch: pytest.MonkeyPatch, survey) -> None:
    seen: dict = {}

    def fake(graph, data, priors=None, *, settings=None, polychoric=None, item_construct=None):
        seen.update(data=data, polychoric=polychoric, settings=settings)
        raise RuntimeError("stop")

    monkeypatch.setattr(polychoric_fit, "fit_polychoric", fake)
    with pytest.raises(RuntimeError, match="stop"):
        vb.fit("marvel", survey, measurement="polychoric", unmeasured="joint", reliability=0.7,
               item_reliability={"prof_help": 0.5}, draws=10, progress=False)
    st = seen["polychoric"]
    assert isinstance(st, PolychoricSettings)
    assert (st.unmeasured, st.reliability, dict(st.item_reliability)) == ("joint", 0.7, {"prof_help": 0.5})
    assert seen["data"] is survey
    with pytest.raises(RuntimeError, match="stop"):
        vb.fit("marvel", survey, measurement="polychoric", draws=10, progress=False)
    assert (seen["polychoric"].unmeasured, seen["polychoric"].item_reliability) == ("cut", None)


@pytest.mark.parametrize("kwargs, field", [
    ({"measurement": "polychoric", "unmeasured": "joined"}, "unmeasured"),
    ({"measurement": "continuous", "unmeasured": "joint"}, "measurement"),
])
def test_bad_unmeasured_is_a_config_error(survey, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        vb.fit("marvel", survey, draws=10, progress=False, **kwargs)
    assert exc.value.problems[0].field == field


def test_codebook_reliabilities_fill_the_settings(survey) -> None:
    graph = vb.load_graph("marvel")
    data = polychoric_data_from_survey(survey, graph)
    st = with_codebook_reliabilities(PolychoricSettings(unmeasured="joint"), survey, data)
    # the synthetic codebook declares the generator's loadings squared for its two single items
    assert dict(st.item_reliability) == {"prof_help": pytest.approx(0.4225), "household_income": pytest.approx(0.5776)}
    assert st.unmeasured == "joint" and st.reliability == 0.8
    # an explicit value overrides the codebook's for that item only
    st2 = with_codebook_reliabilities(PolychoricSettings(item_reliability={"prof_help": 0.3}), survey, data)
    assert dict(st2.item_reliability) == {"prof_help": 0.3, "household_income": pytest.approx(0.5776)}
