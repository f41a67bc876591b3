"""The polychoric route, stage 2: implied correlations against stage 1 at the truth, the model's
log-density against a hand-written Gaussian, recovery, and agreement with the exact ordinal path.

Agreement (slow test, n = 2,000): the two paths use the same data, the same edge priors and the
same loading priors (theta parameterisation), so their posteriors of the structural links must
agree up to the information the polychoric summaries lose (small for 3 items per construct):
posterior means within 0.2 posterior SD and 90 % interval widths within 25 %. The fast twin runs
both paths at n = 300 and checks finiteness and a loose agreement (within 1 posterior SD: at
n = 300 the two posteriors differ by their priors' pull and by Monte Carlo error of 300 draws).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _polychoric_fixtures import LAMBDA, TRUE_BETA, WidePriors, make_graph, simulate

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
from veerkracht_bayes.inference.sampling import SamplerSettings
from veerkracht_bayes.sem.polychoric_likelihood import (
    build_polychoric_model,
    implied_correlations,
    polychoric_data,
)

STD_LAMBDA = LAMBDA / np.sqrt(1 + LAMBDA ** 2)


def _truth_correlations(pdata):
    """Implied correlations at the true parameters, NumPy."""
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = TRUE_BETA[1], TRUE_BETA[2], TRUE_BETA[3]
    G = np.array([[TRUE_BETA[0]], [0.0], [0.0]])
    A = np.linalg.inv(np.eye(3) - B)
    AG = A @ G
    psi = np.linalg.solve(A * A, 1.0 - (AG ** 2).sum(1))
    S = A @ np.diag(psi) @ A.T + AG @ AG.T
    names = pdata.stats.names
    kind = np.array([0] * 9 + [1])
    idx = np.array(list(range(9)) + [0])
    pairs = pdata.stats.pairs[pdata.lik_pairs]
    parts, inv = implied_correlations(S, AG, STD_LAMBDA, np.repeat(np.arange(3), 3), kind, idx, pairs)
    assert names[-1] == "x_item"
    return np.concatenate(parts)[inv]


def test_implied_correlations_match_stage_one_at_the_truth():
    """At a large n the stage-1 correlations scatter around the model-implied ones as N(0, Gamma):
    the quadratic form is chi-square with s degrees of freedom (checked at its 0.1 % / 99.9 %
    quantiles)."""
    from scipy.stats import chi2

    _, pdata = simulate(50_000, 5)
    rho = _truth_correlations(pdata)
    r = pdata.stats.r[pdata.lik_pairs]
    G = pdata.stats.acov[np.ix_(pdata.lik_pairs, pdata.lik_pairs)]
    d = r - rho
    q = d @ np.linalg.solve(G, d)
    s = len(r)
    assert s == 45  # 36 item pairs + 9 item-covariate pairs; x with itself is conditioned on
    assert chi2.ppf(0.001, s) < q < chi2.ppf(0.999, s), q


def test_model_logdensity_is_the_gaussian_of_the_correlations():
    """The model's correlation term equals -1/2 (r - rho)' Gamma^-1 (r - rho) at the truth."""

    _, pdata = simulate(2000, 6)
    model, layout = build_polychoric_model(make_graph(), pdata, WidePriors())
    assert layout.lik_latent == ("a", "b", "c") and layout.covariates == ("x",)
    assert set(layout.single_item_constructs) == set()
    rho = _truth_correlations(pdata)
    r = pdata.stats.r[pdata.lik_pairs]
    G = pdata.stats.acov[np.ix_(pdata.lik_pairs, pdata.lik_pairs)]
    ref = -0.5 * (r - rho) @ np.linalg.solve(G, r - rho)
    constrained = {"beta_truncated_normal_pos": TRUE_BETA[:3], "beta_truncated_normal_neg": TRUE_BETA[3:],
                   "loading": LAMBDA}
    assert {rv.name for rv in model.free_RVs} == set(constrained)
    for rv in model.free_RVs:
        model.set_initval(rv, constrained[rv.name])
    point = model.initial_point()
    outs = model.replace_rvs_by_values([model.potentials[-1], model["lambda"]])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    pot, lam = fn(point)
    assert lam == pytest.approx(STD_LAMBDA)
    assert float(pot) == pytest.approx(ref, rel=1e-6)


def test_stage_two_rejects_unknown_variables():
    _, pdata = simulate(300, 1)
    with pytest.raises(ModelError, match="not in the stage-1 result"):
        polychoric_data(pdata.stats, {"nope": "a"})


def _beta(fit):
    post = fit.idata["posterior"]
    return post["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values


def _summary(fit):
    b = _beta(fit)
    lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
    return b.mean(0), b.std(0), hi - lo


def _agree(n, seed, draws, tune):
    from veerkracht_bayes.inference.ordinal_fit import fit_ordinal

    od, pdata = simulate(n, seed)
    g = make_graph()
    ss = SamplerSettings(chains=2, draws=draws, tune=tune, progressbar=False, prior_draws=200, random_seed=3)
    fp = fit_polychoric(g, pdata, WidePriors(), settings=ss)
    fo = fit_ordinal(g, od, WidePriors(), settings=ss)
    return _summary(fp), _summary(fo), fp


def test_polychoric_route_runs_and_is_close_to_the_ordinal_path_fast():
    (mp, sp, wp), (mo, so, wo), fp = _agree(300, 2, 200, 300)
    assert fp.idata.attrs["likelihood"] == "polychoric"
    assert np.all(np.isfinite(mp)) and np.all(sp > 0)
    assert np.all(np.abs(mp - mo) < 1.0 * np.maximum(sp, so)), (mp, mo, sp)
    assert np.all(np.abs(wp / wo - 1) < 0.6), wp / wo
    lam = fp.idata["posterior"]["lambda"].values
    assert np.all((lam > 0) & (lam < 1))


@pytest.mark.slow
def test_polychoric_route_agrees_with_the_ordinal_path():
    (mp, sp, wp), (mo, so, wo), _ = _agree(2000, 4, 1000, 600)
    print("polychoric", mp, sp, "\nordinal   ", mo, so, "\nwidth ratio", wp / wo)
    assert np.all(np.abs(mp - mo) < 0.2 * so), (mp - mo) / so
    assert np.all(np.abs(wp / wo - 1) < 0.25), wp / wo


def test_recovery_at_large_n_fast():
    """Stage 2's cost does not grow with n: at n = 20,000 the links are recovered to within 4
    posterior SD and the loadings (correlation scale) within 0.05."""
    _, pdata = simulate(20_000, 8)
    fp = fit_polychoric(make_graph(), pdata, WidePriors(), settings=SamplerSettings(
        chains=2, draws=200, tune=200, progressbar=False, prior_draws=200, random_seed=4))
    b = _beta(fp)
    assert np.all(np.abs(b.mean(0) - TRUE_BETA) < 4 * b.std(0)), (b.mean(0), b.std(0))
    lam = fp.idata["posterior"]["lambda"].mean(("chain", "draw")).values
    assert np.all(np.abs(lam - STD_LAMBDA) < 0.05), lam
    assert int(fp.idata["sample_stats"]["diverging"].sum()) <= 4


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="measured 18/28 covered and professional_help -> mental_problems at "
                   "0.17 x truth (docs/performance.md §4b): the cut likelihood system drops the feedback "
                   "through the unmeasured 'signalling'")
def test_shipped_synthetic_survey_recovery_and_attenuation():
    """Recovery on the shipped synthetic MARVEL survey: the number of data-informed links inside
    their 90 % intervals within the central 99 % range of Binomial(E, 0.9), and the posterior
    mean / truth of the links through professional_help and financial_means (printed) within
    0.75-1.33."""
    import yaml
    from scipy.stats import binom

    import veerkracht_bayes as vb

    repo = Path(__file__).resolve().parents[2]
    g = vb.load_graph("marvel")
    sv = vb.read_survey(repo / "data/synthetic/veerkracht_synthetic.csv.gz",
                        repo / "data/synthetic/codebook_synthetic.yaml", graph=g)
    truth = yaml.safe_load((repo / "data/synthetic/truth.yaml").read_text())["coefficients"]
    f = vb.fit(g, sv, draws=300, tune=300, chains=2, seed=2023, progress=False, measurement="polychoric")
    post = f.result.idata["posterior"]
    keys = list(post["edge"].values)
    b = post["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values
    lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
    kinds = f.result.layout.edge_kind
    inf = [i for i, k in enumerate(keys) if k in truth and kinds[k] in ("latent", "covariate")]
    covered = sum(lo[i] <= truth[keys[i]] <= hi[i] for i in inf)
    ratios = {keys[i]: b[:, i].mean() / truth[keys[i]] for i in inf
              if "professional_help" in keys[i] or "financial_means" in keys[i]}
    print("covered", covered, "of", len(inf), "ratios", ratios)
    assert binom.ppf(0.005, len(inf), 0.9) <= covered
    assert all(0.75 < r < 1.33 for r in ratios.values()), ratios


def test_vb_fit_rejects_an_unknown_measurement():
    import veerkracht_bayes as vb
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="measurement"):
        vb.fit("marvel", prior_only=True, prior_draws=10, measurement="nominal")
