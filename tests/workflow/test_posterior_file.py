"""``posterior.nc`` as written by the pipeline is an ArviZ-native DataTree.

A real small fit (a cyclic model on simulated data; the pipeline fixture in test_pipeline.py
is prior-only) is written by the pipeline's posterior writer, reopened with
``xr.open_datatree`` and passed to ArviZ: ``az.summary`` has no NaN R-hat rows,
``az.plot_prior_posterior(dt, var_names=["beta"])`` draws and ``az.loo`` runs on the
per-pattern log-likelihood. No respondent-level values are in the file.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import xarray as xr
from _small_fit import small_fit

from veerkracht_bayes.workflow.pipeline import POSTERIOR_GROUPS, write_posterior


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    fitted = small_fit(seed=5)  # the suite's shared draws and tuning steps (_small_fit)
    folder = tmp_path_factory.mktemp("post")
    name = write_posterior(fitted, folder)
    with xr.open_datatree(folder / name) as dt:
        dt = dt.load()
    return fitted, dt


def test_groups_and_no_respondent_values(reloaded):
    fitted, dt = reloaded
    assert set(dt.children) == set(POSTERIOR_GROUPS)
    for g in dt.children:
        assert "respondent" not in dt[g].to_dataset().dims, g
    ll = dt["log_likelihood"].to_dataset()
    assert ll["y"].dims == ("chain", "draw", "pattern")
    # the per-pattern terms add up to the in-memory per-respondent total, draw by draw
    total = fitted.idata["log_likelihood"]["y"].sum("respondent").values
    np.testing.assert_allclose(ll["y"].sum("pattern").values, total, rtol=1e-10)


def test_provenance_in_file_attributes(reloaded):
    fitted, dt = reloaded
    prov = json.loads(dt.attrs["provenance"])
    assert prov == json.loads(fitted.idata.attrs["provenance"])
    assert dt.attrs["created_by"].startswith("veerkracht_bayes")
    assert "pattern" in dt.attrs["log_likelihood"]


def test_arviz_summary_has_no_nan_rhat(reloaded):
    import arviz as az

    s = az.summary(dt := reloaded[1])
    assert len(s) >= len(dt["posterior"]["beta"]["edge"]) and not s["r_hat"].isna().any()


def test_arviz_plot_prior_posterior_beta(reloaded):
    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    pc = az.plot_prior_posterior(reloaded[1], var_names=["beta"], backend="matplotlib")
    assert pc is not None
    plt.close("all")


def test_arviz_loo_on_the_file(reloaded):
    import arviz as az

    loo = az.loo(reloaded[1])
    assert np.isfinite(float(loo.elpd))
    assert loo.n_data_points == reloaded[1]["log_likelihood"].sizes["pattern"]
