"""Feedback loops: posterior gains and how much of a policy's effect each loop carries.

Gain
    The gain of a named loop is the product of its coefficients along the cycle, per draw. The loop
    is reinforcing in a draw when the gain is positive; ``P(reinforcing) = P(gain > 0)``.

Loop-carried effect (which loops amplify a policy)
    The effect of an intervention on node ``t`` is a sum over all walks from where it enters the
    system to ``t``: ``effect = (I - B_do)^-1 u = sum_n B_do^n u`` (see
    :mod:`veerkracht_bayes.causal.do` for the injection ``u``). Split the walks into those that
    traverse the loop's whole cycle at least once (``n`` consecutive loop edges, starting anywhere on
    the loop) and those that never do. The *loop-carried effect* is the sum over the first kind::

        loop_carried = effect - no_cycle_effect

    ``no_cycle_effect`` is computed exactly by a walk sum on a product graph whose states are
    ``(node, number of consecutive loop edges just traversed)``: a walk that reaches ``n`` is
    dropped. Unlike "set the loop's edges to zero", this keeps the paths that merely pass along
    part of the loop. Known answer: a lone loop with gain ``g``, entered at one of its nodes and read
    at another node on the loop, carries the share ``g`` of the effect (``b / (1 - g)`` total,
    ``b`` without going round).

    A loop *amplifies* a policy's effect on an outcome when the loop-carried part has the same
    sign as the total effect; we report ``P(amplifies)`` over draws, the posterior of the
    loop-carried effect and its share ``mean(loop_carried) / mean(effect)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.causal.do import (Outcome, SubgroupInfo, draw_doses, intervened_system,
                                        resolve_outcomes, subgroup_setup)
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.causal.interventions import Intervention, NativeScale, compile_interventions
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.sem import algebra

__all__ = ["loop_gains", "loop_gain_summary", "no_cycle_effect", "loop_amplification"]


def _named_loops(graph: CausalGraph, loops: Sequence[str] | None) -> list:
    allowed = {lp.id: lp for lp in graph.loops}
    if loops is None:
        return list(allowed.values())
    for lid in loops:
        graph.loop_edge_keys(lid)  # raises with did-you-mean
    return [allowed[lid] for lid in loops]


def loop_gains(draws: StructuralDraws, graph: CausalGraph,
               loops: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``{loop id: (S,) gain}`` — product of ``B`` along each named loop, per draw.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "loop",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("x", "a", "b")],
    ...     "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"}
    ...               for s, t in (("x", "a"), ("a", "b"), ("b", "a"))],
    ...     "loops": [{"id": "L1", "title": "a and b", "nodes": ["a", "b"], "polarity": "R"}]}))
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> draws = StructuralDraws.from_arrays(g, [[0.5, 0.4, 0.25]], [0.0, 0.0, 0.0])
    >>> gains = loop_gains(draws, g)
    >>> {k: v.round(3).tolist() for k, v in gains.items()}  # 0.4 * 0.25
    {'L1': [0.1]}
    """
    idx = draws.node_index
    out = {}
    for lp in _named_loops(graph, loops):
        ring = list(lp.nodes) + [lp.nodes[0]]
        g = np.ones(draws.n_draws)
        for a, b in zip(ring[:-1], ring[1:]):
            g = g * draws.B[:, idx[b], idx[a]]
        out[lp.id] = g
    return out


