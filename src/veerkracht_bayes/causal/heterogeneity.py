"""For whom: do-queries per group with that group's own links, and a heterogeneity table.

With the multi-group model (:mod:`veerkracht_bayes.sem.multigroup`) every group ``g`` has its own
links ``B_g = B + Delta_g``, intercepts and disturbance variances. An intervention's effect in group
``g`` is the do-query on the group's structural draws, so it differs from the population effect by
more than prevalence: by how strongly the levers propagate *in that group*.

The posterior draws of the population and of every group come from the same joint posterior, draw
``s`` for draw ``s``: the difference ``effect_g - effect_population`` is computed per draw, and
``p_larger_than_population`` = P(direction x (effect_g - effect_population) > 0), the probability
that the intervention works better (in the outcome's desirable direction) in the group than in the
population. Draws are used where the population and the group system are both usable (solvable and
stable, :meth:`~veerkracht_bayes.causal.do.DoResult.usable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome, do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention
from veerkracht_bayes.causal.summaries import CI_PROB, MIN_RELEVANT_CHANGE, desirable_direction
from veerkracht_bayes.errors import InterventionError, Problem

__all__ = ["HETEROGENEITY_COLUMNS", "group_do_queries", "heterogeneity_table"]

#: Columns of :func:`heterogeneity_table`, in order.
HETEROGENEITY_COLUMNS = (
    "intervention", "outcome", "group", "mean", "lower", "upper", "population_mean",
    "difference_mean", "difference_lower", "difference_upper", "p_larger_than_population",
    "p_meaningful", "rank_mean", "p_stable", "n_used",
)


def group_do_queries(population: StructuralDraws, groups: Mapping[str, StructuralDraws],
                     interventions: Sequence[Intervention], outcomes: Sequence[str | Outcome] | None = None,
                     *, seed: int = 0, **kwargs: object) -> dict[str | None, DoResult]:
    """The do-query in the population (key ``None``) and in every group, with the same dose draws.

    Parameters
    ----------
    population
        Structural draws of the population links.
    groups
        ``label -> StructuralDraws`` of each group (same draws, same nodes and links).
    interventions
        Untargeted interventions (the group *is* the target; a ``subgroup`` here is refused).
    outcomes
        Outcomes (default: the do-query's).
    seed
        Seed of the dose draws, shared by all groups (so doses are paired).
    kwargs
        Passed on to :func:`~veerkracht_bayes.causal.do.do_query`.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> g = graph_from_lavaan("b ~ a")
    >>> pop = StructuralDraws.from_arrays(g, np.array([[0.3]]), np.zeros((1, 2)))
    >>> grp = {"x": StructuralDraws.from_arrays(g, np.array([[0.5]]), np.zeros((1, 2)))}
    >>> res = group_do_queries(pop, grp, [Intervention(name="up", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> round(float(res["x"].outcome_effect("b")[0, 0]), 3)
    0.5
    """
    for iv in interventions:
        if iv.subgroup is not None:
            raise InterventionError(Problem(f"intervention {iv.name!r} targets subgroup {iv.subgroup!r}; per-group "
                                            "queries take untargeted interventions (the group is the target)",
                                            field="subgroup", value=iv.subgroup))
    out: dict[str | None, DoResult] = {None: do_query(population, interventions, outcomes, seed=seed, **kwargs)}
    for lab, dr in groups.items():
        if dr.nodes != population.nodes or dr.edge_keys != population.edge_keys or dr.n_draws != population.n_draws:
            raise InterventionError(Problem(f"group {lab!r}: draws do not match the population's (nodes, links or "
                                            "number of draws)", field="groups", value=lab))
        out[lab] = do_query(dr, interventions, outcomes, seed=seed, **kwargs)
    return out


def heterogeneity_table(results: Mapping[str | None, DoResult], outcomes: Sequence[str | Outcome] | None = None,
                        *, ci_prob: float = CI_PROB, mrc: float = MIN_RELEVANT_CHANGE,
                        directions: Mapping[str, int] | None = None) -> pd.DataFrame:
    """"For whom does this policy work best": one row per intervention x outcome x group.

    Parameters
    ----------
    results
        :func:`group_do_queries` output (``None`` = the population).
    outcomes
        Outcomes to tabulate (default: the population result's outcomes).
    ci_prob
        Central interval probability.
    mrc
        Minimal relevant change for ``p_meaningful`` (SD units).
    directions
        Desirable direction per outcome (default :func:`~veerkracht_bayes.causal.summaries.desirable_direction`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`HETEROGENEITY_COLUMNS`; the population rows have ``group = "population"``
        and NaN differences. ``rank_mean`` ranks the groups (1 = largest effect in the desirable
        direction) per draw, averaged.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> g = graph_from_lavaan("b ~ a")
    >>> pop = StructuralDraws.from_arrays(g, np.array([[0.3], [0.2]]), np.zeros((2, 2)))
    >>> grp = {"x": StructuralDraws.from_arrays(g, np.array([[0.5], [0.1]]), np.zeros((2, 2)))}
    >>> res = group_do_queries(pop, grp, [Intervention(name="up", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> float(heterogeneity_table(res).query("group == 'x'")["p_larger_than_population"].iloc[0])
    0.5
    """
    if None not in results:
        raise InterventionError("heterogeneity_table needs the population result (key None)")
    pop = results[None]
    outs = list(outcomes) if outcomes is not None else list(pop.outcomes)
    a = (1 - ci_prob) / 2
    labels = [k for k in results if k is not None]
    rows = []
    for o in outs:
        name = o.name if isinstance(o, Outcome) else str(o)
        d = desirable_direction(o, directions)
        pe = pop.outcome_effect(o)
        pu = pop.usable()
        ge = {lab: results[lab].outcome_effect(o) for lab in labels}
        gu = {lab: results[lab].usable() for lab in labels}
        allu = pu.copy()
        for lab in labels:
            allu &= gu[lab]
        for i, iv in enumerate(pop.names):
            ok = pu[i]
            rows.append(_row(iv, name, "population", pe[i][ok], None, d, a, mrc, np.nan, ok))
            # per-draw rank of the groups (1 = best), on draws usable everywhere
            if labels and allu[i].any():
                stack = np.stack([d * ge[lab][i][allu[i]] for lab in labels])
                ranks = (-stack).argsort(axis=0).argsort(axis=0) + 1.0
                rank_mean = dict(zip(labels, ranks.mean(axis=1)))
            else:
                rank_mean = {lab: np.nan for lab in labels}
            for lab in labels:
                ok_g = pu[i] & gu[lab][i]
                rows.append(_row(iv, name, str(lab), ge[lab][i][ok_g], pe[i][ok_g], d, a, mrc, rank_mean[lab], ok_g))
    return pd.DataFrame(rows, columns=list(HETEROGENEITY_COLUMNS))


def _row(iv: str, outcome: str, group: str, eff: np.ndarray, pop: np.ndarray | None, d: int, a: float,
         mrc: float, rank: float, ok: np.ndarray) -> dict[str, object]:
    n = int(eff.size)
    nan = float("nan")
    out: dict[str, object] = {"intervention": iv, "outcome": outcome, "group": group, "rank_mean": float(rank),
                              "p_stable": float(np.mean(ok)), "n_used": n}
    if n == 0:
        out.update({k: nan for k in HETEROGENEITY_COLUMNS if k not in out and k not in ("intervention",)})
        return out
    lo, hi = np.quantile(eff, [a, 1 - a])
    out.update({"mean": float(eff.mean()), "lower": float(lo), "upper": float(hi),
                "p_meaningful": float(np.mean(d * eff > mrc))})
    if pop is None:
        out.update({"population_mean": float(eff.mean()), "difference_mean": nan, "difference_lower": nan,
                    "difference_upper": nan, "p_larger_than_population": nan})
    else:
        diff = eff - pop
        dlo, dhi = np.quantile(diff, [a, 1 - a])
        out.update({"population_mean": float(pop.mean()), "difference_mean": float(diff.mean()),
                    "difference_lower": float(dlo), "difference_upper": float(dhi),
                    "p_larger_than_population": float(np.mean(d * diff > 0))})
    return out
