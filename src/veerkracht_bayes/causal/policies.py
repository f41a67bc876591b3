"""The policy file: the report's ten recommendations as programmes with a defined dose.

The shipped file is ``veerkracht_bayes/data/policies.yaml``; users may write their own with the
same schema (``spec_version: 2``; see ``docs/do_queries.md``, section "Policies as programmes:
exposure, coverage, target groups").

Each policy has an ``id``, the report's ``advice`` number, English and Dutch titles, a target
``subgroup`` (a codebook subgroup, or ``null`` for the whole population), the report's own words
for its target group (``target_group: {quote, section}``) and one or more ``levers``. A lever is a
graph node with role ``policy_lever``: a binary *exposure* (0 = not reached by the programme,
1 = reached), so that no policy shifts a construct directly. Its ``coverage`` is the dose: the
share of the target group reached (a distribution on [0, 1]: ``beta``, ``uniform`` or ``fixed``),
with ``coverage_source`` (a source, or text starting with ``assumption:``). The compiled
intervention shifts the lever by the coverage (unit ``exposure``): the mean exposure of the target
group, so the within-group effect is coverage x the per-exposure effect, propagated at the
equilibrium. The per-exposure effects are the lever's out-links, whose priors (Cohen's d per
exposure) live in ``priors/marvel.yaml``; :func:`lever_effect_priors` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from veerkracht_bayes.causal.do import DEFAULT_OUTCOMES
from veerkracht_bayes.causal.interventions import Beta, Dose, Fixed, Intervention, Shift, Uniform
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean, format_path
from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph
from veerkracht_bayes.resources import package_data_path
from veerkracht_bayes.yaml_io import load_yaml

__all__ = ["KNOWN_SUBGROUPS", "POLICY_SPEC_VERSION", "TargetGroup", "Lever", "Policy", "PolicySet",
           "policies_path", "load_policies", "lever_effect_priors", "format_policies"]

#: The policy file format version this package reads.
POLICY_SPEC_VERSION = 2

#: Subgroup names a policy file may target by default (those of the synthetic codebook).
KNOWN_SUBGROUPS = ("single_parent", "low_income", "migration_background", "refugee",
                   "mental_health_problems", "welfare_recipient", "youth", "pupils_and_parents",
                   "bottom_labour_market")

_DIST_KEYS = ("normal", "uniform", "lognormal", "beta", "fixed")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TargetGroup(_Strict):
    """The report's own words for whom a recommendation is meant.

    Examples
    --------
    >>> TargetGroup(quote="single parents", section="3.2").section
    '3.2'
    """

    quote: str = Field(min_length=1, description="The report's Dutch words.")
    section: str = Field(min_length=1, description="Where in the report (chapter / advice).")


def coverage_problems(cov: Any) -> list[tuple[str, object, str]]:
    """Why a dose cannot be a coverage: ``[(field, value, message)]`` (empty when it can).

    A coverage is a share of the target group, so its support must lie in [0, 1].
    """
    out: list[tuple[str, object, str]] = []
    if isinstance(cov, Fixed):
        if not 0.0 <= cov.value <= 1.0:
            out.append(("coverage.value", cov.value,
                        f"coverage value {cov.value!r} is outside [0, 1] (expected the share of the "
                        "target group reached)"))
    elif isinstance(cov, Uniform):
        for fld, v in (("lo", cov.lo), ("hi", cov.hi)):
            if not 0.0 <= v <= 1.0:
                out.append((f"coverage.{fld}", v, f"coverage {fld} {v!r} is outside [0, 1] (expected "
                            "the share of the target group reached)"))
    elif not isinstance(cov, Beta):
        out.append(("coverage.dist", cov.dist,
                    f"coverage distribution {cov.dist!r} is not bounded to [0, 1] (expected beta, "
                    "uniform or fixed: a share of the target group reached)"))
    return out


class Lever(_Strict):
    """One programme component: exposure to a lever node, with its coverage in the target group.

    Examples
    --------
    >>> lever = load_policies().policies[0].levers[0]
    >>> isinstance(lever, Lever), isinstance(lever.node, str)
    (True, True)
    """

    node: str = Field(description="A graph node with role policy_lever.")
    coverage: Dose = Field(description="Share of the target group reached (on [0, 1]).")
    coverage_source: str = Field(min_length=1, description="Source of the coverage, or 'assumption: ...'.")
    citation: str | None = Field(default=None, description="Bib key in priors/references.bib.")

    @model_validator(mode="after")
    def _coverage(self) -> "Lever":
        probs = coverage_problems(self.coverage)
        if probs:
            raise ValueError("; ".join(m for _, _, m in probs))
        return self

    @property
    def is_assumption(self) -> bool:
        """True when the coverage is an assumption (its source says so)."""
        return self.coverage_source.lower().startswith("assumption")

    def coverage_mean(self) -> float:
        """Expected coverage."""
        return float(self.coverage.mean_value())

    def coverage_label(self) -> str:
        """``Beta(3, 7) (mean 0.30)``, ``Uniform(0.1, 0.3)``, ``0.25``."""
        c = self.coverage
        if isinstance(c, Beta):
            return f"Beta({c.a:g}, {c.b:g}) (mean {self.coverage_mean():.2f})"
        if isinstance(c, Uniform):
            return f"Uniform({c.lo:g}, {c.hi:g})"
        if isinstance(c, Fixed):
            return f"{c.value:g}"
        return c.dist  # not reachable for a validated lever

    def to_part(self) -> Shift:
        """The intervention part: shift the exposure lever by the coverage."""
        return Shift(node=self.node, delta=self.coverage, unit="exposure")


class Policy(_Strict):
    """One recommendation as a programme: target group, levers and their coverage.

    Examples
    --------
    >>> p = load_policies().policies[0]
    >>> isinstance(p, Policy), p.id
    (True, 'P01')
    """

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    advice: str = Field(pattern=r"^(10|[1-9])[a-z]?$", description="The report's advice number.")
    title_en: str = Field(min_length=1)
    title_nl: str = Field(min_length=1)
    subgroup: str | None = Field(description="Codebook subgroup, or null for the whole population.")
    target_group: TargetGroup
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

    def to_json(self, effect_priors: dict[str, list[dict]] | None = None) -> dict:
        """JSON-ready mapping: ``id``, ``advice``, titles, ``subgroup``, ``target_group``,
        ``levers`` (``node``, ``coverage``, ``source``, ``citation``, ``effect_prior``)."""
        eff = effect_priors or {}
        levers = []
        for lv in self.levers:
            cov = lv.coverage.model_dump(mode="json")
            cov["mean"] = lv.coverage_mean()
            levers.append({"node": lv.node, "coverage": cov, "source": lv.coverage_source,
                           "assumption": lv.is_assumption, "citation": lv.citation,
                           "effect_prior": eff.get(lv.node, [])})
        return {"id": self.id, "advice": self.advice, "title": self.title_en, "title_en": self.title_en,
                "title_nl": self.title_nl, "subgroup": self.subgroup,
                "target_group": self.target_group.model_dump(mode="json"),
                "outcomes": list(self.outcomes), "levers": levers, "note": self.note}


class PolicySet(_Strict):
    """A validated policy file.

    Examples
    --------
    >>> ps = load_policies()
    >>> isinstance(ps, PolicySet), len(ps.policies) > 0
    (True, True)
    """

    spec_version: int = POLICY_SPEC_VERSION
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

    def lever_nodes(self) -> list[str]:
        """Lever nodes used, in first-use order."""
        return list(dict.fromkeys(lv.node for p in self.policies for lv in p.levers))


def policies_path() -> Path:
    """Path of the shipped policy file.

    Examples
    --------
    >>> policies_path().name
    'policies.yaml'
    """
    return package_data_path("policies.yaml")


def _who(data: Any, loc: tuple) -> str:
    """``policy 'P01', lever 'care_relief': `` for a pydantic location into the raw file."""
    out = []
    try:
        if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
            pol = data["policies"][loc[1]]
            out.append(f"policy {pol.get('id', loc[1])!r}")
            if len(loc) >= 4 and loc[2] == "levers" and isinstance(loc[3], int):
                out.append(f"lever {pol['levers'][loc[3]].get('node', loc[3])!r}")
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return (", ".join(out) + ": ") if out else ""


def _coverage_range_problems(data: Any, loc: tuple) -> list[tuple[str, object, str]]:
    """:func:`coverage_problems` of the raw lever at ``loc`` (``policies, i, levers, j``), if any."""
    if len(loc) != 4 or loc[0] != "policies" or loc[2] != "levers":
        return []
    try:
        raw = data["policies"][loc[1]]["levers"][loc[3]]["coverage"]
        return coverage_problems(TypeAdapter(Dose).validate_python(raw))
    except (KeyError, IndexError, TypeError, ValidationError):
        return []


def load_policies(path: str | Path | None = None, graph: CausalGraph | str | None = "marvel",
                  subgroups: Iterable[str] | None = None) -> PolicySet:
    """Load and validate a policy file (``spec_version: 2``).

    Parameters
    ----------
    path
        The YAML file (default: the shipped ten recommendations).
    graph
        Graph to check lever and outcome nodes against (default MARVEL; ``None`` skips). Every
        lever must be a node with role ``policy_lever``.
    subgroups
        Defined subgroup names (default :data:`KNOWN_SUBGROUPS`).

    Raises
    ------
    ConfigError
        Listing every problem with its file, line, policy, lever, field and value.

    Examples
    --------
    >>> from veerkracht_bayes.causal.policies import load_policies
    >>> policies = load_policies()  # the shipped policy file, checked against the MARVEL diagram
    >>> [p.id for p in policies.policies][:3]
    ['P01', 'P02', 'P03']
    """
    path = policies_path() if path is None else Path(path)
    doc = load_yaml(path, error_cls=ConfigError)
    label = str(path)
    data = doc.data
    version = data.get("spec_version") if isinstance(data, dict) else None
    if version != POLICY_SPEC_VERSION:
        hint = (" (version 1 files shifted constructs by SD doses; version 2 exposes policy_lever "
                "nodes with a coverage: see docs/do_queries.md)" if version == 1 else "")
        raise ConfigError(Problem(f"unsupported spec_version {version!r} (expected "
                                  f"{POLICY_SPEC_VERSION}){hint}", file=label,
                                  line=doc.line_of(["spec_version"]), field="spec_version",
                                  value=version))
    try:
        ps = PolicySet.model_validate(data)
    except ValidationError as exc:
        probs = []
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _DIST_KEYS))
            cov = _coverage_range_problems(data, loc) if e["type"] == "value_error" else []
            if cov:  # the lever's coverage-range check: locate the offending coverage field
                for fld, value, msg in cov:
                    where = loc + tuple(fld.split("."))
                    probs.append(Problem(f"{_who(data, loc)}{msg} (got {value!r})", file=label,
                                         line=doc.line_of(list(where)), location=format_path(where),
                                         field=fld, value=value))
                continue
            msg = e["msg"].removeprefix("Value error, ")
            probs.append(Problem(f"{_who(data, loc)}{msg} (got {e.get('input')!r})", file=label,
                                 line=doc.line_of(list(loc)), location=format_path(loc),
                                 field=str(loc[-1]) if loc else None, value=e.get("input")))
        raise ConfigError(probs) from None
    probs: list[Problem] = []
    seen: set[str] = set()
    allowed = list(KNOWN_SUBGROUPS if subgroups is None else subgroups)
    g = None if graph is None else load_graph(graph)
    levers_of_graph = [] if g is None else g.nodes_where(role="policy_lever")
    for i, p in enumerate(ps.policies):
        loc = ["policies", i]
        if p.id in seen:
            probs.append(Problem(f"duplicate policy id {p.id!r} (expected unique ids)", file=label,
                                 line=doc.line_of(loc + ["id"]), location=format_path(loc + ["id"]),
                                 field="id", value=p.id))
        seen.add(p.id)
        if p.subgroup is not None and p.subgroup not in allowed:
            probs.append(Problem(f"policy {p.id!r}: unknown subgroup {p.subgroup!r}"
                                 f"{did_you_mean(p.subgroup, allowed)} (expected one of {allowed} or "
                                 "null for the whole population)", file=label,
                                 line=doc.line_of(loc + ["subgroup"]),
                                 location=format_path(loc + ["subgroup"]), field="subgroup",
                                 value=p.subgroup))
        nodes = [lv.node for lv in p.levers]
        for n in sorted({n for n in nodes if nodes.count(n) > 1}):
            probs.append(Problem(f"policy {p.id!r}: lever {n!r} is listed more than once (expected "
                                 "one coverage per lever)", file=label, line=doc.line_of(loc + ["levers"]),
                                 location=format_path(loc + ["levers"]), field="node", value=n))
        if g is None:
            continue
        for j, lv in enumerate(p.levers):
            where = loc + ["levers", j, "node"]
            if not g.has_node(lv.node):
                probs.append(Problem(f"policy {p.id!r}: unknown lever node {lv.node!r}"
                                     f"{did_you_mean(lv.node, levers_of_graph)} (expected a policy_lever "
                                     f"node of graph {g.name!r})", file=label, line=doc.line_of(where),
                                     location=format_path(where), field="node", value=lv.node))
            elif g.node(lv.node).role != "policy_lever":
                probs.append(Problem(f"policy {p.id!r}: lever {lv.node!r} is a {g.node(lv.node).role} "
                                     "node, not a policy lever; a policy exposes people to a programme "
                                     "and must not shift a construct directly (expected a node with role "
                                     f"policy_lever: {levers_of_graph})", file=label,
                                     line=doc.line_of(where), location=format_path(where), field="node",
                                     value=lv.node))
            elif not g.children(lv.node):
                probs.append(Problem(f"policy {p.id!r}: lever {lv.node!r} has no out-links, so it "
                                     "has no effect (expected a lever with links in the graph)",
                                     file=label, line=doc.line_of(where), location=format_path(where),
                                     field="node", value=lv.node))
        for j, o in enumerate(p.outcomes):
            where = loc + ["outcomes", j]
            if not g.has_node(o):
                probs.append(Problem(f"policy {p.id!r}: unknown outcome node {o!r}"
                                     f"{did_you_mean(o, g.nodes)} (expected a node of graph {g.name!r})",
                                     file=label, line=doc.line_of(where), location=format_path(where),
                                     field="outcomes", value=o))
    if probs:
        raise ConfigError(probs)
    return ps


def lever_effect_priors(nodes: Iterable[str], graph: CausalGraph | str = "marvel",
                        priors: Any = None) -> dict[str, list[dict]]:
    """The per-exposure effect priors of each lever: its out-links' priors.

    Parameters
    ----------
    nodes
        Lever nodes.
    graph
        The graph the levers belong to (default MARVEL).
    priors
        A :class:`~veerkracht_bayes.priors.spec.PriorSet` (default: the shipped MARVEL priors;
        with another graph and no priors, the entries carry no prior).

    Returns
    -------
    dict
        ``{node: [{edge, target, sign, prior, mean, sd, source, citations}, ...]}``; ``prior`` is the
        compact label (``N(0.37, 0.12)+``, ``HN(0.2)+``), ``mean``/``sd`` those of the (truncated)
        distribution: the per-exposure effect in SD units of the target (Cohen's d).

    Examples
    --------
    >>> priors = lever_effect_priors(["social_network"])
    >>> list(priors)
    ['social_network']
    """
    g = load_graph(graph) if not isinstance(graph, CausalGraph) else graph
    if priors is None and g.name == "marvel":
        from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path

        priors = load_priors(marvel_priors_path(), graph=g)
    out: dict[str, list[dict]] = {}
    for n in nodes:
        rows = []
        for e in g.edges:
            if e.source != n:
                continue
            row: dict[str, Any] = {"edge": e.key, "target": e.target, "sign": e.sign}
            if priors is not None and e.key in priors.edges:
                ep = priors.edges[e.key]
                d = ep.dist(e.sign)
                row.update(prior=ep.label(), mean=float(d.mean()), sd=float(d.std()), source=ep.source,
                           citations=list(ep.citations))
            rows.append(row)
        out[n] = rows
    return out


def format_policies(ps: PolicySet, as_json: bool = False, graph: CausalGraph | str = "marvel",
                    priors: Any = None) -> str:
    """Text of ``veerkracht-bayes policies [--json]`` (the CLI prints it).

    With ``as_json`` one JSON list, one object per policy with ``id``, ``advice``, ``subgroup``,
    ``target_group`` and ``levers`` (each with ``node``, ``coverage``, ``effect_prior``, ``source``).

    Examples
    --------
    >>> text = format_policies(load_policies())
    >>> "P01" in text
    True
    """
    eff = lever_effect_priors(ps.lever_nodes(), graph, priors)
    if as_json:
        return json.dumps([p.to_json(eff) for p in ps.policies], ensure_ascii=False)
    lines = []
    for p in ps.policies:
        lines.append(f"{p.id}  advice {p.advice:<3} {p.title_en}  [target: {p.subgroup or 'whole population'}]")
        lines.append(f"      target group ({p.target_group.section}): \"{p.target_group.quote}\"")
        for lv in p.levers:
            cite = f" [{lv.citation}]" if lv.citation else ""
            lines.append(f"      - expose {lv.node}: coverage {lv.coverage_label()}{cite}; "
                         f"{lv.coverage_source}")
            for r in eff.get(lv.node, []):
                if "prior" in r:
                    m = r["mean"]
                    lines.append(f"          effect per exposure on {r['target']}: {r['prior']} "
                                 f"(mean {m:+.2f} SD, {r['source']})"
                                 + (f" [{', '.join(r['citations'])}]" if r["citations"] else ""))
    return "\n".join(lines)
