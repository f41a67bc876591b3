"""Threshold outcomes: the share of a (sub)population beyond a cut-off on an observed scale.

An observed scale is an affine combination of items, ``score = offset + sum_j w_j y_j`` in the items'
native units (e.g. the MHI-5: ``100 - 4 * sum(answer - 1)``, "psychisch ongezond" when
``score <= 60``). The measurement model (continuous path) gives each item on its native scale as
``y_j = c_j + s_j (nu_j + lambda_j eta + eps_j)``, with ``c_j, s_j`` the centre and scale of the
standardisation, ``eta`` the construct and ``eps_j ~ N(0, theta_j)`` independent. With the
construct distributed ``N(m, v)`` in the (sub)population, the score is normal, with

    mean = offset + sum_j w_j (c_j + s_j nu_j) + L m,   L = sum_j w_j s_j lambda_j
    var  = L^2 v + sum_j (w_j s_j)^2 theta_j

and the share below the cut-off ``k`` is ``Phi((k - mean) / sd)`` (above: ``1 - Phi``). An
intervention that moves the construct's mean by ``e`` (the do-query's effect, in SD units of the
construct) moves the score's mean by ``L e``. The variance is unchanged, which is exact for shifts
and an approximation for sets and mechanism changes (they also change the variance).

**Calibration to the data.** Likert items treated as continuous do not reproduce a share in the
tail exactly. With the observed (weighted) share ``p_obs`` given, the baseline is set to it: the
standardised cut-off becomes ``z0 = Phi^-1(p_obs)`` in place of ``(k - mean) / sd``, and the
intervened share is ``Phi(z0 - L e / sd)``. The model then supplies only the *shift*, in units of the
score's SD. Effects are in percentage points, with central intervals over the posterior draws.

**Ordinal items (the polychoric route).** There an ordinal item is the category its latent response
``y* = lambda eta + eps`` (``Var(y*) = 1``, ``lambda`` the correlation-scale loading) falls in. In a
(sub)population where the answers lie at or below category value ``v_k`` with probability ``P_k``, the
latent response has its thresholds at ``z_k = Phi^-1(P_k)`` standard units above its mean; when the
construct's mean moves by ``e``, the latent response's mean moves by ``lambda e`` and the item's mean
by

    sum_k (v_{k+1} - v_k) [Phi(z_k) - Phi(z_k - lambda e)]

(:func:`score_shift`; a continuous item of the same route, standardised with native SD ``s``, moves
by ``s lambda e``). This is exact for a shift when the latent response's SD within the (sub)population
is 1 (the whole population; a subgroup whose latent spread is the population's), and the score's
mean moves by the weighted sum over its items. The share beyond the cut-off is then the calibrated
normal approximation above with this shift in place of ``L e`` (:func:`calibrated_shares`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import ndtr, ndtri

from veerkracht_bayes.errors import InterventionError, Problem, did_you_mean

__all__ = ["ItemMargin", "ThresholdResult", "ThresholdSpec", "calibrated_shares", "item_margin", "scale_moments",
           "score_shift", "threshold_shares"]


class ThresholdSpec(BaseModel):
    """One threshold outcome (``[[query.thresholds]]`` in a run config).

    Parameters
    ----------
    name
        Label in tables.
    outcome
        The construct (graph node) whose items make the scale.
    items
        Item columns of the scale.
    weights
        Weight of each item (default 1 each: a sum score).
    offset
        Constant added to the weighted sum.
    cutoff
        The cut-off on the scale.
    direction
        ``"below"`` (share with score <= cutoff) or ``"above"`` (score > cutoff).

    Examples
    --------
    >>> t = ThresholdSpec(name="low_wellbeing", outcome="wellbeing", items=["wb1", "wb2"], cutoff=2.5)
    >>> t.direction
    'below'
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    outcome: str = Field(min_length=1)
    items: list[str] = Field(min_length=1)
    weights: list[float] | None = None
    offset: float = 0.0
    cutoff: float
    direction: Literal["below", "above"] = "below"

    @model_validator(mode="after")
    def _weights(self) -> ThresholdSpec:
        if self.weights is not None and len(self.weights) != len(self.items):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(self.items)} items")
        return self


