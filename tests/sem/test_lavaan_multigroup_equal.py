"""Joint multi-group lavaan models: ``group_equal`` (lavaan's ``group.equal``) and ``group_pool``.

Against maximum likelihood (Holzinger-Swineford 1939, ``semopy.examples.holzinger39``: 301 pupils,
schools Pasteur and Grant-White; never copied into the repository):

* the test maximises the two-group normal likelihood with equal loadings itself (scipy, an
  implementation independent of the package) and checks it against lavaan's published
  metric-invariance fit (lavaan tutorial, "Measurement invariance": chi-square 124.044 on 54 df
  for ``group.equal = "loadings"``; 164.103 on 60 df with ``c("loadings", "intercepts")``);
* fast: the joint model's posterior mode (vague priors) reproduces that ML fit (every estimate
  within 0.1 SE, chi-square within 0.1) and lavaan's scalar-invariance chi-square;
* slow: the posterior medians lie within 1 ML SE of the ML estimates.

Partial pooling (simulated, three groups): a link equal in all groups is pooled (group intervals
overlap the population's, deviations cover 0); a link 0.6 larger in one group (0.3, 0.3, 0.9;
standardised effect about 0.5) has that group's deviation interval above 0.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
from veerkracht_bayes.sem.lavaan_model import sem_logp_reference
from veerkracht_bayes.sem.lavaan_multigroup import (
    POPULATION,
    JointMultiGroupSemFit,
    fit_sem_multigroup,
    multigroup_layout,
    multigroup_map,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")

HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
X = [f"x{i}" for i in range(1, 10)]
FACTORS = ("visual", "textual", "speed")
#: lavaan tutorial, "Measurement invariance" (lavaan.ugent.be/tutorial/groups.html).
LAVAAN_METRIC_CHISQ, LAVAAN_METRIC_DF = 124.044, 54
LAVAAN_SCALAR_CHISQ, LAVAAN_SCALAR_DF = 164.103, 60


def _frames():
    semopy = pytest.importorskip("semopy")
    d = semopy.examples.holzinger39.get_data()
    labels = list(dict.fromkeys(d["school"]))
    return [d[d["school"] == lab][X].reset_index(drop=True) for lab in labels], labels


# ----------------------------------------------------------------- independent ML (scipy)
def _unpack(theta: np.ndarray, G: int):
    lam = np.zeros((9, 3))
    for f in range(3):
        lam[3 * f, f] = 1.0
        lam[3 * f + 1, f], lam[3 * f + 2, f] = theta[2 * f], theta[2 * f + 1]
    out = []
    for g in range(G):
        t = theta[6 + 15 * g: 6 + 15 * (g + 1)]
        th = np.diag(t[:9])
        phi = np.diag(t[9:12])
        for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            phi[a, b] = phi[b, a] = t[12 + k]
        out.append((lam, th, phi))
    return out


def _discrepancy(theta, S_list, n_list):
    """sum_g n_g (log|Sigma| + tr(S Sigma^-1) - log|S| - p): lavaan's ML chi-square."""
    tot = 0.0
    for (lam, th, phi), S, n in zip(_unpack(theta, len(S_list)), S_list, n_list):
        Sig = lam @ phi @ lam.T + th
        sign, ld = np.linalg.slogdet(Sig)
        if sign <= 0 or np.any(np.diag(th) <= 0):
            return 1e10
        tot += n * (ld + np.trace(S @ np.linalg.inv(Sig)) - np.linalg.slogdet(S)[1] - 9)
    return tot


def _ml_metric(frames):
    from scipy.optimize import minimize

    S_list = [np.cov(f.to_numpy().T, ddof=0) for f in frames]
    n_list = [len(f) for f in frames]
    x0 = np.ones(6)
    for S in S_list:
        x0 = np.concatenate([x0, 0.5 * np.diag(S), [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]])
    res = minimize(_discrepancy, x0, args=(S_list, n_list), method="BFGS", options={"gtol": 1e-8, "maxiter": 5000})
    x = res.x
    # observed-information SEs: the log-likelihood is -F/2, so Cov = inv(Hessian(F) / 2)
    h = 1e-4
    k = len(x)
    H = np.zeros((k, k))
    f0 = _discrepancy(x, S_list, n_list)
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            if i == j:
                H[i, i] = (_discrepancy(x + ei, S_list, n_list) - 2 * f0 + _discrepancy(x - ei, S_list, n_list)) / h**2
            else:
                H[i, j] = H[j, i] = (_discrepancy(x + ei + ej, S_list, n_list) - _discrepancy(x + ei - ej, S_list, n_list)
                                     - _discrepancy(x - ei + ej, S_list, n_list)
                                     + _discrepancy(x - ei - ej, S_list, n_list)) / (4 * h**2)
    se = np.sqrt(np.diag(np.linalg.inv(H / 2)))
    return x, se, res.fun