def loop_gain_summary(draws: StructuralDraws, graph: CausalGraph, ci_prob: float = 0.90,
                      loops: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy table: per loop the gain's mean, median, central interval and ``P(reinforcing)``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "loop",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("x", "a", "b")],
    ...     "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"}
    ...               for s, t in (("x", "a"), ("a", "b"), ("b", "a"))],
    ...     "loops": [{"id": "L1", "title": "a and b", "nodes": ["a", "b"], "polarity": "R"}]}))
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> draws = StructuralDraws.from_arrays(g, [[0.5, 0.4, 0.25]], [0.0, 0.0, 0.0])
    >>> loop_gain_summary(draws, g)["loop"].tolist()
    ['L1']
    """
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    rows = []
    named = {lp.id: lp for lp in graph.loops}
    for lid, g in loop_gains(draws, graph, loops).items():
        rows.append({"loop": lid, "title": named[lid].title, "stated_polarity": named[lid].polarity,
                     "length": len(named[lid].nodes), "mean": g.mean(), "median": np.median(g),
                     "lower": np.quantile(g, lo_q), "upper": np.quantile(g, hi_q),
                     "ci_prob": ci_prob, "p_reinforcing": float((g > 0).mean())})
    return pd.DataFrame(rows)


def no_cycle_effect(Bdo: np.ndarray, u: np.ndarray, cycle: Sequence[int]) -> np.ndarray:
    """Sum over walks that never traverse the whole cycle, per draw.

    Parameters
    ----------
    Bdo
        ``(S, P, P)`` coefficients (``[k, j]`` for edge ``j -> k``).
    u
        ``(S, P)`` injection.
    cycle
        Node indices ``v_0, ..., v_{n-1}`` of the cycle (edges ``v_i -> v_{i+1}``, ``v_{n-1} -> v_0``).

    Returns
    -------
    ``(S, P)`` the no-cycle part of ``(I - Bdo)^-1 u``.

    Examples
    --------
    >>> import numpy as np
    >>> Bdo = np.array([[[0.0, 0.25], [0.4, 0.0]]])  # one draw: a <- b (0.25) and b <- a (0.4)
    >>> no_cycle_effect(Bdo, np.array([[1.0, 0.0]]), [0, 1]).round(3)
    array([[1. , 0.4]])
    """
    S, P, _ = Bdo.shape
    cyc = list(cycle)
    n = len(cyc)
    pos = {v: i for i, v in enumerate(cyc)}
    # states: (node, 0) for every node, then (v_i, c) for c = 1..n-1
    state = {(v, 0): v for v in range(P)}
    for v in cyc:
        for cnt in range(1, n):
            state[(v, cnt)] = len(state)
    Q = len(state)
    frm, to, ek, ej = [], [], [], []
    for (x, cnt), sx in state.items():
        for y in range(P):
            if x == y:
                continue  # graphs have no self-loops (the spec forbids them)
            is_loop_edge = x in pos and cyc[(pos[x] + 1) % n] == y
            if is_loop_edge:
                if cnt + 1 == n:
                    continue  # completes the cycle: dropped
                sy = state[(y, cnt + 1)]
            else:
                sy = state[(y, 0)]
            frm.append(sx)
            to.append(sy)
            ek.append(y)
            ej.append(x)
    T = algebra.assemble(Bdo[:, np.asarray(ek, dtype=int), np.asarray(ej, dtype=int)],
                         algebra.EdgeIndex(np.arange(len(to)), np.asarray(to, dtype=int),
                                           np.asarray(frm, dtype=int), (Q, Q)), xp="numpy")
    uext = np.zeros((S, Q))
    uext[:, :P] = u
    N = algebra.solve_equilibrium(T, uext, xp="numpy")
    out = N[:, :P].copy()
    for v in cyc:
        for cnt in range(1, n):
            out[:, v] += N[:, state[(v, cnt)]]
    return out


def loop_amplification(
    draws: StructuralDraws,
    graph: CausalGraph,
    interventions: Sequence[Intervention],
    outcomes: Sequence[str | Outcome] | None = None,
    *,
    loops: Sequence[str] | None = None,
    ci_prob: float = 0.90,
    subgroups: Mapping[str, SubgroupInfo] | None = None,
    native_scale: Mapping[str, float | NativeScale] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per intervention x outcome x loop: the loop-carried effect and ``P(amplifies)``.

    Doses are drawn with the same seed as :func:`~veerkracht_bayes.causal.do.do_query`, so
    ``effect`` here equals its within-target effect. Columns: ``policy, outcome, loop, effect_mean,
    loop_carried_mean, loop_carried_lower, loop_carried_upper, loop_share, p_amplifies, ci_prob``.

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> g = vb.load_graph("marvel")
    >>> sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    >>> d = StructuralDraws.from_arrays(g, 0.1 * sign[None, :].repeat(4, 0), np.zeros(len(g.nodes)))
    >>> iv = vb.Intervention(name="P05", parts=[vb.Shift(node="meeting_places", delta=0.3,
    ...                                                   unit="exposure")])
    >>> tab = loop_amplification(d, g, [iv], ["wellbeing"], loops=["L1"])
    >>> tab[["policy", "outcome", "loop"]].values.tolist()
    [['P05', 'wellbeing', 'L1']]
    """
    subgroups = dict(subgroups or {})
    outs = resolve_outcomes(outcomes, draws.nodes)
    compiled = compile_interventions(interventions, draws.nodes, draws.edge_keys,
                                     subgroups=list(subgroups), native_scale=native_scale)
    S, P = draws.n_draws, len(draws.nodes)
    shifts = draw_doses(compiled, S, P, seed)
    _, _, c = subgroup_setup(compiled, draws, subgroups, 0)
    idx = draws.node_index
    named = _named_loops(graph, loops)
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    W = np.zeros((P, len(outs)))
    for k, o in enumerate(outs):
        for nd, v in o.weights.items():
            W[idx[nd], k] = v
    rows = []
    for i, name in enumerate(compiled.names):
        Bdo, u = intervened_system(draws, compiled, i, shifts[i], c[i])
        total = algebra.solve_equilibrium(Bdo, u, xp="numpy") @ W  # (S, K)
        for lp in named:
            cyc = [idx[v] for v in lp.nodes]
            if any(not (draws.edge_keys and f"{a}->{b}" in draws.edge_keys)
                   for a, b in zip(lp.nodes, list(lp.nodes[1:]) + [lp.nodes[0]])):
                raise InterventionError(f"loop {lp.id!r} is not a cycle of these draws' edges")
            nc = no_cycle_effect(Bdo, u, cyc) @ W
            carried = total - nc
            # walk sums that are zero in exact arithmetic come out at ~1e-17: treat as zero
            carried = np.where(np.abs(carried) <= 1e-12 * (1.0 + np.abs(total)), 0.0, carried)
            for k, o in enumerate(outs):
                tk, ck = total[:, k], carried[:, k]
                ok = np.isfinite(tk) & np.isfinite(ck)
                tk, ck = tk[ok], ck[ok]
                mt = tk.mean() if tk.size else np.nan
                rows.append({
                    "policy": name, "outcome": o.name, "loop": lp.id, "effect_mean": mt,
                    "loop_carried_mean": ck.mean() if ck.size else np.nan,
                    "loop_carried_lower": np.quantile(ck, lo_q) if ck.size else np.nan,
                    "loop_carried_upper": np.quantile(ck, hi_q) if ck.size else np.nan,
                    "loop_share": ck.mean() / mt if ck.size and mt != 0 else np.nan,
                    "p_amplifies": float((ck * tk > 0).mean()) if ck.size else np.nan,
                    "ci_prob": ci_prob,
                })
    return pd.DataFrame(rows)
