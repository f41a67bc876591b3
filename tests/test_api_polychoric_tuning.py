"""``vb.fit``'s tuning default on the polychoric route: ``min(draws, POLYCHORIC_DEFAULT_TUNE)``
when ``tune`` is not given (docs/performance.md §7), ``draws`` on the other routes, and a given
``tune`` always as given. The samplers are stubbed (the fits themselves are tested in
tests/inference and tests/workflow)."""

from __future__ import annotations

import pytest

import veerkracht_bayes as vb
from _small_fit import StopBeforeSampling, small_marvel_survey
from veerkracht_bayes.api import POLYCHORIC_DEFAULT_TUNE
from veerkracht_bayes.inference import polychoric_fit, sampling


@pytest.fixture(scope="module")
def survey():
    return small_marvel_survey()


@pytest.fixture
def seen(monkeypatch):
    got: dict = {}

    def fake_poly(graph, data, priors=None, *, settings=None, polychoric=None, item_construct=None):
        got.update(route="polychoric", draws=settings.draws, tune=settings.tune)
        raise StopBeforeSampling

    def fake_cont(graph, data, priors=None, *, settings=None, **kw):
        got.update(route="continuous", draws=settings.draws, tune=settings.tune)
        raise StopBeforeSampling

    monkeypatch.setattr(polychoric_fit, "fit_polychoric", fake_poly)
    monkeypatch.setattr(sampling, "fit", fake_cont)
    return got


@pytest.mark.parametrize("kwargs, route, draws, tune", [
    ({}, "polychoric", 1000, POLYCHORIC_DEFAULT_TUNE),  # the README's call: auto -> polychoric
    ({"measurement": "polychoric", "draws": 300}, "polychoric", 300, 300),  # never more than draws
    ({"draws": 2000}, "polychoric", 2000, POLYCHORIC_DEFAULT_TUNE),
    ({"tune": 1000}, "polychoric", 1000, 1000),  # a given tune is kept
    ({"measurement": "continuous"}, "continuous", 1000, 1000),  # the other routes: tune = draws
    ({"measurement": "continuous", "draws": 700}, "continuous", 700, 700),
])
def test_tuning_default_follows_the_route(survey, seen, kwargs, route, draws, tune) -> None:
    with pytest.raises(StopBeforeSampling):
        vb.fit("marvel", survey, progress=False, **kwargs)
    assert seen == {"route": route, "draws": draws, "tune": tune}
    assert POLYCHORIC_DEFAULT_TUNE < 1000
