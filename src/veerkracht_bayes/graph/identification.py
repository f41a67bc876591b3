"""Identification of the structural model: one report per link, consistent with the model built.

Every link of the diagram gets exactly one **status** (:func:`identification_report`):

``likelihood``
    The coefficient enters the likelihood of the model that
    :func:`~veerkracht_bayes.sem.model_builder.build_model` builds (both ends are measured
    constructs or a covariate and a measured construct; in a ``joint`` fit every link between
    non-absent nodes), and the order condition below holds for its equation.
``cut``
    The coefficient is not in the likelihood: it touches a construct without survey items (the
    engine's default *cut* posterior keeps such links on their priors) or its source is an
    *absent* node (a policy lever or unmeasured exogenous factor, value 0 in the baseline
    population). Its posterior is its prior (stability-truncated). Without survey data every link
    is ``cut``.
``order condition fails``
    The coefficient enters the likelihood, but its equation lies in a feedback cycle of the
    likelihood system without enough exclusion restrictions (order condition for simultaneous
    equations, docs/math.md). For an equation ``k`` inside a strongly connected component ``C`` of
    the *likelihood* graph, the endogenous regressors are the parents of ``k`` inside ``C``; the
    instruments are the data-carrying variables (covariates, measured constructs) outside ``C``
    that enter ``C`` at another node through a likelihood link and are *excluded* from equation
    ``k``. The order condition asks for at least as many instruments as endogenous regressors.
    It is necessary, not sufficient: such a link is identified (if at all) only through the
    prior and the disturbance restrictions, and is reported as prior-dependent.

The node and link classes (covariates, absent nodes, latent constructs, the likelihood system,
``edge_kind``) are computed **once**, here, by :func:`model_classes`; ``build_model`` uses the
same function, so this report cannot disagree with the model that is fitted. It is stored on the
layout (``ModelLayout.identification``), written to ``diagnostics.json`` (section
``identification``) and its :meth:`IdentificationReport.findings` are sentences for the brief's
assumptions section.

:func:`check_identification` turns the report into located problems: ``error`` level with vague
priors (the posterior would be the vague prior), ``warning`` level with informative priors.
Single-indicator constructs with a free loading and residual variance are also checked (generic
measurement models; the MARVEL builder fixes their reliability). Without data (``None``) the
check is *hypothetical*: every node of the graph (or of its ``measurement`` block) is taken as
observed, parentless exogenous nodes as covariates, and only the order condition is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import IdentificationError, ModelError, Problem

__all__ = ["CUT", "LIKELIHOOD", "ORDER_FAILS", "IdentificationProblem", "IdentificationReport",
           "LinkStatus", "ModelClasses", "assert_identified", "check_identification",
           "identification_findings", "identification_report", "model_classes"]

Level = Literal["error", "warning"]

LIKELIHOOD = "likelihood"
CUT = "cut"
ORDER_FAILS = "order condition fails"


@dataclass(frozen=True)
class IdentificationProblem(Problem):
    """A :class:`~veerkracht_bayes.errors.Problem` with a level.

    Attributes
    ----------
    level
        ``"error"`` (not identified and no informative prior) or ``"warning"`` (identified by
        the prior only).
    kind
        ``"order_condition"``, ``"single_indicator"``, ``"unmeasured_construct"`` (links cut
        because a construct has no items), ``"absent_source"`` or, in a joint fit,
        ``"unmeasured_isolated"``.

    Examples
    --------
    >>> p = IdentificationProblem("link a -> b is not identified by the data", field="a -> b", level="warning")
    >>> p.level
    'warning'
    """

    level: Level = "error"
    kind: str = ""


# ----------------------------------------------------------------------------- classes
@dataclass(frozen=True)
class ModelClasses:
    """How the model builder sorts nodes and links (the single source of truth).

    Attributes
    ----------
    latent
        Latent constructs (every node that is neither a covariate nor absent), graph order.
    covariates
        Observed exogenous nodes (the data's covariate columns).
    absent
        Unmeasured parentless policy levers / exogenous factors (value 0 at baseline).
    measured
        Constructs with at least one survey item.
    lik_latent
        Latent constructs of the likelihood system (measured ones in cut mode; all in joint mode).
    edge_kind
        Per link: ``latent`` (between two likelihood constructs), ``covariate`` (covariate into a
        likelihood construct), ``absent`` (from an absent node) or ``prior_only``.
    unmeasured
        ``"cut"`` or ``"joint"``.
    has_items
        Whether any survey item enters the model (False: no likelihood at all).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> mc = model_classes(load_graph("marvel"), measured=["wellbeing", "social_network"])
    >>> isinstance(mc, ModelClasses), sorted(set(mc.edge_kind.values()))
    (True, ['absent', 'latent', 'prior_only'])
    """

    latent: tuple[str, ...]
    covariates: tuple[str, ...]
    absent: tuple[str, ...]
    measured: tuple[str, ...]
    lik_latent: tuple[str, ...]
    edge_kind: dict[str, str]
    unmeasured: str = "cut"
    has_items: bool = True

    @property
    def unobserved_latent(self) -> tuple[str, ...]:
        """Latent constructs without items."""
        return tuple(n for n in self.latent if n not in set(self.measured))

    def in_likelihood(self, key: str) -> bool:
        """Whether link ``key`` enters the likelihood of the built model."""
        return self.has_items and self.edge_kind[key] in ("latent", "covariate")


def model_classes(graph: CausalGraph, measured: Iterable[str], covariates: Sequence[str] = (), *,
                  unmeasured: str = "cut") -> ModelClasses:
    """Sort nodes and links as :func:`~veerkracht_bayes.sem.model_builder.build_model` does.

    Parameters
    ----------
    graph
        The diagram.
    measured
        Constructs with survey items (in item order; duplicates allowed).
    covariates
        Observed covariate nodes (no parents).
    unmeasured
        ``"cut"`` (links touching a construct without items stay on their priors) or ``"joint"``.

    Raises
    ------
    ModelError
        A covariate has parents, or a link points into a non-latent node.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> mc = model_classes(g, measured=["wellbeing", "stress", "social_network"])
    >>> mc.lik_latent
    ('stress', 'wellbeing', 'social_network')
    """
    if unmeasured not in ("cut", "joint"):
        raise ModelError(f"unmeasured must be 'cut' or 'joint', got {unmeasured!r}")
    covariates = list(covariates)
    for c in covariates:
        if graph.parents(c):
            raise ModelError(Problem(
                f"node {c!r} is used as an observed covariate but has parents "
                f"{graph.parents(c)} (expected an exogenous node without incoming links)", field=c))
    measured_l = list(dict.fromkeys(measured))
    mset = set(measured_l)
    absent, latent = [], []
    for n in graph.nodes:
        if n in covariates:
            continue
        if n not in mset and not graph.parents(n) and graph.node(n).role in ("policy_lever", "exogenous"):
            absent.append(n)
        else:
            latent.append(n)
    lik_latent = [n for n in latent if unmeasured == "joint" or n in mset]
    li, lli, ci = set(latent), set(lik_latent), set(covariates)
    edge_kind: dict[str, str] = {}
    for e in graph.edges:
        if e.target not in li:
            raise ModelError(f"edge {e.key} points into {e.target!r}, which is not a latent node")
        if e.source in ci:
            kind = "covariate" if e.target in lli else "prior_only"
        elif e.source in absent:
            kind = "absent"
        else:
            kind = "latent" if (e.source in lli and e.target in lli) else "prior_only"
        edge_kind[e.key] = kind
    return ModelClasses(tuple(latent), tuple(covariates), tuple(absent), tuple(measured_l),
                        tuple(lik_latent), edge_kind, unmeasured, bool(measured_l))


def _classes_of(graph: CausalGraph, obj: Any, unmeasured: str | None) -> ModelClasses:
    """Classes from a ModelLayout (as built), a ModelData (as it would be built) or a ModelClasses."""
    if isinstance(obj, ModelClasses):
        return obj
    if hasattr(obj, "unobserved_latent") and hasattr(obj, "edge_kind"):  # ModelLayout: as built
        return ModelClasses(tuple(obj.latent), tuple(obj.covariates), tuple(obj.absent),
                            tuple(dict.fromkeys(obj.item_construct)),
                            tuple(obj.lik_latent or ()), dict(obj.edge_kind),
                            str(getattr(obj, "unmeasured", "cut")), bool(obj.items))
    if hasattr(obj, "item_construct"):  # ModelData (continuous or ordinal)
        cons = tuple(obj.item_construct) + tuple(getattr(obj, "cont_construct", ()) or ())
        return model_classes(graph, cons, tuple(obj.x_names), unmeasured=unmeasured or "cut")
    raise ModelError(f"expected a ModelLayout, ModelData or ModelClasses, got {type(obj).__name__}")


# ----------------------------------------------------------------------------- order condition
@dataclass(frozen=True)
class _OrderFailure:
    equation: str
    component: frozenset[str]
    endogenous: tuple[str, ...]
    instruments: frozenset[str]


def _order_failures(graph: CausalGraph, lik_edges: Iterable[str], data_nodes: frozenset[str]
                    ) -> list[_OrderFailure]:
    """Equations of the likelihood graph that fail the order condition."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    edges = {k for k in lik_edges}
    by_key = {e.key: e for e in graph.edges}
    for k in edges:
        g.add_edge(by_key[k].source, by_key[k].target)
    out = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) < 2:
            continue
        parents = {k: set(g.predecessors(k)) for k in comp}
        entering = {k: {p for p in parents[k] if p not in comp and p in data_nodes} for k in comp}
        for k in sorted(comp):
            endo = tuple(sorted(p for p in parents[k] if p in comp))
            instruments = set().union(*(entering[j] for j in comp if j != k)) - parents[k]
            if len(instruments) < len(endo):
                out.append(_OrderFailure(k, frozenset(comp), endo, frozenset(instruments)))
    return out


