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
    PolychoricSettings,
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
    model, layout = build_polychoric_model(make_graph(), pdata, WidePriors(), settings=PolychoricSettings(weight="full"))
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


def _path_through_unmeasured(n, seed):
    """a -> b direct (0.3) and through the construct u, which has no items (a -> u 0.5, u -> b 0.4):
    three continuous items (loading 0.8) on a and on b, a single item (true loading 0.6) on b."""
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec
    from veerkracht_bayes.survey.polychoric import polychoric

    edges = {"a->b": 0.3, "a->u": 0.5, "u->b": 0.4}
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "unmeasured-path",
        "nodes": [{"id": k, "label_en": k, "label_nl": k, "resource": "individual", "role": "construct"}
                  for k in "aub"],
        "edges": [{"source": k[0], "target": k[-1], "sign": "+", "evidence": "test"} for k in edges]})
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    u = 0.5 * a + np.sqrt(1 - 0.25) * rng.normal(size=n)
    mean_b = 0.3 * a + 0.4 * u
    b = mean_b + np.sqrt(1 - np.var(0.3 * a + 0.4 * u, ddof=0)) * rng.normal(size=n)
    lam = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    eta = np.column_stack([a, a, a, b, b, b])
    y = eta * lam + np.sqrt(1 - lam ** 2) * rng.normal(size=(n, 6))
    names = ("a0", "a1", "a2", "b0", "b1", "b2")
    st = polychoric(y, ["continuous"] * 6, names=names)
    return CausalGraph(spec), polychoric_data(st, dict(zip(names, "aaabbb", strict=True))), edges


def _correlation_term_at(model, eps, keys, beta, loading):
    from veerkracht_bayes.sem.model_builder import edge_groups

    for name, _, idx in edge_groups(eps, list(keys)):
        model.set_initval(model[name], np.array([beta[keys[i]] for i in idx]))
    model.set_initval(model["loading"], loading)
    outs = model.replace_rvs_by_values([model.potentials[-1]])
    return float(model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(model.initial_point())[0])


def test_a_path_through_an_unmeasured_construct_biases_the_cut_system_not_the_joint_one():
    """Why the shipped-survey recovery failed (docs/performance.md §4b): with ``unmeasured="cut"``
    the implied correlations leave out a -> u -> b, so at the true coefficients the correlation
    term is far outside its chi-square range (the cut model's a -> b estimates 0.3 + 0.5 * 0.4);
    with ``unmeasured="joint"`` the truth fits (chi-square within its 0.1 % / 99.9 % quantiles)."""
    from scipy.stats import chi2

    from veerkracht_bayes.sem.model_builder import edge_prior_values
    from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings

    g, pdata, truth = _path_through_unmeasured(50_000, 11)
    s = len(pdata.lik_pairs)
    eps = edge_prior_values(WidePriors(), g)
    theta_lam = np.full(6, 0.8 / np.sqrt(1 - 0.8 ** 2))  # theta-parameterisation value of l = 0.8
    q = {}
    for mode in ("cut", "joint"):
        # native coordinates: the links are set by value below (the default samples the links
        # touching u in prior-standardised coordinates, the same model; tests/inference/test_polychoric_joint.py)
        model, layout = build_polychoric_model(g, pdata, WidePriors(), settings=PolychoricSettings(
            unmeasured=mode, prior_links="native", weight="full"))
        assert layout.unmeasured == mode
        assert layout.edge_kind["a->u"] == ("prior_only" if mode == "cut" else "latent")
        q[mode] = -2 * _correlation_term_at(model, eps, layout.edge_keys, truth, theta_lam)
    assert chi2.ppf(0.001, s) < q["joint"] < chi2.ppf(0.999, s), q
    assert q["cut"] > 20 * chi2.ppf(0.999, s), q


