"""Threshold outcomes on ordinal items (the polychoric route) against brute-force simulation.

Truth: a construct ``eta ~ N(m, 1)``; ordinal items are the category of their latent response
``y* = lambda eta + sqrt(1 - lambda^2) eps`` at fixed thresholds, scored in native values. The shift
of a score's mean when ``eta`` moves by ``e`` (:func:`score_shift`, from the answers' margins and the
loadings) must match the paired simulated change (same ``eta`` and ``eps``) within 4 Monte Carlo SE
of that paired difference, in the whole population (``m = 0``) and in a group whose latent mean is
shifted (``m = 0.6``; its margins are its own, and the population's would miss by more than 8 SE). The margins must recover the thresholds (probit of the
cumulative shares) within 4 SE, and with many fine categories the shift must approach the
continuous route's ``L e``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from veerkracht_bayes.causal.thresholds import (
    ItemMargin,
    ThresholdSpec,
    calibrated_shares,
    item_margin,
    score_shift,
    threshold_shares,
)
from veerkracht_bayes.errors import InterventionError

N = 200_000
TAU = [np.array([-1.2, -0.3, 0.4, 1.1]), np.array([-0.5, 0.8]), np.array([0.3])]  # 5, 3 and 2 categories
LAM = np.array([0.8, 0.65, 0.5])
VALUES = [np.arange(1.0, 6.0), np.array([0.0, 2.0, 5.0]), np.array([0.0, 1.0])]  # unequal steps too
W = np.array([-4.0, 1.5, 3.0])


def _simulate(m: float, e: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    eta = rng.normal(m, 1.0, N)
    eps = rng.normal(size=(N, LAM.size))

    def answers(shift: float) -> np.ndarray:
        ystar = LAM * (eta[:, None] + shift) + np.sqrt(1 - LAM**2) * eps
        return np.column_stack([v[np.searchsorted(t, ystar[:, j])] for j, (t, v) in enumerate(zip(TAU, VALUES))])

    return answers(0.0), answers(e)


@pytest.mark.parametrize("m", [0.0, 0.6])
def test_score_shift_matches_simulation(m: float) -> None:
    e = 0.45
    before, after = _simulate(m, e, seed=5 + int(10 * m))
    diff = (after - before) @ W
    se = diff.std(ddof=1) / np.sqrt(N)
    # the group's margins in closed form: its latent responses have mean lambda m and SD 1, so its
    # thresholds sit at tau - lambda m (the margins estimated from answers: the next test)
    margins = [ItemMargin(v, t - lam * m) for t, v, lam in zip(TAU, VALUES, LAM)]
    got = float(score_shift(W, LAM, e, margins)[0])
    assert abs(got - diff.mean()) < 4 * se, (got, diff.mean(), se)
    # a wrong margin (the population's, for the shifted group) is detectable at this N
    if m:
        wrong = float(score_shift(W, LAM, e, [ItemMargin(v, t) for t, v in zip(TAU, VALUES)])[0])
        assert abs(wrong - diff.mean()) > 8 * se


def test_margin_recovers_the_thresholds_of_the_latent_response() -> None:
    before, _ = _simulate(0.0, 0.0, seed=3)
    for j, (tau, vals) in enumerate(zip(TAU, VALUES)):
        mg = item_margin(before[:, j], values=vals)
        p = norm.cdf(tau)
        se = np.sqrt(p * (1 - p) / N) / norm.pdf(tau)  # delta method for Phi^-1 of a share
        assert np.all(np.abs(mg.cum_probit - tau) < 4 * se), (mg.cum_probit, tau)


def test_weighted_margin_and_bad_answers() -> None:
    mg = item_margin(np.array([1.0, 2.0, np.nan, 3.0]), weights=np.array([3.0, 1.0, 5.0, 0.0]))
    assert mg.values.tolist() == [1.0, 2.0, 3.0]
    assert np.allclose(norm.cdf(mg.cum_probit), [0.75, 1.0])
    with pytest.raises(InterventionError, match="not one of the categories"):
        item_margin(np.array([1.0, 2.5]), values=np.array([1.0, 2.0, 3.0]))


def test_fine_categories_approach_the_continuous_slope() -> None:
    # a latent response cut at 400 equally spaced thresholds, scored by its bin centre, is the latent
    # response itself up to the bin width: its mean moves by lambda e
    edges = np.linspace(-5.0, 5.0, 401)
    vals = np.concatenate([[-5.0], 0.5 * (edges[1:] + edges[:-1]), [5.0]])
    mg = ItemMargin(vals, edges)
    lam, e = np.array([[0.7], [0.3]]), np.array([0.5, -1.0])
    got = score_shift([2.0], lam, e, [mg])
    assert np.allclose(got, 2.0 * lam[:, 0] * e, atol=1e-4)
    # a continuous item of the route moves by SD * lambda * e
    assert np.allclose(score_shift([2.0], lam, e, [3.0]), 2.0 * 3.0 * lam[:, 0] * e)


def test_calibrated_shares_agree_with_the_continuous_route() -> None:
    spec = ThresholdSpec(name="low", outcome="b", items=["b1"], cutoff=1.0)
    shift = np.array([0.3, -0.2, 0.0])
    # the continuous route with its slope L and latent variance chosen to match the observed SD
    L, err, sd = 1.0, 0.5, 1.3
    v = (sd**2 - err) / L**2
    cont = threshold_shares(spec, np.zeros(3), np.full(3, L), np.full(3, err), latent_var=v, effect=shift / L,
                            observed_share=0.2)
    ours = calibrated_shares(spec, 0.2, sd, shift)
    assert np.allclose(ours.intervened, cont.intervened) and np.allclose(ours.baseline, 0.2)
    above = calibrated_shares(spec.model_copy(update={"direction": "above"}), 0.2, sd, shift)
    assert np.allclose(above.baseline, 0.2) and np.all(np.sign(above.effect_pp[:2]) == [1, -1])
    with pytest.raises(InterventionError, match="SD must be positive"):
        calibrated_shares(spec, 0.2, 0.0, shift)
