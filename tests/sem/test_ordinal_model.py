"""The exact ordinal path: log-density vs a hand-written reference, and recovery.

Diagnosis of the former recovery failure (8/13 covered at n = 300):

* The simulation matches the model: theta parameterisation (y* = lambda eta + N(0, 1)),
  latents standardised with psi from (A∘A) psi = 1 − diag(A G S_x G'A') with S_x = 1; the
  model uses the sample S_x of the centred x (≈ 1 ± 0.08 at n = 300, a negligible change of
  psi), and centring x only shifts the latent means, which the free thresholds absorb.
* The default edge prior |beta| ~ N(0.15, 0.15) (sign-truncated) is informative: the test's
  true values 0.4 to 0.5 sit 2 prior sd away, and at n = 300 with 3 ordinal items per construct
  the posterior is pulled towards 0.15 (medians 0.22, 0.38, 0.25, −0.12 for 0.4, 0.5, 0.45,
  −0.3). Coverage of a fixed truth is only nominal when the data dominate the prior, so the
  recovery tests use the weakly informative sign-constrained prior |beta| ~ N(0, 1).
* The sampler: the model used to be centred in the latent scores; psi (a function of B) and
  eta formed a funnel (tree depth 8.4, ~570 gradient steps per draw; with N(0, 1) edge priors
  R-hat ~2 and ESS 3 at 200 draws). It is now non-centred (eta = A(Gx + sqrt(psi) z)), which
  gives the same posterior (tested below against the centred reference plus the Jacobian)
  at tree depth ~5 (~40 steps per draw).
* One data set also varies by itself: with seed 11 even the oracle regression on the TRUE latent
  scores gives x -> a = 0.315 (true 0.4), c -> a = −0.08 (true −0.3), so one or two misses
  there are expected.
* Open until 2026-11-26 (see the last point): with wide priors and the non-centred model, coverage at n = 300 (2 chains,
  tune 400-500, 200 draws) was 8, 9, 10, 8, 11 of 13 on seeds 11, 100, 101, 102, 103, i.e.
  46/65 = 71% (P[Bin(65, .9) <= 46] ≈ 2e-5; intervals are correlated within a data set, so
  less extreme than that, but below nominal). The misses are systematic in direction: a -> b
  and b -> c too small (4 of 10 intervals entirely below the truth), and the largest loading
  of a construct too large (its posterior has a long right tail, ESS 20-40 of 400). The
  log-density equals the hand-written reference (centred and non-centred), so the remaining
  suspects are the sampler (R-hat up to 1.1 at 200 draws: longer chains needed to tell) or a
  finite-sample effect of the weakly identified loadings; the slow test (n = 800) has not
  been run since the change. Longer chains do not fix it: seed 102 with 1000 + 1000 draws
  (R-hat 1.03) covered 6/13. Treating the same seed-102 y* as continuous indicators gave
  a -> b in [0.24, 0.47] (truth 0.5), b -> c in [0.24, 0.50] (0.45): this data set leans low on
  its own, but the ordinal intervals (b -> c [0.11, 0.42]) lean lower still.
* Sampler ruled out (2026-11-26): with the guided latent coordinates (a different bijection,
  same posterior: test_guided_model_equals_noncentred_plus_jacobian) the chains mix well
  (R-hat of beta and lambda <= 1.03, min bulk ESS 111-248 of 400, 0 divergences) and coverage on
  the same five data sets is 11, 10, 10, 6, 11 of 13 = 48/65 (74%), about as before. So the
  posterior itself, not its sampling, is below nominal coverage at n = 300; seed 102 again
  covers 6/13.
* Resolved (2026-11-26): the posterior is calibrated and these five data sets lean on their own.
  (1) Simulation-based calibration of the same model (``tests/sem/test_ordinal_sbc.py``: 60 data
  sets with parameters drawn from the prior, n = 300) gives uniform ranks: p >= 0.17 for the
  location and tail statistics of edges, loadings and thresholds; 91% of the true edges, 92%
  of the loadings and 90% of the thresholds inside their central 90% intervals. (2) The same
  five data sets' latent responses y* (far more information than the coarsened answers),
  fitted by the continuous path with the same edge prior, cover only 15 of the 20 true edges;
  e.g. seed 100: a -> b in [0.20, 0.46] (truth 0.5), b -> c in [0.06, 0.36] (0.45). Coverage at
  one fixed truth from five data sets is not a calibration test; the recovery tests below stay
  as checks of a gross failure (their tolerances are loose for that reason).

Recovery tolerance (binomial): with k parameters whose true values should each lie in
their 90% central interval with probability 0.9, the number covered is ~ Binomial(k, 0.9)
if the intervals were independent (they are positively correlated through the shared data
set, which widens the spread; the bounds below are therefore loose on the side of not failing
spuriously while still failing for a biased sampler or a missing Jacobian, which move all B
together). Fast test: k = 4 edges + 9 loadings = 13, require >= 9 covered
(P[Bin(13, .9) <= 8] = 0.034). Slow test: 4 data sets, k = 52, require >= 41
(P[Bin(52, .9) <= 40] = 0.010). Convergence is checked too: no more than 1% divergent
transitions and R-hat of every beta <= 1.1 (2 chains).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import norm

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from veerkracht_bayes.graph.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.graph.spec import GraphSpec  # noqa: E402
from veerkracht_bayes.inference.ordinal_fit import fit_ordinal  # noqa: E402
from veerkracht_bayes.sem.ordinal import (OrdinalData, build_ordinal_model,  # noqa: E402
                                            ordinal_loglik_terms)
from veerkracht_bayes.inference.sampling import SamplerSettings  # noqa: E402

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
TRUE_BETA = np.array([0.4, 0.5, 0.45, -0.3])


def make_graph(edges=EDGES, exogenous=("x",)) -> CausalGraph:
    nodes = list(dict.fromkeys([s for s, _, _ in edges] + [t for _, t, _ in edges]))
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "ordinal-test",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in exogenous else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "test"} for s, t, sg in edges],
    })
    return CausalGraph(spec)


def simulate(n: int, seed: int, lam: np.ndarray | None = None):
    """Data from the exact model: standardised latents, probit items with 5 categories."""
    rng = np.random.default_rng(seed)
    lat = ["a", "b", "c"]
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = TRUE_BETA[1], TRUE_BETA[2], TRUE_BETA[3]
    G = np.array([[TRUE_BETA[0]], [0.0], [0.0]])
    A = np.linalg.inv(np.eye(3) - B)
    AG = A @ G
    psi = np.linalg.solve(A * A, 1.0 - (AG ** 2).sum(1))
    x = rng.normal(size=(n, 1))
    zeta = rng.normal(size=(n, 3)) * np.sqrt(psi)
    eta = (x @ G.T + zeta) @ A.T
    lam = np.array([1.2, 0.9, 0.7] * 3) if lam is None else lam
    c_idx = np.repeat(np.arange(3), 3)
    tau = np.tile(np.array([-1.2, -0.4, 0.3, 1.1]), (9, 1)) + rng.normal(0, 0.2, size=(9, 1))
    ystar = eta[:, c_idx] * lam + rng.normal(size=(n, 9))
    codes = (ystar[:, :, None] > tau[None]).sum(-1)
    codes[rng.random(codes.shape) < 0.05] = -1  # 5% missing at random
    xc = x - x.mean(0)
    data = OrdinalData(item_names=tuple(f"{c}{i}" for c in lat for i in range(3)),
                       item_construct=tuple(np.repeat(lat, 3)), n_categories=np.full(9, 5),
                       codes=codes, x_names=("x",), x=xc, weights=np.ones(n))
    return data, lam, psi


# ----------------------------------------------------------------------------- log density
def reference(B, G, psi, eta, x, w, lam, tau_list, codes, c_idx):
    """Hand-written joint log-density: structural Gaussian with Jacobian + ordered probit."""
    n, P = eta.shape
    struct = 0.0
    for r in range(n):
        zeta = (np.eye(P) - B) @ eta[r] - G @ x[r]
        struct += w[r] * np.sum(norm.logpdf(zeta, 0.0, np.sqrt(psi)))
    struct += w.sum() * np.log(abs(np.linalg.det(np.eye(P) - B)))
    items = 0.0
    for r in range(n):
        for i in range(codes.shape[1]):
            k = codes[r, i]
            if k < 0:
                continue
            t = np.concatenate([[-np.inf], tau_list[i], [np.inf]])
            mu = lam[i] * eta[r, c_idx[i]]
            items += w[r] * np.log(norm.cdf(t[k + 1] - mu) - norm.cdf(t[k] - mu))
    return struct, items


@pytest.mark.parametrize("cyclic", [False, True])
def test_logdensity_matches_reference(cyclic):
    import pytensor.tensor as pt

    rng = np.random.default_rng(3 + cyclic)
    n, P, m = 7, 3, 5
    B = np.zeros((P, P))
    B[1, 0], B[2, 1] = 0.4, -0.3
    if cyclic:
        B[0, 2] = 0.6  # cycle a -> b -> c -> a, det(I - B) = 1 - 0.4*(-0.3)*0.6 != 1
    G = rng.normal(0, 0.3, size=(P, 2))
    psi = rng.uniform(0.3, 0.9, size=P)
    eta = rng.normal(size=(n, P))
    x = rng.normal(size=(n, 2))
    w = rng.uniform(0.2, 2.0, size=n)
    lam = rng.uniform(0.5, 1.5, size=m)
    ncat = np.array([5, 3, 2, 4, 5])
    kmax = ncat.max()
    tau_list = [np.sort(rng.normal(0, 1, size=k - 1)) for k in ncat]
    tau_pad = np.full((m, kmax + 1), np.inf)
    tau_pad[:, 0] = -np.inf
    for i, t in enumerate(tau_list):
        tau_pad[i, 1:len(t) + 1] = t
    codes = np.array([rng.integers(0, k, size=n) for k in ncat]).T
    codes[0, 1] = -1
    codes[3, 4] = -1
    codes[2, 0] = 4  # far tail category of a 5-category item
    eta[2, 0] = -3.0
    c_idx = np.array([0, 0, 1, 2, 2])
    s, it = ordinal_loglik_terms(pt.as_tensor(B), pt.as_tensor(G), pt.as_tensor(psi), pt.as_tensor(eta), x, w,
                                 pt.as_tensor(lam), pt.as_tensor(tau_pad), codes, c_idx)
    s_ref, it_ref = reference(B, G, psi, eta, x, w, lam, tau_list, codes, c_idx)
    np.testing.assert_allclose(float(s.eval()), s_ref, rtol=1e-10)
    np.testing.assert_allclose(float(it.eval()), it_ref, rtol=1e-10)
    if cyclic:  # the Jacobian term is present and not 0
        assert abs(np.log(abs(np.linalg.det(np.eye(P) - B)))) > 0.05


def _system(g, layout, beta, psi_node):
    """B, Gamma (covariate x) and psi of the likelihood latents from a draw of beta and psi."""
    keys = list(g.edge_keys)
    li = {k: i for i, k in enumerate(layout.lik_latent)}
    P = len(li)
    B = np.zeros((P, P))
    G = np.zeros((P, 1))
    for e in g.edges:
        if e.source == "x":
            G[li[e.target], 0] = beta[keys.index(e.key)]
        else:
            B[li[e.target], li[e.source]] = beta[keys.index(e.key)]
    return B, G, psi_node[[g.node_index[k] for k in layout.lik_latent]]


@pytest.mark.parametrize("wsum", ["n", "not_n"])
def test_noncentred_model_equals_centred_density_plus_jacobian(wsum):
    """The model samples z (eta = A(Gx + sqrt(psi) z)); its density in z must be the centred
    reference density at eta(z) plus the log-Jacobian n·(0.5 Σ log psi − log|det(I − B)|),
    for weights that sum to n and for weights that do not (exact identity: rtol 1e-9)."""
    import dataclasses

    data, _, _ = simulate(30, 2)
    rng = np.random.default_rng(7)
    w = rng.uniform(0.3, 2.0, size=data.n)
    w = w * (data.n / w.sum()) * (1.0 if wsum == "n" else 1.3)
    data = dataclasses.replace(data, weights=w)
    g = make_graph()
    model, layout = build_ordinal_model(g, data, keep_eta=True, coordinates="noncentred")
    point = model.initial_point()
    point["z"] = rng.normal(size=point["z"].shape)
    point["beta_truncated_normal_pos_interval__"] = rng.normal(0, 0.5, size=3)
    point["beta_truncated_normal_neg_interval__"] = rng.normal(0, 0.5, size=1)
    import pytensor

    outs = model.replace_rvs_by_values([model["beta"], model["psi"], model["eta"], model["lambda"],
                                        model["thresholds"], model["structural"], model["items"]])
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    beta, psi_node, eta, lam, tau, pot_s, pot_i = fn(*[point[v.name] for v in model.value_vars])
    logp_z = float(model.compile_logp(vars=[model["z"]])(point))
    B, G, psi = _system(g, layout, beta, psi_node)
    P = len(psi)
    li = {k: i for i, k in enumerate(layout.lik_latent)}
    c_idx = np.array([li[c] for c in data.item_construct])
    s_ref, it_ref = reference(B, G, psi, eta, data.xm, data.w, lam, list(tau), data.codes, c_idx)
    log_jac = data.n * (0.5 * np.sum(np.log(psi)) - np.log(abs(np.linalg.det(np.eye(P) - B))))
    np.testing.assert_allclose(logp_z + float(pot_s), s_ref + log_jac, rtol=1e-9)
    np.testing.assert_allclose(float(pot_i), it_ref, rtol=1e-9)


@pytest.mark.parametrize("wsum", ["n", "not_n"])
def test_guided_model_equals_noncentred_plus_jacobian(wsum):
    """The guided coordinates (eta = m + u chol^-1, thresholds tau = sqrt(1 + lambda^2) kappa) are
    a bijection of the non-centred ones: at matching points the log-densities differ by exactly
    n log|det dz/du| + Σ_i log sqrt(1 + lambda_i^2) (the threshold map in value space), for weights
    that sum to n and for weights that do not. dz/du is measured from the model's own eta (it is
    linear in u), so the test does not repeat the builder's algebra."""
    import dataclasses

    import pytensor

    data, _, _ = simulate(40, 3)
    rng = np.random.default_rng(11)
    w = rng.uniform(0.3, 2.0, size=data.n)
    data = dataclasses.replace(data, weights=w * (data.n / w.sum()) * (1.0 if wsum == "n" else 1.2))
    g = make_graph()
    mg, layout = build_ordinal_model(g, data, keep_eta=True)
    mn, _ = build_ordinal_model(g, data, keep_eta=True, coordinates="noncentred")
    pg = mg.initial_point()
    pg["beta_truncated_normal_pos_interval__"] = rng.normal(-1.0, 0.3, 3)
    pg["beta_truncated_normal_neg_interval__"] = rng.normal(-1.5, 0.3, 1)
    pg["u"] = rng.normal(size=pg["u"].shape)
    pg["loading_interval__"] = rng.normal(0.0, 0.3, 9)
    pg["threshold_std_ordered__"] = pg["threshold_std_ordered__"] + rng.normal(0, 0.2, (9, 4))
    f = pytensor.function(mg.value_vars, mg.replace_rvs_by_values(
        [mg["beta"], mg["psi"], mg["eta"], mg["thresholds"], mg["lambda"]]), on_unused_input="ignore")

    def at(point):
        return f(*[point[v.name] for v in mg.value_vars])

    beta, psi_node, eta, tau, lam = at(pg)
    M = np.stack([at({**pg, "u": pg["u"] + np.outer(np.arange(data.n) == 0, np.eye(3)[j])})[2][0] - eta[0]
                  for j in range(3)], axis=1)
    B, G, psi = _system(g, layout, beta, psi_node)
    IB = np.eye(3) - B
    pn = {k: v for k, v in pg.items() if k not in ("u", "threshold_std_ordered__")}
    pn["z"] = (eta @ IB.T - data.xm @ G.T) / np.sqrt(psi)
    pn["thresholds_ordered__"] = np.column_stack([tau[:, 0], np.log(np.diff(tau, axis=1))])
    fn = pytensor.function(mn.value_vars, mn.replace_rvs_by_values([mn["eta"]]), on_unused_input="ignore")
    np.testing.assert_allclose(fn(*[pn[v.name] for v in mn.value_vars])[0], eta, atol=1e-12)
    log_jac = (data.n * (np.log(abs(np.linalg.det(IB))) - 0.5 * np.log(psi).sum() + np.log(abs(np.linalg.det(M))))
               + np.log(np.sqrt(1 + lam ** 2)).sum())
    np.testing.assert_allclose(mg.compile_logp()(pg), mn.compile_logp()(pn) + log_jac, rtol=1e-11)


