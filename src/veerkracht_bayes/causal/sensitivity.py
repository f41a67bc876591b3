"""Does the ranking of the top policies survive the assumptions it rests on?

For each outcome x scope the policies are ordered by ``p_meaningful`` (then by the mean effect in
the desirable direction); the first two are the *leader* and the *runner-up*. Two re-analyses:

(a) **doses x2**: every dose/coverage prior widened to twice its sd with the same mean (normal:
    sd x 2; uniform: half-width x 2 around the mean; log-normal: sigma chosen so that the sd
    doubles with the same mean; beta: same mean, concentration ``k' = (k + 1) / 4 - 1`` so that the
    sd doubles, floored at ``min(k, 1)`` where the sd cannot double; fixed doses stay fixed);
(b) **default lever priors**: the coefficients of every lever link (out-link of a
    ``policy_lever`` node) redrawn from the documented default ``sign x HalfNormal(0.2)``
    (:data:`veerkracht_bayes.priors.spec.DEFAULT_EDGE_SD`).

Lever nodes are unmeasured and have no parents, so their links are never in the likelihood: their
posterior is their prior, independent of the other parameters. Both re-analyses are therefore
exact by redrawing doses / lever-link coefficients and re-solving the equilibrium on the same
posterior draws, without refitting.

Break-even: effects are linear in the coverage, so the runner-up's mean effect would equal the
leader's at ``c* = c_runner x E_leader / E_runner`` (means in the desirable direction).
``break_even_coverage`` is NaN when ``c* > 1`` ("not attainable") or when the runner-up's dose is
not a coverage (then ``break_even_factor`` still gives the multiple of its dose).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome, do_query, resolve_outcomes
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import (Beta, Fixed, Intervention, LogNormal, Normal,
                                                   Shift, Uniform)
from veerkracht_bayes.causal.summaries import MIN_RELEVANT_CHANGE, desirable_direction
from veerkracht_bayes.priors.spec import DEFAULT_EDGE_SD

__all__ = ["SENSITIVITY_COLUMNS", "widen_dose", "widen_doses", "lever_links",
           "with_default_lever_priors", "assumption_sensitivity"]

SENSITIVITY_COLUMNS = (
    "outcome", "scope", "leader", "runner_up", "leader_mean", "runner_up_mean",
    "leader_p_meaningful", "runner_up_p_meaningful", "p_order_holds", "p_order_holds_doses_x2",
    "p_order_holds_default_lever_priors", "order_holds_doses_x2",
    "order_holds_default_lever_priors", "leader_doses_x2", "leader_default_lever_priors",
    "n_lever_links", "break_even_factor", "runner_up_coverage", "break_even_coverage",
    "break_even_note")


def widen_dose(dose: Any, factor: float = 2.0) -> Any:
    """The dose distribution with the same mean and ``factor`` times the sd (see module doc).

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Normal
    >>> widen_dose(Normal(mean=0.3, sd=0.1))
    Normal(dist='normal', mean=0.3, sd=0.2)
    """
    if isinstance(dose, (int, float, Fixed)):
        return dose
    if isinstance(dose, Normal):
        return Normal(mean=dose.mean, sd=dose.sd * factor)
    if isinstance(dose, Uniform):
        m, h = 0.5 * (dose.lo + dose.hi), 0.5 * (dose.hi - dose.lo)
        return Uniform(lo=m - factor * h, hi=m + factor * h)
    if isinstance(dose, LogNormal):
        s2 = np.log1p(factor**2 * np.expm1(dose.sigma**2))
        mean = dose.mean_value()
        return LogNormal(median=float(mean / np.exp(0.5 * s2)), sigma=float(np.sqrt(s2)))
    if isinstance(dose, Beta):
        k = dose.a + dose.b
        m = dose.a / k
        k2 = max((k + 1.0) / factor**2 - 1.0, min(k, 1.0))
        return Beta(a=m * k2, b=(1.0 - m) * k2)
    raise TypeError(f"cannot widen a dose of type {type(dose).__name__}")


def widen_doses(interventions: Sequence[Intervention], factor: float = 2.0) -> list[Intervention]:
    """Every shift dose of every intervention widened by ``factor`` (:func:`widen_dose`).

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Intervention, Normal, Shift
    >>> iv = Intervention(name="p", parts=[Shift(node="social_network", delta=Normal(mean=0.3, sd=0.1))])
    >>> round(widen_doses([iv], factor=3.0)[0].parts[0].delta.sd, 6)
    0.3
    """
    out = []
    for iv in interventions:
        parts = [p.model_copy(update={"delta": widen_dose(p.delta, factor)})
                 if isinstance(p, Shift) else p for p in iv.parts]
        out.append(iv.model_copy(update={"parts": parts}))
    return out


def _lever_nodes(graph: Any) -> set[str]:
    return {n for n in graph.nodes if getattr(graph.node(n), "role", None) == "policy_lever"}


def lever_links(graph: Any) -> list[str]:
    """Edge keys of the out-links of ``policy_lever`` nodes.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> links = lever_links(load_graph("marvel"))
    >>> isinstance(links, list) and all("->" in k for k in links)
    True
    """
    levers = _lever_nodes(graph)
    return [e.key for e in graph.edges if e.source in levers]


def with_default_lever_priors(draws: StructuralDraws, graph: Any, *, sd: float = DEFAULT_EDGE_SD,
                              seed: int = 0) -> StructuralDraws:
    """The draws with every lever link redrawn from ``sign x HalfNormal(sd)`` (seeded).

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> g = vb.load_graph("marvel")
    >>> sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    >>> d = StructuralDraws.from_arrays(g, 0.1 * sign[None, :].repeat(4, 0), np.zeros(len(g.nodes)))
    >>> new = with_default_lever_priors(d, g, sd=0.2, seed=1)
    >>> k = [d.edge_keys.index(e) for e in lever_links(g)]
    >>> bool((np.sign(new.beta()[:, k]) == sign[k]).all()), new.B.shape == d.B.shape
    (True, True)
    """
    keys = set(lever_links(graph))
    rng = np.random.default_rng(seed)
    B = draws.B.copy()
    for e in graph.edges:
        if e.key in keys:
            k, j = draws.node_index[e.target], draws.node_index[e.source]
            sgn = 1.0 if e.sign == "+" else -1.0
            B[:, k, j] = sgn * np.abs(rng.normal(0.0, sd, draws.n_draws))
    return StructuralDraws(draws.nodes, draws.edge_keys, B, draws.alpha, draws.psi,
                           draws.edge_class, draws.edge_delays)


def _stats(res: DoResult, oc: Outcome, scope: str, d: int, mrc: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per policy: direction x effect (I, S), usable mask, mean and p_meaningful (NaN: none)."""
    x = d * res.outcome_effect(oc, scope)
    ok = res.usable() & np.isfinite(x)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, x, 0.0).sum(axis=1) / n
        pm = (ok & (x > mrc)).sum(axis=1) / n
    return x, ok, mean, pm


