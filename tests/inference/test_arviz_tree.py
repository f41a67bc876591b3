"""The fit's DataTree follows ArviZ's conventions (veerkracht_bayes.inference.sampling).

Named dims with coordinates on every variable, the same variables in ``prior`` and
``posterior``, constants in ``constant_data``, data summaries in ``observed_data`` and a
per-respondent ``log_likelihood`` whose sum per missingness pattern equals the likelihood
computed from the sufficient statistics alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from _small_fit import small_fit

SAMPLE = ("chain", "draw")


@pytest.fixture(scope="module")
def fitted():
    return small_fit()


def test_every_variable_has_named_dims_with_coordinates(fitted):
    idata = fitted.idata
    for group in ("posterior", "prior", "log_prior", "log_likelihood", "observed_data", "constant_data",
                  "sample_stats"):
        ds = idata[group].to_dataset()
        for name, da in ds.data_vars.items():
            for d in da.dims:
                assert "_dim_" not in d, (group, name, d)
                if d not in SAMPLE:
                    assert d in ds.coords, (group, name, d)


def test_prior_and_posterior_hold_the_same_variables_dims_and_coords(fitted):
    post, prior = fitted.idata["posterior"].to_dataset(), fitted.idata["prior"].to_dataset()
    assert set(post.data_vars) == set(prior.data_vars)
    assert {"beta", "psi", "rho_abs_bound", "loading", "residual_var", "nu"} == set(post.data_vars)
    for v in post.data_vars:
        assert post[v].dims == prior[v].dims, v
        for d in post[v].dims:
            if d not in SAMPLE:
                assert list(post[d].values) == list(prior[d].values), (v, d)
    assert list(post["beta"]["edge"].values) == list(fitted.graph.edge_keys)
    assert list(post["loading"]["free_item"].values) == ["a1", "a2", "b1", "b2", "d1", "d2"]
    assert list(post["psi"]["latent"].values) == ["a", "b", "c"]  # d has no cause: psi = 1


def test_constants_are_in_constant_data_and_sampled_variables_vary(fitted):
    idata = fitted.idata
    const = idata["constant_data"].to_dataset()
    np.testing.assert_array_equal(const["alpha"].values, 0.0)
    assert list(const["alpha"]["node"].values) == list(fitted.graph.nodes)
    assert list(const["psi"]["exogenous"].values) == ["x", "d"]
    np.testing.assert_allclose(const["psi"].sel(exogenous="x").values, fitted.data.x_cov[0, 0])
    np.testing.assert_allclose(const["psi"].sel(exogenous="d").values, 1.0)
    assert list(const["loading"]["fixed_item"].values) == ["c1"]
    np.testing.assert_allclose(const["loading"].values, np.sqrt(0.8))
    np.testing.assert_allclose(const["residual_var"].values, 0.2)
    post = idata["posterior"].to_dataset()
    for v in post.data_vars:  # nothing constant is left among the sampled variables
        sd = post[v].std(SAMPLE).values
        assert np.all(sd > 0), v


def test_summary_has_no_nan_rhat_and_loo_runs(fitted):
    import arviz as az

    s = az.summary(fitted.idata)
    assert len(s) > 0 and not s["r_hat"].isna().any()
    loo = az.loo(fitted.idata)
    assert np.isfinite(float(loo.elpd))


def test_log_likelihood_per_pattern_equals_statistics_likelihood(fitted):
    """Summing the per-respondent terms over each missingness pattern gives the pattern terms
    computed from the weighted sufficient statistics alone (the file's log_likelihood)."""
    from veerkracht_bayes.inference.sampling import (
        log_likelihood_by_pattern,
        measurement_draws,
        pattern_loglik,
    )
    from veerkracht_bayes.sem.implied_moments import implied_moments

    idata, data = fitted.idata, fitted.data
    ll = idata["log_likelihood"].to_dataset()
    assert ll["y"].dims == ("chain", "draw", "respondent") and ll.sizes["respondent"] == data.n
    by_pat = log_likelihood_by_pattern(ll, data)["y"].values.reshape(-1, data.stats.n_patterns)
    post = idata["posterior"].to_dataset()
    def flat(name):  # (chain, draw, ...) -> (chain * draw, ...)
        return post[name].stack(sample=("chain", "draw")).transpose("sample", ...).values

    draws = {"beta": flat("beta"), "nu": flat("nu"), **measurement_draws(idata, fitted.layout)}
    Sigma, M = implied_moments(fitted.layout, fitted.graph, data, draws)
    direct = pattern_loglik(Sigma, M, data)
    assert data.stats.n_patterns == 3
    np.testing.assert_allclose(by_pat, direct, rtol=1e-9, atol=1e-8)


def test_observed_data_holds_summaries_not_rows(fitted):
    obs = fitted.idata["observed_data"].to_dataset()
    assert "respondent" not in obs.dims
    assert int(obs["n_respondents"].sum()) == fitted.data.n
    small = obs["n_respondents"].values < obs.attrs["min_pattern_size"]
    assert small.any()  # the 3-respondent pattern: its moments are withheld
    assert np.isnan(obs["item_mean"].values[small]).all()
    big = int(np.argmax(obs["n_respondents"].values))
    seen = obs["observed"].values[big].astype(bool)
    assert np.isfinite(obs["item_mean"].values[big, seen]).all()
    cov = obs["item_cov"].values[big][np.ix_(seen, seen)]
    np.testing.assert_allclose(cov, cov.T)
    assert (np.diag(cov) > 0).all()


def test_structural_draws_join_constants(fitted):
    """StructuralDraws reads alpha and psi on every node from posterior + constant_data."""
    from veerkracht_bayes.causal.draws import StructuralDraws

    d = StructuralDraws.from_posterior(fitted.idata, fitted.graph)
    post = fitted.idata["posterior"].to_dataset()
    i = fitted.graph.node_index
    np.testing.assert_array_equal(d.alpha, 0.0)
    np.testing.assert_allclose(d.psi[:, i["x"]], fitted.data.x_cov[0, 0])
    np.testing.assert_allclose(d.psi[:, i["b"]], post["psi"].sel(latent="b").values.reshape(-1))
    np.testing.assert_allclose(d.psi[:, i["d"]], 1.0)


def test_prior_only_tree_is_native():
    from _small_fit import small_graph

    from veerkracht_bayes.inference.sampling import fit

    r = fit(small_graph(), None, prior_only=True, prior_draws=100, random_seed=2, progressbar=False)
    post, prior = r.idata["posterior"].to_dataset(), r.idata["prior"].to_dataset()
    assert set(post.data_vars) == set(prior.data_vars) == {"beta", "psi", "rho_abs_bound"}
    assert post["psi"].dims == ("chain", "draw", "latent") and list(post["latent"].values) == ["a", "b", "c"]
    assert "alpha" in r.idata["constant_data"].to_dataset()
