"""Sampler coordinates and starting points: exact maps, recovered starting values, same posterior."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from veerkracht_bayes.inference import jax_nuts  # noqa: E402
from veerkracht_bayes.graph.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.graph.spec import GraphSpec  # noqa: E402
from veerkracht_bayes.sem.model_builder import build_model  # noqa: E402
from veerkracht_bayes.sem.preconditioning import (  # noqa: E402
    intercept_whitening,
    link_estimate,
    measurement_start,
    pair_from_value,
    pair_to_value,
    reciprocal_log_pairs,
)
from veerkracht_bayes.inference.sampling import draw_prior, initial_values  # noqa: E402
from veerkracht_bayes.survey.statistics import prepare_model_data  # noqa: E402

# x -> a, a <-> b (reciprocal), b -> c, c -| a
EDGES = [("x", "a", "+", 0.4), ("a", "b", "+", 0.3), ("b", "a", "+", 0.2), ("b", "c", "+", 0.5),
         ("c", "a", "-", -0.2)]
LAT = ["a", "b", "c"]


def _graph(edges=EDGES) -> CausalGraph:
    nodes = ["x"] + LAT
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "pc",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg, _ in edges]}))


def _system(edges) -> tuple[np.ndarray, np.ndarray]:
    """``B`` (target row, source column) among a, b, c and ``gamma`` (x -> each)."""
    B = np.zeros((3, 3))
    gam = np.zeros(3)
    for s, t, _, b in edges:
        if s == "x":
            gam[LAT.index(t)] = b
        else:
            B[LAT.index(t), LAT.index(s)] = b
    return B, gam


def _simulate(n: int, seed: int, edges=EDGES, lam=(0.8, 0.6, 0.7, 0.75, 0.65, 0.85), missing=0.0, k=2):
    """Equilibrium data eta = (I - B)^-1 (gamma x + zeta), ``k`` items per construct."""
    rng = np.random.default_rng(seed)
    B, gam = _system(edges)
    x = rng.normal(size=n)
    eta = np.linalg.solve(np.eye(3) - B, (gam[:, None] * x[None] + rng.normal(size=(3, n)))).T
    eta = eta / eta.std(axis=0)
    lam = np.array(lam)
    y = np.repeat(eta, k, axis=1) * lam + rng.normal(size=(n, 3 * k)) * np.sqrt(1 - lam**2)
    if missing:
        y[rng.random(y.shape) < missing] = np.nan
    md = prepare_model_data(y, [f"i{j}" for j in range(3 * k)], [c for c in LAT for _ in range(k)],
                            covariates=x[:, None], covariate_names=["x"])
    return md, B, gam, lam


def test_reciprocal_pairs_found_on_small_graph_and_marvel(marvel):
    md, *_ = _simulate(300, 1)
    _, layout = build_model(_graph(), md)
    pairs = reciprocal_log_pairs(layout)
    assert len(pairs) == 1
    name, i, j = pairs[0]
    assert name == "beta_truncated_normal_pos_interval__"
    from veerkracht_bayes.sem.model_builder import edge_groups

    sampled = list(layout.sampled_edges)
    idx = dict((g[0], g[2]) for g in edge_groups(layout.edge_priors, sampled))["beta_truncated_normal_pos"]
    assert {sampled[idx[i]], sampled[idx[j]]} == {"a->b", "b->a"}
    _, mlay = build_model(marvel, None)
    keys = set()
    for name, i, j in reciprocal_log_pairs(mlay):
        grp = name.removesuffix("_interval__")
        idx = dict((g[0], g[2]) for g in edge_groups(mlay.edge_priors, list(mlay.edge_keys)))[grp]
        keys.add(frozenset((mlay.edge_keys[idx[i]], mlay.edge_keys[idx[j]])))
    assert frozenset(("social_network->societal_participation",
                      "societal_participation->social_network")) in keys


def test_pair_map_round_trip_and_unit_jacobian():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    x = rng.normal(-2.0, 1.0, size=(5, 4))
    pairs = [(0, 2)]
    z = pair_from_value(x, pairs)
    back = np.asarray(pair_to_value(jnp.asarray(z), pairs))
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back[:, [1, 3]], x[:, [1, 3]])
    for row in z:
        J = jax.jacfwd(lambda v: pair_to_value(v, pairs))(jnp.asarray(row))
        assert abs(abs(float(jnp.linalg.det(J))) - 1.0) < 1e-12


def test_intercept_whitening_is_the_conditional_posterior_covariance_for_complete_data():
    md, *_ = _simulate(2000, 2)
    nu_sd = 0.5
    T = intercept_whitening(md.stats, nu_sd)
    assert np.allclose(T, np.tril(T)) and (np.diag(T) > 0).all()
    # independent computation: residual covariance of the standardised items given x
    n = md.stats.W.sum()
    Syy, Suy, Suu = md.stats.Syy[0], md.stats.Suy[0], md.stats.Suu[0]
    C = Syy / n - Suy[1:].T @ np.linalg.solve(Suu[1:, 1:], Suy[1:]) / n
    H = n * np.linalg.inv(C) + np.eye(6) / nu_sd**2
    np.testing.assert_allclose(T @ T.T @ H, np.eye(6), atol=1e-8)


def test_measurement_start_recovers_standardised_loadings():
    # three items per construct (with two, only the product of the loadings is identified)
    md, _, _, lam = _simulate(20000, 3, lam=(0.8, 0.6, 0.7, 0.75, 0.65, 0.85, 0.5, 0.7, 0.9), k=3)
    starts = measurement_start(md.stats, md.item_construct, (True,) * 9, 2, 0)
    for st in starts:
        # items are standardised with unit variance: the standardised loading is lam itself
        np.testing.assert_allclose(st["loading"], lam, atol=0.05)
        np.testing.assert_allclose(st["residual_var"], 1 - st["loading"] ** 2, rtol=0.1, atol=0.03)
        np.testing.assert_allclose(st["nu"], 0.0, atol=0.05)
    assert not np.allclose(starts[0]["loading"], starts[1]["loading"])  # chains are dispersed


def test_link_estimate_recovers_acyclic_links():
    edges = [("x", "a", "+", 0.4), ("a", "b", "+", 0.5), ("b", "c", "+", 0.3), ("a", "c", "-", -0.25)]
    md, *_ = _simulate(40000, 4, edges=edges)
    _, layout = build_model(_graph(edges), md)
    est = link_estimate(md.stats, layout, tuple(md.x_names))
    from veerkracht_bayes.sem.model_builder import edge_groups

    sampled = list(layout.sampled_edges)
    got = {}
    for name, _, idx in edge_groups(layout.edge_priors, sampled):
        got.update({sampled[i]: v for i, v in zip(idx, est[name])})
    # standardised truth from the implied covariance A (g g' + I) A' (var x = 1)
    B, gam = _system(edges)
    A = np.linalg.inv(np.eye(3) - B)
    sd = np.sqrt(np.diag(A @ (np.outer(gam, gam) + np.eye(3)) @ A.T))
    truth = {"x->a": 0.4 / sd[0], "a->b": 0.5 * sd[0] / sd[1], "b->c": 0.3 * sd[1] / sd[2],
             "a->c": -0.25 * sd[0] / sd[2]}
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, abs=0.04), k


@pytest.fixture(scope="module")
def cyclic_model():
    g = _graph()
    md, *_ = _simulate(3000, 5, missing=0.03)
    model, layout = build_model(g, md)
    return g, md, model, layout


def test_sampler_coordinates_give_the_model_log_density(cyclic_model):
    import jax.numpy as jnp
    import pytensor

    g, md, model, layout = cyclic_model
    pairs = reciprocal_log_pairs(layout)
    assert pairs
    comp = jax_nuts.CompiledModel(model, pairs)
    assert comp.whiten and comp.pairs
    prior = draw_prior(model, layout, g, 20, 3, md.x_cov)
    logp = pytensor.function(model.value_vars, model.logp(), mode="FAST_COMPILE")
    data = [jnp.asarray(v) for v in jax_nuts.data_values(model)]
    vals = jax_nuts.value_initvals(model, initial_values(model, layout, prior, 3, 3))
    for c in range(3):
        point = {k: v[c] for k, v in vals.items()}
        ref = float(logp(*[point[v.name] for v in model.value_vars]))
        z = comp.from_value(point, data)
        got = float(comp.logp({k: jnp.asarray(v) for k, v in z.items()}, data))
        assert np.isfinite(ref) and got == pytest.approx(ref, rel=1e-10, abs=1e-8)


def test_preconditioned_sampler_gives_the_same_posterior(cyclic_model):
    """Same model sampled plainly and in the preconditioned coordinates: posterior means of the
    links agree within Monte Carlo error (4 combined MCSE), and the posterior sds within 15%."""
    import xarray as xr
    from arviz_stats import ess

    from veerkracht_bayes.sem.preconditioning import measurement_start

    g, md, model, layout = cyclic_model
    prior = draw_prior(model, layout, g, 100, 11, md.x_cov)
    iv = initial_values(model, layout, prior, 2, 11)
    res = {}
    for label, pre in (("plain", False), ("pre", True)):
        st = jax_nuts.JaxNutsSettings(draws=1000, tune=1000, chains=2, precondition=pre,
                                      log_pairs=reciprocal_log_pairs(layout) if pre else ())
        ivs = iv
        if pre:
            starts = measurement_start(md.stats, layout.item_construct, layout.free_items, 2, 11)
            ivs = [{**a, **b} for a, b in zip(iv, starts)]
        post, stats, _ = jax_nuts.sample_nuts(model, ivs, st, 7)
        assert int(stats["diverging"].sum()) == 0
        beta = post["beta"]
        e = ess(xr.Dataset({"b": beta}), method="mean")["b"].values
        res[label] = (beta.mean(("chain", "draw")).values, beta.std(("chain", "draw")).values, e)
    (m1, s1, e1), (m2, s2, e2) = res["plain"], res["pre"]
    se = np.sqrt(s1**2 / e1 + s2**2 / e2)
    assert np.all(np.abs(m1 - m2) < 4 * se), (m1, m2, se)
    np.testing.assert_allclose(s2, s1, rtol=0.15)


# ----------------------------------------------------------------------------- ordinal path
def _probit_items(n: int, lam: np.ndarray, tau: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of ordinal items loading on one standard-normal latent (theta parameterisation)."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal(n)
    ystar = eta[:, None] * lam[None, :] + rng.standard_normal((n, lam.size))
    return (ystar[:, :, None] > tau[None, :, :]).sum(-1), eta


def test_ordinal_score_correlation_matches_simulation():
    """The closed-form correlation of a normal score with y* equals the simulated one (Monte
    Carlo sd of a correlation near 0.9 at n = 200,000 is about 0.0004; tolerance 0.003)."""
    from veerkracht_bayes.sem.preconditioning import ordinal_normal_scores, ordinal_score_guide

    rng = np.random.default_rng(3)
    y = rng.standard_normal(200_000)
    for cuts in ([0.0], [1.3], [-1.2, -0.4, 0.3, 1.1], [-0.5, -0.5 + 1e-9, 2.0]):
        codes = (y[:, None] > np.array(cuts)).sum(1)[:, None]
        k = np.array([len(cuts) + 1])
        c = ordinal_score_guide(codes, k, np.ones(y.size))[0]
        s = ordinal_normal_scores(codes, k, np.ones(y.size))[:, 0]
        assert abs(np.mean(s)) < 1e-12 and abs(np.std(s) - 1) < 1e-12
        assert abs(c - np.corrcoef(s, y)[0, 1]) < 0.003, cuts
    assert abs(ordinal_score_guide((y[:, None] > 0).astype(int), np.array([2]), np.ones(y.size))[0]
               - np.sqrt(2 / np.pi)) < 0.003  # binary split at the median: sqrt(2/pi)


def test_ordinal_start_recovers_loadings_and_thresholds():
    """Data-based starts land near the truth at n = 20,000: theta-parameterisation loadings
    within 0.15 (normal scores are slightly attenuated) and thresholds within 0.15, strictly
    increasing, also for an item with fewer categories and missing answers."""
    from veerkracht_bayes.sem.preconditioning import ordinal_normal_scores, ordinal_start

    lam = np.array([1.2, 0.9, 0.7, 1.0])
    tau = np.array([[-1.2, -0.4, 0.3, 1.1]] * 3 + [[-0.3, 0.8, np.inf, np.inf]])
    codes, _ = _probit_items(20_000, lam, tau, 4)
    codes[np.random.default_rng(5).random(codes.shape) < 0.05] = -1
    ncat = np.array([5, 5, 5, 3])
    w = np.ones(codes.shape[0])
    y = ordinal_normal_scores(codes, ncat, w)
    st = ordinal_start(y, codes, ncat, w, ("a",) * 4, 0.8)
    np.testing.assert_allclose(st["lambda_all"], lam, atol=0.15)
    np.testing.assert_allclose(st["thresholds"][:3], tau[:3], atol=0.15)
    np.testing.assert_allclose(st["thresholds"][3, :2], tau[3, :2], atol=0.15)
    assert (np.diff(st["thresholds"], axis=1) > 0).all()
    np.testing.assert_allclose(st["threshold_std"] * np.sqrt(1 + lam[:, None] ** 2), st["thresholds"], rtol=0.1)