def test_onehot_item_terms_equal_reference_terms():
    """The fast item terms (one-hot thresholds, two erfc, finite outer thresholds) give the
    reference's number, also far in the tails, with missing answers and fewer categories."""
    import pytensor.tensor as pt

    from veerkracht_bayes.sem.ordinal import item_terms_onehot, ordinal_item_terms

    rng = np.random.default_rng(5)
    n, P = 400, 2
    ncat = np.array([5, 3, 2, 4])
    kmax = int(ncat.max())
    c_idx = np.array([0, 0, 1, 1])
    eta = rng.normal(0, 3.0, size=(n, P))  # many answers 4-9 sd from their thresholds
    eta[:5, 0] = [-12.0, 12.0, -25.0, 25.0, 0.0]
    lam = np.array([1.5, 0.8, 2.0, 1.1])
    tau = np.sort(rng.normal(0, 1, size=(4, kmax - 1)), axis=1)
    used = np.arange(1, kmax)[None, :] <= (ncat[:, None] - 1)
    codes = np.array([rng.integers(0, k, size=n) for k in ncat]).T
    codes[rng.random(codes.shape) < 0.1] = -1
    w = rng.uniform(0.5, 1.5, n)
    tau_pad = np.full((4, kmax + 1), np.inf)
    tau_pad[:, 0] = -np.inf
    tau_pad[:, 1:kmax] = np.where(used, tau, np.inf)
    ref = float(ordinal_item_terms(pt.as_tensor(eta), w, pt.as_tensor(lam), pt.as_tensor(tau_pad), codes,
                                   c_idx).eval())
    obs = codes >= 0
    fast = float(item_terms_onehot(pt.as_tensor(eta), pt.as_tensor(lam), pt.as_tensor(tau), used,
                                    pt.as_tensor(np.where(obs, codes, 0)), w[:, None] * obs, c_idx, P,
                                    kmax).eval())
    assert np.isfinite(ref) and ref < -1e3
    np.testing.assert_allclose(fast, ref, rtol=1e-12)