def test_single_items_take_their_own_reliability():
    from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings

    _, pdata, _ = _path_through_unmeasured(2_000, 12)
    one = polychoric_data(pdata.stats, {"a0": "a", "a1": "a", "a2": "a", "b0": "b"})
    g = _path_through_unmeasured(10, 1)[0]
    model, layout = build_polychoric_model(g, one, WidePriors(), settings=PolychoricSettings(
        item_reliability={"b0": 0.36}, weight="full"))  # the weight does not matter here: no pilot
    assert layout.single_item_constructs == ("b",)
    lam = model.compile_fn(model.replace_rvs_by_values([model["lambda"]]), inputs=model.value_vars,
                           on_unused_input="ignore")(model.initial_point())[0]
    assert lam[3] == pytest.approx(0.6)
    with pytest.raises(ModelError, match="not an item"):
        build_polychoric_model(g, one, WidePriors(), settings=PolychoricSettings(item_reliability={"zz": 0.5}))
    with pytest.raises(ModelError, match=r"\(0, 1\)"):
        build_polychoric_model(g, one, WidePriors(), settings=PolychoricSettings(item_reliability={"b0": 1.5}))


def test_blocked_float32_whitening_matches_the_float64_gaussian():
    """With s >= 256 correlations the likelihood's whitening product runs blocked and in float32
    (module docstring of ``sem.polychoric_likelihood``); its value matches the float64
    -1/2 (r - rho)' Gamma^-1 (r - rho) to 1e-5 relative (float32 rounding), here with s = 276."""
    from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    from veerkracht_bayes.survey.polychoric import polychoric

    rng = np.random.default_rng(5)
    n, b, lam = 3000, 0.4, 0.9
    a = rng.normal(size=n)
    eta = np.column_stack([a, b * a + np.sqrt(1 - b ** 2) * rng.normal(size=n)])
    y = eta[:, [0] * 12 + [1] * 12] * lam + rng.normal(size=(n, 24))
    codes = np.digitize(y, [-1.0, 0.0, 1.0]).astype(float)
    names = [f"i{k}" for k in range(24)]
    pdata = polychoric_data(polychoric(codes, ["ordinal"] * 24, names=names),
                            dict(zip(names, ["A"] * 12 + ["B"] * 12, strict=True)))
    model, _ = build_polychoric_model(graph_from_lavaan("B ~ A"), pdata, WidePriors(),
                                      settings=PolychoricSettings(weight="full"))
    blocks = [v for v in model.data_vars if "gamma_inv_chol" in v.name]
    assert len(blocks) == 2 and all(v.dtype == "float32" for v in blocks)
    (rv,) = [v for v in model.free_RVs if v.name != "loading"]
    model.set_initval(rv, np.array([b]))
    model.set_initval(model["loading"], np.full(24, lam))
    outs = model.replace_rvs_by_values([model.potentials[-1]])
    pot = float(model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(model.initial_point())[0])
    l = np.full(24, lam / np.sqrt(1 + lam ** 2))
    pairs = pdata.stats.pairs[pdata.lik_pairs]
    parts, inv = implied_correlations(np.array([[1.0, b], [b, 1.0]]), np.zeros((2, 0)), l,
                                      np.repeat([0, 1], 12), np.zeros(24, int), np.arange(24), pairs)
    d = pdata.stats.r[pdata.lik_pairs] - np.concatenate(parts)[inv]
    G = pdata.stats.acov[np.ix_(pdata.lik_pairs, pdata.lik_pairs)]
    assert len(d) == 276
    assert pot == pytest.approx(-0.5 * d @ np.linalg.solve(G, d), rel=1e-5)


def test_two_binary_items_with_an_empty_cell_get_a_finite_tetrachoric():
    """An empty cell of a 2 x 2 table puts the tetrachoric MLE at +-1 with zero information (it
    broke an SBC replication); stage 1 adds 0.5 to empty 2 x 2 cells (lavaan's zero.add), so the
    correlation is inside (-1, 1), strongly negative, and its variance finite."""
    from veerkracht_bayes.survey.polychoric import polychoric

    y = np.array([[0, 0]] * 578 + [[0, 1]] * 150 + [[1, 0]] * 161, dtype=float)  # no (1, 1)
    st = polychoric(y, ["ordinal", "ordinal"], names=["a", "b"])
    assert -0.999 < st.r[0] < -0.5 and np.isfinite(st.acov[0, 0]) and st.acov[0, 0] > 0


def test_stage_two_rejects_unknown_variables():
    _, pdata = simulate(300, 1)
    with pytest.raises(ModelError, match="not in the stage-1 result"):
        polychoric_data(pdata.stats, {"nope": "a"})


