"""The policy file: the report's ten recommendations as validated do-queries.

The shipped file is ``veerkracht_bayes/data/policies.yaml``; users may write their own with the
same schema (see ``docs/do_queries.md``). Each policy has an ``id``, English and Dutch titles,
the report's ``advice`` number, one or more ``levers`` (node, intervention type, dose with its
uncertainty, unit, ``dose_source`` and ``citation``), a target ``subgroup`` (or ``null``) and
``outcomes``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from veerkracht_bayes.resources import package_data_path
from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph
from veerkracht_bayes.causal.do import DEFAULT_OUTCOMES
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean, format_path
from veerkracht_bayes.causal.interventions import UNITS, Dose, Intervention, Set, Shift
from veerkracht_bayes.yaml_io import load_yaml

__all__ = ["KNOWN_SUBGROUPS", "Lever", "Policy", "PolicySet", "policies_path", "load_policies",
           "format_policies"]

#: Subgroup names the shipped policy file may target (the codebook defines them for a dataset).
KNOWN_SUBGROUPS = ("single_parent", "low_income", "migration_background", "mental_health_problems",
                   "welfare_recipient", "youth")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Lever(_Strict):
    """One lever of a policy: an intervention on a node with a dose."""

    node: str
    type: Literal["shift", "set"] = "shift"
    dose: Dose | None = Field(default=None, description="Shift dose distribution (type shift).")
    value: float | None = Field(default=None, description="Level to hold the node at (type set).")
    unit: str = "sd"
    dose_source: str = Field(min_length=1, description="Where the dose comes from.")
    citation: str | None = Field(default=None, description="Bib key in priors/references.bib.")

    @model_validator(mode="after")
    def _dose(self) -> "Lever":
        if self.type == "shift" and (self.dose is None or self.value is not None):
            raise ValueError("a shift lever needs 'dose' (a distribution) and no 'value'")
        if self.type == "set" and (self.value is None or self.dose is not None):
            raise ValueError("a set lever needs 'value' and no 'dose'")
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}{did_you_mean(self.unit, UNITS)} "
                             f"(expected one of {list(UNITS)})")
        return self

    def to_part(self) -> Shift | Set:
        """The intervention part."""
        if self.type == "shift":
            return Shift(node=self.node, delta=self.dose, unit=self.unit)
        return Set(node=self.node, value=self.value, unit=self.unit)


class Policy(_Strict):
    """One recommendation as a do-query."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    advice: str = Field(pattern=r"^(10|[1-9])[a-z]?$", description="The report's advice number.")
    title_en: str = Field(min_length=1)
    title_nl: str = Field(min_length=1)
    subgroup: str | None = None
    levers: list[Lever] = Field(min_length=1)
    outcomes: list[str] = Field(default_factory=lambda: list(DEFAULT_OUTCOMES))
    note: str = ""

    @model_validator(mode="before")
    @classmethod
    def _advice_str(cls, data):
        if isinstance(data, dict) and isinstance(data.get("advice"), int):
            data = {**data, "advice": str(data["advice"])}
        return data

    def to_intervention(self) -> Intervention:
        """The intervention (named by the policy id)."""
        return Intervention(name=self.id, parts=[lv.to_part() for lv in self.levers],
                            subgroup=self.subgroup)

    def to_json(self) -> dict:
        """JSON-ready mapping (``id``, ``title``, ``levers``, ``subgroup``, ...)."""
        return {"id": self.id, "title": self.title_en, "title_nl": self.title_nl,
                "advice": self.advice, "subgroup": self.subgroup, "outcomes": list(self.outcomes),
                "levers": [lv.model_dump(mode="json", exclude_none=False) for lv in self.levers],
                "note": self.note}


class PolicySet(_Strict):
    """A validated policy file."""

    spec_version: int = 1
    policies: list[Policy] = Field(min_length=1)

    def ids(self) -> list[str]:
        """Policy ids in file order."""
        return [p.id for p in self.policies]

    def get(self, policy_id: str) -> Policy:
        """One policy by id (did-you-mean on a miss)."""
        for p in self.policies:
            if p.id == policy_id:
                return p
        raise ConfigError(f"unknown policy {policy_id!r}{did_you_mean(policy_id, self.ids())}")

    def to_interventions(self) -> list[Intervention]:
        """One :class:`Intervention` per policy, named by its id."""
        return [p.to_intervention() for p in self.policies]


