"""Identification checks for the structural model, run before any sampling.

A parameter the data cannot inform is carried entirely by its prior. With informative
(literature) priors that is legitimate and is reported as a *warning*; with vague priors
the posterior would be the vague prior (or an improper ridge for a sampler to wander on),
so it is an *error* that explains what is missing. Three situations are checked:

1. **Cycles without exclusion restrictions** (order condition for simultaneous equations,
   MATH.md §7). For an equation ``k`` inside a strongly connected component ``C`` of the
   graph, the endogenous regressors are the parents of ``k`` inside ``C``. The instruments
   are the data-carrying variables outside ``C`` that enter ``C`` at another node and are
   *excluded* from equation ``k`` (not parents of ``k``). The order condition asks for at
   least as many instruments as endogenous regressors. It is necessary, not sufficient
   (the rank condition can still fail for special parameter values).
2. **A latent construct with a single indicator whose loading and residual variance are
   both free**: one observed variance cannot separate true-score from error variance. The
   MARVEL builder fixes the reliability of single-item constructs (``reliability``), so this
   is reported only when ``single_item_fixed=False`` (generic measurement models).
3. **An unmeasured construct whose links all go to other unmeasured nodes**: no observed
   moment involves it, so its coefficients rest on the priors alone. Likewise the outgoing
   links of absent nodes (unmeasured policy levers and exogenous factors, value 0 in the
   baseline population).

Data-carrying variables are the observed covariates and the measured constructs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import IdentificationError, Problem

__all__ = ["IdentificationProblem", "check_identification", "assert_identified"]

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class IdentificationProblem(Problem):
    """A :class:`~veerkracht_bayes.errors.Problem` with a level.

    Attributes
    ----------
    level
        ``"error"`` (not identified and no informative prior) or ``"warning"`` (identified by
        the prior only).
    kind
        ``"order_condition"``, ``"single_indicator"``, ``"unmeasured_isolated"`` or
        ``"absent_source"``.
    """

    level: Level = "error"
    kind: str = ""


@dataclass(frozen=True)
class _Roles:
    covariates: frozenset[str]
    absent: frozenset[str]
    measured: frozenset[str]
    item_counts: dict[str, int]
    has_data: bool


def _roles(graph: CausalGraph, layout_or_data: object | None) -> _Roles:
    """Read covariates, absent nodes and measured constructs from a layout, data or the graph."""
    obj = layout_or_data
    if obj is not None and hasattr(obj, "unobserved_latent"):  # ModelLayout
        items = tuple(obj.item_construct)
        counts = {c: items.count(c) for c in set(items)}
        return _Roles(frozenset(obj.covariates), frozenset(obj.absent), frozenset(counts), counts,
                      bool(items))
    if obj is not None and hasattr(obj, "item_construct"):  # ModelData
        items = tuple(obj.item_construct)
        counts = {c: items.count(c) for c in set(items)}
        covariates = frozenset(obj.x_names)
    else:  # graph only: latents of its measurement block have items, every other node is observed
        counts = {k: len(v) for k, v in graph.spec.measurement.items()}
        observed = frozenset(n for n in graph.nodes if n not in counts)
        covariates = frozenset(n for n in observed if not graph.parents(n))
        return _Roles(covariates, frozenset(), frozenset(counts) | observed, counts, True)
    measured = frozenset(counts)
    absent = frozenset(n for n in graph.nodes if n not in covariates and n not in measured
                       and not graph.parents(n) and graph.node(n).role in ("policy_lever", "exogenous"))
    return _Roles(covariates, absent, measured | covariates, counts, True)


def _fmt(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(repr(n) for n in names) if names else "none"


def check_identification(graph: CausalGraph, layout_or_data: object | None = None, *, vague: bool,
                         single_item_fixed: bool = True) -> list[IdentificationProblem]:
    """List the parameters the data cannot identify.

    Parameters
    ----------
    graph
        The signed diagram.
    layout_or_data
        A :class:`~veerkracht_bayes.sem.model_builder.ModelLayout`, a
        :class:`~veerkracht_bayes.survey.statistics.ModelData`, or None (graph only: its
        ``measurement`` block if any, otherwise every node is taken as observed and
        parentless exogenous nodes as covariates).
    vague
        True when the edge priors are vague (non-informative): unidentified parameters are
        errors. False (literature priors): they are warnings, carried by the priors.
    single_item_fixed
        True when single-indicator constructs have a fixed reliability (the MARVEL builder);
        False for generic measurement models with a free loading and residual variance.

    Returns
    -------
    list[IdentificationProblem]
        Errors and warnings, each naming the node or edge, the reason and the remedy.
    """
    roles = _roles(graph, layout_or_data)
    level: Level = "error" if vague else "warning"
    tail = ("with vague priors this parameter is not identified" if vague
            else "it is identified by its prior only (prior-dominated)")
    problems: list[IdentificationProblem] = []
    data_nodes = roles.measured | roles.covariates

    # 1. order condition inside every strongly connected component
    g = graph.nx
    for comp in nx.strongly_connected_components(g):
        if len(comp) < 2:
            continue
        entering = {k: {p for p in graph.parents(k) if p not in comp and p in data_nodes} for k in comp}
        for k in sorted(comp):
            endo = [p for p in graph.parents(k) if p in comp]
            instruments = set().union(*(entering[j] for j in comp if j != k)) - set(graph.parents(k))
            if len(instruments) < len(endo):
                keys = [f"{p}->{k}" for p in endo]
                problems.append(IdentificationProblem(
                    f"equation of {k!r} lies in a feedback cycle through {_fmt(comp)}: it has "
                    f"{len(endo)} endogenous regressor(s) ({_fmt(endo)}) but only {len(instruments)} "
                    f"excluded exogenous variable(s) entering the cycle elsewhere ({_fmt(instruments)}); "
                    f"the order condition needs at least {len(endo)}. Links {', '.join(keys)}: {tail}. "
                    "Expected: an observed exogenous variable (covariate or measured upstream construct) "
                    "that enters the cycle at another node but not this equation, or an informative prior.",
                    location=k, field="edges", value=keys, level=level, kind="order_condition"))

    # 2. single indicator with free loading and residual variance
    if not single_item_fixed:
        for c, k in sorted(roles.item_counts.items()):
            if k == 1 and c not in roles.covariates:
                problems.append(IdentificationProblem(
                    f"latent construct {c!r} has a single indicator and a free loading and residual "
                    "variance: one observed variance cannot separate true-score from error variance. "
                    "Expected: at least two indicators, or a fixed reliability / residual variance "
                    "(lavaan: 'item ~~ 0.2*item').",
                    location=c, field="measurement", value=1, level="error", kind="single_indicator"))

    # 3. unmeasured constructs with no measured neighbour; links out of absent nodes
    if roles.has_data:
        for n in graph.nodes:
            if n in data_nodes or n in roles.absent:
                continue
            nbrs = set(graph.parents(n)) | set(graph.children(n))
            if not nbrs & data_nodes:
                keys = [f"{p}->{n}" for p in graph.parents(n)] + [f"{n}->{c}" for c in graph.children(n)]
                problems.append(IdentificationProblem(
                    f"construct {n!r} is not measured and every node it is linked to is unmeasured too "
                    f"({_fmt(nbrs)}): no observed moment involves it, so its links ({', '.join(keys)}) are "
                    f"carried entirely by their priors; {tail}. Expected: an item measuring {n!r} or a "
                    "measured neighbour, or informative priors on these links.",
                    location=n, field="edges", value=keys, level=level, kind="unmeasured_isolated"))
        for n in sorted(roles.absent):
            keys = [f"{n}->{c}" for c in graph.children(n)]
            if keys:
                problems.append(IdentificationProblem(
                    f"node {n!r} is unmeasured and exogenous (value 0 in the baseline population): its "
                    f"links ({', '.join(keys)}) are carried entirely by their priors; {tail}. They matter "
                    "only for do-queries on it. Expected: informative priors on these links, or data on "
                    f"{n!r}.", location=n, field="edges", value=keys, level=level, kind="absent_source"))
    return problems


def assert_identified(graph: CausalGraph, layout_or_data: object | None = None, *, vague: bool,
                      single_item_fixed: bool = True) -> list[IdentificationProblem]:
    """Raise :class:`IdentificationError` for error-level problems; return the warnings.

    Parameters are those of :func:`check_identification`.

    Raises
    ------
    IdentificationError
        Listing every error-level problem with its explanation.
    """
    problems = check_identification(graph, layout_or_data, vague=vague, single_item_fixed=single_item_fixed)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise IdentificationError(errors)
    return problems
