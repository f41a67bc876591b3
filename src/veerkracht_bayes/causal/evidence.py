"""What each policy effect rests on: assumptions, literature priors or data.

Edge evidence classes
---------------------
Every link of the model has one class (:func:`edge_evidence`):

* ``data`` — the link is in the likelihood of a fit with data and the engine's diagnostics do not
  class it prior-dominated: data-informed;
* ``literature`` — a literature prior (``source: literature`` in the priors file) that the data do
  not inform (outside the likelihood / cut / prior-only fit / prior-dominated);
* ``assumption`` — a documented default prior (``source: default``) not informed by data.

A prior-only fit has no ``data`` link.

Decomposition of one effect (elasticities)
------------------------------------------
For an effect ``E = w' (I - B_do)^-1 u`` (outcome weights ``w``, injection ``u``; for a policy lever
``u = coverage x e_lever``) the derivative with respect to one coefficient is exact for this linear
system: ``dE/dB_ij = a_i t_j`` with ``a = (I - B_do)^-T w`` and ``t = (I - B_do)^-1 u``. The
*elasticity* (log-derivative) of link ``j -> i`` is ``eps_ij = B_ij a_i t_j / E``: the percentage
change of the effect per percent change of the link. The injection enters linearly:
``E = sum_j a_j u_j``, so the elasticity of the dose at node ``j`` is ``a_j u_j / E`` (1 for a
single dose: a coverage has elasticity 1). Per draw,

    share_k = sum_{inputs in class k} |eps| / sum_{all inputs} |eps|,

with doses (and the values a set or mechanism change imposes) counted as ``assumption``. The
shares are averaged over the usable draws (solvable, stable) where ``E != 0``. The label
(``evidence``) is ``data`` only when ``share_data > 0.5`` (the data carry most of the effect);
otherwise the larger of ``assumption`` and ``literature``; ``no path`` when no node the policy
acts on has a directed path to the outcome.

Known answer: a chain ``lever -> a -> b`` has elasticity 1 for the coverage and for each link, so
with classes (default, data) the effect on ``b`` is 2/3 assumption and 1/3 data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from veerkracht_bayes.causal.do import DoResult, Outcome, structure_groups
from veerkracht_bayes.errors import PriorError
from veerkracht_bayes.sem import algebra

__all__ = ["EVIDENCE_CLASSES", "edge_evidence", "edge_evidence_from_draws", "evidence_shares",
           "evidence_label", "adjoint_weights", "link_derivatives"]

#: The evidence classes, in the order of the share columns.
EVIDENCE_CLASSES = ("assumption", "literature", "data")
_IN_LIKELIHOOD = ("latent", "covariate")


def edge_evidence(graph: Any, priors: Any | None = None, *, fit: Any | None = None,
                  edge_class: Mapping[str, str] | None = None) -> dict[str, str]:
    """One evidence class per link: ``data``, ``literature`` or ``assumption``.

    Parameters
    ----------
    graph
        The diagram (``edge_keys``, ``edges`` with ``source``/``target``) or a sequence of edge keys.
    priors
        The :class:`~veerkracht_bayes.priors.spec.PriorSet` of the fit (each edge's ``source``:
        ``literature`` or ``default``); ``None``: the sign-constrained defaults (all ``default``).
    fit
        The fit result (``layout.edge_kind``, ``layout.unobserved_latent``, ``prior_only``). A link
        is data-informed only when it is in the likelihood (edge kind ``latent`` or
        ``covariate``), touches no unmeasured construct, and the fit used data. ``None``: only the
        ``edge_class`` decides.
    edge_class
        The diagnostics' ``edge -> "data-informed" | "prior-dominated"``; a link it classes
        prior-dominated is never ``data`` (even when in the likelihood).

    Returns
    -------
    dict
        ``edge key -> class``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> ev = edge_evidence(load_graph("marvel"))
    >>> sorted(set(ev.values()))
    ['assumption']
    """
    keys = list(getattr(graph, "edge_keys", graph))
    layout = getattr(fit, "layout", None)
    prior_only = bool(getattr(fit, "prior_only", False))
    unobserved = set(getattr(layout, "unobserved_latent", ()) or ())
    out: dict[str, str] = {}
    for k in keys:
        src, _, tgt = k.partition("->")
        if fit is not None:
            kind = (getattr(layout, "edge_kind", {}) or {}).get(k)
            is_data = (not prior_only and kind in _IN_LIKELIHOOD
                       and src not in unobserved and tgt not in unobserved
                       and (edge_class is None or edge_class.get(k) == "data-informed"))
        else:
            is_data = edge_class is not None and edge_class.get(k) == "data-informed"
        if is_data:
            out[k] = "data"
            continue
        source = "default"
        if priors is not None:
            try:
                source = str(getattr(priors.for_edge(k), "source", "default"))
            except (PriorError, KeyError):  # an edge without a prior entry uses the default
                source = "default"
        out[k] = "literature" if source == "literature" else "assumption"
    return out


def edge_evidence_from_draws(result: DoResult) -> dict[str, str]:
    """Fallback classes from the draws' engine classification: ``data-informed`` links are
    ``data``, every other link ``assumption`` (the prior's source is unknown here).

    Examples
    --------
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.do import do_query
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> d = StructuralDraws.from_arrays(graph_from_lavaan("b ~ a"), [[0.4]], [0.0, 0.0])
    >>> res = do_query(d, [Intervention(name="up a", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> edge_evidence_from_draws(res)  # no engine classification on these draws
    {'a->b': 'assumption'}
    """
    draws = result.draws
    if draws is None:
        return {}
    ec = draws.edge_class or {}
    return {k: ("data" if ec.get(k) == "data-informed" else "assumption") for k in draws.edge_keys}


def adjoint_weights(Bdo: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a = (I - B_do)^-T w`` per draw: the derivative of ``E = w' (I - B_do)^-1 u`` with respect
    to the injection ``u`` (``dE/du = a``).

    Parameters
    ----------
    Bdo
        ``(S, P, P)`` (or ``(P, P)``) intervened coefficients, ``Bdo[s, k, j]`` for link ``j -> k``.
    w
        ``(P,)`` outcome weights.

    Returns
    -------
    numpy.ndarray
        ``(S, P)`` (or ``(P,)``).

    Examples
    --------
    >>> import numpy as np
    >>> B = np.array([[0.0, 0.0], [0.5, 0.0]])  # link 0 -> 1 with coefficient 0.5
    >>> adjoint_weights(B, np.array([0.0, 1.0])).round(3).tolist()
    [0.5, 1.0]
    """
    Bdo = np.asarray(Bdo, float)
    rhs = np.broadcast_to(np.asarray(w, float), Bdo.shape[:-1])
    # (I - B)^-T w is the equilibrium of the transposed system: (I - B')^-1 w
    return algebra.solve_equilibrium(np.swapaxes(Bdo, -1, -2), rhs, xp="numpy")


def link_derivatives(a: np.ndarray, t: np.ndarray, sources: np.ndarray, targets: np.ndarray
                     ) -> np.ndarray:
    """``dE/dB_ij = a_i t_j`` for each link ``j -> i`` (exact for the linear equilibrium).

    Parameters
    ----------
    a
        ``(..., P)`` adjoint weights (:func:`adjoint_weights`).
    t
        ``(..., P)`` the effect on every node, ``(I - B_do)^-1 u``.
    sources, targets
        ``(E,)`` node indices of the links' sources ``j`` and targets ``i``.

    Returns
    -------
    numpy.ndarray
        ``(..., E)``.

    Examples
    --------
    >>> import numpy as np
    >>> link_derivatives(np.array([0.5, 1.0]), np.array([1.0, 0.5]), np.array([0]), np.array([1]))
    array([1.])
    """
    return np.asarray(a)[..., targets] * np.asarray(t)[..., sources]


def _weights(result: DoResult, outcome: str | Outcome) -> np.ndarray:
    return result._weights(outcome)


def evidence_shares(result: DoResult, outcome: str | Outcome,
                    edge_evidence: Mapping[str, str] | None = None) -> np.ndarray:
    """``(I, S, 3)`` per-draw shares (:data:`EVIDENCE_CLASSES` order) of the effect on ``outcome``.

    NaN where the draw is not usable (:meth:`DoResult.usable`), the cell is suppressed or the
    effect is exactly zero. The shares do not depend on the scope (a prevalence factor cancels).

    Parameters
    ----------
    result
        A :func:`~veerkracht_bayes.causal.do.do_query` result (it keeps its draws).
    outcome
        Outcome name or :class:`Outcome`.
    edge_evidence
        ``edge key -> class`` (:func:`edge_evidence`); default :func:`edge_evidence_from_draws`.
        Links without an entry count as ``assumption``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "loop",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("x", "a", "b")],
    ...     "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"}
    ...               for s, t in (("x", "a"), ("a", "b"), ("b", "a"))]}))
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> draws = StructuralDraws.from_arrays(g, [[0.5, 0.4, 0.25]], [0.0, 0.0, 0.0])
    >>> from veerkracht_bayes.causal.do import do_query
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> res = do_query(draws, [Intervention(name="x up", parts=[Shift(node="x", delta=1.0)])], outcomes=["b"])
    >>> ev = {"x->a": "data", "a->b": "literature", "b->a": "assumption"}
    >>> evidence_shares(res, "b", ev).round(2)
    array([[[0.34, 0.34, 0.31]]])
    """
    draws, compiled = result.draws, result.compiled
    I, S = len(result.names), result.effect.shape[1]
    out = np.full((I, S, 3), np.nan)
    if draws is None or compiled is None or result.injections is None:
        return out
    ev = dict(edge_evidence) if edge_evidence is not None else edge_evidence_from_draws(result)
    cls_ix = {c: q for q, c in enumerate(EVIDENCE_CLASSES)}
    ecls = np.array([cls_ix.get(ev.get(k, "assumption"), 0) for k in draws.edge_keys], int)
    onehot = np.zeros((len(ecls), 3))
    onehot[np.arange(len(ecls)), ecls] = 1.0
    src, tgt = draws.edge_sources, draws.edge_targets
    w = _weights(result, outcome)
    usable = result.usable()
    P = len(draws.nodes)
    groups, _ = structure_groups(compiled)
    for g in groups:
        B = draws.B
        Bdo = np.where(g.mmask, g.mval, B * g.mscale) * (1.0 - g.set_mask.astype(float))[:, None]
        ok_any = usable[g.members].any(axis=0)
        a = np.full((S, P), np.nan)
        if ok_any.any():
            a[ok_any] = adjoint_weights(Bdo[ok_any], w)
        Be = Bdo[:, tgt, src]  # (S, E) intervened coefficients of the links
        imposed = g.mmask[tgt, src]  # links whose value the intervention imposes: assumption
        for i in g.members:
            if result.suppressed[i] is not None:
                continue
            t = result.effect[i]  # (S, P) = (I - B_do)^-1 u
            with np.errstate(all="ignore"):
                E = t @ w
                eps = np.abs(Be * link_derivatives(a, t, src, tgt) / E[:, None])  # (S, E)
                nodes, u = result.injections[i]
                eps_u = np.abs(a[:, nodes] * u.T / E[:, None]).sum(axis=1) if len(nodes) else 0.0
                by_cls = eps[:, ~imposed] @ onehot[~imposed]
                by_cls[:, 0] += eps_u + eps[:, imposed].sum(axis=1)
                sh = by_cls / by_cls.sum(axis=1, keepdims=True)
            good = usable[i] & np.isfinite(E) & (E != 0) & np.isfinite(sh).all(axis=1)
            out[i][good] = sh[good]
    return out


def evidence_label(shares: Sequence[float], reachable: bool = True) -> str:
    """``no path`` when unreachable; ``data`` when ``share_data > 0.5``; else the larger of
    ``assumption`` and ``literature`` (ties: ``assumption``); ``""`` when the shares are NaN.

    Examples
    --------
    >>> evidence_label([0.2, 0.1, 0.7]), evidence_label([0.5, 0.3, 0.2]), evidence_label([0, 0, 0], reachable=False)
    ('data', 'assumption', 'no path')
    """
    if not reachable:
        return "no path"
    sa, sl, sd = (float(x) for x in shares)
    if not np.isfinite([sa, sl, sd]).all():
        return ""
    if sd > 0.5:
        return "data"
    return "assumption" if sa >= sl else "literature"
