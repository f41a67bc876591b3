"""Simulation-based calibration of the polychoric route (Talts et al. 2018), with a negative control.

Parameters are drawn from the model's prior (edges: |beta| ~ N(0, 1) sign-truncated, through the
model's own stability and standardisation barriers, by rejection: ``ordinal_prior_draws``; loadings
lambda ~ N+(1, 1)), data are simulated from the exact ordered-probit model of the fixture
(5-category and binary items, a 3-cycle plus a covariate), stage 1 summarises them and stage 2
is sampled. The rank of each true link among L thinned posterior draws is uniform on 0..L when
the posterior is calibrated. The negative control fits the same data with the stage-1
covariance divided by 9 (intervals a third as wide): it must fail.

Note: the polychoric posterior is a limited-information approximation (a Gaussian likelihood for
the correlations); at small n its calibration is only approximate, so the slow test uses
n = 1,000 per replication.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2, truncnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _polychoric_fixtures import WidePriors, make_graph, simulate

from veerkracht_bayes.inference.ordinal_fit import ordinal_prior_draws
from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
from veerkracht_bayes.inference.sampling import SamplerSettings
from veerkracht_bayes.sem.polychoric_likelihood import build_polychoric_model

L = 39


def run_sbc(reps: int, n: int, seed: int, draws: int = 200):
    """Ranks (reps, edges) for the calibrated fit and the negative control, and interval hits."""
    g = make_graph()
    _, template = simulate(400, seed)
    _, layout = build_polychoric_model(g, template, WidePriors())
    prior = ordinal_prior_draws(layout, g, reps, seed, np.eye(1))
    betas = prior["beta"].isel(chain=0).values[:reps]
    rng = np.random.default_rng(seed)
    lams = truncnorm.rvs(-1.0, np.inf, loc=1.0, scale=1.0, size=(reps, 9), random_state=rng)
    ss = SamplerSettings(chains=2, draws=draws, tune=300, progressbar=False, prior_draws=50, random_seed=seed)
    out = {"ok": [], "control": []}
    hits = {"ok": 0, "control": 0}
    for r in range(reps):
        _, pdata = simulate(n, seed * 1000 + r, beta=betas[r], lam=lams[r])
        for key, data in (("ok", pdata),
                          ("control", replace(pdata, stats=replace(pdata.stats, acov=pdata.stats.acov / 9.0)))):
            fit = fit_polychoric(g, data, WidePriors(), settings=ss)
            b = fit.idata["posterior"]["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values
            thin = b[np.linspace(0, len(b) - 1, L).astype(int)]
            out[key].append((thin < betas[r][None, :]).sum(axis=0))
            lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
            hits[key] += int(((lo <= betas[r]) & (betas[r] <= hi)).sum())
    return {k: np.array(v) for k, v in out.items()}, hits


def _uniformity_p(ranks: np.ndarray, bins: int = 5) -> float:
    """Chi-square test of the pooled ranks (all edges) against the uniform on 0..L in equal bins."""
    counts = np.histogram(ranks.ravel(), bins=bins, range=(-0.5, L + 0.5))[0]
    exp = ranks.size / bins
    return float(chi2.sf(np.sum((counts - exp) ** 2 / exp), bins - 1))


def test_sbc_fast_twin():
    """4 replications: ranks are in range, and the negative control covers fewer truths than the
    calibrated fit (its intervals are a third as wide around about the same centre); the
    calibrated fit covers at least 10 of 16 (P[Bin(16, 0.9) <= 9] = 0.003)."""
    ranks, hits = run_sbc(4, 400, 11, draws=150)
    assert ranks["ok"].shape == (4, 4) and ranks["ok"].min() >= 0 and ranks["ok"].max() <= L
    assert hits["ok"] >= 10, hits
    assert hits["control"] < hits["ok"], hits


@pytest.mark.slow
def test_sbc_slow():
    """60 replications at n = 1,000: pooled ranks uniform (p > 0.001), control not (p < 0.001)."""
    ranks, hits = run_sbc(60, 1000, 2024)
    p_ok, p_ctl = _uniformity_p(ranks["ok"]), _uniformity_p(ranks["control"])
    print("SBC p (calibrated, control):", p_ok, p_ctl, "hits", hits)
    assert p_ok > 0.001
    assert p_ctl < 0.001
