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