def _order(res: DoResult, oc: Outcome, scope: str, d: int, mrc: float) -> list[int]:
    """Comparable policies (not suppressed, reachable, usable draws) by (p_meaningful, mean)."""
    _, _, mean, pm = _stats(res, oc, scope, d, mrc)
    reach = res.is_reachable(oc)
    cand = [i for i in range(len(res.names)) if res.suppressed[i] is None and reach[i]
            and np.isfinite(mean[i])]
    return sorted(cand, key=lambda i: (-pm[i], -mean[i]))


def _p_order(res: DoResult, oc: Outcome, scope: str, d: int, a: int, b: int) -> float:
    x, ok, _, _ = _stats(res, oc, scope, d, 0.0)
    both = ok[a] & ok[b]
    return float((x[a, both] > x[b, both]).mean()) if both.any() else np.nan


def _holds(res: DoResult, oc: Outcome, scope: str, d: int, mrc: float, a: int, b: int) -> bool:
    _, _, mean, pm = _stats(res, oc, scope, d, mrc)
    return bool((pm[a], mean[a]) > (pm[b], mean[b]))


def _coverage(iv: Intervention, levers: set[str]) -> tuple[float, str]:
    """Mean coverage of an intervention whose every shift acts on a lever (exposure) node."""
    shifts = [p for p in iv.parts if isinstance(p, Shift)]
    if not shifts or len(shifts) != len(iv.parts):
        return np.nan, "the runner-up's dose is not a coverage; break_even_factor is the multiple"
    if not all(p.node in levers or p.unit == "exposure" for p in shifts):
        return np.nan, "the runner-up's dose is not a coverage; break_even_factor is the multiple"
    covs = [float(p.dose().mean_value()) for p in shifts]
    note = "" if len(set(np.round(covs, 12))) == 1 else "coverages of its levers averaged, scaled together"
    return float(np.mean(covs)), note


