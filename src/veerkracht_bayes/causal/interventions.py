"""Intervention specifications: shift, hard set, dose-uncertain shift, mechanism change.

An :class:`Intervention` combines one or more parts:

* :class:`Shift` — ``X += delta`` (the node keeps its causes; its intercept moves). ``delta`` is a
  number or a dose distribution (:class:`Normal`, :class:`Uniform`, :class:`LogNormal`,
  :class:`Beta`, :class:`Fixed`), drawn once per posterior draw. Every number must be finite
  (NaN and infinite doses are rejected).
* :class:`Set` — ``do(X = x)``: X's incoming links are cut and X is held at ``x``.
* :class:`MechanismChange` — the coefficient of an existing edge is scaled (``scale``) or
  replaced (``value``).

Units: ``unit="sd"`` (default) is the model's scale — standard deviations of the node in the
baseline population (and, for :class:`Set`, the level on that scale). ``unit="native"`` converts
with a caller-supplied ``native_scale`` mapping ``{node: sd}`` or ``{node: NativeScale(sd, center)}``
(``center`` is the native value that corresponds to 0 on the model's scale; needed for ``Set``).
``unit="exposure"`` is the 0/1 scale of a binary exposure lever (0 = not reached, 1 = reached by
a programme); a shift by ``c`` is a coverage ``c`` (the mean exposure of the target group). Lever
links are per-exposure effects, so it enters the model unchanged (factor 1).
Any other unit string is an :class:`~veerkracht_bayes.errors.InterventionError`.
"""

from __future__ import annotations

import math

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import AfterValidator, BeforeValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from veerkracht_bayes.errors import InterventionError, Problem, did_you_mean, format_path

__all__ = [
    "UNITS",
    "Normal",
    "Uniform",
    "LogNormal",
    "Fixed",
    "Beta",
    "Dose",
    "Shift",
    "Set",
    "MechanismChange",
    "Part",
    "Intervention",
    "NativeScale",
    "CompiledIntervention",
    "parse_intervention",
    "check_intervention",
    "compile_interventions",
]

#: Units a dose may be given in.
UNITS = ("sd", "native", "exposure")

#: Largest magnitude a dose parameter may have: far beyond any effect in SD units, small enough
#: that sums, squares and Beta/Gamma draws cannot overflow.
MAX_DOSE_MAGNITUDE = 1e6


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the boolean {value!r}")
    return value


def _finite_bounded(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"Input should be a finite number, not {value!r}")
    if abs(value) > MAX_DOSE_MAGNITUDE:
        raise ValueError(f"{value!r} is too large: dose parameters are at most {MAX_DOSE_MAGNITUDE:g} in size")
    return value


#: A finite float of bounded magnitude; booleans are refused (YAML's ``true`` is not 1).
#: NaN and +-inf are rejected with "Input should be a finite number".
FiniteFloat = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite_bounded)]


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError(f"Input should be greater than 0 (got {value!r})")
    return value


#: A finite, bounded, strictly positive float (checked for finiteness first, so NaN says so).
PositiveFloat = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite_bounded), AfterValidator(_positive)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normal(_Strict):
    """Dose ~ Normal(mean, sd).

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Shift
    >>> Shift(node="social_network", delta=Normal(mean=0.3, sd=0.1)).delta
    Normal(dist='normal', mean=0.3, sd=0.1)
    """

    dist: Literal["normal"] = "normal"
    mean: FiniteFloat
    sd: PositiveFloat

    def mean_value(self) -> float:
        """Expected dose."""
        return self.mean


class Uniform(_Strict):
    """Dose ~ Uniform(lo, hi).

    Examples
    --------
    >>> Uniform(lo=0.1, hi=0.5)
    Uniform(dist='uniform', lo=0.1, hi=0.5)
    """

    dist: Literal["uniform"] = "uniform"
    lo: FiniteFloat
    hi: FiniteFloat

    @model_validator(mode="after")
    def _order(self) -> "Uniform":
        if not self.hi > self.lo:
            raise ValueError(f"uniform dose needs hi > lo (got lo={self.lo}, hi={self.hi})")
        return self

    def mean_value(self) -> float:
        """Expected dose."""
        return 0.5 * (self.lo + self.hi)


class LogNormal(_Strict):
    """Dose = sign(median) * exp(log|median| + sigma * z), z ~ N(0, 1).

    A log-normal magnitude with the sign of ``median``, so that decreases (e.g. shorter waiting
    times) can be log-normal too.

    Examples
    --------
    >>> LogNormal(median=0.3, sigma=0.5).median
    0.3
    """

    dist: Literal["lognormal"] = "lognormal"
    median: FiniteFloat
    sigma: PositiveFloat

    @model_validator(mode="after")
    def _nonzero(self) -> "LogNormal":
        if self.median == 0:
            raise ValueError("lognormal dose needs a non-zero median")
        return self

    def mean_value(self) -> float:
        """Expected dose."""
        return float(self.median * np.exp(0.5 * self.sigma**2))


