"""Tests of veerkracht_bayes.priors.effect_sizes: known values, round trips, Monte Carlo checks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veerkracht_bayes.priors import effect_sizes as es
from veerkracht_bayes.errors import PriorError

# The research note gives derived values rounded to 2-3 decimals: compare with half a unit in the
# last reported digit (plus float slack).
R3 = 5e-4 + 1e-12
R2 = 5e-3 + 1e-12


# ----------------------------------------------------------------------- worked examples
@pytest.mark.parametrize("d, n1, n2, expected", [
    (0.51, None, None, 0.247),   # note §3.1
    (0.39, None, None, 0.191),
    (0.369, None, None, 0.181),
    (0.8, None, None, 0.8 / math.sqrt(0.64 + 4)),
])
def test_d_to_r_known_values(d, n1, n2, expected):
    assert abs(es.d_to_r(d, n1, n2) - expected) <= R3


def test_d_to_r_prevalence_known_values_and_equal_groups():
    assert abs(es.d_to_r_prevalence(0.51, 0.1) - 0.151) <= R3  # note §3.1
    assert abs(es.d_to_r_prevalence(0.51, 0.5) - es.d_to_r(0.51)) < 1e-12


def test_group_constant():
    assert es.group_constant() == 4.0
    assert es.group_constant(50, 50) == 4.0
    assert abs(es.group_constant(10, 90) - 100**2 / 900) < 1e-12
    with pytest.raises(PriorError, match="both group sizes or neither"):
        es.group_constant(10, None)
    with pytest.raises(PriorError, match="'n1' has value 0"):
        es.group_constant(0, 5)


def test_unequal_groups_give_smaller_r():
    assert es.d_to_r(0.5, 10, 90) < es.d_to_r(0.5)


def test_or_conversions_known_values():
    assert abs(es.or_to_d(2.77) - 0.562) <= R3           # note §3.2
    assert abs(es.or_to_r(2.77) - 0.27) <= R2
    assert abs(es.or_to_d(2.02) - 0.388) <= R3
    assert abs(es.or_to_r(2.02, 0.5) - 0.19) <= R2
    assert abs(es.or_to_r(2.02, 0.2) - 0.153) <= R3
    assert abs(es.or_to_r(1.23) - 0.057) <= R3           # HR ~ OR, note §3.2
    assert abs(es.or_to_d(math.exp(math.pi / math.sqrt(3))) - 1.0) < 1e-12
    assert es.or_to_d(1.0) == 0.0


def test_latent_beta_known_values():
    assert abs(es.or_per_unit_to_latent_beta(1.40, 2.2) - 0.38) <= R2  # note §3.3
    assert abs(es.logodds_to_latent_beta(math.log(1.4) * 2.2)
               - es.or_per_unit_to_latent_beta(1.4, 2.2)) < 1e-12


def test_percentile_gain_and_means():
    assert abs(es.percentile_gain_to_d(0.11) - 0.28) <= R2  # note §3.4
    assert es.percentile_gain_to_d(0.0) == 0.0
    assert abs(es.cohens_d_from_means(20.03, 10.18, 15.29, 8.49) - 0.51) <= R2  # note #25
    # with equal n the pooled variance formula equals the plain average
    assert abs(es.cohens_d_from_means(1, 2, 0, 3, 40, 40) - es.cohens_d_from_means(1, 2, 0, 3)) < 1e-12


def test_proportions_to_or():
    assert abs(es.proportions_to_or(0.5, 0.5) - 1.0) < 1e-12
    assert abs(es.proportions_to_or(0.28, 0.16) - (0.28 / 0.72) / (0.16 / 0.84)) < 1e-12


def test_fisher_and_standard_errors():
    assert abs(es.fisher_z(0.5) - 0.5493061443340549) < 1e-12
    assert es.fisher_z_se(103) == pytest.approx(0.1, abs=1e-15)
    assert es.se_r(0.0, 101) == pytest.approx(0.1, abs=1e-15)
    assert es.se_r(0.5, 101) == pytest.approx(0.075, abs=1e-15)
    assert abs(es.ci_to_sd(-0.33, -0.21) - 0.12 / (2 * 1.959963984540054)) < 1e-12


# --------------------------------------------------------------------------- round trips
finite_d = st.floats(min_value=-5, max_value=5, allow_nan=False)
finite_r = st.floats(min_value=-0.99, max_value=0.99, allow_nan=False)
group = st.integers(min_value=2, max_value=10_000)


@given(finite_d, group, group)
@settings(max_examples=200, deadline=None)
def test_d_r_round_trip(d, n1, n2):
    assert es.r_to_d(es.d_to_r(d, n1, n2), n1, n2) == pytest.approx(d, abs=1e-9)


@given(finite_r)
@settings(max_examples=200, deadline=None)
def test_r_d_round_trip_and_fisher(r):
    assert es.d_to_r(es.r_to_d(r)) == pytest.approx(r, abs=1e-12)
    assert es.fisher_z_inv(es.fisher_z(r)) == pytest.approx(r, abs=1e-12)


@given(st.floats(min_value=1e-3, max_value=1e3))
@settings(max_examples=200, deadline=None)
def test_or_d_round_trip(o):
    assert es.d_to_or(es.or_to_d(o)) == pytest.approx(o, rel=1e-12)


@given(st.floats(min_value=-50, max_value=50, allow_nan=False))
@settings(max_examples=200, deadline=None)
def test_latent_beta_bounded_and_odd(b):
    beta = es.logodds_to_latent_beta(b)
    assert -1 < beta < 1
    assert es.logodds_to_latent_beta(-b) == pytest.approx(-beta, abs=1e-15)


@given(st.floats(min_value=-3, max_value=3, allow_nan=False),
       st.floats(min_value=0.01, max_value=0.99))
@settings(max_examples=200, deadline=None)
def test_prevalence_r_bounded_and_signed(d, p):
    r = es.d_to_r_prevalence(d, p)
    assert abs(r) < 1 and (r == 0 or np.sign(r) == np.sign(d))
    # the largest |r| for a given d is reached at p = 0.5
    assert abs(r) <= abs(es.d_to_r_prevalence(d, 0.5)) + 1e-15


def test_vectorised():
    d = np.array([0.2, 0.5, 0.8])
    assert np.allclose(es.r_to_d(es.d_to_r(d)), d)


# ------------------------------------------------------------------------- Monte Carlo
def _corr_tol(r: float, n: int) -> float:
    # 4 standard errors of a sample correlation, SE = (1 - r^2)/sqrt(n - 1): a correct formula
    # fails with probability ~6e-5.
    return 4 * (1 - r**2) / math.sqrt(n - 1)


def test_latent_beta_is_the_latent_correlation_monte_carlo():
    rng = np.random.default_rng(20240601)
    n, b = 200_000, 0.74
    x = rng.standard_normal(n)
    ystar = b * x + rng.logistic(size=n)
    r = np.corrcoef(x, ystar)[0, 1]
    expected = es.logodds_to_latent_beta(b)
    assert abs(r - expected) <= _corr_tol(expected, n)


def test_point_biserial_r_monte_carlo():
    rng = np.random.default_rng(7)
    n, d, p = 200_000, 0.51, 0.1
    g = rng.random(n) < p
    y = rng.standard_normal(n) + d * g
    r = np.corrcoef(g.astype(float), y)[0, 1]
    expected = es.d_to_r_prevalence(d, p)
    assert abs(r - expected) <= _corr_tol(expected, n)


def test_fisher_z_se_monte_carlo():
    rng = np.random.default_rng(11)
    reps, n, rho = 4000, 50, 0.3
    x = rng.standard_normal((reps, n))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((reps, n))
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    r = (xc * yc).sum(1) / np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    sd_z = np.arctanh(r).std(ddof=1)
    expected = es.fisher_z_se(n)
    # SE of a sample sd ~ sd / sqrt(2 (reps - 1)); 4 SE tolerance
    assert abs(sd_z - expected) <= 4 * expected / math.sqrt(2 * (reps - 1))


# ----------------------------------------------------------------------------- rules
def test_shrink_rules():
    assert es.shrink_cross_sectional(0.27) == pytest.approx(0.27 * 0.675)
    assert es.shrink_cross_sectional(-0.27, 0.6) == pytest.approx(-0.162)
    assert es.shrink_to_direct(0.08, "longitudinal", 1.2) == pytest.approx(0.096)
    assert es.shrink_to_direct(0.22, "causal") == pytest.approx(0.22)
    with pytest.raises(PriorError, match=r"factor.*0\.5.*\[0\.6, 0\.75\]"):
        es.shrink_cross_sectional(0.3, 0.5)
    with pytest.raises(PriorError, match="did you mean 'cross_sectional'"):
        es.shrink_to_direct(0.3, "crosssectional")  # type: ignore[arg-type]


def test_prediction_interval_rules():
    assert es.prediction_sd(0.03, 0.0) == es.MIN_PRIOR_SD          # floored
    assert es.prediction_sd(0.03, 0.04) == pytest.approx(0.05)
    assert es.prediction_sd(0.06, 0.08) == pytest.approx(0.1)
    lo, hi = es.prediction_interval(0.2, 0.06, 0.08)
    assert (lo + hi) / 2 == pytest.approx(0.2) and (hi - lo) / 2 == pytest.approx(1.959963984540054 * 0.1)
    assert es.tau_from_i2(0.03, 0.0, 40) == 0.0
    assert es.tau_from_i2(0.1, 0.5, 4) == pytest.approx(math.sqrt(0.5 * 4 * 0.01))
    se = es.ci_to_sd(-0.33, -0.21)
    wide = es.widen_for_heterogeneity(se, i2=0.975, k=46)
    assert wide > se and wide == pytest.approx(math.sqrt(se**2 + 0.975 * 46 * se**2))
    assert es.widen_for_heterogeneity(0.08) == 0.08
    assert es.widen_for_heterogeneity(0.01) == es.MIN_PRIOR_SD
    assert es.widen_for_heterogeneity(0.06, tau=0.08) == pytest.approx(0.1)
    with pytest.raises(PriorError, match="number of studies"):
        es.widen_for_heterogeneity(0.05, i2=0.9)


@pytest.mark.parametrize("call, needle", [
    (lambda: es.r_to_d(1.0), "'r' has value 1.0; expected a correlation with |r| < 1"),
    (lambda: es.fisher_z(-1.2), "|r| < 1"),
    (lambda: es.or_to_d(0.0), "'odds_ratio' has value 0.0; expected a positive odds ratio"),
    (lambda: es.or_to_d(-2), "positive odds ratio"),
    (lambda: es.d_to_r_prevalence(0.5, 1.0), "'p' has value 1.0; expected a prevalence"),
    (lambda: es.percentile_gain_to_d(11), "'gain' has value 11.0; expected a fraction"),
    (lambda: es.d_to_r(float("nan")), "expected a finite number"),
    (lambda: es.d_to_r("abc"), "expected a number"),
    (lambda: es.fisher_z_se(3), "sample size above 3"),
    (lambda: es.ci_to_sd(0.3, 0.2), "an upper bound above"),
    (lambda: es.or_per_unit_to_latent_beta(1.4, 0), "'sd_x' has value 0"),
    (lambda: es.cohens_d_from_means(1, 0, 0, 1), "'s1' has value 0"),
    (lambda: es.proportions_to_or(1.0, 0.5), "'p1' has value 1.0"),
    (lambda: es.tau_from_i2(0.1, 1.0, 5), "'i2' has value 1.0"),
])
def test_bad_inputs_are_named(call, needle):
    with pytest.raises(PriorError) as exc:
        call()
    assert needle in str(exc.value)


def test_converter_registry_is_callable():
    assert es.CONVERTERS["identity"](value=0.2) == 0.2
    assert es.CONVERTERS["negate"](value=0.2) == -0.2
    assert es.CONVERTERS["d_to_r"](d=0.39) == es.d_to_r(0.39)
    for name, fn in es.CONVERTERS.items():
        assert callable(fn), name


def test_sd_range_per_unit():
    from veerkracht_bayes.priors.effect_sizes import SD_RANGES, sd_range

    assert sd_range("moderate") == SD_RANGES["moderate"]
    lo, hi = sd_range("moderate", 0.2)  # divided by sqrt(0.2 * 0.8) = 0.4
    assert lo == pytest.approx(0.20) and hi == pytest.approx(0.25)
    with pytest.raises(PriorError, match="exposure_share"):
        sd_range("moderate", 1.0)
    with pytest.raises(PriorError, match="confidence"):
        sd_range("certain")
