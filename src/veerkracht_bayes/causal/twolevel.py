"""Neighbourhood-level policies on the between level of the two-level model.

A policy that acts on neighbourhoods (meeting places, neighbourhood professionals, funded
initiatives) changes the neighbourhood means of collective constructs, i.e. the between-level
latents of :mod:`veerkracht_bayes.sem.twolevel`. With between variance shares ``v`` and the
between-standardised system ``eta~_B = B_B eta~_B + alpha~ + zeta_B`` (``eta_B = sqrt(v) eta~_B``):

- ``Shift(node, delta)``: every neighbourhood's mean of ``node`` rises by ``delta`` total-scale SDs
  (the construct's SD over all respondents), i.e. ``alpha~_node += delta / sqrt(v_node)``;
- ``Set(node, value)``: every neighbourhood's mean of ``node`` is held at ``value`` (its incoming
  between links are cut);
- ``MechanismChange(source, target, scale | value)``: a between link is scaled or set;
- ``shifts={node: array}`` (keyword of :func:`between_do`): a shift that differs per posterior
  draw, ``(S,)`` total-scale SDs per draw, e.g. an assumed coverage draw times a lever's
  per-exposure effect draw (the run's neighbourhood policies,
  :mod:`veerkracht_bayes.workflow.neighbourhoods`); it adds to ``alpha~_node`` like a ``Shift``.

The new equilibrium ``Delta eta~_B = (I - B_B,do)^-1 Delta alpha~`` is solved with
:func:`veerkracht_bayes.sem.algebra.solve_equilibrium` (mechanisms with
:func:`~veerkracht_bayes.sem.algebra.apply_mechanisms`), per posterior draw. The *population*
effect on a construct's mean (total-scale SD units) is the between effect
``sqrt(v_c) Delta eta~_B,c``: the within level (deviations from the neighbourhood mean) is unchanged
by a neighbourhood-level policy, so it adds nothing to the mean. Effects reach only the between
constructs of the fit (constructs without a between factor have no neighbourhood-level mechanism
in the model).

Examples
--------
>>> import numpy as np
>>> from veerkracht_bayes.causal.interventions import Shift
>>> B = np.array([[[0.0, 0.0], [0.5, 0.0]]])            # a -> b at the between level
>>> out = between_do(B, np.array([[0.25, 0.16]]), ("a", "b"), [Shift(node="a", delta=0.5)])
>>> np.round(out["effect"][0], 3).tolist()              # b: sqrt(0.16) * 0.5 * (0.5 / sqrt(0.25))
[0.5, 0.2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from veerkracht_bayes.errors import InterventionError, Problem, did_you_mean
from veerkracht_bayes.sem.algebra import apply_mechanisms, solve_equilibrium

__all__ = ["between_do", "between_effect_summary"]


def between_do(B: np.ndarray, share: np.ndarray, nodes: Sequence[str], parts: Sequence[Any] = (), *,
               shifts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Population effects of a neighbourhood-level policy through the between structural model.

    Parameters
    ----------
    B
        ``(S, K, K)`` between coefficients per draw (row = target), e.g.
        ``TwoLevelFit.between_arrays()["B"]``.
    share
        ``(S, K)`` between variance shares ``v``.
    nodes
        The ``K`` between constructs.
    parts
        :class:`~veerkracht_bayes.causal.interventions.Shift`,
        :class:`~veerkracht_bayes.causal.interventions.Set` and
        :class:`~veerkracht_bayes.causal.interventions.MechanismChange` parts with fixed numbers
        (total-scale SD units).
    shifts
        ``{node: (S,) array}``: per-draw shifts of between constructs' neighbourhood means
        (total-scale SDs), added like ``Shift`` parts (a scalar is broadcast to every draw).

    Returns
    -------
    dict
        ``effect`` (S, K): change in each construct's population mean (total-scale SDs);
        ``between_effect`` (S, K): the same on the between-standardised scale;
        ``within_effect`` (S, K): zeros (the within level is unchanged); ``nodes``.

    Raises
    ------
    InterventionError
        Unknown node or link (did-you-mean), a dose distribution instead of a number, or an
        unstable intervened system.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.causal.interventions import Set
    >>> B = np.array([[[0.0, 0.0], [0.5, 0.0]]])
    >>> out = between_do(B, np.array([[0.25, 0.25]]), ("a", "b"), [Set(node="b", value=0.3)])
    >>> np.round(out["effect"][0], 3).tolist(), out["within_effect"].tolist()
    ([0.0, 0.3], [[0.0, 0.0]])

    A shift that differs per draw (two draws of the dose):

    >>> B2 = np.repeat(B, 2, axis=0)
    >>> out = between_do(B2, np.full((2, 2), 0.25), ("a", "b"), shifts={"a": np.array([0.1, 0.2])})
    >>> np.round(out["effect"][:, 1], 3).tolist()       # 0.5 * shift (equal shares)
    [0.05, 0.1]
    """
    from veerkracht_bayes.causal.interventions import MechanismChange, Set, Shift

    B = np.asarray(B, dtype=float)
    v = np.asarray(share, dtype=float)
    nodes = list(nodes)
    if B.ndim == 2:
        B = B[None]
    if v.ndim == 1:
        v = v[None]
    S, K = B.shape[0], len(nodes)
    if B.shape[1:] != (K, K) or v.shape != (S, K):
        raise InterventionError(Problem(f"between arrays of shapes {B.shape} and {v.shape} for {K} nodes "
                                        f"(expected (S, {K}, {K}) and (S, {K}))", field="B"))
    idx = {n: k for k, n in enumerate(nodes)}

    def node_of(name: str) -> int:
        if name not in idx:
            raise InterventionError(Problem(f"{name!r} is not a between-level construct of the two-level fit"
                                            f"{did_you_mean(name, nodes)}; between constructs: {nodes}",
                                            field="node", value=name))
        return idx[name]

    c = np.zeros((S, K))
    cut = np.zeros(K, dtype=bool)
    mscale = np.ones((K, K))
    mmask = np.zeros((K, K), dtype=bool)
    mval = np.zeros((K, K))
    for part in parts:
        if isinstance(part, Shift):
            if not isinstance(part.delta, (int, float)):
                raise InterventionError(Problem("between_do takes a fixed shift (a number), not a dose distribution",
                                                field="delta", value=part.delta))
            k = node_of(part.node)
            c[:, k] += float(part.delta) / np.sqrt(v[:, k])
        elif isinstance(part, Set):
            k = node_of(part.node)
            cut[k] = True
            c[:, k] = float(part.value) / np.sqrt(v[:, k])
        elif isinstance(part, MechanismChange):
            s, t = node_of(part.source), node_of(part.target)
            if not np.any(B[:, t, s] != 0):
                raise InterventionError(Problem(f"{part.source}->{part.target} is not a between-level link",
                                                field="link", value=f"{part.source}->{part.target}"))
            if part.value is not None:
                mmask[t, s], mval[t, s] = True, float(part.value)
            elif part.scale is not None:
                mscale[t, s] = float(part.scale)
        else:
            raise InterventionError(Problem(f"unsupported intervention part {type(part).__name__}", field="parts"))
    for name, val in (shifts or {}).items():
        k = node_of(name)
        x = np.asarray(val, dtype=float)
        if x.ndim == 0:
            x = np.full(S, float(x))
        if x.shape != (S,):
            raise InterventionError(Problem(f"per-draw shift of {name!r} has shape {x.shape} (expected ({S},): "
                                            "one value per draw)", field="shifts", value=name))
        if not np.all(np.isfinite(x)):
            raise InterventionError(Problem(f"per-draw shift of {name!r} has {int(np.sum(~np.isfinite(x)))} "
                                            "non-finite values (expected finite numbers)", field="shifts",
                                            value=name))
        if cut[k]:
            raise InterventionError(Problem(f"{name!r} is both set and shifted (expected one of them)",
                                            field="shifts", value=name))
        c[:, k] += x / np.sqrt(v[:, k])
    Bdo = apply_mechanisms(B, mscale, mmask, mval, cut[:, None])
    rho = np.max(np.abs(np.linalg.eigvals(Bdo)), axis=-1) if K else np.zeros(S)
    if np.any(rho >= 1.0):
        raise InterventionError(Problem(f"the intervened between system is unstable in {int(np.sum(rho >= 1))} "
                                        "draws (spectral radius >= 1)", field="parts"))
    d_tilde = solve_equilibrium(Bdo, c)
    eff = d_tilde * np.sqrt(v)
    # Set: the set node's change is the set value (baseline mean 0)
    return {"effect": eff, "between_effect": d_tilde, "within_effect": np.zeros_like(eff), "nodes": tuple(nodes)}


