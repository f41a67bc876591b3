"""Neighbourhood-level policies on the between level (causal/twolevel.py)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.interventions import MechanismChange, Normal, Set, Shift
from veerkracht_bayes.causal.twolevel import between_do, between_effect_summary
from veerkracht_bayes.errors import InterventionError

NODES = ("neighbourhood_trust", "community_support", "collective_agency")


def _arrays(S=5, seed=0):
    rng = np.random.default_rng(seed)
    B = np.zeros((S, 3, 3))
    B[:, 1, 0] = rng.uniform(0.2, 0.5, S)   # trust -> support
    B[:, 2, 1] = rng.uniform(0.3, 0.6, S)   # support -> agency
    B[:, 1, 2] = rng.uniform(-0.3, 0.3, S)  # agency -> support (a loop)
    v = rng.uniform(0.05, 0.3, (S, 3))
    return B, v


def _fixed_point(B, c, iters=2000):
    x = np.zeros_like(c)
    for _ in range(iters):
        x = B @ x + c
    return x


def test_shift_propagates_like_the_iterated_dynamics():
    B, v = _arrays()
    out = between_do(B, v, NODES, [Shift(node="neighbourhood_trust", delta=0.3)])
    for s in range(B.shape[0]):
        c = np.array([0.3 / np.sqrt(v[s, 0]), 0.0, 0.0])
        x = _fixed_point(B[s], c)
        np.testing.assert_allclose(out["between_effect"][s], x, atol=1e-10)
        np.testing.assert_allclose(out["effect"][s], x * np.sqrt(v[s]), atol=1e-10)
    # the shifted construct's population mean moves by at least its own shift when the loop is positive
    assert np.all(out["within_effect"] == 0)


def test_set_cuts_incoming_links_and_holds_the_value():
    B, v = _arrays(seed=1)
    out = between_do(B, v, NODES, [Set(node="community_support", value=0.2)])
    np.testing.assert_allclose(out["effect"][:, 1], 0.2)          # held at the value (baseline mean 0)
    np.testing.assert_allclose(out["effect"][:, 0], 0.0)          # upstream untouched
    np.testing.assert_allclose(out["effect"][:, 2], np.sqrt(v[:, 2]) * B[:, 2, 1] * 0.2 / np.sqrt(v[:, 1]))


def test_mechanism_change_removes_propagation():
    B, v = _arrays(seed=2)
    out = between_do(B, v, NODES, [Shift(node="neighbourhood_trust", delta=0.5),
                                   MechanismChange(source="neighbourhood_trust", target="community_support", value=0.0)])
    np.testing.assert_allclose(out["effect"][:, 1:], 0.0, atol=1e-12)
    rows = between_effect_summary(out)
    assert [r["node"] for r in rows] == list(NODES) and rows[0]["p_positive"] == 1.0


def test_errors_are_located():
    B, v = _arrays()
    with pytest.raises(InterventionError, match="did you mean"):
        between_do(B, v, NODES, [Shift(node="community_suport", delta=0.1)])
    with pytest.raises(InterventionError, match="dose"):
        between_do(B, v, NODES, [Shift(node="community_support", delta=Normal(mean=0.1, sd=0.05))])
    with pytest.raises(InterventionError, match="not a between-level link"):
        between_do(B, v, NODES, [MechanismChange(source="collective_agency", target="neighbourhood_trust", scale=2.0)])


# ---------------------------------------------------------------- per-draw shifts (run's neighbourhood policies)
def test_per_draw_shift_on_a_chain_equals_the_closed_form():
    """Chain support -> agency, B = [[0, 0], [b, 0]] between-standardised, shares v_s, v_a. A shift
    delta of support's population mean is alpha~_s += delta / sqrt(v_s); the equilibrium gives
    eta~_s = delta / sqrt(v_s), eta~_a = b eta~_s, and population effects sqrt(v) eta~:
    support moves by delta, agency by delta * b * sqrt(v_a) / sqrt(v_s)."""
    rng = np.random.default_rng(4)
    S = 50
    b = rng.uniform(0.2, 0.8, S)
    v = rng.uniform(0.02, 0.2, (S, 2))
    delta = rng.uniform(0.0, 0.1, S)
    B = np.zeros((S, 2, 2))
    B[:, 1, 0] = b
    out = between_do(B, v, ("community_support", "collective_agency"), shifts={"community_support": delta})
    np.testing.assert_allclose(out["effect"][:, 0], delta, rtol=1e-12)
    np.testing.assert_allclose(out["effect"][:, 1], delta * b * np.sqrt(v[:, 1]) / np.sqrt(v[:, 0]), rtol=1e-12)
    # the same as a fixed Shift when the per-draw shift is constant
    fixed = between_do(B, v, ("community_support", "collective_agency"), [Shift(node="community_support", delta=0.07)])
    const = between_do(B, v, ("community_support", "collective_agency"), shifts={"community_support": 0.07})
    np.testing.assert_allclose(const["effect"], fixed["effect"], rtol=1e-12)


def test_per_draw_shift_refuses_bad_input():
    B, v = _arrays(S=3)
    with pytest.raises(InterventionError, match="one value per draw"):
        between_do(B, v, NODES, shifts={"community_support": np.ones(2)})
    with pytest.raises(InterventionError, match="non-finite"):
        between_do(B, v, NODES, shifts={"community_support": np.array([0.1, np.nan, 0.1])})
    with pytest.raises(InterventionError, match="did you mean"):
        between_do(B, v, NODES, shifts={"community_suport": np.ones(3)})
    with pytest.raises(InterventionError, match="both set and shifted"):
        between_do(B, v, NODES, [Set(node="community_support", value=0.1)], shifts={"community_support": np.ones(3)})


def test_summary_p_relevant():
    out = between_do(*_arrays(S=200, seed=2), NODES, [Shift(node="neighbourhood_trust", delta=0.1)])
    rows = between_effect_summary(out, min_relevant_change=0.05)
    eff = out["effect"]
    for k, r in enumerate(rows):
        assert r["p_relevant"] == pytest.approx(float(np.mean(np.abs(eff[:, k]) >= 0.05)))
