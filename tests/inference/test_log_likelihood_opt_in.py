"""The per-respondent log-likelihood is opt-in at the front door and can be added later.

``vb.fit`` stores the ``log_likelihood`` group (for LOO) only with ``log_likelihood=True`` (it
costs O(respondents x draws)); ``vb.compute_log_likelihood`` /
``inference.sampling.compute_log_likelihood`` add the same group to a fit made without it. The
values added later equal the eagerly computed ones to 1e-10; the front door passes the flag
through (sampler stubbed, so no compilation) and refuses it where there is no per-respondent
likelihood.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import xarray as xr
from _small_fit import SHARED_DRAWS, small_data, small_fit, small_graph

import veerkracht_bayes as vb
from veerkracht_bayes.api import Fit
from veerkracht_bayes.errors import ConfigError, ModelError
from veerkracht_bayes.inference import sampling
from veerkracht_bayes.inference.sampling import FitResult, compute_log_likelihood


@pytest.fixture(scope="module")
def eager():
    """A small real fit with the log-likelihood computed during ``fit`` (pointwise=True)."""
    return small_fit(seed=4)  # the suite's shared draws and tuning steps (_small_fit)


def _without_log_likelihood(res: FitResult) -> FitResult:
    groups = {k: res.idata[k].to_dataset() for k in res.idata.children if k != "log_likelihood"}
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(res.idata.attrs)
    return FitResult(idata=tree, layout=res.layout, graph=res.graph, data=res.data, settings=res.settings)


def test_added_later_equals_eager_values(eager):
    late = compute_log_likelihood(_without_log_likelihood(eager))
    a = eager.idata["log_likelihood"]["y"]
    b = late.idata["log_likelihood"]["y"]
    assert a.dims == b.dims == ("chain", "draw", "respondent")
    assert b.shape == (2, SHARED_DRAWS, eager.data.n)
    np.testing.assert_allclose(b.values, a.values, rtol=0, atol=1e-10)
    # a result that has the group is returned unchanged
    assert compute_log_likelihood(eager) is eager


def test_front_door_adds_it_to_a_fit(eager):
    f = Fit(result=_without_log_likelihood(eager), kind="diagram")
    assert "log_likelihood" not in f.idata.children
    out = vb.compute_log_likelihood(f)
    assert out is f and "log_likelihood" in f.idata.children
    np.testing.assert_allclose(f.idata["log_likelihood"]["y"].values,
                               eager.idata["log_likelihood"]["y"].values, rtol=0, atol=1e-10)


@pytest.mark.parametrize("flag", [False, True])
def test_fit_passes_the_flag_to_the_engine(monkeypatch, flag):
    seen = {}
    real = sampling.fit

    def stub(graph, md, priors, **kwargs):
        seen.update(kwargs)
        return real(graph, None, priors, prior_only=True, prior_draws=20, random_seed=1)

    monkeypatch.setattr(sampling, "fit", stub)
    kwargs = {"log_likelihood": True} if flag else {}
    vb.fit(small_graph(), small_data(), priors="default", draws=10, progress=False, **kwargs)
    assert seen["pointwise"] is flag


def test_refused_without_a_per_respondent_likelihood():
    with pytest.raises(ConfigError, match="log_likelihood"):
        vb.fit("marvel", prior_only=True, prior_draws=10, measurement="polychoric", log_likelihood=True)
    prior = vb.fit("marvel", prior_only=True, prior_draws=20, seed=1)
    with pytest.raises(ModelError, match="prior-only"):
        vb.compute_log_likelihood(prior)
    with pytest.raises(ModelError, match="diagram"):
        vb.compute_log_likelihood(Fit(result=prior.result, kind="lavaan"))