def _key_map(G: int) -> list[tuple[int, tuple[str, str, str]]]:
    """Position in the scipy vector -> (group, lavaan key); loadings are in every group."""
    keys = []
    for g in range(G):
        for f in range(3):
            for i in (1, 2):
                keys.append((g, (FACTORS[f], "=~", X[3 * f + i]), f * 2 + i - 1))
        base = 6 + 15 * g
        for i in range(9):
            keys.append((g, (X[i], "~~", X[i]), base + i))
        for f in range(3):
            keys.append((g, (FACTORS[f], "~~", FACTORS[f]), base + 9 + f))
        for k, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            keys.append((g, (FACTORS[a], "~~", FACTORS[b]), base + 12 + k))
    return keys


@pytest.fixture(scope="module")
def hs_ml():
    frames, labels = _frames()
    x, se, chisq = _ml_metric(frames)
    return frames, labels, x, se, chisq


def test_scipy_ml_reproduces_lavaan_metric_chisq(hs_ml):
    *_, chisq = hs_ml
    assert abs(chisq - LAVAAN_METRIC_CHISQ) < 0.01
    assert 2 * 45 - 36 == LAVAAN_METRIC_DF


def _rows(spec):
    return {(r.lhs, r.op, r.rhs): i for i, r in enumerate(spec.rows)}


def _chisq(layout, values, frames):
    tot = 0.0
    for g, (dat, f) in enumerate(zip(layout.data, frames)):
        S = np.cov(f.to_numpy().T, ddof=0)
        n = len(f)
        ll_sat = -0.5 * n * (np.linalg.slogdet(S)[1] + 9 * np.log(2 * np.pi) + 9)
        tot += 2 * (ll_sat - sem_logp_reference(layout.spec, dat, values[g]))
    return tot


# measured: about 10 s (JAX compilation + L-BFGS)
def test_equal_loadings_mode_matches_ml(hs_ml):
    frames, labels, x, se, chisq = hs_ml
    lay = multigroup_layout(parse_lavaan(HS), frames, labels, group_equal=["loadings"])
    assert lay.n_joint == 36  # 6 shared loadings + 2 x (9 residual variances + 3 variances + 3 covariances)
    v = multigroup_map(lay)
    rows = _rows(lay.spec)
    far = []
    for g, key, pos in _key_map(2):
        if abs(v[g, rows[key]] - x[pos]) > 0.1 * se[pos]:
            far.append((labels[g], key, v[g, rows[key]], x[pos], se[pos]))
    assert not far, far
    assert abs(_chisq(lay, v, frames) - chisq) < 0.1
    loads = [i for i, r in enumerate(lay.spec.rows) if r.op == "=~"]
    np.testing.assert_array_equal(v[0, loads], v[1, loads])


def test_equal_loadings_intercepts_reproduce_lavaan_scalar_chisq(hs_ml):
    frames, labels, *_ = hs_ml
    lay = multigroup_layout(parse_lavaan(HS), frames, labels, group_equal=("loadings", "intercepts"))
    assert 2 * (45 + 9) - lay.n_joint == LAVAAN_SCALAR_DF  # 48 free: + 9 shared intercepts + 3 latent means
    v = multigroup_map(lay)
    rows = _rows(lay.spec)
    # lavaan's convention: with equal intercepts the first group's latent means are 0, the others free
    means = [rows[(f, "~1", "")] for f in FACTORS]
    assert np.all(v[0, means] == 0.0) and np.all(v[1, means] != 0.0)
    ints = [rows[(x, "~1", "")] for x in X]
    np.testing.assert_array_equal(v[0, ints], v[1, ints])
    # the model has a mean structure now: the saturated model has 9 means per group more
    tot = 0.0
    for g, (dat, f) in enumerate(zip(lay.data, frames)):
        S = np.cov(f.to_numpy().T, ddof=0)
        n = len(f)
        tot += 2 * (-0.5 * n * (np.linalg.slogdet(S)[1] + 9 * np.log(2 * np.pi) + 9)
                    - sem_logp_reference(lay.spec, dat, v[g]))
    assert abs(tot - LAVAAN_SCALAR_CHISQ) < 0.1


@pytest.mark.slow
# measured: about 85 s on the shared 2-core machine
def test_equal_loadings_posterior_within_one_se(hs_ml):
    frames, labels, x, se, _ = hs_ml
    df = pd.concat([f.assign(school=lab) for f, lab in zip(frames, labels)], ignore_index=True)
    fit = fit_sem_multigroup(parse_lavaan(HS), df, "school", group_equal="loadings", draws=600, tune=600,
                             chains=2, seed=5)
    assert isinstance(fit, JointMultiGroupSemFit)
    tab = fit.table()
    far = []
    for g, key, pos in _key_map(2):
        r = tab[(tab.group == labels[g]) & (tab.lhs == key[0]) & (tab.op == key[1]) & (tab.rhs == key[2])]
        assert len(r) == 1
        med = float(r["median"].iloc[0])
        if abs(med - x[pos]) > se[pos]:
            far.append((labels[g], key, med, x[pos], se[pos]))
    assert not far, far
    assert (tab[tab.free > 0].r_hat < 1.05).all()