class Fixed(_Strict):
    """A dose without uncertainty.

    Examples
    --------
    >>> Fixed(value=0.5)
    Fixed(dist='fixed', value=0.5)
    """

    dist: Literal["fixed"] = "fixed"
    value: FiniteFloat

    def mean_value(self) -> float:
        """Expected dose."""
        return self.value


class Beta(_Strict):
    """Dose ~ Beta(a, b) on [0, 1]: an uncertain share, e.g. the coverage of a programme.

    Examples
    --------
    >>> Beta(a=2.0, b=5.0).a
    2.0
    """

    dist: Literal["beta"] = "beta"
    a: PositiveFloat
    b: PositiveFloat

    def mean_value(self) -> float:
        """Expected dose ``a / (a + b)``."""
        return self.a / (self.a + self.b)


Dose = Annotated[Union[Normal, Uniform, LogNormal, Beta, Fixed], Field(discriminator="dist")]


class Shift(_Strict):
    """``X += delta`` on node ``node``.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> vb.Shift(node="social_network", delta=0.5)
    Shift(type='shift', node='social_network', delta=0.5, unit='sd')
    """

    type: Literal["shift"] = "shift"
    node: str
    delta: FiniteFloat | Dose
    unit: str = "sd"

    def dose(self) -> Normal | Uniform | LogNormal | Beta | Fixed:
        """The dose as a distribution (a number becomes :class:`Fixed`)."""
        return Fixed(value=self.delta) if isinstance(self.delta, (int, float)) else self.delta


class Set(_Strict):
    """``do(node = value)``: cut the node's incoming links and hold it at ``value``.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> vb.Set(node="social_network", value=1.0)
    Set(type='set', node='social_network', value=1.0, unit='sd')
    """

    type: Literal["set"] = "set"
    node: str
    value: FiniteFloat
    unit: str = "sd"


class MechanismChange(_Strict):
    """Scale (``scale``) or replace (``value``) the coefficient of the edge ``source -> target``.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> vb.MechanismChange(source="social_network", target="wellbeing", scale=0.5).scale
    0.5
    """

    type: Literal["mechanism"] = "mechanism"
    source: str
    target: str
    scale: float | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _one(self) -> "MechanismChange":
        if (self.scale is None) == (self.value is None):
            raise ValueError("mechanism change needs exactly one of 'scale' or 'value'")
        return self


Part = Annotated[Union[Shift, Set, MechanismChange], Field(discriminator="type")]


class Intervention(_Strict):
    """A named intervention: one or more parts, optionally targeted at a subgroup.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> i = vb.Intervention(name="more contact", parts=[vb.Shift(node="social_network", delta=0.5)],
    ...                     subgroup="single_parent")
    >>> i.name, len(i.parts), i.subgroup
    ('more contact', 1, 'single_parent')
    """

    name: str = Field(min_length=1)
    parts: list[Part] = Field(min_length=1)
    subgroup: str | None = None

    def nodes(self) -> list[str]:
        """Nodes named by the parts (mechanism changes contribute source and target)."""
        out: list[str] = []
        for p in self.parts:
            out += [p.source, p.target] if isinstance(p, MechanismChange) else [p.node]
        return out


@dataclass(frozen=True)
class NativeScale:
    """Native scale of a node: ``sd`` native units per model SD; ``center`` = native value of 0.

    Examples
    --------
    >>> NativeScale(sd=12.0, center=50.0)
    NativeScale(sd=12.0, center=50.0)
    """

    sd: float
    center: float | None = None


def parse_intervention(data: Mapping[str, Any], source: str | None = None) -> Intervention:
    """Validate a plain mapping as an :class:`Intervention` (pydantic errors become located
    :class:`InterventionError` problems).

    Examples
    --------
    >>> iv = parse_intervention({"name": "more contact", "parts": [{"type": "shift", "node": "social_network", "delta": 0.5}]})
    >>> iv.parts[0]
    Shift(type='shift', node='social_network', delta=0.5, unit='sd')
    """
    try:
        return Intervention.model_validate(data)
    except ValidationError as exc:
        probs = [Problem(f"{e['msg']} (got {e.get('input')!r})", file=source,
                         location=format_path(e["loc"]), value=e.get("input"))
                 for e in exc.errors()]
        raise InterventionError(probs) from None


