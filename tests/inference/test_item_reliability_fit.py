"""The continuous path fixes each single item's loading at its own reliability when asked.

``inference.sampling.fit(item_reliability=...)`` (what ``vb.fit`` and runs pass from the codebook's
per-item ``reliability:`` fields, converted to the observed scale by
``survey.codebook.continuous_path_reliabilities``) must reach every place that fills the fixed
loadings: the sampled model, the native ``constant_data`` group and ``measurement_draws``.
"""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
from veerkracht_bayes.inference.sampling import fit, measurement_draws
from veerkracht_bayes.survey.statistics import prepare_model_data


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(5)
    n = 400
    a = rng.normal(size=n)
    b = 0.5 * a + rng.normal(scale=np.sqrt(0.75), size=n)
    y = np.column_stack([0.8 * a + 0.6 * rng.normal(size=n), 0.7 * a + 0.71 * rng.normal(size=n),
                         np.sqrt(0.3) * b + np.sqrt(0.7) * rng.normal(size=n)])
    md = prepare_model_data(y, ["a1", "a2", "b1"], ["a", "a", "b"])
    return fit(graph_from_lavaan("b ~ a"), md, None, item_reliability={"b1": 0.3}, draws=40, tune=60,
               chains=1, random_seed=3, progressbar=False, pointwise=False)


def test_fixed_loading_follows_the_item_reliability(fitted) -> None:
    const = fitted.idata["constant_data"]
    assert float(const["loading"].sel(fixed_item="b1")) == pytest.approx(np.sqrt(0.3))
    assert float(const["residual_var"].sel(fixed_item="b1")) == pytest.approx(0.7)
    m = measurement_draws(fitted.idata, fitted.layout)
    j = list(fitted.layout.items).index("b1")
    assert np.allclose(m["lambda"][:, j], np.sqrt(0.3)) and np.allclose(m["theta"][:, j], 0.7)


def test_the_global_reliability_would_attenuate_the_link(fitted) -> None:
    # with the item's true reliability 0.3 the a -> b link is recovered near 0.5; the global 0.8
    # would give about 0.5 * sqrt(0.3 / 0.8) = 0.31 (attenuation), far outside the posterior
    beta = fitted.idata["posterior"]["beta"].values.reshape(-1, *fitted.idata["posterior"]["beta"].shape[2:])
    ab = [v for v in beta.reshape(beta.shape[0], -1).T if abs(v.mean()) > 0.05]
    assert len(ab) == 1
    mean, sd = float(ab[0].mean()), float(ab[0].std())
    assert abs(mean - 0.5) < 4 * sd + 0.02, (mean, sd)
    assert mean - 0.31 > 2 * sd, (mean, sd)


def test_the_item_reliabilities_are_in_the_provenance(fitted) -> None:
    import json

    prov = json.loads(fitted.idata.attrs["provenance"])
    assert prov["settings"]["item_reliability"] == {"b1": 0.3}
    assert prov["settings"]["reliability"] == 0.8