def scale_moments(spec: ThresholdSpec, item_names: Sequence[str], loadings: np.ndarray, theta: np.ndarray,
                  nu: np.ndarray, center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per draw: the scale's intercept, its slope ``L`` on the construct and its error variance.

    Parameters
    ----------
    spec
        The threshold outcome.
    item_names
        Item order of the measurement arrays.
    loadings, theta, nu
        ``(S, m)`` (or ``(m,)``) measurement draws on the standardised item scale.
    center, scale
        ``(m,)`` native centre and scale of each item.

    Returns
    -------
    (intercept, slope, error_var)
        Each ``(S,)``: score ``= intercept + slope * eta + error``.

    Examples
    --------
    >>> import numpy as np
    >>> spec = ThresholdSpec(name="s", outcome="b", items=["b1", "b2"], cutoff=0.0)
    >>> i, l, e = scale_moments(spec, ["b1", "b2"], np.array([0.6, 0.8]), np.array([0.64, 0.36]),
    ...                         np.zeros(2), np.array([2.0, 3.0]), np.ones(2))
    >>> float(i[0]), float(l[0]), float(e[0])
    (5.0, 1.4, 1.0)
    """
    names = list(item_names)
    idx = []
    for it in spec.items:
        if it not in names:
            raise InterventionError(Problem(f"threshold {spec.name!r}: item {it!r} is not in the model"
                                            f"{did_you_mean(it, names)}", field="items", value=it))
        idx.append(names.index(it))
    idx = np.array(idx, dtype=int)
    w = np.ones(len(idx)) if spec.weights is None else np.asarray(spec.weights, dtype=float)
    lam = np.atleast_2d(np.asarray(loadings, dtype=float))[:, idx]
    th = np.atleast_2d(np.asarray(theta, dtype=float))[:, idx]
    nu_ = np.atleast_2d(np.asarray(nu, dtype=float))[:, idx]
    c = np.asarray(center, dtype=float)[idx]
    s = np.asarray(scale, dtype=float)[idx]
    ws = w * s
    return spec.offset + (w * c).sum() + nu_ @ ws, lam @ ws, th @ (ws * ws)


@dataclass(frozen=True)
class ThresholdResult:
    """Shares beyond a cut-off, per draw (fractions), and the effect in percentage points.

    Examples
    --------
    >>> import numpy as np
    >>> r = ThresholdResult("stress > 4", np.array([0.20, 0.22]), np.array([0.18, 0.21]), calibrated=False)
    >>> r.effect_pp.round(1).tolist(), r.summary()["p_decrease"]
    ([-2.0, -1.0], 1.0)
    """

    name: str
    baseline: np.ndarray
    intervened: np.ndarray
    calibrated: bool

    @property
    def effect_pp(self) -> np.ndarray:
        """``(S,)`` change of the share, in percentage points."""
        return 100.0 * (self.intervened - self.baseline)

    def summary(self, ci_prob: float = 0.9) -> dict[str, float | str | bool]:
        """Mean and central interval of the baseline share (%) and of the effect (pp)."""
        a = (1 - ci_prob) / 2
        ok = np.isfinite(self.effect_pp)
        b = 100.0 * self.baseline[ok]
        e = self.effect_pp[ok]
        return {"threshold": self.name, "calibrated": self.calibrated,
                "baseline_pct": float(b.mean()), "baseline_lower": float(np.quantile(b, a)),
                "baseline_upper": float(np.quantile(b, 1 - a)), "effect_pp": float(e.mean()),
                "effect_lower": float(np.quantile(e, a)), "effect_upper": float(np.quantile(e, 1 - a)),
                "p_decrease": float(np.mean(e < 0)), "n_used": int(ok.sum())}


def threshold_shares(spec: ThresholdSpec, intercept: np.ndarray, slope: np.ndarray, error_var: np.ndarray,
                     latent_mean: np.ndarray | float = 0.0, latent_var: np.ndarray | float = 1.0,
                     effect: np.ndarray | float = 0.0, observed_share: float | None = None) -> ThresholdResult:
    """Baseline and intervened share beyond the cut-off (module docstring).

    Parameters
    ----------
    spec
        The threshold outcome.
    intercept, slope, error_var
        :func:`scale_moments`.
    latent_mean, latent_var
        The construct's mean and variance in the (sub)population (standardised units; the pooled
        population has 0 and 1).
    effect
        ``(S,)`` the intervention's effect on the construct's mean (a do-query's ``outcome_effect``).
    observed_share
        Weighted observed share beyond the cut-off: calibrates the baseline (module docstring).

    Examples
    --------
    >>> spec = ThresholdSpec(name="low", outcome="b", items=["b1"], cutoff=-1.0)
    >>> r = threshold_shares(spec, np.zeros(1), np.ones(1), np.zeros(1), effect=np.array([1.0]))
    >>> round(float(r.baseline[0]), 4), round(float(r.effect_pp[0]), 2)
    (0.1587, -13.59)
    """
    slope = np.asarray(slope, dtype=float)
    sd = np.sqrt(slope**2 * latent_var + np.asarray(error_var, dtype=float))
    mean = np.asarray(intercept, dtype=float) + slope * latent_mean
    z0 = (spec.cutoff - mean) / sd  # standardised cut-off: share below = Phi(z0)
    calibrated = observed_share is not None
    if calibrated:
        z0 = np.full_like(sd, _observed_z0(spec, observed_share))
    return _shares(spec, z0, z0 - slope * np.asarray(effect, dtype=float) / sd, calibrated)


def _observed_z0(spec: ThresholdSpec, observed_share: float) -> float:
    """The standardised cut-off of an observed share beyond it (share below = ``Phi(z0)``)."""
    p = float(observed_share)
    if not 0.0 < p < 1.0:
        raise InterventionError(Problem(f"threshold {spec.name!r}: observed share must be in (0, 1), got "
                                        f"{observed_share}", field="observed_share", value=observed_share))
    return float(ndtri(p if spec.direction == "below" else 1.0 - p))


def _shares(spec: ThresholdSpec, z0: np.ndarray, z1: np.ndarray, calibrated: bool) -> ThresholdResult:
    """Shares beyond the cut-off from the standardised cut-off before (``z0``) and after (``z1``)."""
    below0, below1 = ndtr(z0), ndtr(z1)
    if spec.direction == "below":
        return ThresholdResult(spec.name, below0 * np.ones_like(below1), below1, calibrated)
    return ThresholdResult(spec.name, (1.0 - below0) * np.ones_like(below1), 1.0 - below1, calibrated)


def calibrated_shares(spec: ThresholdSpec, observed_share: float, score_sd: float,
                      shift: np.ndarray) -> ThresholdResult:
    """Baseline (the observed share) and intervened share when the score's mean moves by ``shift``.

    The normal approximation calibrated to the data (module docstring): the standardised cut-off is
    ``Phi^-1`` of the observed share and moves by ``shift / score_sd``.

    Parameters
    ----------
    spec
        The threshold outcome.
    observed_share
        Weighted observed share beyond the cut-off, in (0, 1).
    score_sd
        Weighted observed SD of the score.
    shift
        ``(S,)`` change of the score's mean per draw (:func:`score_shift`, or ``L e``).

    Examples
    --------
    >>> spec = ThresholdSpec(name="low", outcome="b", items=["b1"], cutoff=-1.0)
    >>> r = calibrated_shares(spec, 0.1587, 1.0, np.array([0.0, 1.0]))
    >>> r.baseline.round(4).tolist(), r.effect_pp.round(2).tolist()
    ([0.1587, 0.1587], [0.0, -13.59])
    """
    z = _observed_z0(spec, observed_share)
    if not (np.isfinite(score_sd) and score_sd > 0):
        raise InterventionError(Problem(f"threshold {spec.name!r}: the score's SD must be positive, got "
                                        f"{score_sd}", field="score_sd", value=score_sd))
    shift = np.asarray(shift, dtype=float)
    z0 = np.full_like(shift, z)
    return _shares(spec, z0, z0 - shift / float(score_sd), True)


@dataclass(frozen=True)
class ItemMargin:
    """Where one ordinal item's answers lie in a (sub)population (:func:`item_margin`).

    Attributes
    ----------
    values
        ``(K,)`` the categories' native values, ascending.
    cum_probit
        ``(K - 1,)`` ``Phi^-1`` of the share answering at or below each of the first ``K - 1``
        values: the latent response's thresholds in SD units above its mean (``-inf``/``+inf``
        for an empty tail).

    Examples
    --------
    >>> m = ItemMargin(np.array([0.0, 1.0]), np.array([0.0]))
    >>> m.values.tolist(), m.cum_probit.tolist()
    ([0.0, 1.0], [0.0])
    """

    values: np.ndarray
    cum_probit: np.ndarray


def item_margin(answers: np.ndarray, weights: np.ndarray | None = None,
                values: np.ndarray | None = None) -> ItemMargin:
    """The (weighted) margin of one ordinal item's answers.

    Parameters
    ----------
    answers
        ``(n,)`` the answers in native values (NaN: not answered, left out).
    weights
        ``(n,)`` survey weights (default equal).
    values
        The categories' native values (default: the distinct answers); answers must be among them.

    Examples
    --------
    >>> m = item_margin(np.array([1.0, 1.0, 2.0, 3.0]))
    >>> m.values.tolist(), m.cum_probit.round(4).tolist()
    ([1.0, 2.0, 3.0], [0.0, 0.6745])
    """
    a = np.asarray(answers, dtype=float)
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(a)
    a, w = a[ok], w[ok]
    vals = np.unique(a) if values is None else np.sort(np.asarray(values, dtype=float))
    if a.size == 0 or w.sum() <= 0:
        raise InterventionError(Problem("item_margin: no answers with positive weight", field="answers"))
    pos = np.minimum(np.searchsorted(vals, a), vals.size - 1)
    off = vals[pos] != a
    if off.any():
        bad = float(a[off][0])
        raise InterventionError(Problem(f"item_margin: answer {bad} is not one of the categories "
                                        f"{vals.tolist()}", field="answers", value=bad))
    share = np.bincount(pos, weights=w, minlength=vals.size) / w.sum()
    cum = np.clip(np.cumsum(share)[:-1], 0.0, 1.0)
    return ItemMargin(vals, ndtri(cum))


def score_shift(weights: Sequence[float], loadings: np.ndarray, effect: np.ndarray | float,
                margins: Sequence[ItemMargin | float]) -> np.ndarray:
    """Change of a score's mean when the construct's mean moves by ``effect`` (polychoric route).

    Parameters
    ----------
    weights
        ``(J,)`` the score's item weights.
    loadings
        ``(S, J)`` (or ``(J,)``) correlation-scale loadings of the items on the construct: of an
        ordinal item's latent response, of a continuous item standardised.
    effect
        ``(S,)`` (or a number) the construct's change of mean, in its SD units.
    margins
        Per item an :class:`ItemMargin` (ordinal; exact for a shift, module docstring) or the
        item's native SD (continuous: it moves by ``SD lambda e``).

    Returns
    -------
    np.ndarray
        ``(S,)`` the change of the score's mean in its native units.

    Examples
    --------
    A binary item with half its answers at 1, loading 1: a latent shift of 1 SD moves the share
    answering 1 from 0.5 to ``Phi(1)``:

    >>> m = ItemMargin(np.array([0.0, 1.0]), np.array([0.0]))
    >>> round(float(score_shift([1.0], np.array([1.0]), 1.0, [m])[0]), 4)
    0.3413
    """
    lam = np.atleast_2d(np.asarray(loadings, dtype=float))
    w = np.asarray(weights, dtype=float)
    if lam.shape[1] != w.size or len(margins) != w.size:
        raise InterventionError(Problem(f"score_shift: {w.size} weights, {lam.shape[1]} loadings and "
                                        f"{len(margins)} margins", field="margins"))
    e = np.asarray(effect, dtype=float).reshape(-1)
    n = max(lam.shape[0], e.size)
    lam, e = np.broadcast_to(lam, (n, lam.shape[1])), np.broadcast_to(e, (n,))
    out = np.zeros(n)
    for j, m in enumerate(margins):
        mu = lam[:, j] * e  # the latent response's (or the standardised item's) change of mean
        if isinstance(m, ItemMargin):
            step = np.diff(np.asarray(m.values, dtype=float))
            z = np.asarray(m.cum_probit, dtype=float)
            out += w[j] * ((ndtr(z)[None, :] - ndtr(z[None, :] - mu[:, None])) @ step)
        else:
            out += w[j] * float(m) * mu
    return out