def test_model_builds_with_expected_variables():
    data, _, _ = simulate(40, 1)
    model, layout = build_ordinal_model(make_graph(), data)
    assert {"u", "thresholds", "threshold_std", "loading"} <= set(model.named_vars)
    assert "eta" not in model.named_vars
    assert model["u"].shape.eval().tolist() == [40, 3]
    nc, _ = build_ordinal_model(make_graph(), data, coordinates="noncentred")
    assert {"z", "thresholds", "loading"} <= set(nc.named_vars) and "u" not in nc.named_vars
    assert layout.lik_latent == ("a", "b", "c") and layout.covariates == ("x",)
    terms = model.point_logps(model.initial_point())
    assert np.isfinite(terms["items"]) and np.isfinite(terms["structural"])


# ----------------------------------------------------------------------------- recovery
@dataclass(frozen=True)
class _EdgePrior:
    distribution: str
    mean: float
    sd: float
    nu: float | None = None


class WidePriors:
    """Weakly informative sign-constrained edge priors: |beta| ~ N(0, 1) truncated to the sign."""

    def for_edge(self, key: str) -> _EdgePrior:  # noqa: ARG002 - same prior for every edge
        return _EdgePrior("truncated_normal", 0.0, 1.0)


def _check_convergence(fit) -> None:
    from arviz_stats import rhat

    post = fit.idata["posterior"].to_dataset()
    r = float(np.nanmax(rhat(post[["beta"]])["beta"].values))
    assert r <= 1.1, f"R-hat of beta {r:.3f}"
    div = int(fit.idata["sample_stats"]["diverging"].sum())
    n_tr = int(fit.idata["sample_stats"]["diverging"].size)
    assert div <= 0.01 * n_tr, f"{div} divergences in {n_tr} transitions"


