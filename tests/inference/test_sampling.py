"""Tests of the fit entry point (veerkracht_bayes.inference.sampling): prior-only mode and settings.

Fits with data are exercised by test_recovery.py (coverage, R-hat, divergences) and the log
density by test_model_builder.py; here the prior-only path and the returned structure.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem.implied_moments import structural_matrices
from veerkracht_bayes.inference.sampling import fit

os.environ.setdefault("OMP_NUM_THREADS", "1")

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "+"), ("b", "a", "+")]


def make_graph() -> CausalGraph:
    nodes = ["x", "a", "b", "c"]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "s",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


@pytest.fixture(scope="module")
def prior_fit():
    return fit(make_graph(), None, prior_only=True, prior_draws=300, random_seed=5, progressbar=False)


def test_prior_only_returns_prior_as_posterior(prior_fit):
    idata = prior_fit.idata
    assert prior_fit.prior_only and int(idata.attrs["prior_only"]) == 1
    post, prior = idata["posterior"]["beta"].values, idata["prior"]["beta"].values
    assert post.shape == (1, 300, len(EDGES))
    np.testing.assert_array_equal(post, prior)
    prov = json.loads(idata.attrs["provenance"])
    assert "5" in json.dumps(prov)  # the seed is recorded


def test_prior_draws_respect_signs_stability_and_standardisation(prior_fit):
    g, lay = prior_fit.graph, prior_fit.layout
    beta = prior_fit.idata["prior"]["beta"].values.reshape(-1, len(EDGES))
    assert (beta > 0).all()  # every edge is '+': truncated to its sign
    B, _ = structural_matrices(lay, g, beta)
    rho = np.max(np.abs(np.linalg.eigvals(np.abs(B))), axis=1)
    # rejection with acceptance sigmoid((0.99 - rho)/0.005): a draw with rho >= 1.02 survives
    # with probability < 0.003; with the default N(0.15, 0.15) priors such rho are rare anyway.
    assert rho.max() < 1.02
    psi = prior_fit.idata["prior"]["psi"].sel(latent=list(lay.latent)).values.reshape(len(beta), -1)
    assert (psi > 1e-4).all()


def test_unknown_sampler_is_rejected():
    with pytest.raises(ModelError, match="unknown sampler 'stan'"):
        fit(make_graph(), None, prior_only=True, sampler="stan")


def _marvel_model():
    """MARVEL with the synthetic codebook's items (single-item constructs, unmeasured nodes: cut
    mode, two covariates) on random data: the layout of the shipped analysis."""
    from pathlib import Path

    from veerkracht_bayes.survey.codebook import load_codebook
    from veerkracht_bayes.sem.model_builder import build_model
    from veerkracht_bayes.survey.statistics import prepare_model_data

    g = CausalGraph.marvel()
    root = Path(__file__).resolve().parents[2]
    cb = load_codebook(root / "data/synthetic/codebook_synthetic.yaml", graph=g)
    cov = ["adverse_life_events", "single_parent_household"]
    items = [(it.column, k) for k, it in cb.item_specs() if k not in cov]
    rng = np.random.default_rng(0)
    md = prepare_model_data(rng.normal(size=(80, len(items))), [c for c, _ in items], [k for _, k in items],
                            covariates=rng.normal(size=(80, 2)), covariate_names=cov)
    model, layout = build_model(g, md)
    return g, md, model, layout


def test_numpy_log_prior_equals_pymc_compute_log_prior():
    """The log_prior group (prior sensitivity) is computed with SciPy; it must equal PyMC's
    ``compute_log_prior`` on the same model: names, dims and values."""
    import xarray as xr
    from pymc.stats.log_density import compute_log_prior

    from veerkracht_bayes.inference.sampling import draw_prior, log_prior_numpy

    g, md, model, layout = _marvel_model()
    assert layout.cut_active and layout.single_item_constructs
    from veerkracht_bayes.sem.model_builder import edge_groups

    prior = draw_prior(model, layout, g, 40, 3, md.x_cov)
    # as after sampling: the raw edge groups hold the sampled (data-informed) edges only
    keys = list(layout.sampled_edges)
    for name, _, idx in edge_groups(layout.edge_priors, keys):
        vals = prior["beta"].sel(edge=[keys[i] for i in idx]).values
        prior[name] = (("chain", "draw", f"{name}_dim_0"), vals)
    ours = log_prior_numpy(prior, layout)
    ref = compute_log_prior(xr.DataTree.from_dict({"posterior": prior}), model=model,
                            extend_inferencedata=False, progressbar=False)
    ref = ref["log_prior"].to_dataset() if "log_prior" in getattr(ref, "children", {}) else ref
    assert set(ours.data_vars) == set(ref.data_vars)
    for v in ref.data_vars:
        assert ours[v].dims == ref[v].dims, v
        # PyMC's LogNormal normalising constant is computed in float32 (about 1e-8 off); SciPy's
        # matches the exact formula to 1e-15, so the tolerance is 1e-7 absolute
        np.testing.assert_allclose(ours[v].values, ref[v].values, rtol=1e-9, atol=1e-7, err_msg=v)


@pytest.mark.parametrize("mu,sd,lo,hi", [(0.15, 0.15, 0.0, np.inf), (-0.2, 0.1, -np.inf, 0.0),
                                         (3.0, 0.5, 0.0, np.inf), (-1.0, 0.2, 0.0, np.inf),
                                         (0.0, 1.0, -0.5, 2.0)])
def test_truncated_normal_draws_follow_scipy_law(mu, sd, lo, hi):
    """Inversion draws (tail side) against scipy's truncnorm CDF: Kolmogorov-Smirnov at alpha 0.001,
    and every draw inside the bounds (including a far-tail case, mu 5 sd below the bound)."""
    from scipy import stats

    from veerkracht_bayes.inference.sampling import truncnorm_draws

    rng = np.random.default_rng(11)
    x = truncnorm_draws(np.array([mu]), np.array([sd]), np.array([lo]), np.array([hi]), (20_000, 1), rng)[:, 0]
    assert np.isfinite(x).all() and (x >= lo).all() and (x <= hi).all()
    law = stats.truncnorm((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
    assert stats.kstest(x, law.cdf).pvalue > 1e-3


def test_log_prior_densities_equal_scipy_stats():
    """The scipy.special forms used by ``log_prior_numpy`` equal scipy.stats' densities, for
    one- and two-sided truncation (bounds in either tail), Student t and the log-normal."""
    from scipy import stats

    from veerkracht_bayes.inference.sampling import norm_logpdf, t_logpdf, truncnorm_logpdf

    x = np.linspace(-3, 3, 61)
    for mu, sd, lo, hi in ((0.15, 0.15, 0.0, np.inf), (-0.15, 0.15, -np.inf, 0.0), (0.1, 0.3, -0.5, 0.8),
                           (0.0, 0.1, 0.5, 1.5), (0.0, 0.1, -1.5, -0.5)):
        ref = stats.truncnorm.logpdf(x, (lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
        got = truncnorm_logpdf(x, mu, sd, lo, hi)
        assert np.array_equal(np.isfinite(ref), np.isfinite(got))
        np.testing.assert_allclose(got[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(t_logpdf(x, 4.0, 0.1, 0.3), stats.t.logpdf(x, 4.0, 0.1, 0.3), rtol=1e-12)
    np.testing.assert_allclose(norm_logpdf(x, 0.1, 0.3), stats.norm.logpdf(x, 0.1, 0.3), rtol=1e-12)
