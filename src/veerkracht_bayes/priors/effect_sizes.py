"""Converters between effect-size metrics, and the prior-width rules for literature priors.

Every literature prior in ``priors/marvel.yaml`` is a prior on a *standardised* path
coefficient (a correlation-sized number). Published results come as correlations
(r), standardised mean differences (Cohen's d, Hedges' g), odds ratios (OR; hazard
and risk ratios are treated as ORs for rare outcomes), log-odds slopes of a
continuous exposure, or percentile gains. The functions here convert between them,
following ``priors/evidence.md`` (and ``docs/priors.md``):

* d -> r, two groups:        ``r = d / sqrt(d^2 + a)``, ``a = (n1 + n2)^2 / (n1 n2)`` (4 for equal groups)
* d -> r, exposure share p:  ``r = d sqrt(pq) / sqrt(1 + d^2 pq)``, ``q = 1 - p``
* r -> d:                    ``d = r sqrt(a) / sqrt(1 - r^2)``
* OR -> d (Chinn 2000):      ``d = ln(OR) sqrt(3) / pi``;  d -> OR: ``OR = exp(d pi / sqrt(3))``
* log-odds per SD b -> latent-response beta:  ``beta* = b / sqrt(b^2 + pi^2 / 3)``
* percentile gain -> d:      ``d = Phi^-1(0.5 + gain)``
* Fisher z:                  ``z = atanh(r)``, ``SE(z) = 1 / sqrt(N - 3)``; ``SE(r) = (1 - r^2) / sqrt(N - 1)``

and the rules of §4: shrink a cross-sectional bivariate r towards a direct effect
(x 0.6-0.75), widen a heterogeneous meta-analysis to its prediction interval
(sd = sqrt(tau^2 + SE^2)), and never let a prior sd fall below 0.05.

All functions accept floats or NumPy arrays; invalid inputs raise
:class:`~veerkracht_bayes.errors.PriorError` naming the argument, value and valid range.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.special import ndtri  # the normal quantile; scipy.stats would cost about 0.4 s of import

from veerkracht_bayes.errors import Problem, PriorError

__all__ = [
    "LOGISTIC_SD",
    "MIN_PRIOR_SD",
    "SD_RANGES",
    "sd_range",
    "SHRINK_FACTORS",
    "Design",
    "group_constant",
    "d_to_r",
    "d_to_r_prevalence",
    "r_to_d",
    "or_to_d",
    "d_to_or",
    "or_to_r",
    "proportions_to_or",
    "logodds_to_latent_beta",
    "or_per_unit_to_latent_beta",
    "percentile_gain_to_d",
    "rescale_d",
    "cohens_d_from_means",
    "fisher_z",
    "fisher_z_inv",
    "fisher_z_se",
    "se_r",
    "ci_to_sd",
    "shrink_cross_sectional",
    "shrink_to_direct",
    "prediction_sd",
    "prediction_interval",
    "tau_from_i2",
    "widen_for_heterogeneity",
    "CONVERTERS",
]

#: Standard deviation of the standard logistic distribution, pi / sqrt(3).
LOGISTIC_SD = math.pi / math.sqrt(3.0)

#: Smallest prior sd the research note allows ("never below 0.05, given the I² values").
MIN_PRIOR_SD = 0.05

#: Prior sd ranges per confidence level (research note §4).
SD_RANGES: dict[str, tuple[float, float]] = {
    "strong": (0.05, 0.07),
    "moderate": (0.08, 0.10),
    "weak": (0.10, 0.15),
}



def sd_range(confidence: str, exposure_share: float | None = None) -> tuple[float, float]:
    """Allowed prior sd for a confidence level (:data:`SD_RANGES`), on the coefficient's scale.

    On the standardised scale (``exposure_share`` None) this is ``SD_RANGES[confidence]``. A
    per-unit coefficient of a 0/1 source with share ``p`` equals the per-SD coefficient divided
    by the source's sd ``sqrt(p(1 - p))``, so the range is divided by it too.

    Raises
    ------
    PriorError
        Unknown confidence, or a share outside (0, 1).

    Examples
    --------
    >>> sd_range("strong")
    (0.05, 0.07)
    """
    fn = "sd_range"
    _check(confidence in SD_RANGES, "confidence", confidence, f"one of {', '.join(SD_RANGES)}", fn)
    lo, hi = SD_RANGES[confidence]
    if exposure_share is None:
        return lo, hi
    p = float(exposure_share)
    _check(0.0 < p < 1.0, "exposure_share", exposure_share, "a share in (0, 1)", fn)
    f = math.sqrt(p * (1.0 - p))
    return lo / f, hi / f


Design = Literal["cross_sectional", "longitudinal", "causal"]

#: Multipliers from a reported association to a direct-effect prior mean (research note §4):
#: cross-sectional single-source bivariate r x 0.6-0.75; a lagged / cross-lagged beta x 0.8-1.2;
#: RCT or other causal evidence (after conversion) x 1.0, down-weighted for population transfer.
SHRINK_FACTORS: dict[str, tuple[float, float]] = {
    "cross_sectional": (0.6, 0.75),
    "longitudinal": (0.8, 1.2),
    "causal": (0.0, 1.0),
}

_ArrayLike = float | np.ndarray


def _bad(arg: str, value: object, expected: str, fn: str) -> PriorError:
    return PriorError(Problem(f"{fn}: argument {arg!r} has value {value!r}; expected {expected}",
                              field=arg, value=value))


def _check(cond: object, arg: str, value: object, expected: str, fn: str) -> None:
    if not bool(np.all(cond)):
        raise _bad(arg, value, expected, fn)


def _finite(x: object, arg: str, fn: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise _bad(arg, x, "a number", fn) from None
    _check(np.isfinite(arr), arg, x, "a finite number", fn)
    return arr


def _out(x: np.ndarray) -> _ArrayLike:
    return float(x) if np.ndim(x) == 0 else x


def group_constant(n1: float | None = None, n2: float | None = None) -> float:
    """The constant ``a = (n1 + n2)^2 / (n1 n2)`` of the d <-> r conversion.

    Parameters
    ----------
    n1, n2
        Group sizes; both omitted means equal groups (``a = 4``).

    Returns
    -------
    float
        ``a`` (4 for equal groups, larger for unequal ones).

    Examples
    --------
    >>> group_constant()
    4.0
    >>> round(group_constant(100, 300), 3)
    5.333
    """
    if n1 is None and n2 is None:
        return 4.0
    if n1 is None or n2 is None:
        raise _bad("n2" if n2 is None else "n1", None, "both group sizes or neither", "group_constant")
    _check(n1 > 0, "n1", n1, "a positive group size", "group_constant")
    _check(n2 > 0, "n2", n2, "a positive group size", "group_constant")
    return (n1 + n2) ** 2 / (n1 * n2)


def d_to_r(d: _ArrayLike, n1: float | None = None, n2: float | None = None) -> _ArrayLike:
    """Convert a standardised mean difference to a (point-biserial) correlation.

    ``r = d / sqrt(d^2 + a)`` with ``a = (n1 + n2)^2 / (n1 n2)``; equal groups (the default) give ``a = 4``.

    Parameters
    ----------
    d
        Cohen's d or Hedges' g.
    n1, n2
        Group sizes (optional; default equal groups).

    Examples
    --------
    >>> round(d_to_r(0.39), 3)
    0.191
    """
    d = _finite(d, "d", "d_to_r")
    a = group_constant(n1, n2)
    return _out(d / np.sqrt(d**2 + a))


def d_to_r_prevalence(d: _ArrayLike, p: float) -> _ArrayLike:
    """Convert d to r when the exposure is a state of a share ``p`` of the population.

    ``r = d sqrt(pq) / sqrt(1 + d^2 pq)``, ``q = 1 - p`` (the population point-biserial r);
    ``p = 0.5`` reproduces :func:`d_to_r` with equal groups.

    Examples
    --------
    >>> round(d_to_r_prevalence(0.51, 0.1), 3)
    0.151
    """
    d = _finite(d, "d", "d_to_r_prevalence")
    _check((p > 0) & (p < 1), "p", p, "a prevalence strictly between 0 and 1", "d_to_r_prevalence")
    pq = p * (1.0 - p)
    return _out(d * math.sqrt(pq) / np.sqrt(1.0 + d**2 * pq))


def r_to_d(r: _ArrayLike, n1: float | None = None, n2: float | None = None) -> _ArrayLike:
    """Convert a point-biserial correlation to d: ``d = r sqrt(a) / sqrt(1 - r^2)`` (inverse of :func:`d_to_r`).

    Examples
    --------
    >>> round(float(r_to_d(0.3)), 4)
    0.629
    """
    r = _finite(r, "r", "r_to_d")
    _check(np.abs(r) < 1, "r", _out(r), "a correlation with |r| < 1", "r_to_d")
    a = group_constant(n1, n2)
    return _out(r * math.sqrt(a) / np.sqrt(1.0 - r**2))


def or_to_d(odds_ratio: _ArrayLike) -> _ArrayLike:
    """Convert an odds ratio to d (logistic approximation, Chinn 2000): ``d = ln(OR) sqrt(3) / pi``.

    Hazard and risk ratios may be passed for rare outcomes (HR ~ RR ~ OR).

    Examples
    --------
    >>> round(or_to_d(2.02), 3)
    0.388
    """
    o = _finite(odds_ratio, "odds_ratio", "or_to_d")
    _check(o > 0, "odds_ratio", _out(o), "a positive odds ratio", "or_to_d")
    return _out(np.log(o) / LOGISTIC_SD)


def d_to_or(d: _ArrayLike) -> _ArrayLike:
    """Convert d to an odds ratio: ``OR = exp(d pi / sqrt(3))`` (inverse of :func:`or_to_d`).

    Examples
    --------
    >>> round(float(d_to_or(0.5)), 3)
    2.477
    """
    d = _finite(d, "d", "d_to_or")
    return _out(np.exp(d * LOGISTIC_SD))


def or_to_r(odds_ratio: _ArrayLike, p: float = 0.5) -> _ArrayLike:
    """Odds ratio -> d (:func:`or_to_d`) -> r at exposure share ``p`` (:func:`d_to_r_prevalence`).

    Examples
    --------
    >>> round(or_to_r(2.77), 2)
    0.27
    """
    return d_to_r_prevalence(or_to_d(odds_ratio), p)


def proportions_to_or(p1: float, p0: float) -> float:
    """Odds ratio of two proportions: ``(p1 / (1 - p1)) / (p0 / (1 - p0))``.

    Use it to turn a reported difference in shares (e.g. employment rates) into an OR,
    then :func:`or_to_d` / :func:`or_to_r`.

    Examples
    --------
    >>> round(proportions_to_or(0.28, 0.16), 2)
    2.04
    """
    for name, v in (("p1", p1), ("p0", p0)):
        _finite(v, name, "proportions_to_or")
        _check((v > 0) & (v < 1), name, v, "a proportion strictly between 0 and 1", "proportions_to_or")
    return float((p1 / (1.0 - p1)) / (p0 / (1.0 - p0)))


def logodds_to_latent_beta(b: _ArrayLike) -> _ArrayLike:
    """Log-odds per SD of a continuous exposure -> latent-response standardised slope.

    ``beta* = b / sqrt(b^2 + pi^2 / 3)``: the slope of a standardised latent response
    ``y* = b x + e`` with logistic ``e`` (variance pi^2/3) and standardised ``x``.

    Examples
    --------
    >>> round(logodds_to_latent_beta(0.74), 2)
    0.38
    """
    b = _finite(b, "b", "logodds_to_latent_beta")
    return _out(b / np.sqrt(b**2 + LOGISTIC_SD**2))


def or_per_unit_to_latent_beta(or_per_unit: _ArrayLike, sd_x: float) -> _ArrayLike:
    """OR per unit of a continuous exposure with SD ``sd_x`` -> latent beta*.

    ``b = ln(OR_per_unit) * sd_x``, then :func:`logodds_to_latent_beta`.

    Examples
    --------
    >>> round(or_per_unit_to_latent_beta(1.40, 2.2), 2)
    0.38
    """
    o = _finite(or_per_unit, "or_per_unit", "or_per_unit_to_latent_beta")
    _check(o > 0, "or_per_unit", _out(o), "a positive odds ratio", "or_per_unit_to_latent_beta")
    _check(sd_x > 0, "sd_x", sd_x, "a positive standard deviation", "or_per_unit_to_latent_beta")
    return logodds_to_latent_beta(np.log(o) * sd_x)


def percentile_gain_to_d(gain: _ArrayLike) -> _ArrayLike:
    """Percentile gain of the average treated person -> d: ``d = Phi^-1(0.5 + gain)``.

    Parameters
    ----------
    gain
        Gain as a fraction (11 percentile points = 0.11), in (-0.5, 0.5).

    Examples
    --------
    >>> round(percentile_gain_to_d(0.11), 2)
    0.28
    """
    g = _finite(gain, "gain", "percentile_gain_to_d")
    _check(np.abs(g) < 0.5, "gain", _out(g), "a fraction in (-0.5, 0.5) (11 points = 0.11)",
           "percentile_gain_to_d")
    return _out(ndtri(0.5 + g))


def rescale_d(d: _ArrayLike, factor: _ArrayLike) -> _ArrayLike:
    """Re-express a standardised mean difference in the SD of another population: ``d * factor``.

    Used for policy-lever links, whose coefficient is the per-exposure effect in SD units of the
    target construct in the whole (baseline) population. ``factor`` is the ratio of the SD the
    source standardised by to the target construct's population SD: below 1 when the trial sample
    was selected on the outcome (range restriction, e.g. patients above a symptom threshold), or
    the share of the target construct that the measured outcome represents (a narrower outcome
    such as paid work inside societal participation), or a population-transfer discount. The
    entry that uses it records which, and why.

    Examples
    --------
    >>> round(rescale_d(-0.59, 0.7), 3)
    -0.413
    """
    d = _finite(d, "d", "rescale_d")
    f = _finite(factor, "factor", "rescale_d")
    _check(f > 0, "factor", _out(f), "a positive SD ratio", "rescale_d")
    return _out(d * f)


def cohens_d_from_means(m1: float, s1: float, m2: float, s2: float,
                        n1: float | None = None, n2: float | None = None) -> float:
    """d from two group means and SDs, with the pooled SD.

    Without group sizes the pooled variance is the plain average ``(s1^2 + s2^2) / 2``;
    with them, ``((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2)``.

    Examples
    --------
    >>> round(cohens_d_from_means(20.03, 10.18, 15.29, 8.49), 2)
    0.51
    """
    for name, v in (("m1", m1), ("s1", s1), ("m2", m2), ("s2", s2)):
        _finite(v, name, "cohens_d_from_means")
    _check(s1 > 0, "s1", s1, "a positive SD", "cohens_d_from_means")
    _check(s2 > 0, "s2", s2, "a positive SD", "cohens_d_from_means")
    if n1 is None and n2 is None:
        var = (s1**2 + s2**2) / 2.0
    else:
        if n1 is None or n2 is None or n1 < 2 or n2 < 2:
            raise _bad("n1/n2", (n1, n2), "both group sizes >= 2 or neither", "cohens_d_from_means")
        var = ((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / (n1 + n2 - 2)
    return float((m1 - m2) / math.sqrt(var))


def fisher_z(r: _ArrayLike) -> _ArrayLike:
    """Fisher's variance-stabilising transform ``z = atanh(r)``.

    Examples
    --------
    >>> round(float(fisher_z(0.3)), 4)
    0.3095
    """
    r = _finite(r, "r", "fisher_z")
    _check(np.abs(r) < 1, "r", _out(r), "a correlation with |r| < 1", "fisher_z")
    return _out(np.arctanh(r))


def fisher_z_inv(z: _ArrayLike) -> _ArrayLike:
    """Inverse of :func:`fisher_z`: ``r = tanh(z)``.

    Examples
    --------
    >>> round(float(fisher_z_inv(fisher_z(0.3))), 6)
    0.3
    """
    return _out(np.tanh(_finite(z, "z", "fisher_z_inv")))


def fisher_z_se(n: _ArrayLike) -> _ArrayLike:
    """Standard error of Fisher's z for a sample of size ``n``: ``1 / sqrt(n - 3)``.

    Examples
    --------
    >>> round(float(fisher_z_se(103)), 4)
    0.1
    """
    n = _finite(n, "n", "fisher_z_se")
    _check(n > 3, "n", _out(n), "a sample size above 3", "fisher_z_se")
    return _out(1.0 / np.sqrt(n - 3.0))


def se_r(r: _ArrayLike, n: _ArrayLike) -> _ArrayLike:
    """Large-sample standard error of a correlation: ``(1 - r^2) / sqrt(n - 1)``.

    This is the square root of the usual meta-analytic variance ``(1 - r^2)^2 / (n - 1)``.

    Examples
    --------
    >>> round(float(se_r(0.3, 100)), 4)
    0.0915
    """
    r = _finite(r, "r", "se_r")
    n = _finite(n, "n", "se_r")
    _check(np.abs(r) < 1, "r", _out(r), "a correlation with |r| < 1", "se_r")
    _check(n > 1, "n", _out(n), "a sample size above 1", "se_r")
    return _out((1.0 - r**2) / np.sqrt(n - 1.0))


def ci_to_sd(lower: float, upper: float, level: float = 0.95) -> float:
    """The normal sd implied by a symmetric confidence (or prediction) interval.

    ``sd = (upper - lower) / (2 z_{(1+level)/2})`` (1.96 for 95%).

    Examples
    --------
    >>> round(ci_to_sd(0.1, 0.5), 4)
    0.102
    """
    _check(upper > lower, "upper", upper, f"an upper bound above lower={lower!r}", "ci_to_sd")
    _check((level > 0) & (level < 1), "level", level, "a level in (0, 1)", "ci_to_sd")
    return float((upper - lower) / (2.0 * ndtri(0.5 + level / 2.0)))


def shrink_to_direct(value: _ArrayLike, design: Design, factor: float | None = None) -> _ArrayLike:
    """Turn a reported association into a direct-effect prior mean (research note §4).

    Parameters
    ----------
    value
        The association on the correlation scale (r, or a converted d/OR, or a lagged beta).
    design
        ``"cross_sectional"`` (single-source bivariate r: an upper bound, x 0.6-0.75),
        ``"longitudinal"`` (a cross-lagged beta: a lower bound, x 0.8-1.2) or
        ``"causal"`` (RCT / natural experiment: x 1.0, or less for population transfer).
    factor
        The multiplier; must lie in the design's range. Default: the range's midpoint
        (0.675 cross-sectional, 1.0 longitudinal, 1.0 causal).

    Raises
    ------
    PriorError
        For an unknown design or a factor outside the documented range.

    Examples
    --------
    >>> round(float(shrink_to_direct(0.4, "cross_sectional")), 3)
    0.27
    """
    if design not in SHRINK_FACTORS:
        from veerkracht_bayes.errors import did_you_mean

        raise _bad("design", design, "one of " + ", ".join(SHRINK_FACTORS) +
                   did_you_mean(str(design), SHRINK_FACTORS), "shrink_to_direct")
    lo, hi = SHRINK_FACTORS[design]
    if factor is None:
        factor = 1.0 if design == "causal" else (lo + hi) / 2.0
    _check((factor >= lo) & (factor <= hi), "factor", factor,
           f"a factor in [{lo}, {hi}] for design {design!r}", "shrink_to_direct")
    return _out(_finite(value, "value", "shrink_to_direct") * factor)


def shrink_cross_sectional(r: _ArrayLike, factor: float = 0.675) -> _ArrayLike:
    """Shrink a cross-sectional, single-source bivariate r towards a direct effect.

    A bivariate cross-sectional r over-states a direct structural coefficient (the other
    parents absorb part of it; common-method inflation), so the prior mean is
    ``factor * r`` with ``factor`` in [0.6, 0.75] (research note §4; default the midpoint).

    Examples
    --------
    >>> round(float(shrink_cross_sectional(0.4)), 3)
    0.27
    """
    return shrink_to_direct(r, "cross_sectional", factor)


def prediction_sd(se: _ArrayLike, tau: _ArrayLike, floor: float = MIN_PRIOR_SD) -> _ArrayLike:
    """Prior sd of a new study's effect in a heterogeneous meta-analysis.

    ``sd = max(sqrt(tau^2 + se^2), floor)``: the half-width of the 95% prediction interval
    divided by 1.96 (Higgins, Thompson & Spiegelhalter 2009), floored at
    :data:`MIN_PRIOR_SD`.

    Parameters
    ----------
    se
        Standard error of the pooled estimate.
    tau
        Between-study standard deviation (same scale).
    floor
        Lower bound of the result (0 disables it).

    Examples
    --------
    >>> round(float(prediction_sd(0.03, 0.04)), 4)
    0.05
    """
    se = _finite(se, "se", "prediction_sd")
    tau = _finite(tau, "tau", "prediction_sd")
    _check(se >= 0, "se", _out(se), "a non-negative standard error", "prediction_sd")
    _check(tau >= 0, "tau", _out(tau), "a non-negative between-study sd", "prediction_sd")
    return _out(np.maximum(np.sqrt(tau**2 + se**2), floor))


def prediction_interval(mean: float, se: float, tau: float, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` prediction interval ``mean +/- z sqrt(tau^2 + se^2)`` (normal approximation).

    Examples
    --------
    >>> lo, hi = prediction_interval(0.2, 0.05, 0.1)
    >>> round(lo, 3), round(hi, 3)
    (-0.019, 0.419)
    """
    _check((level > 0) & (level < 1), "level", level, "a level in (0, 1)", "prediction_interval")
    s = prediction_sd(se, tau, floor=0.0)
    z = ndtri(0.5 + level / 2.0)
    return float(mean - z * s), float(mean + z * s)


def tau_from_i2(se: float, i2: float, k: int) -> float:
    """Between-study sd implied by I² for a random-effects pooled estimate.

    For ``k`` studies of similar size, the random-effects standard error satisfies
    ``SE^2 ~ (s^2 + tau^2) / k`` (``s^2`` the typical within-study variance) and
    ``I^2 = tau^2 / (s^2 + tau^2)``, so ``tau^2 ~ I^2 k SE^2``. An approximation: it ignores
    unequal study sizes.

    Parameters
    ----------
    se
        Standard error of the pooled (random-effects) estimate, e.g. from :func:`ci_to_sd`.
    i2
        I² as a fraction in [0, 1) (97.5% = 0.975).
    k
        Number of studies (effect sizes).

    Examples
    --------
    >>> round(tau_from_i2(0.05, 0.5, 10), 4)
    0.1118
    """
    _check(se >= 0, "se", se, "a non-negative standard error", "tau_from_i2")
    _check((i2 >= 0) & (i2 < 1), "i2", i2, "I² as a fraction in [0, 1) (97.5% = 0.975)", "tau_from_i2")
    _check(k >= 1, "k", k, "a number of studies >= 1", "tau_from_i2")
    return float(math.sqrt(i2 * k * se**2))


def widen_for_heterogeneity(se: float, *, tau: float | None = None, i2: float | None = None,
                            k: int | None = None, floor: float = MIN_PRIOR_SD) -> float:
    """Prior sd from a meta-analysis: the prediction-interval width, not the CI.

    Research note §3.5: "for meta-analyses with large heterogeneity, use the prediction
    interval (±1.96 τ), not the CI, as the prior width". The result is
    ``max(sqrt(se^2 + tau^2), floor)``; ``tau`` is given directly or derived from ``i2`` and
    ``k`` (:func:`tau_from_i2`). Without either the CI sd itself is used (floored).

    Parameters
    ----------
    se
        The sd implied by the pooled estimate's CI (see :func:`ci_to_sd`).
    tau
        Between-study sd on the same scale (takes precedence over ``i2``).
    i2, k
        I² (fraction) and the number of studies, used when ``tau`` is not known.
    floor
        Minimum prior sd (0.05: "never below 0.05, given the I² values").

    Examples
    --------
    >>> round(widen_for_heterogeneity(0.05, tau=0.1), 4)
    0.1118
    """
    _check(se >= 0, "se", se, "a non-negative sd", "widen_for_heterogeneity")
    if tau is None and i2 is not None:
        if k is None:
            raise _bad("k", None, "the number of studies when I² is given", "widen_for_heterogeneity")
        tau = tau_from_i2(se, i2, k)
    if tau is None:
        tau = 0.0
    return float(prediction_sd(se, tau, floor=floor))


#: Converters that a prior file may name in its ``conversion.function`` field.
CONVERTERS = {
    "identity": lambda value: float(value),
    "negate": lambda value: -float(value),
    "d_to_r": d_to_r,
    "d_to_r_prevalence": d_to_r_prevalence,
    "r_to_d": r_to_d,
    "or_to_d": or_to_d,
    "d_to_or": d_to_or,
    "or_to_r": or_to_r,
    "proportions_to_or": proportions_to_or,
    "logodds_to_latent_beta": logodds_to_latent_beta,
    "or_per_unit_to_latent_beta": or_per_unit_to_latent_beta,
    "percentile_gain_to_d": percentile_gain_to_d,
    "rescale_d": rescale_d,
    "cohens_d_from_means": cohens_d_from_means,
    "fisher_z": fisher_z,
    "fisher_z_inv": fisher_z_inv,
}