# ----------------------------------------------------------------- tables and errors
def _two_groups(n=120, seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(["p", "q"], n // 2)
    x = rng.normal(size=n)
    return pd.DataFrame({"g": g, "x": x, "y": 0.5 * x + rng.normal(size=n)})


def test_label_in_model_is_shared_across_groups():
    df = _two_groups()
    lay = multigroup_layout(parse_lavaan("y ~ b*x"), [df[df.g == k].drop(columns="g") for k in "pq"], ["p", "q"])
    assert lay.mode == ("equal", "free") and lay.n_joint == 3


def test_group_equal_errors():
    df = _two_groups()
    frames = [df[df.g == k].drop(columns="g") for k in "pq"]
    lav = parse_lavaan("f =~ a + b + c\n")
    rng = np.random.default_rng(0)
    fr = [pd.DataFrame(rng.normal(size=(60, 4)) + rng.normal(size=(60, 1)), columns=list("abcd"))
          for _ in range(2)]
    with pytest.raises(ModelError, match="lv.covariances needs lv.variances"):
        multigroup_layout(parse_lavaan("f =~ a + b\nh =~ c + d\n"), fr, ["p", "q"], group_equal=["lv.covariances"])
    fr = [f[list("abc")] for f in fr]
    assert multigroup_layout(lav, fr, ["p", "q"], group_equal=["residuals", "lv.variances"]).n_joint == 2 + 3 + 1 + 2
    with pytest.raises(ModelError, match="can be constrained equal .* but not pooled"):
        fit_sem_multigroup(parse_lavaan("y ~ x"), df, "g", group_pool="residuals")
    with pytest.raises(ModelError, match="either equal across groups or partially pooled"):
        fit_sem_multigroup(parse_lavaan("y ~ x"), df, "g", group_equal="regressions", group_pool="regressions")
    with pytest.raises(ModelError, match="tau_sd must be a positive"):
        multigroup_layout(parse_lavaan("y ~ x"), frames, ["p", "q"], group_pool=["regressions"], tau_sd=0.0)


# ----------------------------------------------------------------- partial pooling recovery
def _pooled_data(n=300, seed=11):
    rng = np.random.default_rng(seed)
    parts = []
    for lab, b2 in (("a", 0.3), ("b", 0.3), ("c", 0.9)):
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        parts.append(pd.DataFrame({"grp": lab, "x1": x1, "x2": x2, "y": 0.5 * x1 + b2 * x2 + rng.normal(size=n)}))
    return pd.concat(parts, ignore_index=True)


# measured: about 35 s on the shared 2-core machine
def test_pooled_regressions_recovery():
    df = _pooled_data()
    fit = fit_sem_multigroup(parse_lavaan("y ~ x1 + x2"), df, "grp", group_pool="regressions", draws=250,
                             tune=250, chains=2, seed=1)
    tab = fit.table()
    truth = {("a", "x1"): 0.5, ("b", "x1"): 0.5, ("c", "x1"): 0.5, ("a", "x2"): 0.3, ("b", "x2"): 0.3,
             ("c", "x2"): 0.9}
    reg = tab[(tab.op == "~") & (tab.across_groups == "pooled")].set_index(["group", "rhs"])
    covered = sum(reg.loc[k, "lower"] <= v <= reg.loc[k, "upper"] for k, v in truth.items())
    assert covered >= 5, reg
    pop = tab[tab.across_groups == "population"].set_index("rhs")
    delta = tab[tab.across_groups == "delta"].set_index(["group", "rhs"])
    # the link equal in all groups: group intervals overlap the population's, deviations cover 0
    for lab in "abc":
        assert reg.loc[(lab, "x1"), "lower"] <= pop.loc["x1", "upper"]
        assert reg.loc[(lab, "x1"), "upper"] >= pop.loc["x1", "lower"]
        assert delta.loc[(lab, "x1"), "lower"] < 0 < delta.loc[(lab, "x1"), "upper"]
    # the link 0.6 larger in group c: its deviation's 90% interval excludes 0
    assert delta.loc[("c", "x2"), "lower"] > 0
    tau = tab[tab.across_groups == "tau"].set_index("rhs")
    assert tau.loc["x2", "median"] > tau.loc["x1", "median"]
    assert set(tab.group) == {"a", "b", "c", POPULATION}
    assert (tab.r_hat.dropna() < 1.05).all()
