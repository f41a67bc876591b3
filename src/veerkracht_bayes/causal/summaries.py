"""Summaries of policy effects: per policy x outcome x subgroup, in a tidy DataFrame.

Conventions
-----------
* One ``ci_prob`` (default :data:`CI_PROB` = 0.90) sets every central interval.
* Effects are in SD units of the outcome (or in units of the weighted sum for a composite).
* ``scope``: ``"within"`` is the effect within the targeted subgroup (the whole population for an
  untargeted policy); ``"population"`` is the population average (within effect times the
  subgroup's weighted prevalence).
* Desirable direction per outcome: +1 (higher is better) unless listed in
  :data:`LOWER_IS_BETTER` (stress, mental problems, ...) or set on a composite ``Outcome``.
  ``p_improve`` = P(direction x effect > mrc); ``p_best`` and ``P(A beats B)`` use
  direction x effect, so "best" means best in the desirable direction.
* Draws where any compared policy is not solvable and stable are left out of ``p_best`` and the
  pairwise matrix (the count used is reported); per-row statistics use the row's solvable draws,
  and ``p_stable`` reports the share of draws that stay solvable and stable under the policy.

Evidence label
--------------
The effect of a policy is ``(I - B_do)^-1 u``, a sum over walks from where it enters to the outcome.
Split it as ``total = data_only + via_prior`` where ``data_only`` sums the walks that use only
edges classed ``data-informed`` by the engine (:attr:`DoResult.effect_data_only`) and ``via_prior``
the walks using at least one prior-dominated (or unclassified) edge. With posterior means ``D`` and
``V``, ``prior_share = |V| / (|V| + |D|)``; ``evidence = "prior"`` when ``prior_share >= 0.5``, else
``"data"``. Without an engine classification every edge counts as prior-dominated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome
from veerkracht_bayes.errors import InterventionError, did_you_mean

__all__ = ["CI_PROB", "MIN_RELEVANT_CHANGE", "LOWER_IS_BETTER", "desirable_direction",
           "summarise_effects", "p_best", "pairwise_beats"]

#: Default central-interval probability, used everywhere.
CI_PROB = 0.90
#: Default minimal relevant change, in SD of the outcome.
MIN_RELEVANT_CHANGE = 0.05
#: Nodes for which a decrease is the desirable direction.
LOWER_IS_BETTER = frozenset({"stress", "mental_problems", "physical_problems", "shame",
                             "performance_pressure", "adverse_life_events", "help_system_complexity",
                             "mh_waiting_time"})


def desirable_direction(outcome: str | Outcome, directions: Mapping[str, int] | None = None) -> int:
    """+1 when higher is better, -1 when lower is better."""
    name = outcome if isinstance(outcome, str) else outcome.name
    if directions and name in directions:
        d = int(directions[name])
    elif isinstance(outcome, Outcome) and outcome.direction is not None:
        d = outcome.direction
    else:
        d = -1 if name in LOWER_IS_BETTER else 1
    if d not in (1, -1):
        raise InterventionError(f"direction for {name!r} must be +1 or -1 (got {d!r})")
    return d


def _outcome(result: DoResult, outcome: str | Outcome) -> Outcome:
    if isinstance(outcome, Outcome):
        return outcome
    for o in result.outcomes:
        if o.name == outcome:
            return o
    if outcome in result.nodes:
        return Outcome.node(outcome)
    names = [o.name for o in result.outcomes] + list(result.nodes)
    raise InterventionError(f"unknown outcome {outcome!r}{did_you_mean(outcome, names)}")


def _valid(result: DoResult) -> np.ndarray:
    return result.solvable & result.stable


def p_best(result: DoResult, outcome: str | Outcome, scope: str = "population",
           policies: Sequence[str] | None = None, directions: Mapping[str, int] | None = None
           ) -> pd.Series:
    """P(policy is best for the outcome), over draws where all compared policies are valid.

    Suppressed policies (cells below the minimum size) are not compared. The Series has
    ``attrs["n_draws"]`` = the number of draws used.
    """
    oc = _outcome(result, outcome)
    idx = [result.index(p) for p in (policies or result.names)]
    idx = [i for i in idx if result.suppressed[i] is None]
    d = desirable_direction(oc, directions)
    x = d * result.outcome_effect(oc, scope)[idx]  # (I', S)
    ok = _valid(result)[idx].all(axis=0) & np.isfinite(x).all(axis=0)
    x = x[:, ok]
    if x.shape[1] == 0:
        s = pd.Series(np.nan, index=[result.names[i] for i in idx], name="p_best")
    else:
        best = np.argmax(x, axis=0)
        s = pd.Series(np.bincount(best, minlength=len(idx)) / x.shape[1],
                      index=[result.names[i] for i in idx], name="p_best")
    s.attrs["n_draws"] = int(ok.sum())
    return s


def pairwise_beats(result: DoResult, outcome: str | Outcome, scope: str = "population",
                   policies: Sequence[str] | None = None, directions: Mapping[str, int] | None = None
                   ) -> pd.DataFrame:
    """Matrix ``M[A, B] = P(A beats B)`` (strictly better in the desirable direction).

    Over draws where both policies are valid; ``P(A > B) + P(B > A) = 1`` when there are no ties.
    The diagonal is NaN.
    """
    oc = _outcome(result, outcome)
    idx = [result.index(p) for p in (policies or result.names)]
    d = desirable_direction(oc, directions)
    x = d * result.outcome_effect(oc, scope)[idx]
    ok = _valid(result)[idx] & np.isfinite(x)
    n = len(idx)
    M = np.full((n, n), np.nan)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            both = ok[a] & ok[b]
            if both.any():
                M[a, b] = float((x[a, both] > x[b, both]).mean())
    labels = [result.names[i] for i in idx]
    return pd.DataFrame(M, index=pd.Index(labels, name="A"), columns=pd.Index(labels, name="B"))


def summarise_effects(
    result: DoResult,
    outcomes: Sequence[str | Outcome] | None = None,
    *,
    ci_prob: float = CI_PROB,
    min_relevant_change: float = MIN_RELEVANT_CHANGE,
    directions: Mapping[str, int] | None = None,
    scopes: Sequence[str] = ("within", "population"),
) -> pd.DataFrame:
    """Tidy summary: one row per policy x outcome x scope.

    Columns: ``policy, outcome, subgroup, scope, direction, mean, median, lower, upper, ci_prob,
    p_positive, p_above_mrc, p_improve, mrc, p_best, p_stable, n_draws, n_used, prior_share,
    evidence, suppressed, reason``.
    """
    if not 0.0 < ci_prob < 1.0:
        raise InterventionError(f"ci_prob {ci_prob!r} not in (0, 1)")
    outs = [_outcome(result, o) for o in (outcomes or result.outcomes)]
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    p_stable = result.p_stable()
    rows = []
    for oc in outs:
        d = desirable_direction(oc, directions)
        for scope in scopes:
            best = p_best(result, oc, scope, directions=directions)
            eff = result.outcome_effect(oc, scope)
            effd = result.outcome_effect(oc, scope, data_only=True)
            for i, name in enumerate(result.names):
                x = eff[i][np.isfinite(eff[i])]
                xd = effd[i][np.isfinite(eff[i])]
                reason = result.suppressed[i]
                row = {"policy": name, "outcome": oc.name, "subgroup": result.subgroups[i] or "all",
                       "scope": scope, "direction": d, "ci_prob": ci_prob, "mrc": min_relevant_change,
                       "p_stable": float(p_stable[i]), "n_draws": int(eff.shape[1]),
                       "n_used": int(x.size), "suppressed": reason is not None, "reason": reason or ""}
                if x.size == 0:
                    row.update({k: np.nan for k in ("mean", "median", "lower", "upper", "p_positive",
                                                    "p_above_mrc", "p_improve", "p_best",
                                                    "prior_share")})
                    row["evidence"] = ""
                else:
                    D = xd.mean()
                    V = x.mean() - D
                    share = abs(V) / (abs(V) + abs(D)) if (abs(V) + abs(D)) > 0 else np.nan
                    row.update({
                        "mean": x.mean(), "median": np.median(x),
                        "lower": np.quantile(x, lo_q), "upper": np.quantile(x, hi_q),
                        "p_positive": float((x > 0).mean()),
                        "p_above_mrc": float((x > min_relevant_change).mean()),
                        "p_improve": float((d * x > min_relevant_change).mean()),
                        "p_best": float(best.get(name, np.nan)),
                        "prior_share": share,
                        "evidence": "prior" if not share < 0.5 else "data",
                    })
                rows.append(row)
    cols = ["policy", "outcome", "subgroup", "scope", "direction", "mean", "median", "lower", "upper",
            "ci_prob", "p_positive", "p_above_mrc", "p_improve", "mrc", "p_best", "p_stable",
            "n_draws", "n_used", "prior_share", "evidence", "suppressed", "reason"]
    return pd.DataFrame(rows, columns=cols)
