"""Tests of the sufficient statistics (veerkracht_bayes.survey.statistics).

Identities (pattern sums, weight normalisation, weighted standardisation) are checked to
floating-point precision (1e-10 on sums of O(100) terms of size O(1)).
"""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.survey.statistics import pattern_stats, prepare_model_data


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(7)
    n, m = 300, 5
    y = rng.normal(size=(n, m)) @ rng.normal(size=(m, m)) + 3.0
    y[rng.random((n, m)) < 0.15] = np.nan
    x = rng.normal(size=(n, 2))
    w = rng.uniform(0.2, 3.0, n)
    return y, x, w


def test_pattern_stats_equal_direct_sums(raw):
    y, x, w = raw
    u = np.column_stack([np.ones(len(y)), x])
    st = pattern_stats(y, u, w)
    obs = ~np.isnan(y)
    assert st.n_patterns == len({tuple(r) for r in obs})
    assert st.n_patterns > 10
    for p in range(st.n_patterns):
        rows = np.flatnonzero((obs == st.masks[p]).all(axis=1))
        np.testing.assert_array_equal(st.pattern_of_row[rows], p)
        y0 = np.where(obs[rows], y[rows], 0.0)
        Syy = sum(w[i] * np.outer(y0[k], y0[k]) for k, i in enumerate(rows))
        Suy = sum(w[i] * np.outer(u[i], y0[k]) for k, i in enumerate(rows))
        Suu = sum(w[i] * np.outer(u[i], u[i]) for i in rows)
        assert st.W[p] == pytest.approx(w[rows].sum(), rel=1e-12)
        np.testing.assert_allclose(st.Syy[p], Syy, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(st.Suy[p], Suy, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(st.Suu[p], Suu, rtol=1e-10, atol=1e-10)
    # every row is in exactly one pattern
    assert st.W.sum() == pytest.approx(w.sum(), rel=1e-12)


def test_prepare_standardises_weighted_and_normalises_weights(raw):
    y, x, w = raw
    md = prepare_model_data(y, [f"y{j}" for j in range(5)], ["a"] * 5, weights=w, covariates=x,
                            covariate_names=["x1", "x2"], missing="fiml")
    assert md.weights.sum() == pytest.approx(md.n, rel=1e-12)
    wn = md.weights
    for j in range(5):
        ok = ~np.isnan(md.y[:, j])
        mu = np.average(md.y[ok, j], weights=wn[ok])
        sd = np.sqrt(np.average((md.y[ok, j] - mu) ** 2, weights=wn[ok]))
        assert mu == pytest.approx(0.0, abs=1e-12) and sd == pytest.approx(1.0, rel=1e-12)
        # back-transform recovers the raw values
        np.testing.assert_allclose(md.y[ok, j] * md.item_scale[j] + md.item_center[j], y[ok, j], rtol=1e-12)
    np.testing.assert_allclose(wn @ md.x, 0.0, atol=1e-9)
    np.testing.assert_allclose(md.x_cov, (md.x * (wn / wn.sum())[:, None]).T @ md.x, rtol=1e-12)
    assert md.missing_method == "fiml" and md.n_patterns == md.stats.n_patterns


def test_rows_with_missing_covariate_are_excluded_and_counted(raw):
    y, x, w = raw
    x = x.copy()
    x[:7, 0] = np.nan
    y = y.copy()
    y[10] = np.nan
    md = prepare_model_data(y, [f"y{j}" for j in range(5)], ["a"] * 5, weights=w, covariates=x,
                            covariate_names=["x1", "x2"])
    assert md.n == 300 - 8 and md.n_excluded == 8
    assert sum(md.exclusion_reasons.values()) == 8
    assert any("missing covariate" in k for k in md.exclusion_reasons)


def test_auto_switches_to_two_stage_beyond_pattern_limit(raw):
    y, x, w = raw
    md = prepare_model_data(y, [f"y{j}" for j in range(5)], ["a"] * 5, weights=w, max_fiml_patterns=3)
    assert md.missing_method == "two_stage" and md.stats.n_patterns == 1
    assert md.stats.masks.all()


def test_constant_item_is_rejected_with_its_name():
    y = np.column_stack([np.arange(10.0), np.full(10, 4.0)])
    with pytest.raises(ModelError, match=r"'flat'.*no variance"):
        prepare_model_data(y, ["ok", "flat"], ["a", "a"])


def test_bad_missing_method_is_rejected():
    y = np.random.default_rng(0).normal(size=(10, 2))
    y[0, 0] = np.nan
    with pytest.raises(ModelError, match="missing must be"):
        prepare_model_data(y, ["a1", "a2"], ["a", "a"], missing="listwise")


@pytest.mark.parametrize("m", [1, 5, 57, 64, 65, 130])
def test_unique_patterns_equals_numpy_unique_rows(m):
    """Same distinct rows, same order and same inverse as np.unique(obs, axis=0)."""
    from veerkracht_bayes.survey.statistics import unique_patterns

    rng = np.random.default_rng(m)
    obs = rng.random((3000, m)) < rng.uniform(0.5, 0.99)
    obs[:5] = False
    obs[5:9] = True
    keys, inv = np.unique(obs, axis=0, return_inverse=True)
    k2, i2 = unique_patterns(obs)
    np.testing.assert_array_equal(k2, keys)
    np.testing.assert_array_equal(i2, inv.reshape(-1))