def _beta(fit):
    post = fit.idata["posterior"]
    return post["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values


def _summary(fit, scale=1.0):
    """Posterior mean, SD, 90 % interval width and Monte Carlo SE of the mean of each link
    (draws multiplied by ``scale``, per edge)."""
    import arviz as az
    import xarray as xr

    post = fit.idata["posterior"]["beta"] * xr.DataArray(np.broadcast_to(scale, (fit.idata["posterior"].sizes["edge"],)),
                                                         dims="edge")
    b = post.stack(s=("chain", "draw")).transpose("s", "edge").values
    lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
    mcse = az.mcse(xr.Dataset({"beta": post}), method="mean")["beta"].values
    return b.mean(0), b.std(0), hi - lo, mcse


def _agree(n, seed, draws, tune):
    """Both paths on the same data. The exact path's covariate link is per unit of the centred
    x, the polychoric route's per SD of x (stage 1 standardises it), so the exact path's draws of
    covariate links are put on the per-SD scale (times the sample SD of x) before comparing."""
    from veerkracht_bayes.inference.ordinal_fit import fit_ordinal

    od, pdata = simulate(n, seed)
    g = make_graph()
    ss = SamplerSettings(chains=2, draws=draws, tune=tune, progressbar=False, prior_draws=200, random_seed=3)
    fp = fit_polychoric(g, pdata, WidePriors(), settings=ss)
    fo = fit_ordinal(g, od, WidePriors(), settings=ss)
    sd_x = float(np.sqrt(od.x_cov[0, 0]))
    scale = np.array([sd_x if fo.layout.edge_kind[k] == "covariate" else 1.0 for k in fo.layout.edge_keys])
    return _summary(fp), _summary(fo, scale), fp


def test_polychoric_route_runs_and_is_close_to_the_ordinal_path_fast():
    (mp, sp, wp, _), (mo, so, wo, _), fp = _agree(300, 2, 200, 300)
    assert fp.idata.attrs["likelihood"] == "polychoric"
    assert np.all(np.isfinite(mp)) and np.all(sp > 0)
    assert np.all(np.abs(mp - mo) < 1.0 * np.maximum(sp, so)), (mp, mo, sp)
    assert np.all(np.abs(wp / wo - 1) < 0.6), wp / wo
    lam = fp.idata["posterior"]["lambda"].values
    assert np.all((lam > 0) & (lam < 1))


@pytest.mark.slow
def test_polychoric_route_agrees_with_the_ordinal_path():
    """Posterior means within 0.2 posterior SD and 90 % widths within 25 % (n = 2,000).

    The observed difference of the two posterior means carries the Monte Carlo error of both
    (SE ``sqrt(mcse_p^2 + mcse_o^2)``, from their effective sample sizes; the exact path mixes
    slowly), so the test fails when the difference exceeds 0.2 SD by more than 3 Monte Carlo SE
    (a false failure at a true difference of exactly 0.2 SD has probability <= 0.5 % over the 4
    links). The per-link numbers are printed."""
    (mp, sp, wp, ep), (mo, so, wo, eo), _ = _agree(2000, 4, 1000, 600)
    mc = np.sqrt(ep ** 2 + eo ** 2)
    print("\npolychoric mean", mp, "SD", sp, "MCSE", ep, "\nordinal    mean", mo, "SD", so, "MCSE", eo,
          "\n(mean diff) / SD", (mp - mo) / so, "MCSE of it", mc / so, "\nwidth ratio", wp / wo)
    assert np.all(np.abs(mp - mo) < 0.2 * so + 3 * mc), ((mp - mo) / so, mc / so)
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
def test_shipped_synthetic_survey_recovery_and_attenuation():
    """Recovery on the shipped synthetic MARVEL survey: the number of data-informed links inside
    their 90 % intervals within the central 99 % range of Binomial(E, 0.9), and the posterior
    mean / truth of the links through professional_help and financial_means (printed) within
    0.75-1.33 where that range is at least +-3 posterior SD wide (SD < |truth| / 12): a ratio
    bound on a link whose SD is 20-40 % of its value tests the sample, not the attenuation
    (professional_help -> mental_problems: population limit 0.93 x truth, ML SD 0.048 with the
    signalling loop in the system; docs/performance.md §4b).

    The fit is the model the generator simulates (docs/performance.md §4b): constructs without
    items kept in the implied correlations (``unmeasured="joint"``; the default cut system drops
    the paths through them and is biased by up to 7 posterior SD here) and each single item's
    reliability set to the generator's (a single item cannot estimate it; the default 0.8 is an
    assumption the generator does not share). "Data-informed" stays the cut classification: the
    links among measured constructs and the covariate links (E = 28). Fast twins:
    ``test_a_path_through_an_unmeasured_construct_biases_the_cut_system_not_the_joint_one`` and
    ``test_single_items_take_their_own_reliability``.
    """
    import yaml
    from scipy.stats import binom

    import veerkracht_bayes as vb
    from veerkracht_bayes.graph.identification import model_classes
    from veerkracht_bayes.inference.polychoric_fit import polychoric_data_from_survey
    from veerkracht_bayes.sem.polychoric_likelihood import PolychoricSettings

    repo = Path(__file__).resolve().parents[2]
    g = vb.load_graph("marvel")
    sv = vb.read_survey(repo / "data/synthetic/veerkracht_synthetic.csv.gz",
                        repo / "data/synthetic/codebook_synthetic.yaml", graph=g)
    tr = yaml.safe_load((repo / "data/synthetic/truth.yaml").read_text())
    truth = tr["coefficients"]
    pdata = polychoric_data_from_survey(sv, g)
    n_items = {c: pdata.item_construct.count(c) for c in pdata.item_construct}
    rel = {it["column"]: it["loading"] ** 2 for it in tr["items"]
           if it["column"] in pdata.item_names and n_items[it["node"]] == 1}
    assert set(rel) == {"prof_help", "household_income"}
    f = fit_polychoric(g, pdata, vb.load_priors("marvel"),
                       polychoric=PolychoricSettings(unmeasured="joint", item_reliability=rel),
                       settings=SamplerSettings(chains=1, draws=300, tune=300, random_seed=2023,
                                                progressbar=False, prior_draws=200))
    post = f.idata["posterior"]
    keys = list(post["edge"].values)
    b = post["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values
    lo, hi = np.quantile(b, [0.05, 0.95], axis=0)
    kinds = model_classes(g, pdata.item_construct, pdata.x_names).edge_kind
    inf = [i for i, k in enumerate(keys) if k in truth and kinds[k] in ("latent", "covariate")]
    covered = sum(lo[i] <= truth[keys[i]] <= hi[i] for i in inf)
    through = [i for i in inf if "professional_help" in keys[i] or "financial_means" in keys[i]]
    ratios = {keys[i]: b[:, i].mean() / truth[keys[i]] for i in through}
    sharp = {keys[i]: ratios[keys[i]] for i in through if b[:, i].std() < abs(truth[keys[i]]) / 12}
    print("covered", covered, "of", len(inf), "ratios", ratios, "asserted", sorted(sharp))
    assert len(inf) == 28
    assert binom.ppf(0.005, len(inf), 0.9) <= covered
    assert {"financial_means->stress", "financial_means->livelihood_security"} <= set(sharp), sharp
    assert all(0.75 < r < 1.33 for r in sharp.values()), ratios


def test_vb_fit_rejects_an_unknown_measurement():
    import veerkracht_bayes as vb
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="measurement"):
        vb.fit("marvel", prior_only=True, prior_draws=10, measurement="nominal")


def test_covariates_enter_stage_one_on_their_observed_scale():
    """A binary covariate is conditioned on as its standardised 0/1 indicator (its links per SD of
    the indicator, as the synthetic truth and the continuous path define them), not given a latent
    response: on the shipped survey a latent response made single_parent_household -> stress 1.5 x
    its true value (docs/performance.md §4b)."""
    import pandas as pd

    import veerkracht_bayes as vb
    from veerkracht_bayes.inference.polychoric_fit import polychoric_data_from_survey

    repo = Path(__file__).resolve().parents[2]
    g = vb.load_graph("marvel")
    df = pd.read_csv(repo / "data/synthetic/veerkracht_synthetic.csv.gz", nrows=1500)
    sv = vb.read_survey(df, repo / "data/synthetic/codebook_synthetic.yaml", graph=g)
    pdata = polychoric_data_from_survey(sv, g, acov="diagonal")
    kind = dict(zip(pdata.stats.names, pdata.stats.kinds, strict=True))
    assert set(pdata.x_vars) == {"single_parent", "adverse_events_12m"}
    assert kind["single_parent"] == kind["adverse_events_12m"] == "continuous"
    assert kind["prof_help"] == "ordinal" and kind["household_income"] == "continuous"