def between_effect_summary(result: dict[str, Any], prob: float = 0.9,
                           min_relevant_change: float | None = None) -> list[dict[str, Any]]:
    """One row per between construct: posterior mean, central interval and ``P(effect > 0)``;
    with ``min_relevant_change`` also ``p_relevant = P(|effect| >= min_relevant_change)``.

    Examples
    --------
    >>> import numpy as np
    >>> rows = between_effect_summary({"effect": np.array([[0.1, 0.0], [0.3, 0.0]]), "nodes": ("a", "b")})
    >>> rows[0]["node"], round(rows[0]["mean"], 3), rows[0]["p_positive"]
    ('a', 0.2, 1.0)
    >>> between_effect_summary({"effect": np.array([[0.1], [0.3]]), "nodes": ("a",)},
    ...                        min_relevant_change=0.2)[0]["p_relevant"]
    0.5
    """
    eff = np.asarray(result["effect"], dtype=float)
    a = (1 - prob) / 2
    out = []
    for k, n in enumerate(result["nodes"]):
        x = eff[:, k]
        lo, hi = np.quantile(x, [a, 1 - a])
        row = {"node": n, "level": "between", "mean": float(x.mean()), "lower": float(lo), "upper": float(hi),
               "p_positive": float(np.mean(x > 0)), "within_effect": 0.0}
        if min_relevant_change is not None:
            row["p_relevant"] = float(np.mean(np.abs(x) >= float(min_relevant_change)))
        out.append(row)
    return out
