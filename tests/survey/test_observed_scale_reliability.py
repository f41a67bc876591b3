"""Single-item reliabilities on the continuous path: the codebook's value (latent-response scale for a
binary or Likert item) converted to the observed score by the polyserial attenuation, and the model
builder's per-item fixed loadings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import veerkracht_bayes as vb
from veerkracht_bayes.errors import ModelError, SurveyError
from veerkracht_bayes.survey.codebook import (
    BINARY_MAX_OBSERVED_RELIABILITY,
    continuous_path_reliabilities,
    observed_scale_reliability,
)


@pytest.mark.parametrize("rel, cuts", [(0.8, [0.0]), (0.4225, [norm.ppf(0.85)]), (0.6, [-1.0, 0.0, 0.7, 1.5])])
def test_conversion_matches_a_simulated_item(rel: float, cuts: list[float]) -> None:
    """corr(score, construct)^2 of a simulated coarsened item equals the conversion, within 4 Monte
    Carlo SE (SE of a correlation ~ (1 - r^2) / sqrt(n))."""
    rng = np.random.default_rng(5)
    n = 200_000
    eta = rng.standard_normal(n)
    ystar = np.sqrt(rel) * eta + np.sqrt(1 - rel) * rng.standard_normal(n)
    score = np.digitize(ystar, cuts)
    shares = np.bincount(score) / n
    r_obs = np.corrcoef(score, eta)[0, 1]
    r_conv = np.sqrt(observed_scale_reliability(rel, shares))
    assert abs(r_obs - r_conv) < 4 * (1 - r_conv ** 2) / np.sqrt(n), (r_obs, r_conv)


def test_a_binary_item_never_exceeds_two_over_pi() -> None:
    assert BINARY_MAX_OBSERVED_RELIABILITY == pytest.approx(0.6366, abs=1e-4)
    for p in (0.02, 0.15, 0.5, 0.9):
        assert observed_scale_reliability(1.0, [1 - p, p]) <= BINARY_MAX_OBSERVED_RELIABILITY + 1e-12
    # the global 0.8 on a 15 %-yes item: about 0.39, the attenuation the continuous path had to assume away
    assert observed_scale_reliability(0.8, [0.85, 0.15]) == pytest.approx(0.8 * norm.pdf(norm.ppf(0.85)) ** 2
                                                                           / (0.85 * 0.15))
    with pytest.raises(SurveyError):
        observed_scale_reliability(0.5, [1.0, 0.0])
    with pytest.raises(SurveyError):
        observed_scale_reliability(1.5, [0.5, 0.5])


def test_the_shipped_codebook_values_reach_the_observed_scale() -> None:
    from veerkracht_bayes.datasets.synthetic import simulate_population

    s = simulate_population(3000, 2)
    survey = vb.read_survey(s.data, s.codebook, graph="marvel")
    rel = continuous_path_reliabilities(survey, vb.load_graph("marvel"))
    # prof_help is binary with codebook reliability 0.4225 (latent-response): converted down
    yes = float(np.nanmean(survey.item_matrix()[0][:, survey.item_matrix()[1].index("prof_help")]))
    assert rel["prof_help"] == pytest.approx(observed_scale_reliability(0.4225, [1 - yes, yes]), rel=0.05)
    assert rel["prof_help"] < 0.4225
    # household_income is continuous (log transform): its codebook value is used as is
    assert rel["household_income"] == pytest.approx(0.5776)
    # covariates (single items of exogenous roots) are observed: not listed
    assert "single_parent" not in rel


def test_model_builder_fixes_each_single_item_at_its_own_reliability() -> None:
    from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    from veerkracht_bayes.sem.model_builder import build_model, fixed_item_reliability
    from veerkracht_bayes.survey.statistics import prepare_model_data

    y = np.random.default_rng(0).normal(size=(80, 3))
    md = prepare_model_data(y, ["a1", "a2", "b1"], ["a", "a", "b"])
    model, layout = build_model(graph_from_lavaan("b ~ a"), md, item_reliability={"b1": 0.3})
    assert fixed_item_reliability(layout).tolist() == [0.8, 0.8, 0.3]
    lam = model["lambda"].eval({model["loading"]: np.ones(2)})
    theta = model["theta"].eval({model["residual_var"]: np.ones(2)})
    assert lam[2] == pytest.approx(np.sqrt(0.3)) and theta[2] == pytest.approx(0.7)
    with pytest.raises(ModelError, match="single item"):
        build_model(graph_from_lavaan("b ~ a"), md, item_reliability={"a1": 0.3})
