"""Two-level SEM: likelihood against a dense reference, implied moments, layout checks, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.datasets.clustered import (
    boundary_twolevel_truth,
    default_twolevel_truth,
    simulate_clustered,
)
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.sem.twolevel import (
    implied_twolevel_covariances,
    twolevel_layout,
    twolevel_loglik,
    twolevel_loglik_lowrank,
)
from veerkracht_bayes.survey.clusters import cluster_statistics


def _dense_loglik(y, cl, SW, SB, mu):
    """Full multivariate normal of each stacked cluster vector: N(1 x mu, I x SW + J x SB)."""
    from scipy.stats import multivariate_normal

    total = 0.0
    for j in np.unique(cl):
        yj = y[cl == j]
        n = yj.shape[0]
        C = np.kron(np.eye(n), SW) + np.kron(np.ones((n, n)), SB)
        total += multivariate_normal(np.tile(mu, n), C).logpdf(yj.reshape(-1))
    return total


def _random_problem(seed, sizes, p=3):
    rng = np.random.default_rng(seed)
    cl = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.normal(size=(cl.size, p)) + rng.normal(size=(len(sizes), p))[cl]
    A = rng.normal(size=(p, p))
    Bm = rng.normal(size=(p, p))
    return y, cl, A @ A.T + np.eye(p), 0.3 * Bm @ Bm.T + 0.05 * np.eye(p), rng.normal(size=p)


@pytest.mark.parametrize("sizes", [[4, 4, 4, 4], [1, 2, 2, 3, 5, 5, 5, 7]], ids=["balanced", "unbalanced"])
def test_loglik_matches_dense_reference(sizes):
    y, cl, SW, SB, mu = _random_problem(7, sizes)
    cs = cluster_statistics(y, cl, standardise=False, min_cluster_size=1)
    ref = _dense_loglik(y, cl, SW, SB, mu)
    assert abs(twolevel_loglik(SW, SB, mu, cs) - ref) < 1e-8


def test_loglik_same_in_jax_and_pytensor():
    import jax.numpy as jnp
    import pytensor.tensor as pt

    from veerkracht_bayes.runtime import x64

    y, cl, SW, SB, mu = _random_problem(8, [1, 3, 3, 6])
    cs = cluster_statistics(y, cl, standardise=False, min_cluster_size=1)
    ref = _dense_loglik(y, cl, SW, SB, mu)
    keys = ["n", "n_clusters", "S_PW", "sizes", "counts", "class_means", "class_scatter"]
    d = {k: getattr(cs, k) for k in keys}
    val_pt = twolevel_loglik(pt.as_tensor(SW), pt.as_tensor(SB), pt.as_tensor(mu), d, xp="pytensor").eval()
    assert abs(float(val_pt) - ref) < 1e-8
    @x64
    def in_jax():
        return float(twolevel_loglik(jnp.asarray(SW), jnp.asarray(SB), jnp.asarray(mu),
                                     {k: jnp.asarray(v) for k, v in d.items()}))

    assert abs(in_jax() - ref) < 1e-8


def _factor_problem(seed, sizes, constructs=(0, 0, 1, 1, 1, 2, 2)):
    """Clustered data and a random factor-structured (Sigma_W, Sigma_B) with zero between rows for
    the last construct and a tiny item random-intercept variance (a boundary-like point)."""
    rng = np.random.default_rng(seed)
    con = np.array(constructs)
    p, K = con.size, int(con.max()) + 1
    cl = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.normal(size=(cl.size, p)) + 0.5 * rng.normal(size=(len(sizes), p))[cl]
    lam = rng.uniform(0.4, 0.9, p)
    A = rng.normal(size=(K, K))
    PW = A @ A.T + 0.5 * np.eye(K)
    Bm = rng.normal(size=(K - 1, K - 1))
    PB = np.zeros((K, K))
    PB[:K - 1, :K - 1] = 0.2 * Bm @ Bm.T + 0.01 * np.eye(K - 1)
    tw, tb = rng.uniform(0.2, 0.6, p), np.r_[rng.uniform(0.0, 0.05, p - 1), 1e-9]
    L = np.zeros((p, K))
    L[np.arange(p), con] = lam
    return y, cl, lam, con, PW, PB, tw, tb, L @ PW @ L.T + np.diag(tw), L @ PB @ L.T + np.diag(tb), rng.normal(size=p)


@pytest.mark.parametrize("sizes", [[5, 5, 5, 5, 5], [1, 2, 2, 3, 5, 5, 8, 13]], ids=["balanced", "unbalanced"])
def test_lowrank_loglik_equals_dense_in_every_backend(sizes):
    # the Woodbury / determinant-lemma form used by the sampler equals the dense likelihood and the
    # per-cluster multivariate normal, in NumPy, JAX and PyTensor
    import jax.numpy as jnp
    import pytensor.tensor as pt

    from veerkracht_bayes.runtime import x64

    y, cl, lam, con, PW, PB, tw, tb, SW, SB, mu = _factor_problem(3, sizes)
    cs = cluster_statistics(y, cl, standardise=False, min_cluster_size=1)
    ref = _dense_loglik(y, cl, SW, SB, mu)
    assert abs(twolevel_loglik(SW, SB, mu, cs) - ref) < 1e-8
    assert abs(twolevel_loglik_lowrank(lam, con, PW, PB, tw, tb, mu, cs) - ref) < 1e-8
    keys = ["n", "n_clusters", "S_PW", "sizes", "counts", "class_means", "class_scatter"]
    d = {k: getattr(cs, k) for k in keys}
    val_pt = twolevel_loglik_lowrank(*(pt.as_tensor(a) for a in (lam,)), con,
                                     *(pt.as_tensor(a) for a in (PW, PB, tw, tb, mu)),
                                     {k: (pt.as_tensor(np.asarray(v, float)) if np.ndim(v) else v)
                                      for k, v in d.items()}, xp="pytensor").eval()
    assert abs(float(val_pt) - ref) < 1e-8

    @x64
    def in_jax():
        return float(twolevel_loglik_lowrank(jnp.asarray(lam), con, *(jnp.asarray(a) for a in (PW, PB, tw, tb, mu)),
                                             {k: jnp.asarray(v) for k, v in d.items()}))

    assert abs(in_jax() - ref) < 1e-8


def test_raw_and_standardised_between_level_agree():
    # the sampler's raw parameterisation (links in total-scale units, disturbance variances) and the
    # standardised one (shares, links on between SDs) describe the same covariances
    truth = default_twolevel_truth()
    lay = _truth_layout(truth)
    args = _truth_arrays(truth, lay)
    std = implied_twolevel_covariances(lay, *args)
    raw = implied_twolevel_covariances(lay, *args[:4], std["beta_between_raw"], omega=std["omega"])
    np.testing.assert_allclose(raw["Sigma_B"], std["Sigma_B"], atol=1e-12)
    np.testing.assert_allclose(raw["Sigma_W"], std["Sigma_W"], atol=1e-12)
    np.testing.assert_allclose(raw["share"], args[5], atol=1e-12)
    np.testing.assert_allclose(raw["beta_between"], args[4], atol=1e-12)
    # raw link = standardised link * sd(target) / sd(source)
    k = lay.between_links.index("community_support->collective_agency")
    v = truth.between
    assert std["beta_between_raw"][k] == pytest.approx(0.5 * np.sqrt(v["collective_agency"] / v["community_support"]))
    # at the boundary the raw disturbance variance is exactly 0 and nothing breaks
    bt = boundary_twolevel_truth()
    blay = _truth_layout(bt)
    bargs = _truth_arrays(bt, blay)
    bstd = implied_twolevel_covariances(blay, *bargs)
    assert bstd["omega"][blay.between.index("collective_agency")] == pytest.approx(0.0, abs=1e-12)
    braw = implied_twolevel_covariances(blay, *bargs[:4], bstd["beta_between_raw"], omega=np.clip(bstd["omega"], 0, None))
    np.testing.assert_allclose(braw["share"], bargs[5], atol=1e-12)
    with pytest.raises(ModelError, match="exactly one"):
        implied_twolevel_covariances(lay, *args, omega=std["omega"])


def _truth_arrays(truth, lay):
    items = list(lay.items)
    return (np.array([truth.loading[i] for i in items]), np.array([truth.theta_within[i] for i in items]),
            np.array([truth.theta_between[i] for i in items]),
            np.array([truth.within_links[k] for k in lay.within_links]),
            np.array([truth.between_links[k] for k in lay.between_links]),
            np.array([truth.between[c] for c in lay.between]))


def _truth_layout(truth):
    return twolevel_layout(None, truth.item_construct, between=list(truth.between),
                           between_links=list(truth.between_links), within_links=list(truth.within_links))


def test_implied_covariances_shares_and_backends():
    import pytensor.tensor as pt

    truth = default_twolevel_truth()
    lay = _truth_layout(truth)
    args = _truth_arrays(truth, lay)
    out = implied_twolevel_covariances(lay, *args)
    total = np.diag(out["Sigma_W"] + out["Sigma_B"])
    lam, thw, thb = args[:3]
    np.testing.assert_allclose(total, lam ** 2 + thw + thb)
    icc = np.diag(out["Sigma_B"]) / total
    np.testing.assert_allclose(icc, [truth.item_icc()[i] for i in lay.items])
    # between variance share of a construct: lambda^2 v of its items' variance
    i0 = lay.items.index("neighbourhood_trust_1")
    assert out["Sigma_B"][i0, i0] - thb[i0] == pytest.approx(lam[i0] ** 2 * truth.between["neighbourhood_trust"])
    pt_out = implied_twolevel_covariances(lay, *(pt.as_tensor(a) for a in args), xp="pytensor")
    np.testing.assert_allclose(pt_out["Sigma_W"].eval(), out["Sigma_W"], atol=1e-12)
    np.testing.assert_allclose(pt_out["Sigma_B"].eval(), out["Sigma_B"], atol=1e-12)


def test_layout_defaults_from_graph_and_errors():
    from veerkracht_bayes.graph.causal_graph import load_graph

    g = load_graph("marvel")
    ic = {f"{c}{k}": c for c in ("neighbourhood_trust", "community_support", "collective_agency", "stress")
          for k in (1, 2)}
    lay = twolevel_layout(g, ic)
    assert lay.between == ("neighbourhood_trust", "community_support", "collective_agency")
    assert "community_support->collective_agency" in lay.between_links
    assert all(k.split("->")[0] in lay.constructs for k in lay.within_links)
    with pytest.raises(ModelError, match="did you mean"):
        twolevel_layout(g, ic, between=["neighbourhood_trus"])
    with pytest.raises(ModelError, match="between_links"):
        twolevel_layout(g, ic, between_links=["stress->community_support"])
    with pytest.raises(ModelError, match="single item"):
        twolevel_layout(None, {"a1": "a", "b1": "b", "b2": "b"}, between=["a", "b"], between_links=[],
                        within_links=[])


# --------------------------------------------------------------------------- recovery
def _fit(seed, n_clusters=150, draws=200, tune=200, truth=None, chains=1):
    from veerkracht_bayes.inference.twolevel_fit import fit_twolevel

    df, truth = simulate_clustered(truth, n_clusters=n_clusters, min_size=5, max_size=25, seed=seed)
    items = list(truth.item_construct)
    cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items, cluster_column="wijk_code")
    res = fit_twolevel(cs, truth.item_construct, between=list(truth.between),
                       between_links=list(truth.between_links), within_links=list(truth.within_links),
                       draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False)
    return res, truth


def _cells(res, truth):
    """(name, draws, true value) for the between shares, between links and within links."""
    out = []
    for k, c in enumerate(res.layout.between):
        out.append((f"share[{c}]", res.draws("share")[:, k], truth.between[c]))
    for k, l in enumerate(res.layout.between_links):
        out.append((f"between[{l}]", res.draws("beta_between")[:, k], truth.between_links[l]))
    for k, l in enumerate(res.layout.within_links):
        out.append((f"within[{l}]", res.draws("beta_within")[:, k], truth.within_links[l]))
    return out


@pytest.fixture(scope="module")
def small_twolevel_fit():
    return _fit(seed=5)


def test_recovery_fast(small_twolevel_fit):
    # one seed: every headline parameter within 4 posterior SDs of the truth (a correct model fails
    # this with probability ~1e-4 per cell), the shares informative, sampling healthy
    res, truth = small_twolevel_fit
    assert res.n_divergent() <= 2
    for name, x, true in _cells(res, truth):
        assert abs(x.mean() - true) < 4 * x.std(), (name, x.mean(), x.std(), true)
    assert np.all(res.draws("share").std(axis=0) < 0.05)
    icc = res.draws("item_icc")
    t_icc = np.array([truth.item_icc()[i] for i in res.layout.items])
    assert np.all(np.abs(icc.mean(axis=0) - t_icc) < 4 * icc.std(axis=0) + 1e-3)
    tab = res.summary_table()
    assert set(tab["parameter"]) >= {"share", "beta_between", "beta_within", "item_icc"}
    head = tab[tab["parameter"].isin(["share", "beta_between", "beta_within"])]
    assert (head["ess_bulk"] > 40).all()  # one chain: R-hat is not defined
    # the interface others code against
    arr = res.between_arrays()
    assert arr["B"].shape == (200, 3, 3) and arr["share"].shape == (200, 3) and arr["nodes"] == res.layout.between
    assert res.within_arrays()["B"].shape == (200, 4, 4)
    assert res.seconds > res.sampling_seconds > 0 and 0 <= res.diverging_share <= 0.01
    assert all(0 <= v < 0.95 for v in res.stability().values())
    # raw and standardised between links are the same links: raw = std * sd(target) / sd(source)
    v = res.draws("share")
    b = res.draws("beta_between_raw")
    for k, key in enumerate(res.layout.between_links):
        s_, t_ = (res.layout.between.index(x) for x in key.split("->"))
        np.testing.assert_allclose(b[:, k], res.draws("beta_between")[:, k] * np.sqrt(v[:, t_] / v[:, s_]))


def test_boundary_truth_samples_cleanly():
    # collective agency's neighbourhood variance comes only from community support (between
    # disturbance 0, standardised between link 1): the raw between level reaches this boundary
    # without divergences, and the posterior puts the standardised disturbance near 0 and the link
    # near 1 while covering the share
    res, truth = _fit(seed=7, n_clusters=200, truth=boundary_twolevel_truth())
    assert res.n_divergent() <= 2, res.n_divergent()  # <= 1 % of 200 transitions
    k = res.layout.between.index("collective_agency")
    psi = res.draws("psi_between")[:, k]
    assert np.quantile(psi, 0.05) < 0.02 and psi.mean() < 0.25
    j = res.layout.between_links.index("community_support->collective_agency")
    link = res.draws("beta_between")[:, j]
    assert np.quantile(link, 0.95) > 0.97 and link.max() <= 1.0 + 1e-9
    share = res.draws("share")[:, k]
    assert abs(share.mean() - truth.between["collective_agency"]) < 4 * share.std()
    tab = res.summary_table()
    assert (tab[tab["parameter"].isin(["share", "beta_between_raw", "beta_within"])]["ess_bulk"] > 40).all()


@pytest.mark.slow
def test_recovery_coverage_several_seeds():
    # 90 % intervals of shares, between and within links over 6 seeds: the number covering the truth
    # must be consistent with Binomial(cells, 0.9) (one-sided test at level 0.001)
    from scipy.stats import binom

    covered = total = 0
    misses = []
    for seed in (11, 12, 13, 14, 15, 16):
        res, truth = _fit(seed, draws=300, tune=300)
        for name, x, true in _cells(res, truth):
            lo, hi = np.quantile(x, [0.05, 0.95])
            total += 1
            if lo <= true <= hi:
                covered += 1
            else:
                misses.append((seed, name, round(float(x.mean()), 3), true))
    print(f"two-level coverage: {covered}/{total} 90% intervals cover the truth; misses {misses}")
    assert covered >= binom.ppf(0.001, total, 0.9), (covered, total, misses)


def test_neighbourhood_policy_on_fitted_between_level(small_twolevel_fit):
    # a shift of community support's neighbourhood means moves collective agency's population mean
    # by sqrt(v_agency) * beta_B * delta / sqrt(v_support); the fitted posterior must cover the truth
    from veerkracht_bayes.causal.interventions import Shift
    from veerkracht_bayes.causal.twolevel import between_do

    res, truth = small_twolevel_fit
    arr = res.between_arrays()
    out = between_do(arr["B"], arr["share"], arr["nodes"], [Shift(node="community_support", delta=0.2)])
    k = list(arr["nodes"]).index("collective_agency")
    v = truth.between
    true = np.sqrt(v["collective_agency"]) * truth.between_links["community_support->collective_agency"] * 0.2 \
        / np.sqrt(v["community_support"])
    x = out["effect"][:, k]
    assert abs(x.mean() - true) < 4 * x.std()
    np.testing.assert_allclose(out["effect"][:, list(arr["nodes"]).index("community_support")], 0.2)
    assert np.all(out["within_effect"] == 0)