def _native(ns: Mapping[str, float | NativeScale] | None, node: str) -> NativeScale | None:
    if ns is None or node not in ns:
        return None
    v = ns[node]
    return v if isinstance(v, NativeScale) else NativeScale(float(v))


def check_intervention(
    iv: Intervention,
    nodes: Sequence[str],
    edge_keys: Iterable[str],
    subgroups: Iterable[str] | None = None,
    native_scale: Mapping[str, float | NativeScale] | None = None,
) -> None:
    """Check an intervention against a graph; raise :class:`InterventionError` listing all problems.

    Parameters
    ----------
    iv
        The intervention.
    nodes, edge_keys
        The graph's nodes and edge keys.
    subgroups
        Defined subgroup names (the codebook's); ``None`` accepts only untargeted interventions.
    native_scale
        Known native scales (needed for ``unit="native"``).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> iv = parse_intervention({"name": "typo", "parts": [{"type": "shift", "node": "social_netwrok", "delta": 0.5}]})
    >>> check_intervention(iv, g.nodes, [e.key for e in g.edges])
    Traceback (most recent call last):
        ...
    veerkracht_bayes.errors.InterventionError: intervention 'typo' parts[0]: unknown node 'social_netwrok' (did you mean 'social_network' ...
    """
    probs: list[Problem] = []
    node_set, edges = set(nodes), set(edge_keys)
    where = f"intervention {iv.name!r}"
    set_nodes: list[str] = []
    shift_nodes: list[str] = []
    for i, p in enumerate(iv.parts):
        loc = f"{where} parts[{i}]"
        names = [("source", p.source), ("target", p.target)] if isinstance(p, MechanismChange) \
            else [("node", p.node)]
        ok = True
        for fld, n in names:
            if n not in node_set:
                ok = False
                hint = did_you_mean(n, nodes)
                if not hint and n.lower() == "resilience":
                    hint = (" ('resilience' is not a node of the diagram; define a composite "
                            "outcome of nodes instead)")
                probs.append(Problem(f"unknown node {n!r}{hint} (expected a node of the graph)",
                                     location=loc, field=fld, value=n))
        if isinstance(p, MechanismChange):
            key = f"{p.source}->{p.target}"
            if ok and key not in edges:
                probs.append(Problem(f"mechanism change on {key!r}, which is not an edge of the graph"
                                     f"{did_you_mean(key, edges)} (expected an existing edge)",
                                     location=loc, field="source/target", value=key))
            continue
        if p.unit not in UNITS:
            probs.append(Problem(f"unknown unit {p.unit!r}{did_you_mean(p.unit, UNITS)} "
                                 f"(expected one of {list(UNITS)})", location=loc, field="unit",
                                 value=p.unit))
        elif p.unit == "native" and ok:
            sc = _native(native_scale, p.node)
            if sc is None:
                probs.append(Problem(f"unit 'native' but no native scale is known for {p.node!r} "
                                     "(expected it in native_scale, or use unit 'sd')",
                                     location=loc, field="unit", value=p.unit))
            elif isinstance(p, Set) and sc.center is None:
                probs.append(Problem(f"a set in native units needs the native center of {p.node!r} "
                                     "(NativeScale(sd, center)); or give the value in 'sd'",
                                     location=loc, field="unit", value=p.unit))
        (set_nodes if isinstance(p, Set) else shift_nodes).append(p.node)
    dup = sorted({n for n in set_nodes if set_nodes.count(n) > 1})
    both = sorted(set(set_nodes) & set(shift_nodes))
    if dup:
        probs.append(Problem(f"node(s) {dup} are set more than once (expected one value each)",
                             location=where, field="parts", value=dup))
    if both:
        probs.append(Problem(f"node(s) {both} are both set and shifted (a set node has no "
                             "intercept to shift)", location=where, field="parts", value=both))
    if iv.subgroup is not None:
        defined = list(subgroups or [])
        if iv.subgroup not in defined:
            probs.append(Problem(f"unknown subgroup {iv.subgroup!r}{did_you_mean(iv.subgroup, defined)} "
                                 f"(expected one defined in the codebook: {sorted(defined)})",
                                 location=where, field="subgroup", value=iv.subgroup))
    if probs:
        raise InterventionError(probs)


_DIST_CODE = {"fixed": 0, "normal": 1, "uniform": 2, "lognormal": 3, "beta": 4}


