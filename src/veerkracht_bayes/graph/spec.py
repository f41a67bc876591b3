"""The graph specification format: pydantic schema for signed causal diagrams.

A graph file is YAML with top-level keys ``spec_version``, ``name``, ``nodes``,
``edges`` and ``loops`` (and optionally ``measurement``). See ``docs/graph_spec.md``
and the shipped MARVEL diagram ``veerkracht_bayes/data/marvel.yaml`` for an example.

Schema checks (types, enumerations, required fields) are done by pydantic; the
cross-reference checks (unknown nodes, duplicates, self-loops, named loops that
are not directed cycles or have the wrong polarity) by :func:`check_spec`. Both
report located :class:`~veerkracht_bayes.errors.Problem` objects.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veerkracht_bayes.errors import Problem, SpecError, did_you_mean, format_path
from veerkracht_bayes.yaml_io import YamlDocument, load_yaml

__all__ = [
    "SPEC_VERSION",
    "ID_PATTERN",
    "Resource",
    "Role",
    "Sign",
    "DelayClass",
    "StrengthClass",
    "NodeSpec",
    "EdgeSpec",
    "LoopSpec",
    "GraphSpec",
    "check_spec",
    "load_graph_spec",
    "parse_graph_spec",
    "dump_graph_spec",
]

#: The graph file format version this package reads and writes.
SPEC_VERSION = 1

Resource = Literal["individual", "societal", "organisational"]
Role = Literal["construct", "exogenous", "policy_lever"]
Sign = Literal["+", "-"]
DelayClass = Literal["immediate", "short", "medium", "long", "generational"]
StrengthClass = Literal["weak", "average", "strong", "very_strong"]

#: Regular expression every node and loop id matches: a letter, then letters, digits, ``_``, ``.``.
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class NodeSpec(_Strict):
    """A node (factor) of the diagram.

    Examples
    --------
    >>> n = NodeSpec(id="wellbeing", label_en="Wellbeing", label_nl="Welzijn", resource="individual", role="construct")
    >>> n.id, n.role
    ('wellbeing', 'construct')
    """

    id: str = Field(pattern=ID_PATTERN, description="Identifier used everywhere else.")
    label_en: str = Field(description="English label.")
    label_nl: str = Field(description="Dutch label.")
    resource: Resource = Field(description="Resource type: individual, societal or organisational.")
    role: Role = Field(
        description="construct (endogenous factor), exogenous (given from outside) or "
        "policy_lever (a node a policy acts on, usually unmeasured)."
    )
    description: str = Field(default="", description="Short description in our words.")
    source: str = Field(default="", description="Where in the report the node comes from.")
    inferred: bool = Field(
        default=False, description="True when the node is our reading of the report's words (e.g. a "
        "policy lever for a programme component the diagram does not draw), not a factor it names."
    )


class EdgeSpec(_Strict):
    """A signed causal link ``source -> target``.

    Examples
    --------
    >>> e = EdgeSpec(source="social_network", target="wellbeing", sign="+", evidence="text")
    >>> e.key, e.delay
    ('social_network->wellbeing', 'short')
    """

    source: str
    target: str
    sign: Sign = Field(description="'+' (same direction) or '-' (opposite direction).")
    delay: DelayClass = Field(default="short", description="How long the link takes to act.")
    strength: StrengthClass | None = Field(default=None, description="MARVEL strength class.")
    evidence: str = Field(description="Report location supporting the link.")
    inferred: bool = Field(
        default=False, description="True when the link is our reading, not a statement of the report."
    )
    note: str = ""

    @property
    def key(self) -> str:
        """Edge key ``source->target`` used by priors and summaries."""
        return f"{self.source}->{self.target}"


class LoopSpec(_Strict):
    """A named feedback loop: a directed cycle given as its node sequence.

    Examples
    --------
    >>> LoopSpec(id="L1", title="support", nodes=["a", "b"], polarity="R").nodes
    ['a', 'b']
    """

    id: str = Field(pattern=ID_PATTERN)
    title: str
    nodes: list[str] = Field(min_length=2, description="The cycle, first node not repeated at the end.")
    polarity: Literal["R", "B"] = Field(description="R (reinforcing) or B (balancing) as stated.")
    evidence: str = ""
    description: str = ""


class GraphSpec(_Strict):
    """A whole signed causal diagram.

    Examples
    --------
    >>> spec = GraphSpec.model_validate({"spec_version": 1, "name": "ab",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"} for n in "ab"],
    ...     "edges": [{"source": "a", "target": "b", "sign": "+", "evidence": "t"}]})
    >>> len(spec.nodes), spec.edges[0].key
    (2, 'a->b')
    """

    spec_version: int = Field(description=f"Format version; this package reads {SPEC_VERSION}.")
    name: str = "unnamed"
    description: str = ""
    source: str = ""
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)
    loops: list[LoopSpec] = Field(default_factory=list)
    measurement: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Optional lavaan-style measurement part: latent node -> indicator names.",
    )


def _signs_product(signs: list[str]) -> str:
    return "R" if sum(s == "-" for s in signs) % 2 == 0 else "B"


def check_spec(spec: GraphSpec) -> list[tuple[tuple[str | int, ...], str, str, object]]:
    """Cross-reference checks on a schema-valid spec.

    Returns
    -------
    list of (location, field, message, value)
        Empty when the spec is consistent.

    Examples
    --------
    >>> spec = GraphSpec.model_validate({"spec_version": 1, "name": "ab",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"} for n in "ab"],
    ...     "edges": [{"source": "a", "target": "c", "sign": "+", "evidence": "t"}]})
    >>> [(loc, value) for loc, _, _, value in check_spec(spec)]
    [(('edges', 0, 'target'), 'c')]
    """
    out: list[tuple[tuple[str | int, ...], str, str, object]] = []
    if spec.spec_version != SPEC_VERSION:
        out.append(
            (("spec_version",), "spec_version",
             f"unsupported spec_version {spec.spec_version!r} (expected {SPEC_VERSION})",
             spec.spec_version)
        )
    ids = [n.id for n in spec.nodes]
    counts = Counter(ids)
    seen: set[str] = set()
    for i, n in enumerate(spec.nodes):
        if counts[n.id] > 1 and n.id in seen:
            out.append(((("nodes", i, "id")), "id",
                        f"duplicate node id {n.id!r} (expected each node id once)", n.id))
        seen.add(n.id)
    idset = set(ids)
    edge_seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(spec.edges):
        for fld in ("source", "target"):
            v = getattr(e, fld)
            if v not in idset:
                out.append((("edges", i, fld), fld,
                            f"edge {fld} {v!r} is not a node of the graph (expected one of the "
                            f"{len(idset)} node ids){did_you_mean(v, idset)}", v))
        if e.source == e.target:
            out.append((("edges", i, "target"), "target",
                        f"self-loop: source and target are both {e.target!r} (expected an edge "
                        "between two different nodes)", e.target))
        pair = (e.source, e.target)
        if pair in edge_seen:
            out.append((("edges", i), "source/target",
                        f"duplicate edge: source {e.source!r}, target {e.target!r} is already given as "
                        f"edges[{edge_seen[pair]}] (expected each source->target pair once)",
                        f"{e.source}->{e.target}"))
        else:
            edge_seen[pair] = i
    for node in spec.measurement:
        if node not in idset:
            out.append((("measurement", node), "measurement",
                        f"measured latent {node!r} is not a node{did_you_mean(node, idset)}", node))
    signs = {(e.source, e.target): e.sign for e in spec.edges}
    loop_ids = Counter(lp.id for lp in spec.loops)
    for i, lp in enumerate(spec.loops):
        if loop_ids[lp.id] > 1:
            out.append((("loops", i, "id"), "id", f"duplicate loop id {lp.id!r}", lp.id))
        bad = False
        for j, v in enumerate(lp.nodes):
            if v not in idset:
                bad = True
                out.append((("loops", i, "nodes", j), "nodes",
                            f"loop {lp.id!r} names unknown node {v!r}{did_you_mean(v, idset)}", v))
        if bad:
            continue
        if len(set(lp.nodes)) != len(lp.nodes):
            out.append((("loops", i, "nodes"), "nodes",
                        f"loop {lp.id!r} repeats a node (expected a simple cycle; do not repeat "
                        "the first node at the end)", lp.nodes))
            continue
        cyc = lp.nodes + [lp.nodes[0]]
        missing = [f"{a}->{b}" for a, b in zip(cyc[:-1], cyc[1:]) if (a, b) not in signs]
        if missing:
            out.append((("loops", i, "nodes"), "nodes",
                        f"loop {lp.id!r} is not a directed cycle of the graph: missing edge(s) "
                        f"{', '.join(missing)} (expected an edge from each node to the next and "
                        "from the last back to the first)", " -> ".join(lp.nodes)))
            continue
        pol = _signs_product([signs[(a, b)] for a, b in zip(cyc[:-1], cyc[1:])])
        if pol != lp.polarity:
            n_neg = sum(signs[(a, b)] == "-" for a, b in zip(cyc[:-1], cyc[1:]))
            out.append((("loops", i, "polarity"), "polarity",
                        f"loop {lp.id!r} is stated {lp.polarity!r} but its edge signs give {pol!r} "
                        f"({n_neg} negative link(s); expected R for an even number, B for odd)",
                        lp.polarity))
    return out


def _pydantic_problems(exc: ValidationError, doc: YamlDocument) -> list[Problem]:
    probs = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = next((str(p) for p in reversed(loc) if isinstance(p, str)), None)
        value = err.get("input")
        kind = err["type"]
        msg = err["msg"]
        parent = format_path(loc[:-1]) if len(loc) > 1 else "the top level"
        if kind == "missing":
            text = f"missing required field {field!r} (expected a {field!r} entry in {parent})"
        elif kind == "extra_forbidden":
            allowed = _allowed_fields(loc)
            text = (f"unknown field {field!r} (not part of the graph spec; expected one of "
                    f"{', '.join(allowed)}){did_you_mean(str(field), allowed)}")
        else:
            shown = value if not isinstance(value, (dict, list)) else type(value).__name__
            text = f"field {field!r} has value {shown!r}: {msg}"
            if kind == "literal_error":
                choices = err.get("ctx", {}).get("expected", "")
                text = f"field {field!r} has value {shown!r}; expected {choices}"
                if isinstance(value, str):
                    opts = [c.strip().strip("'") for c in choices.replace(" or ", ",").split(",")]
                    text += did_you_mean(value, opts)
                    if field == "sign" and value in ("\u2212", "\u2013", "\u2014"):
                        text += " (that is a typographic dash; type the ASCII minus '-')"
        probs.append(
            Problem(text, file=doc.path, line=doc.line_of(loc), location=format_path(loc),
                    field=field, value=value)
        )
    return probs


def _allowed_fields(loc: tuple) -> list[str]:
    models = {"nodes": NodeSpec, "edges": EdgeSpec, "loops": LoopSpec}
    model = models.get(loc[0], GraphSpec) if len(loc) > 2 and isinstance(loc[1], int) else GraphSpec
    return list(model.model_fields)


def parse_graph_spec(doc: YamlDocument) -> GraphSpec:
    """Validate a loaded YAML document as a :class:`GraphSpec`.

    Raises
    ------
    SpecError
        Listing every problem, each with file, line, YAML path, field and value.

    Examples
    --------
    >>> from veerkracht_bayes.yaml_io import load_yaml
    >>> doc = load_yaml(text="{spec_version: 1, name: one, nodes: [{id: a, label_en: a, label_nl: a, resource: individual, role: construct}], edges: []}")
    >>> parse_graph_spec(doc).name
    'one'
    """
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError(Problem(f"expected a YAML mapping with keys spec_version, nodes, edges, loops; "
                                f"got {type(data).__name__}", file=doc.path, line=1))
    if "spec_version" in data and data["spec_version"] != SPEC_VERSION:
        raise SpecError(Problem(f"unsupported spec_version {data['spec_version']!r} "
                                f"(expected {SPEC_VERSION})", file=doc.path,
                                line=doc.line_of(("spec_version",)), location="spec_version",
                                field="spec_version", value=data["spec_version"]))
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_pydantic_problems(exc, doc)) from None
    problems = [
        Problem(msg, file=doc.path, line=doc.line_of(loc), location=format_path(loc), field=fld,
                value=val)
        for loc, fld, msg, val in check_spec(spec)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def load_graph_spec(path: str | Path) -> GraphSpec:
    """Read and validate a graph YAML file.

    Parameters
    ----------
    path
        Path to a YAML graph file.

    Returns
    -------
    GraphSpec
        The validated specification.

    Raises
    ------
    SpecError
        For unreadable, malformed or inconsistent files; the message names the file,
        line, YAML path, field, offending value and what was expected.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import marvel_path
    >>> load_graph_spec(marvel_path()).name
    'marvel'
    """
    return parse_graph_spec(load_yaml(path, error_cls=SpecError))


def dump_graph_spec(spec: GraphSpec) -> str:
    """Serialise a spec to YAML text that :func:`load_graph_spec` reads back identically.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import marvel_path
    >>> text = dump_graph_spec(load_graph_spec(marvel_path()))
    >>> "spec_version: 1" in text
    True
    """
    import yaml

    data = spec.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