def assumption_sensitivity(
    draws: StructuralDraws,
    interventions: Sequence[Intervention],
    outcomes: Sequence[str | Outcome | Mapping] | None = None,
    *,
    graph: Any,
    base: DoResult | None = None,
    min_relevant_change: float = MIN_RELEVANT_CHANGE,
    directions: Mapping[str, int] | None = None,
    scopes: Sequence[str] = ("within", "population"),
    dose_factor: float = 2.0,
    default_lever_sd: float = DEFAULT_EDGE_SD,
    seed: int = 0,
    **query: Any,
) -> pd.DataFrame:
    """Leader vs runner-up per outcome x scope, under widened doses and default lever priors.

    Parameters
    ----------
    draws, interventions, outcomes
        As for :func:`~veerkracht_bayes.causal.do.do_query`.
    graph
        The diagram (node roles for the lever nodes, edge signs).
    base
        The base :class:`DoResult` (computed here when ``None``; it must use ``seed``).
    min_relevant_change, directions, scopes
        As for :func:`~veerkracht_bayes.causal.summaries.summarise_effects`.
    dose_factor
        The sd multiple of scenario (a).
    default_lever_sd
        Scale of the default ``sign x HalfNormal`` lever prior of scenario (b).
    seed
        Dose seed of the queries (as in the base run) and seed of the lever-link redraw.
    **query
        Passed on to ``do_query`` (``subgroups``, ``min_cell_size``, ``native_scale``, ...).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SENSITIVITY_COLUMNS`, one row per outcome x scope.

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> g = vb.load_graph("marvel")
    >>> sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    >>> d = StructuralDraws.from_arrays(g, 0.1 * sign[None, :].repeat(4, 0), np.zeros(len(g.nodes)))
    >>> ivs = [vb.Intervention(name=n, parts=[vb.Shift(node="meeting_places", delta=v, unit="exposure")])
    ...        for n, v in (("P1", 0.3), ("P2", 0.1))]
    >>> tab = assumption_sensitivity(d, ivs, ["wellbeing"], graph=g, scopes=("population",))
    >>> list(tab.columns) == list(SENSITIVITY_COLUMNS), tab["outcome"].tolist()
    (True, ['wellbeing'])
    """
    ivs = list(interventions)
    if base is None:
        base = do_query(draws, ivs, outcomes, seed=seed, **query)
    outs = list(base.outcomes) if outcomes is None else resolve_outcomes(outcomes, draws.nodes)
    wide = do_query(draws, widen_doses(ivs, dose_factor), outcomes, seed=seed, **query)
    links = lever_links(graph)
    dflt = do_query(with_default_lever_priors(draws, graph, sd=default_lever_sd, seed=seed + 1),
                    ivs, outcomes, seed=seed, **query)
    levers = _lever_nodes(graph)
    mrc = min_relevant_change
    rows = []
    for oc in outs:
        d = desirable_direction(oc, directions)
        for scope in scopes:
            row: dict[str, Any] = {"outcome": oc.name, "scope": scope, "n_lever_links": len(links)}
            order = _order(base, oc, scope, d, mrc)
            if len(order) < 2:
                row.update({"leader": base.names[order[0]] if order else "", "runner_up": "",
                            "break_even_note": "fewer than two comparable policies"})
                rows.append(row)
                continue
            a, b = order[0], order[1]
            _, _, mean, pm = _stats(base, oc, scope, d, mrc)
            row.update({"leader": base.names[a], "runner_up": base.names[b],
                        "leader_mean": d * mean[a], "runner_up_mean": d * mean[b],
                        "leader_p_meaningful": pm[a], "runner_up_p_meaningful": pm[b],
                        "p_order_holds": _p_order(base, oc, scope, d, a, b)})
            for tag, res in (("doses_x2", wide), ("default_lever_priors", dflt)):
                o2 = _order(res, oc, scope, d, mrc)
                row[f"p_order_holds_{tag}"] = _p_order(res, oc, scope, d, a, b)
                row[f"order_holds_{tag}"] = _holds(res, oc, scope, d, mrc, a, b)
                row[f"leader_{tag}"] = res.names[o2[0]] if o2 else ""
            factor = mean[a] / mean[b] if mean[b] > 0 else np.nan
            row["break_even_factor"] = factor
            cov, note = _coverage(ivs[b], levers)
            row["runner_up_coverage"] = cov
            if not np.isfinite(factor):
                row["break_even_coverage"] = np.nan
                row["break_even_note"] = "the runner-up does not help on average"
            elif not np.isfinite(cov):
                row["break_even_coverage"] = np.nan
                row["break_even_note"] = note
            elif cov * factor > 1.0:
                row["break_even_coverage"] = np.nan
                row["break_even_note"] = f"not attainable (would need coverage {cov * factor:.2f} > 1)"
            else:
                row["break_even_coverage"] = cov * factor
                row["break_even_note"] = note
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
