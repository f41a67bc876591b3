"""Which links (and which dose assumptions) make a headline effect uncertain: a tornado per effect.

For one intervention (a policy) and one outcome the effect is ``E = w' (I - B)^-1 u`` (outcome
weights ``w``, injection ``u``: for a policy lever ``u = coverage x e_lever``). Its derivative with
respect to each input is exact for this linear system (:mod:`veerkracht_bayes.causal.evidence`):

* link ``j -> i``: ``dE/dB_ij = a_i t_j`` with ``a = (I - B)^-T w``, ``t = (I - B)^-1 u``;
* dose at node ``j``: ``dE/du_j = a_j``.

The first-order (delta-method) variance of the effect, taking the inputs as uncorrelated, is

    Var_lin(E) = sum_e (dE/dbeta_e * sd(beta_e))^2 + sum_j (dE/du_j * sd(u_j))^2,

each term an input's *contribution*; ``share = contribution / Var_lin`` (the shares sum to 1).
The derivatives are taken at the posterior mean of the coefficients and the mean dose; ``sd`` is
the posterior sd of each coefficient over the draws and the sd of the drawn dose. ``mc_var`` is
the Monte Carlo variance of the effect over the usable draws, for comparison: the two differ by
the curvature of the equilibrium (products of links along a path) and the correlation of the
links in the posterior, which the first-order tornado leaves out by construction.

Known answer: a chain ``lever -> a -> b`` with coefficients ``b1, b2`` and coverage ``c`` has
``dE/db1 = b2 c``, ``dE/db2 = b1 c`` and ``dE/dc = b1 b2``.

Only interventions that shift nodes (policies; no set, no mechanism change) are decomposed: a set or
a mechanism change makes the injection itself depend on the coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome, structure_groups
from veerkracht_bayes.causal.evidence import adjoint_weights, link_derivatives
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.sem import algebra

__all__ = ["TORNADO_COLUMNS", "effect_tornado", "tornado_table"]

TORNADO_COLUMNS = ("policy", "outcome", "scope", "input", "kind", "derivative", "sd",
                   "contribution", "share", "linearised_var", "mc_var", "effect_at_mean")


def _outcome_name(outcome: str | Outcome) -> str:
    return outcome if isinstance(outcome, str) else outcome.name


def effect_tornado(result: DoResult, outcome: str | Outcome, intervention: str | int = 0, *,
                   scope: str = "population") -> pd.DataFrame:
    """Per input (each link and each dose), its contribution to the effect's linearised variance.

    Parameters
    ----------
    result
        A :func:`~veerkracht_bayes.causal.do.do_query` result (it keeps its draws).
    outcome
        Outcome name or :class:`~veerkracht_bayes.causal.do.Outcome`.
    intervention
        The intervention's name (policy id) or position.
    scope
        ``"population"`` (the effect times the subgroup's prevalence) or ``"within"``.

    Returns
    -------
    pandas.DataFrame
        :data:`TORNADO_COLUMNS`, one row per link and per dose node, sorted by contribution
        (largest first). ``kind`` is ``link`` or ``dose``.

    Raises
    ------
    InterventionError
        When the intervention sets a node or changes a mechanism, or the result has no draws.

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.causal.do import do_query
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> g = vb.load_graph("marvel")
    >>> sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    >>> beta = sign * np.abs(np.random.default_rng(0).normal(0.1, 0.03, (50, len(g.edges))))
    >>> d = StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)))
    >>> iv = vb.Intervention(name="P05", parts=[vb.Shift(node="meeting_places", delta=0.3,
    ...                                                   unit="exposure")])
    >>> t = effect_tornado(do_query(d, [iv], ["wellbeing"]), "wellbeing", "P05")
    >>> bool(abs(t["share"].sum() - 1.0) < 1e-9)
    True
    """
    draws, compiled = result.draws, result.compiled
    if draws is None or compiled is None or result.injections is None:
        raise InterventionError("the do-query result keeps no draws; rerun do_query")
    if scope not in ("within", "population"):
        raise InterventionError(f"unknown scope {scope!r} (expected 'within' or 'population')")
    i = result.index(intervention) if isinstance(intervention, str) else int(intervention)
    groups, gid = structure_groups(compiled)
    if not groups[gid[i]].is_identity:
        raise InterventionError(f"intervention {result.names[i]!r} sets a node or changes a "
                                "mechanism; the tornado decomposes shift interventions only")
    w = result._weights(outcome)
    ok = result.usable()[i]
    if not ok.any():
        ok = np.ones_like(ok)
    B = draws.B[ok]
    Bbar = B.mean(axis=0)
    nodes, u = result.injections[i]
    u = np.asarray(u)[:, ok]
    ubar = np.zeros(len(draws.nodes))
    ubar[nodes] = u.mean(axis=1)
    factor = float(result.prevalence[i]) if scope == "population" else 1.0
    a = adjoint_weights(Bbar, w) * factor
    t = algebra.solve_equilibrium(Bbar, ubar)
    src, tgt = draws.edge_sources, draws.edge_targets
    d_link = link_derivatives(a, t, src, tgt)
    sd_link = B[:, tgt, src].std(axis=0, ddof=1) if B.shape[0] > 1 else np.zeros(len(src))
    d_dose = a[nodes]
    sd_dose = u.std(axis=1, ddof=1) if u.shape[1] > 1 else np.zeros(len(nodes))
    contrib = np.concatenate([(d_link * sd_link) ** 2, (d_dose * sd_dose) ** 2])
    lin = float(contrib.sum())
    with np.errstate(invalid="ignore"):
        eff = result.outcome_effect(outcome, scope=scope)[i][ok]
    mc = float(np.nanvar(eff, ddof=1)) if eff.size > 1 else 0.0
    names = list(draws.edge_keys) + [f"dose:{draws.nodes[j]}" for j in nodes]
    df = pd.DataFrame({
        "policy": result.names[i], "outcome": _outcome_name(outcome), "scope": scope,
        "input": names, "kind": ["link"] * len(src) + ["dose"] * len(nodes),
        "derivative": np.concatenate([d_link, d_dose]),
        "sd": np.concatenate([sd_link, sd_dose]), "contribution": contrib,
        "share": contrib / lin if lin > 0 else np.zeros_like(contrib),
        "linearised_var": lin, "mc_var": mc, "effect_at_mean": float(w @ t) * factor,
    })
    return df.sort_values("contribution", ascending=False, kind="stable").reset_index(drop=True)


def tornado_table(result: DoResult, outcomes: Sequence[str | Outcome] | None = None, *,
                  scope: str = "population", top: int | None = 10) -> pd.DataFrame:
    """The tornado of every shift intervention x outcome (``tornado.csv``).

    Parameters
    ----------
    result
        A do-query result.
    outcomes
        Outcomes (default: the result's outcomes).
    scope
        ``"population"`` or ``"within"``.
    top
        Keep the ``top`` largest contributions per effect (``None``: all inputs).

    Returns
    -------
    pandas.DataFrame
        :data:`TORNADO_COLUMNS` plus ``rank`` (1 = largest contribution).

    Examples
    --------
    >>> import pandas as pd
    >>> list(TORNADO_COLUMNS)[:4]
    ['policy', 'outcome', 'scope', 'input']
    """
    outs = list(outcomes) if outcomes is not None else list(result.outcomes)
    groups, gid = structure_groups(result.compiled) if result.compiled is not None else ([], [])
    frames = []
    for i, name in enumerate(result.names):
        if result.suppressed[i] is not None or not groups or not groups[gid[i]].is_identity:
            continue
        for o in outs:
            t = effect_tornado(result, o, i, scope=scope)
            t.insert(len(t.columns), "rank", np.arange(1, len(t) + 1))
            frames.append(t if top is None else t.head(top))
    if not frames:
        return pd.DataFrame(columns=[*TORNADO_COLUMNS, "rank"])
    return pd.concat(frames, ignore_index=True)
