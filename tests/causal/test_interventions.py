"""Tests for veerkracht_bayes.causal.interventions: specs, validation, units, compilation."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.causal.interventions import (Fixed, Intervention, LogNormal, MechanismChange, NativeScale,
                                            Normal, Set, Shift, Uniform, check_intervention,
                                            compile_interventions, parse_intervention)


def _check(marvel, iv, **kw):
    check_intervention(iv, marvel.nodes, marvel.edge_keys, **kw)


def test_unknown_node_did_you_mean(marvel):
    with pytest.raises(InterventionError, match="unknown node 'wellbeeing'.*did you mean 'wellbeing'"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="wellbeeing", delta=0.1)]))
    with pytest.raises(InterventionError, match="composite"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="resilience", delta=0.1)]))


def test_unknown_unit_and_native(marvel):
    with pytest.raises(InterventionError, match="unknown unit 'euro'"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="financial_means", delta=100, unit="euro")]))
    with pytest.raises(InterventionError, match="no native scale"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="financial_means", delta=100,
                                                           unit="native")]))
    with pytest.raises(InterventionError, match="native center"):
        _check(marvel, Intervention(name="x", parts=[Set(node="financial_means", value=100, unit="native")]),
               native_scale={"financial_means": 500.0})
    c = compile_interventions(
        [Intervention(name="a", parts=[Shift(node="financial_means", delta=250.0, unit="native")]),
         Intervention(name="b", parts=[Set(node="financial_means", value=2500.0, unit="native")])],
        marvel.nodes, marvel.edge_keys,
        native_scale={"financial_means": NativeScale(sd=500.0, center=1500.0)})
    j = marvel.node_index["financial_means"]
    assert c.dose_factor[0, 0] * c.dose_p1[0, 0] == pytest.approx(0.5)
    assert c.set_value[1, j] == pytest.approx(2.0) and c.set_mask[1, j]


def test_mechanism_on_non_edge_and_subgroup(marvel):
    with pytest.raises(InterventionError, match="not an edge"):
        _check(marvel, Intervention(name="x", parts=[MechanismChange(source="wellbeing", target="stress",
                                                                     scale=0.5)]))
    with pytest.raises(InterventionError, match="did you mean 'low_income'"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="stress", delta=-0.1)], subgroup="low_incme"),
               subgroups=["low_income", "youth"])
    with pytest.raises(InterventionError, match="unknown subgroup"):
        _check(marvel, Intervention(name="x", parts=[Shift(node="stress", delta=-0.1)], subgroup="youth"))


def test_conflicts_and_schema_errors(marvel):
    with pytest.raises(InterventionError, match="both set and shifted"):
        _check(marvel, Intervention(name="x", parts=[Set(node="stress", value=0.0),
                                                     Shift(node="stress", delta=0.1)]))
    with pytest.raises(InterventionError, match="exactly one"):
        parse_intervention({"name": "x", "parts": [{"type": "mechanism", "source": "stress",
                                                    "target": "wellbeing"}]})
    with pytest.raises(InterventionError, match=r"parts\[0\].*hi > lo"):
        parse_intervention({"name": "x", "parts": [{"type": "shift", "node": "stress",
                                                    "delta": {"dist": "uniform", "lo": 1, "hi": 0}}]})
    iv = parse_intervention({"name": "x", "parts": [{"type": "shift", "node": "stress",
                                                     "delta": {"dist": "lognormal", "median": -0.2,
                                                               "sigma": 0.3}}]})
    assert isinstance(iv.parts[0].dose(), LogNormal)
    assert iv.parts[0].dose().mean_value() < 0


def test_compile_arrays(marvel):
    ivs = [Intervention(name="a", parts=[Shift(node="stress", delta=Normal(mean=-0.2, sd=0.1)),
                                         Shift(node="wellbeing", delta=0.3)]),
           Intervention(name="b", parts=[MechanismChange(source="stress", target="wellbeing", value=-0.1),
                                         MechanismChange(source="shame", target="stress", scale=0.5),
                                         Shift(node="stress", delta=Uniform(lo=0, hi=1))])]
    c = compile_interventions(ivs, marvel.nodes, marvel.edge_keys)
    ix = marvel.node_index
    assert c.dose_code.shape == (2, 2)
    assert c.dose_code[0].tolist() == [1, 0] and c.dose_factor[1].tolist() == [1.0, 0.0]
    assert c.mech_mask[1, ix["wellbeing"], ix["stress"]] and c.mech_value[1, ix["wellbeing"], ix["stress"]] == -0.1
    assert c.mech_scale[1, ix["stress"], ix["shame"]] == 0.5
    assert np.count_nonzero(c.mech_scale != 1) == 1
    assert Fixed(value=2.0).mean_value() == 2.0
    with pytest.raises(InterventionError, match="unique"):
        compile_interventions([ivs[0], ivs[0]], marvel.nodes, marvel.edge_keys)


@pytest.mark.parametrize("dose", [{"dist": "beta", "a": 1e308, "b": 1e308}, {"dist": "fixed", "value": True},
                                  {"dist": "normal", "mean": 1e300, "sd": 1.0}, {"dist": "beta", "a": 2, "b": False}])
def test_dose_numbers_refused_when_huge_or_boolean(dose: dict) -> None:
    from pydantic import TypeAdapter, ValidationError

    from veerkracht_bayes.causal.interventions import Dose

    with pytest.raises(ValidationError):
        TypeAdapter(Dose).validate_python(dose)
