"""Tests of scale helpers: reverse coding, ordinal codes, weighted standardisation, scores."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.survey.scales import (
    construct_scores,
    ordinal_codes,
    reverse_code,
    standardise,
    weighted_mean_sd,
)


def test_reverse_code_involution() -> None:
    x = np.array([1.0, 2.0, np.nan, 5.0])
    r = reverse_code(x, 1, 5)
    np.testing.assert_array_equal(r[[0, 1, 3]], [5.0, 4.0, 1.0])
    assert np.isnan(r[2])
    np.testing.assert_array_equal(reverse_code(r, 1, 5)[[0, 1, 3]], x[[0, 1, 3]])
    np.testing.assert_array_equal(reverse_code(np.array([0.0, 3.0]), 0, 3), [3.0, 0.0])


def test_ordinal_codes() -> None:
    np.testing.assert_array_equal(ordinal_codes(np.array([1, 5, np.nan, 3]), 1, 5), [0, 4, -1, 2])
    np.testing.assert_array_equal(ordinal_codes(np.array([0, 3]), 0, 4), [0, 3])
    with pytest.raises(ValueError, match="value 6 is not one of the 5 categories 1..5"):
        ordinal_codes(np.array([1, 6]), 1, 5)
    with pytest.raises(ValueError, match="value 2.5"):
        ordinal_codes(np.array([2.5]), 1, 5)


def test_weighted_mean_sd_matches_replication() -> None:
    # integer weights = replicating rows; the weighted moments equal the replicated ones
    x = np.array([1.0, 2.0, 4.0, np.nan])
    w = np.array([1.0, 3.0, 2.0, 5.0])
    m, sd = weighted_mean_sd(x, w)
    rep = np.repeat(x[:3], w[:3].astype(int))
    assert m == pytest.approx(rep.mean(), rel=1e-12)
    assert sd == pytest.approx(rep.std(ddof=0), rel=1e-12)
    # scale invariance of the weights
    assert weighted_mean_sd(x, 10 * w) == pytest.approx((m, sd))
    assert np.isnan(weighted_mean_sd(np.array([np.nan]))[0])


def test_standardise() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5, 2, size=(200, 3))
    x[rng.random((200, 3)) < 0.1] = np.nan
    w = rng.uniform(0.2, 3, 200)
    z = standardise(x, w)
    for j in range(3):
        m, sd = weighted_mean_sd(z[:, j], w)
        assert m == pytest.approx(0, abs=1e-12) and sd == pytest.approx(1, rel=1e-12)
    assert np.array_equal(np.isnan(z), np.isnan(x))
    np.testing.assert_array_equal(standardise(np.array([2.0, 2.0])), [0.0, 0.0])  # constant


def test_construct_scores() -> None:
    items = np.array([[1.0, 3.0, 10.0], [np.nan, 5.0, 20.0], [np.nan, np.nan, 30.0]])
    cols = ["a", "b", "c"]
    s = construct_scores(items, cols, {"ab": ["a", "b"], "c": ["c"]}, standardise_items=False)
    np.testing.assert_array_equal(s["ab"][:2], [2.0, 5.0])
    assert np.isnan(s["ab"][2])
    s2 = construct_scores(items, cols, {"ab": ["a", "b"]}, standardise_items=False, method="sum",
                          min_items=2)
    assert s2["ab"][0] == 4.0 and np.isnan(s2["ab"][1])
    z = construct_scores(items, cols, {"c": ["c"]})["c"]
    np.testing.assert_allclose(z, (items[:, 2] - 20) / np.std(items[:, 2]))
    with pytest.raises(KeyError, match="not in the item matrix"):
        construct_scores(items, cols, {"x": ["zz"]})
    with pytest.raises(ValueError, match="method"):
        construct_scores(items, cols, {"c": ["c"]}, method="median")