def policies_path() -> Path:
    """Path of the shipped policy file."""
    return package_data_path("policies.yaml")


def load_policies(path: str | Path | None = None, graph: CausalGraph | str | None = "marvel",
                  subgroups: Iterable[str] | None = None) -> PolicySet:
    """Load and validate a policy file.

    Parameters
    ----------
    path
        The YAML file (default: the shipped ten recommendations).
    graph
        Graph to check lever and outcome nodes against (default MARVEL; ``None`` skips).
    subgroups
        Defined subgroup names (default :data:`KNOWN_SUBGROUPS`).

    Raises
    ------
    ConfigError
        Listing every problem with its file, line, field and value.
    """
    path = policies_path() if path is None else Path(path)
    doc = load_yaml(path, error_cls=ConfigError)
    label = str(path)
    try:
        ps = PolicySet.model_validate(doc.data)
    except ValidationError as exc:
        probs = [Problem(f"{e['msg']} (got {e.get('input')!r})", file=label,
                         line=doc.line_of([p for p in e["loc"] if not (isinstance(p, str) and p in
                                           ("normal", "uniform", "lognormal", "fixed"))]),
                         location=format_path(e["loc"]), value=e.get("input"))
                 for e in exc.errors()]
        raise ConfigError(probs) from None
    probs: list[Problem] = []
    if ps.spec_version != 1:
        probs.append(Problem(f"unsupported spec_version {ps.spec_version!r} (expected 1)", file=label,
                             line=doc.line_of(["spec_version"]), field="spec_version"))
    seen: set[str] = set()
    allowed = list(KNOWN_SUBGROUPS if subgroups is None else subgroups)
    g = None if graph is None else load_graph(graph)
    for i, p in enumerate(ps.policies):
        loc = ["policies", i]
        if p.id in seen:
            probs.append(Problem(f"duplicate policy id {p.id!r} (expected unique ids)", file=label,
                                 line=doc.line_of(loc + ["id"]), location=format_path(loc + ["id"]),
                                 field="id", value=p.id))
        seen.add(p.id)
        if p.subgroup is not None and p.subgroup not in allowed:
            probs.append(Problem(f"unknown subgroup {p.subgroup!r}{did_you_mean(p.subgroup, allowed)} "
                                 f"(expected one of {allowed} or null)", file=label,
                                 line=doc.line_of(loc + ["subgroup"]),
                                 location=format_path(loc + ["subgroup"]), field="subgroup",
                                 value=p.subgroup))
        if g is None:
            continue
        checks = [(loc + ["levers", j, "node"], lv.node) for j, lv in enumerate(p.levers)]
        checks += [(loc + ["outcomes", j], o) for j, o in enumerate(p.outcomes)]
        for where, node in checks:
            if not g.has_node(node):
                probs.append(Problem(f"unknown node {node!r}{did_you_mean(node, g.nodes)} "
                                     f"(expected a node of graph {g.name!r})", file=label,
                                     line=doc.line_of(where), location=format_path(where),
                                     field=str(where[-2]) if isinstance(where[-1], int) else "node",
                                     value=node))
    if probs:
        raise ConfigError(probs)
    return ps


def format_policies(ps: "PolicySet", as_json: bool = False) -> str:
    """Text of ``veerkracht-bayes policies [--json]`` (the CLI prints it).

    With ``as_json`` one JSON list, one object per policy with at least ``id``, ``title``,
    ``levers`` and ``subgroup``.
    """
    if as_json:
        return json.dumps([p.to_json() for p in ps.policies], ensure_ascii=False)
    lines = []
    for p in ps.policies:
        lines.append(f"{p.id}  advice {p.advice:<3} {p.title_en}  [subgroup: {p.subgroup or 'everyone'}]")
        for lv in p.levers:
            if lv.type == "shift":
                d = lv.dose
                desc = {"normal": lambda: f"Normal({d.mean:+g}, {d.sd:g})",
                        "uniform": lambda: f"Uniform({d.lo:g}, {d.hi:g})",
                        "lognormal": lambda: f"LogNormal(median {d.median:+g}, sigma {d.sigma:g})",
                        "fixed": lambda: f"{d.value:+g}"}[d.dist]()
                what = f"shift {lv.node} by {desc} {lv.unit}"
            else:
                what = f"set {lv.node} = {lv.value:g} {lv.unit}"
            cite = f" [{lv.citation}]" if lv.citation else ""
            lines.append(f"      - {what}{cite}")
    return "\n".join(lines)