@dataclass(frozen=True)
class CompiledIntervention:
    """Arrays describing a batch of ``I`` interventions on ``P`` nodes (model units).

    Attributes
    ----------
    names, subgroups
        Per intervention.
    set_mask, set_value
        ``(I, P)``: which nodes are held, and at what level.
    mech_scale
        ``(I, P, P)`` multipliers of ``B`` (1 where unchanged).
    mech_mask, mech_value
        ``(I, P, P)``: entries of ``B`` replaced by a value.
    dose_node, dose_code, dose_p1, dose_p2, dose_factor
        ``(I, R)`` random/fixed shift doses (``R`` = most shift parts in one intervention;
        padding has factor 0): node index, distribution code (0 fixed, 1 normal, 2 uniform,
        3 lognormal, 4 beta), parameters, and the unit factor (1 / native sd; 1 for sd and
        exposure).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> iv = parse_intervention({"name": "hold", "parts": [{"type": "set", "node": "social_network", "value": 1.0}]})
    >>> c = compile_interventions([iv], g.nodes, [e.key for e in g.edges])
    >>> int(c.set_mask.sum())
    1
    """

    names: tuple[str, ...]
    subgroups: tuple[str | None, ...]
    set_mask: np.ndarray
    set_value: np.ndarray
    mech_scale: np.ndarray
    mech_mask: np.ndarray
    mech_value: np.ndarray
    dose_node: np.ndarray
    dose_code: np.ndarray
    dose_p1: np.ndarray
    dose_p2: np.ndarray
    dose_factor: np.ndarray

    @property
    def n(self) -> int:
        """Number of interventions."""
        return len(self.names)


def compile_interventions(
    interventions: Sequence[Intervention],
    nodes: Sequence[str],
    edge_keys: Iterable[str],
    subgroups: Iterable[str] | None = None,
    native_scale: Mapping[str, float | NativeScale] | None = None,
) -> CompiledIntervention:
    """Validate and turn interventions into stacked arrays (see :class:`CompiledIntervention`).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> ivs = [parse_intervention({"name": "p1", "parts": [{"type": "shift", "node": "social_network", "delta": 0.5}]})]
    >>> c = compile_interventions(ivs, g.nodes, [e.key for e in g.edges])
    >>> c.names, isinstance(c, CompiledIntervention)
    (('p1',), True)
    """
    nodes = list(nodes)
    edge_keys = list(edge_keys)
    subgroups = None if subgroups is None else list(subgroups)
    problems: list[Problem] = []
    for iv in interventions:
        try:
            check_intervention(iv, nodes, edge_keys, subgroups, native_scale)
        except InterventionError as exc:
            problems += exc.problems
    if problems:
        raise InterventionError(problems)
    names = [iv.name for iv in interventions]
    dupn = sorted({n for n in names if names.count(n) > 1})
    if dupn:
        raise InterventionError(f"intervention names must be unique; repeated: {dupn}")
    idx = {n: i for i, n in enumerate(nodes)}
    I, P = len(interventions), len(nodes)
    R = max([sum(isinstance(p, Shift) for p in iv.parts) for iv in interventions] + [1])
    set_mask = np.zeros((I, P), bool)
    set_value = np.zeros((I, P))
    mscale = np.ones((I, P, P))
    mmask = np.zeros((I, P, P), bool)
    mval = np.zeros((I, P, P))
    dn = np.zeros((I, R), int)
    dc = np.zeros((I, R), int)
    p1 = np.zeros((I, R))
    p2 = np.zeros((I, R))
    fac = np.zeros((I, R))
    for i, iv in enumerate(interventions):
        r = 0
        for p in iv.parts:
            if isinstance(p, MechanismChange):
                k, j = idx[p.target], idx[p.source]
                if p.scale is not None:
                    mscale[i, k, j] *= p.scale
                else:
                    mmask[i, k, j] = True
                    mval[i, k, j] = p.value
            elif isinstance(p, Set):
                j = idx[p.node]
                x = p.value
                if p.unit == "native":
                    sc = _native(native_scale, p.node)
                    x = (x - sc.center) / sc.sd
                set_mask[i, j] = True
                set_value[i, j] = x
            else:
                j = idx[p.node]
                d = p.dose()
                f = 1.0 if p.unit in ("sd", "exposure") else 1.0 / _native(native_scale, p.node).sd
                dn[i, r], fac[i, r] = j, f
                dc[i, r] = _DIST_CODE[d.dist]
                if isinstance(d, Fixed):
                    p1[i, r] = d.value
                elif isinstance(d, Normal):
                    p1[i, r], p2[i, r] = d.mean, d.sd
                elif isinstance(d, Uniform):
                    p1[i, r], p2[i, r] = d.lo, d.hi
                elif isinstance(d, Beta):
                    p1[i, r], p2[i, r] = d.a, d.b
                else:
                    p1[i, r], p2[i, r] = d.median, d.sigma
                r += 1
    return CompiledIntervention(tuple(names), tuple(iv.subgroup for iv in interventions), set_mask,
                                set_value, mscale, mmask, mval, dn, dc, p1, p2, fac)
