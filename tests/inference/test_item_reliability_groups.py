"""The multi-group and two-level fits fix a single item's loading at its own reliability when asked.

``fit_multigroup(item_reliability=...)`` and ``fit_twolevel(item_reliability=...)`` (what a run passes
from the codebook's per-item ``reliability:`` fields, converted to the observed scale) must fix the
loading ``sqrt(r)`` of the single item in every group / at both levels, and the link into its
construct must then be disattenuated: data with a single item of reliability 0.3 and a true link
of 0.5; the global 0.8 would give about ``0.5 * sqrt(0.3 / 0.8) = 0.31``. Small fits (one chain, a
few hundred draws, fixed seeds); the link checks use the posterior SD (Monte Carlo error is small
against it at these sizes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
from veerkracht_bayes.inference.multigroup_fit import fit_multigroup
from veerkracht_bayes.inference.twolevel_fit import fit_twolevel
from veerkracht_bayes.sem.multigroup import build_multigroup_model, prepare_group_data
from veerkracht_bayes.sem.twolevel import build_twolevel_model, twolevel_layout
from veerkracht_bayes.survey.clusters import cluster_statistics

REL = 0.3
LINK = 0.5
ATTENUATED = LINK * np.sqrt(REL / 0.8)  # what the global 0.8 would give (about 0.31)


def _flat(post, name: str) -> np.ndarray:
    da = post[name]
    arr = da.transpose("chain", "draw", *[d for d in da.dims if d not in ("chain", "draw")]).values
    return arr.reshape((-1,) + arr.shape[2:])


def _check_link(draws: np.ndarray) -> None:
    mean, sd = float(draws.mean()), float(draws.std())
    assert abs(mean - LINK) < 4 * sd + 0.02, (mean, sd)   # recovered
    assert mean - ATTENUATED > 2 * sd, (mean, sd)          # not attenuated to the global 0.8's value


# ---------------------------------------------------------------- multi-group
def _group_data(seed: int = 11, n_per_group: int = 2000):
    rng = np.random.default_rng(seed)
    n = 2 * n_per_group
    a = rng.normal(size=n)
    b = LINK * a + np.sqrt(1 - LINK**2) * rng.normal(size=n)
    y = np.column_stack([0.8 * a + 0.6 * rng.normal(size=n), 0.7 * a + np.sqrt(0.51) * rng.normal(size=n),
                         0.75 * a + np.sqrt(1 - 0.5625) * rng.normal(size=n),
                         np.sqrt(REL) * b + np.sqrt(1 - REL) * rng.normal(size=n)])
    return prepare_group_data(y, ["a1", "a2", "a3", "b1"], ["a", "a", "a", "b"], ["u", "v"] * n_per_group)


@pytest.fixture(scope="module")
def group_fit():
    return fit_multigroup(graph_from_lavaan("b ~ a"), _group_data(), None, item_reliability={"b1": REL},
                          draws=300, tune=300, chains=1, random_seed=4, progressbar=False)


def test_multigroup_fixed_loading_is_the_item_reliability_in_every_group(group_fit) -> None:
    post = group_fit.posterior
    lam = _flat(post, "lambda_group")          # (S, group, item)
    j = list(group_fit.layout.base.items).index("b1")
    assert lam.shape[1] == 2
    assert np.allclose(lam[:, :, j], np.sqrt(REL))
    assert np.allclose(_flat(post, "theta")[:, j], 1 - REL)
    assert not np.allclose(lam[:, :, 0], lam[0, 0, 0])  # the multi-item loadings are sampled
    assert group_fit.layout.base.item_reliability == {"b1": REL}


def test_multigroup_link_is_disattenuated(group_fit) -> None:
    keys = list(group_fit.layout.base.edge_keys)
    bg = _flat(group_fit.posterior, "beta_group")[:, :, keys.index("a->b")]   # (S, group)
    share = np.asarray(group_fit.layout.share)
    _check_link(bg @ share)      # the share-weighted population link
    for g in range(bg.shape[1]):
        mean, sd = float(bg[:, g].mean()), float(bg[:, g].std())
        assert abs(mean - LINK) < 4 * sd + 0.02, (g, mean, sd)


def test_multigroup_provenance_records_the_reliabilities(group_fit) -> None:
    prov = json.loads(group_fit.idata.attrs["provenance"])
    assert prov["settings"]["item_reliability"] == {"b1": REL}
    assert prov["settings"]["reliability"] == 0.8


def test_multigroup_default_and_errors() -> None:
    gd = _group_data(n_per_group=50)
    g = graph_from_lavaan("b ~ a")
    model, layout = build_multigroup_model(g, gd)
    assert np.allclose(model["lambda_group"].eval()[:, 3], np.sqrt(0.8))   # the global value by default
    model, _ = build_multigroup_model(g, gd, reliability=0.7, item_reliability={"b1": 0.2})
    assert np.allclose(model["lambda_group"].eval()[:, 3], np.sqrt(0.2))
    assert np.allclose(model["theta"].eval()[3], 0.8)
    with pytest.raises(ModelError, match="not the single item"):
        build_multigroup_model(g, gd, item_reliability={"a1": 0.3})
    with pytest.raises(ModelError, match=r"\(0, 1\]"):
        build_multigroup_model(g, gd, item_reliability={"b1": 1.5})


# ---------------------------------------------------------------- two-level
IC = {"a1": "a", "a2": "a", "a3": "a", "b1": "b"}
KW = {"between": ["a"], "between_links": [], "within_links": ["a->b"]}


def _cluster_stats(seed: int = 3, n_clusters: int = 150, v: float = 0.2):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 12, size=n_clusters)
    cl = np.repeat(np.arange(n_clusters), sizes)
    n = cl.size
    a_w = rng.normal(size=n)
    a_b = rng.normal(size=n_clusters)[cl]
    eta_a = np.sqrt(1 - v) * a_w + np.sqrt(v) * a_b
    eta_b = LINK * a_w + np.sqrt(1 - LINK**2) * rng.normal(size=n)  # within link, on within SDs
    y = np.column_stack([0.8 * eta_a + 0.6 * rng.normal(size=n), 0.7 * eta_a + np.sqrt(0.51) * rng.normal(size=n),
                         0.75 * eta_a + np.sqrt(1 - 0.5625) * rng.normal(size=n),
                         np.sqrt(REL) * eta_b + np.sqrt(1 - REL) * rng.normal(size=n)])
    return cluster_statistics(y, cl, item_names=list(IC))


@pytest.fixture(scope="module")
def twolevel_fit():
    return fit_twolevel(_cluster_stats(), IC, item_reliability={"b1": REL}, draws=300, tune=300, chains=1,
                        random_seed=2, progressbar=False, **KW)


def test_twolevel_fixed_loading_is_the_item_reliability(twolevel_fit) -> None:
    post = twolevel_fit.posterior
    j = list(twolevel_fit.layout.items).index("b1")
    assert np.allclose(_flat(post, "lambda")[:, j], np.sqrt(REL))   # one loading for both levels
    assert np.allclose(_flat(post, "theta_within")[:, j], 1 - REL)
    assert twolevel_fit.layout.item_reliability == {"b1": REL}


def test_twolevel_within_link_is_disattenuated(twolevel_fit) -> None:
    _check_link(twolevel_fit.draws("beta_within")[:, 0])


def test_twolevel_provenance_records_the_reliabilities(twolevel_fit) -> None:
    prov = json.loads(twolevel_fit.idata.attrs["provenance"])
    assert prov["settings"]["item_reliability"] == {"b1": REL}
    assert prov["settings"]["reliability"] == 0.8


def test_twolevel_default_and_errors() -> None:
    cs = _cluster_stats(n_clusters=20)

    def fixed(layout) -> tuple[float, float]:
        m = build_twolevel_model(cs, layout)
        lam = m["lambda"].eval({m["loading"]: np.full(3, 0.7)})
        theta = m["theta_within"].eval({m["residual_var"]: np.full(3, 0.5)})
        return float(lam[3]), float(theta[3])

    assert np.allclose(fixed(twolevel_layout(None, IC, **KW)), (np.sqrt(0.8), 0.2))   # the global value
    assert np.allclose(fixed(twolevel_layout(None, IC, reliability=0.7, item_reliability={"b1": 0.2}, **KW)),
                       (np.sqrt(0.2), 0.8))
    with pytest.raises(ModelError, match="not the single item") as err:
        twolevel_layout(None, IC, item_reliability={"a1": 0.3}, **KW)
    assert err.value.problems[0].location == "item_reliability.a1"
    with pytest.raises(ModelError, match=r"\(0, 1\)"):
        twolevel_layout(None, IC, item_reliability={"b1": 1.0}, **KW)