def _fmt(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(repr(n) for n in names) if names else "none"


# ----------------------------------------------------------------------------- report
@dataclass(frozen=True)
class LinkStatus:
    """Identification status of one link.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> rep = identification_report(g, model_classes(g, measured=["wellbeing", "social_network"]))
    >>> isinstance(rep.links[0], LinkStatus), rep.links[0].link == g.edges[0].key
    (True, True)
    """

    link: str
    source: str
    target: str
    status: str  # likelihood | cut | order condition fails
    kind: str  # the builder's edge_kind
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready record."""
        return {"link": self.link, "source": self.source, "target": self.target,
                "status": self.status, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class IdentificationReport:
    """Per-link identification status of a built (or to-be-built) model.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> rep = identification_report(g, model_classes(g, measured=["wellbeing", "social_network"]))
    >>> isinstance(rep, IdentificationReport), len(rep.links) == len(g.edges)
    (True, True)
    """

    links: tuple[LinkStatus, ...]
    classes: ModelClasses
    order_failures: tuple[_OrderFailure, ...] = field(default=(), repr=False)

    @property
    def status(self) -> dict[str, str]:
        """``link -> status``."""
        return {s.link: s.status for s in self.links}

    def links_with(self, status: str) -> list[str]:
        """Links with one status, in graph order."""
        return [s.link for s in self.links if s.status == status]

    @property
    def in_likelihood(self) -> list[str]:
        """Links whose coefficient enters the likelihood (``likelihood`` and ``order condition fails``)."""
        return [s.link for s in self.links if s.status != CUT]

    def counts(self) -> dict[str, int]:
        """Number of links per status."""
        return {st: len(self.links_with(st)) for st in (LIKELIHOOD, CUT, ORDER_FAILS)}

    def findings(self) -> list[str]:
        """Plain sentences for the brief's assumptions section (see :func:`identification_findings`)."""
        return identification_findings(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``links`` (per-link status), ``counts``, ``findings`` and the node classes."""
        c = self.classes
        return {"unmeasured": c.unmeasured, "counts": self.counts(),
                "links": [s.to_dict() for s in self.links], "findings": self.findings(),
                "constructs_without_items": list(c.unobserved_latent), "absent_nodes": list(c.absent),
                "covariates": list(c.covariates)}


def identification_report(graph: CausalGraph, layout_or_data: Any, *, unmeasured: str | None = None
                          ) -> IdentificationReport:
    """One identification status per link, from the classes the model builder uses.

    Parameters
    ----------
    graph
        The diagram.
    layout_or_data
        A :class:`~veerkracht_bayes.sem.model_builder.ModelLayout` (the model as built), a
        :class:`~veerkracht_bayes.survey.statistics.ModelData` (the model as ``build_model``
        would build it), a :class:`ModelClasses`, or None (no data: every link is ``cut``).
    unmeasured
        ``"cut"`` (default) or ``"joint"``; ignored for a layout (its own mode is used).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> rep = identification_report(g, model_classes(g, measured=["wellbeing", "social_network"]))
    >>> sorted({s.status for s in rep.links})
    ['cut', 'likelihood']
    """
    if layout_or_data is None:
        cls = model_classes(graph, (), (), unmeasured=unmeasured or "cut")
    else:
        cls = _classes_of(graph, layout_or_data, unmeasured)
    lik = [k for k in graph.edge_keys if cls.in_likelihood(k)]
    data_nodes = frozenset(cls.measured) | frozenset(cls.covariates)
    failures = _order_failures(graph, lik, data_nodes) if lik else []
    fail_of = {f.equation: f for f in failures}
    unobs = set(cls.unobserved_latent)
    links = []
    for e in graph.edges:
        kind = cls.edge_kind[e.key]
        if not cls.has_items:
            status, reason = CUT, "no survey data: prior only"
        elif not cls.in_likelihood(e.key):
            status = CUT
            if kind == "absent":
                reason = f"source {e.source!r} is an absent node (no data, value 0 at baseline): prior only"
            else:
                unm = [n for n in (e.source, e.target) if n in unobs]
                reason = (f"construct {unm[0]!r} has no survey items: prior only (cut posterior)" if unm
                          else "not in the likelihood system: prior only (cut posterior)")
        elif e.target in fail_of and e.source in fail_of[e.target].component:
            f = fail_of[e.target]
            status = ORDER_FAILS
            reason = (f"in the likelihood, but equation {e.target!r} lies in a feedback cycle through "
                      f"{_fmt(f.component)} with {len(f.endogenous)} endogenous regressor(s) and "
                      f"{len(f.instruments)} excluded instrument(s) ({_fmt(f.instruments)}): "
                      "order condition fails")
        else:
            status = LIKELIHOOD
            reason = "in the likelihood" + (" (covariate link)" if kind == "covariate" else "")
            if cls.unmeasured == "joint" and unobs & {e.source, e.target}:
                reason += "; touches a construct without items (informed only through the standardisation)"
        links.append(LinkStatus(e.key, e.source, e.target, status, kind, reason))
    return IdentificationReport(tuple(links), cls, tuple(failures))


def _short_list(keys: Sequence[str], n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def identification_findings(report: IdentificationReport) -> list[str]:
    """Human-readable findings of an identification report (for the brief and diagnostics).

    Returns
    -------
    list[str]
        One sentence on the links in the likelihood, one on the cut (prior-only) links and the
        constructs without items, and one per equation that fails the order condition.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> g = load_graph("marvel")
    >>> findings = identification_findings(identification_report(g, model_classes(g, measured=["wellbeing"])))
    >>> isinstance(findings, list) and all(isinstance(f, str) for f in findings)
    True
    """
    c = report.counts()
    total = len(report.links)
    cls = report.classes
    out = []
    if not cls.has_items:
        return [f"No survey data: all {total} links rest on their priors alone."]
    out.append(f"{c[LIKELIHOOD] + c[ORDER_FAILS]} of {total} links enter the likelihood (are informed by "
               f"the survey); {c[CUT]} are cut and rest on their priors alone.")
    if cls.unobserved_latent:
        out.append(f"{len(cls.unobserved_latent)} constructs have no survey items, so every link touching "
                   f"them is prior only: {', '.join(cls.unobserved_latent)}.")
    absent_links = [s.link for s in report.links if s.kind == "absent"]
    if absent_links:
        out.append(f"The {len(absent_links)} links out of absent nodes (policy levers and unmeasured "
                   f"exogenous factors: {', '.join(cls.absent)}) are prior only; they matter only for "
                   "do-queries on those nodes.")
    for f in report.order_failures:
        keys = [f"{p}->{f.equation}" for p in f.endogenous]
        out.append(f"{'Links' if len(keys) > 1 else 'Link'} {', '.join(keys)} "
                   f"{'enter' if len(keys) > 1 else 'enters'} the likelihood, but the equation of {f.equation!r} lies "
                   f"in a feedback cycle with {len(f.endogenous)} endogenous regressor(s) and only "
                   f"{len(f.instruments)} excluded instrument(s): the order condition fails, so these "
                   "estimates lean on their priors.")
    return out


# ----------------------------------------------------------------------------- problems
def _hypothetical_classes(graph: CausalGraph) -> tuple[frozenset[str], dict[str, int]]:
    counts = {k: len(v) for k, v in graph.spec.measurement.items()}
    observed = frozenset(n for n in graph.nodes if n not in counts)
    return frozenset(counts) | observed, counts


def check_identification(graph: CausalGraph, layout_or_data: object | None = None, *, vague: bool,
                         single_item_fixed: bool = True, unmeasured: str | None = None
                         ) -> list[IdentificationProblem]:
    """List the parameters the data cannot identify, consistent with :func:`identification_report`.

    Parameters
    ----------
    graph
        The signed diagram.
    layout_or_data
        A :class:`~veerkracht_bayes.sem.model_builder.ModelLayout`, a
        :class:`~veerkracht_bayes.survey.statistics.ModelData`, or None (hypothetical check on the
        graph alone: its ``measurement`` block if any, otherwise every node is taken as observed;
        only the order condition and single indicators are checked).
    vague
        True when the edge priors are vague (non-informative): unidentified parameters are
        errors. False (literature priors): they are warnings, carried by the priors.
    single_item_fixed
        True when single-indicator constructs have a fixed reliability (the MARVEL builder);
        False for generic measurement models with a free loading and residual variance.
    unmeasured
        ``"cut"`` (default) or ``"joint"`` for data; ignored for a layout.

    Returns
    -------
    list[IdentificationProblem]
        Errors and warnings, each naming the node or links, the reason and the remedy.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> problems = check_identification(load_graph("marvel"), None, vague=False)
    >>> all(isinstance(p, IdentificationProblem) for p in problems)
    True
    """
    level: Level = "error" if vague else "warning"
    tail = ("with vague priors this parameter is not identified" if vague
            else "it is identified by its prior only (prior-dominated)")
    problems: list[IdentificationProblem] = []
    if layout_or_data is None:
        data_nodes, item_counts = _hypothetical_classes(graph)
        failures = _order_failures(graph, graph.edge_keys, data_nodes)
        report = None
    else:
        report = identification_report(graph, layout_or_data, unmeasured=unmeasured)
        failures = list(report.order_failures)
        cons = getattr(layout_or_data, "item_construct", None)
        cons = tuple(cons) if cons is not None else report.classes.measured
        item_counts = {c: cons.count(c) for c in set(cons)}

    for f in failures:
        keys = [f"{p}->{f.equation}" for p in f.endogenous]
        problems.append(IdentificationProblem(
            f"equation of {f.equation!r} lies in a feedback cycle through {_fmt(f.component)}: it has "
            f"{len(f.endogenous)} endogenous regressor(s) ({_fmt(f.endogenous)}) but only "
            f"{len(f.instruments)} excluded exogenous variable(s) entering the cycle elsewhere "
            f"({_fmt(f.instruments)}); the order condition needs at least {len(f.endogenous)}. Links "
            f"{', '.join(keys)}: {tail}. Expected: an observed exogenous variable (covariate or measured "
            "upstream construct) that enters the cycle at another node but not this equation, or an "
            "informative prior.",
            location=f.equation, field="edges", value=keys, level=level, kind="order_condition"))

    if not single_item_fixed:
        covs = set(report.classes.covariates) if report is not None else set()
        for c, k in sorted(item_counts.items()):
            if k == 1 and c not in covs:
                problems.append(IdentificationProblem(
                    f"latent construct {c!r} has a single indicator and a free loading and residual "
                    "variance: one observed variance cannot separate true-score from error variance. "
                    "Expected: at least two indicators, or a fixed reliability / residual variance "
                    "(lavaan: 'item ~~ 0.2*item').",
                    location=c, field="measurement", value=1, level="error", kind="single_indicator"))

    if report is None or not report.classes.has_items:
        return problems
    cls = report.classes
    by_link = {s.link: s for s in report.links}
    if cls.unmeasured == "cut":
        for n in cls.unobserved_latent:
            keys = [k for k in graph.edge_keys if by_link[k].status == CUT and by_link[k].kind != "absent"
                    and n in (by_link[k].source, by_link[k].target)]
            if keys:
                problems.append(IdentificationProblem(
                    f"construct {n!r} has no survey items: its links ({', '.join(keys)}) are not in the "
                    f"likelihood (cut posterior) and are carried entirely by their priors; {tail}. "
                    f"Expected: an item measuring {n!r}, or informative priors on these links.",
                    location=n, field="edges", value=keys, level=level, kind="unmeasured_construct"))
    else:
        data_nodes = set(cls.measured) | set(cls.covariates)
        for n in cls.unobserved_latent:
            nbrs = set(graph.parents(n)) | set(graph.children(n))
            if not nbrs & data_nodes:
                keys = [f"{p}->{n}" for p in graph.parents(n)] + [f"{n}->{c}" for c in graph.children(n)]
                problems.append(IdentificationProblem(
                    f"construct {n!r} is not measured and every node it is linked to is unmeasured too "
                    f"({_fmt(nbrs)}): no observed moment involves it, so its links ({', '.join(keys)}) are "
                    f"carried entirely by their priors; {tail}. Expected: an item measuring {n!r} or a "
                    "measured neighbour, or informative priors on these links.",
                    location=n, field="edges", value=keys, level=level, kind="unmeasured_isolated"))
    for n in cls.absent:
        keys = [f"{n}->{c}" for c in graph.children(n)]
        if keys:
            problems.append(IdentificationProblem(
                f"node {n!r} is unmeasured and exogenous (value 0 in the baseline population): its "
                f"links ({', '.join(keys)}) are carried entirely by their priors; {tail}. They matter "
                "only for do-queries on it. Expected: informative priors on these links, or data on "
                f"{n!r}.", location=n, field="edges", value=keys, level=level, kind="absent_source"))
    return problems


def assert_identified(graph: CausalGraph, layout_or_data: object | None = None, *, vague: bool,
                      single_item_fixed: bool = True, unmeasured: str | None = None
                      ) -> list[IdentificationProblem]:
    """Raise :class:`IdentificationError` for error-level problems; return the warnings.

    Parameters are those of :func:`check_identification`.

    Raises
    ------
    IdentificationError
        Listing every error-level problem with its explanation.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> warnings = assert_identified(load_graph("marvel"), None, vague=False)  # informative priors: no error
    >>> all(p.level == "warning" for p in warnings)
    True
    """
    problems = check_identification(graph, layout_or_data, vague=vague, single_item_fixed=single_item_fixed,
                                    unmeasured=unmeasured)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise IdentificationError(errors)
    return problems