def _coverage(fit, lam_true):
    post = fit.idata["posterior"]
    beta = post["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values
    lam = post["lambda"].stack(s=("chain", "draw")).transpose("s", "item").values
    lo_b, hi_b = np.quantile(beta, [0.05, 0.95], axis=0)
    lo_l, hi_l = np.quantile(lam, [0.05, 0.95], axis=0)
    keys = list(post["edge"].values)
    order = [keys.index(f"{s}->{t}") if f"{s}->{t}" in keys else None for s, t, _ in EDGES]
    if None in order:  # edge key format differs: fall back to graph order
        order = list(range(len(EDGES)))
    cov_b = (lo_b[order] <= TRUE_BETA) & (TRUE_BETA <= hi_b[order])
    cov_l = (lo_l <= lam_true) & (lam_true <= hi_l)
    return int(cov_b.sum() + cov_l.sum()), cov_b.size + cov_l.size


def test_recovery_fast():
    data, lam, _ = simulate(300, 11)
    g = make_graph()
    fit = fit_ordinal(g, data, WidePriors(), settings=SamplerSettings(
        chains=2, draws=200, tune=500, progressbar=False, prior_draws=200, random_seed=5))
    assert "beta" in fit.idata["posterior"] and fit.idata["posterior"]["beta"].dims[-1] == "edge"
    for name in ("eta", "z", "u"):
        assert name not in fit.idata["posterior"]
    _check_convergence(fit)
    covered, k = _coverage(fit, lam)
    assert covered >= 9, f"{covered}/{k} true values inside their 90% intervals"


@pytest.mark.slow
def test_recovery_slow():
    g = make_graph()
    covered = total = 0
    for seed in range(4):
        data, lam, _ = simulate(800, 100 + seed)
        fit = fit_ordinal(g, data, WidePriors(), settings=SamplerSettings(
            chains=2, draws=400, tune=500, progressbar=False, prior_draws=200, random_seed=seed))
        _check_convergence(fit)
        c, k = _coverage(fit, lam)
        covered += c
        total += k
    assert covered >= 41, f"{covered}/{total}"


def test_ordinal_data_from_shipped_synthetic_survey():
    """The shipped synthetic survey becomes ordinal-path data: codes in range, covariates centred,
    weights normalised, and the model builds on it (no sampling here: see the benchmark)."""
    from pathlib import Path

    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.sem.ordinal import ordinal_data_from_survey
    from veerkracht_bayes.survey.reading import read_survey

    root = Path(__file__).resolve().parents[2] / "data" / "synthetic"
    g = load_graph("marvel")
    sv = read_survey(root / "veerkracht_synthetic.csv.gz", root / "codebook_synthetic.yaml", graph=g)
    d = ordinal_data_from_survey(sv, g)
    assert d.n + d.n_excluded == sv.n
    assert d.codes.shape == (d.n, len(d.item_names)) and len(d.item_names) > 0
    assert ((d.codes >= -1) & (d.codes < d.n_categories[None, :])).all()
    assert set(d.x_names) == {"adverse_life_events", "single_parent_household"}
    np.testing.assert_allclose(d.x.T @ d.w / d.w.sum(), 0.0, atol=1e-10)
    np.testing.assert_allclose(d.w.sum(), d.n, rtol=1e-12)
    import dataclasses

    small = dataclasses.replace(d, codes=d.codes[:50], x=d.x[:50], weights=np.ones(50), cont=d.cont[:50])
    model, layout = build_ordinal_model(g, small)
    assert model["u"].shape.eval().tolist() == [50, len(layout.lik_latent)]
    terms = model.point_logps(model.initial_point())
    assert np.isfinite(terms["items"]) and np.isfinite(terms["structural"])


def test_prior_group_follows_the_model_prior():
    """The NumPy prior draws: psi and the stability bound equal the model's own deterministics at
    the same links, the likelihood system's psi equals the full one when every latent is
    measured, and every draw passes the model's hard barrier."""
    import pymc as pm

    from veerkracht_bayes.inference.ordinal_fit import ordinal_prior_draws
    from veerkracht_bayes.sem.ordinal import likelihood_psi

    data, _, _ = simulate(200, 3)
    g = make_graph()
    model, layout = build_ordinal_model(g, data, WidePriors())
    prior = ordinal_prior_draws(layout, g, 300, 11, data.x_cov)
    assert prior.sizes["draw"] == 300 and set(prior.data_vars) == {"beta", "psi", "alpha", "rho_abs_bound"}
    beta = prior["beta"].isel(chain=0).values
    names = [v.name for v in model.free_RVs if v.name.startswith("beta_")]
    fn = model.compile_fn([model["psi"], model["rho_abs_bound"]], inputs=[model[k] for k in names],
                          point_fn=False)
    from veerkracht_bayes.sem.model_builder import edge_groups

    groups = {name: idx for name, _, idx in edge_groups(layout.edge_priors, list(layout.edge_keys))}
    lat = [g.node_index[k] for k in layout.latent]
    for d in range(0, 300, 37):
        psi, rho = fn(*[beta[d, groups[k]] for k in names])
        np.testing.assert_allclose(prior["psi"].values[0, d], psi, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(prior["rho_abs_bound"].values[0, d], rho, rtol=1e-10)
        assert (psi[lat] > 1e-4).all()
    lik = likelihood_psi(layout, g, beta, data.x_cov)
    np.testing.assert_allclose(lik, prior["psi"].values[0][:, lat], rtol=1e-10, atol=1e-12)
    # signs follow the graph (sign-truncated priors)
    signs = np.array([1 if sg == "+" else -1 for _, _, sg in EDGES])
    keys = list(layout.edge_keys)
    order = [keys.index(f"{s}->{t}") for s, t, _ in EDGES]
    assert (beta[:, order] * signs >= 0).all()
