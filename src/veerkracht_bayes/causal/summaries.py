"""Summaries of policy effects: per policy x outcome x scope, in a tidy DataFrame.

Conventions
-----------
* One ``ci_prob`` (default :data:`CI_PROB` = 0.90) sets every central interval.
* Effects are in SD units of the outcome (or in units of the weighted sum for a composite).
* ``scope``: ``"within"`` is the effect within the targeted subgroup (the whole population for an
  untargeted policy); ``"population"`` is the population average (within effect times the
  subgroup's weighted prevalence).
* Desirable direction per outcome: +1 (higher is better) unless listed in
  :data:`LOWER_IS_BETTER` (stress, mental problems, ...) or set on a composite ``Outcome``.
* Only *usable* draws enter any statistic: the intervened and the baseline system are both
  solvable and stable (:meth:`DoResult.usable`); ``p_stable`` is their share and ``n_used`` their
  number for the row.

Decision quantities
-------------------
* ``p_meaningful`` = P(direction x effect > mrc): the probability that the policy helps by at least
  the minimal relevant change ``mrc`` (default :data:`MIN_RELEVANT_CHANGE` = 0.05 SD, a
  convention; see docs/do_queries.md). This is what reports call "probability it helps".
* ``p_positive`` = P(direction x effect > 0): the probability of the right *direction* only; with
  sign-constrained link priors it is close to 1 whenever a path exists, so it is not evidence of
  a relevant effect.
* ``p_best`` and the rank (``rank_mean``, ``rank_lower``, ``rank_upper``: the ``ci_prob`` interval
  of the per-draw rank, 1 = best in the desirable direction; ties share the average rank) compare
  the non-suppressed policies per outcome x scope over the draws usable for all of them.
* ``reachable`` is False when no node the policy acts on has a directed path to the outcome; the
  row then has ``evidence = "no path"``, NaN mean/median/interval, and ``p_meaningful`` =
  ``p_positive`` = 0.

Evidence
--------
``share_assumption``, ``share_literature``, ``share_data`` decompose each effect by the
elasticities of its inputs (:mod:`veerkracht_bayes.causal.evidence`); ``evidence`` names the
class the effect rests on (``data`` only when ``share_data > 0.5``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome
from veerkracht_bayes.causal.evidence import EVIDENCE_CLASSES, evidence_label, evidence_shares
from veerkracht_bayes.errors import InterventionError, did_you_mean

__all__ = ["CI_PROB", "MIN_RELEVANT_CHANGE", "LOWER_IS_BETTER", "SUMMARY_COLUMNS",
           "desirable_direction", "summarise_effects", "p_best", "rank_draws", "pairwise_beats"]

#: Default central-interval probability, used everywhere.
CI_PROB = 0.90
#: Default minimal relevant change, in SD of the outcome (a convention; docs/do_queries.md).
MIN_RELEVANT_CHANGE = 0.05
#: Nodes for which a decrease is the desirable direction.
LOWER_IS_BETTER = frozenset({"stress", "mental_problems", "physical_problems", "shame",
                             "performance_pressure", "adverse_life_events", "help_system_complexity",
                             "mh_waiting_time"})
#: Columns of :func:`summarise_effects`, in order.
SUMMARY_COLUMNS = ("policy", "outcome", "subgroup", "scope", "direction", "reachable", "mean",
                   "median", "lower", "upper", "ci_prob", "p_meaningful", "p_positive", "mrc",
                   "p_best", "rank_mean", "rank_lower", "rank_upper", "p_stable", "n_draws",
                   "n_used", "share_assumption", "share_literature", "share_data", "evidence",
                   "suppressed", "reason")


def desirable_direction(outcome: str | Outcome, directions: Mapping[str, int] | None = None) -> int:
    """+1 when higher is better, -1 when lower is better.

    Examples
    --------
    >>> desirable_direction("wellbeing"), desirable_direction("stress")
    (1, -1)
    """
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
    return result.usable()


def rank_draws(result: DoResult, outcome: str | Outcome, scope: str = "population",
               policies: Sequence[str] | None = None, directions: Mapping[str, int] | None = None
               ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per-draw ranks of the non-suppressed policies (1 = best in the desirable direction).

    Returns ``(names, x, ranks)``: ``x (I', S')`` direction x effect and ``ranks (I', S')``
    (ties: average rank) over the ``S'`` draws usable for every compared policy.

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
    >>> ivs = [Intervention(name=n, parts=[Shift(node=n, delta=1.0)]) for n in ("x", "a")]
    >>> names, x, ranks = rank_draws(do_query(draws, ivs, outcomes=["b"]), "b")
    >>> names, ranks.tolist()
    (['x', 'a'], [[2.0], [1.0]])
    """
    from scipy.stats import rankdata

    oc = _outcome(result, outcome)
    idx = [result.index(p) for p in (policies or result.names)]
    idx = [i for i in idx if result.suppressed[i] is None]
    d = desirable_direction(oc, directions)
    x = d * result.outcome_effect(oc, scope)[idx]  # (I', S)
    ok = _valid(result)[idx].all(axis=0) & np.isfinite(x).all(axis=0)
    x = x[:, ok]
    ranks = rankdata(-x, method="average", axis=0) if x.size else np.zeros_like(x)
    return [result.names[i] for i in idx], x, ranks


def p_best(result: DoResult, outcome: str | Outcome, scope: str = "population",
           policies: Sequence[str] | None = None, directions: Mapping[str, int] | None = None
           ) -> pd.Series:
    """P(policy is best for the outcome), over draws usable for all compared policies.

    Suppressed policies (cells below the minimum size) are not compared. The Series has
    ``attrs["n_draws"]`` = the number of draws used.

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
    >>> ivs = [Intervention(name=n, parts=[Shift(node=n, delta=1.0)]) for n in ("x", "a")]
    >>> p_best(do_query(draws, ivs, outcomes=["b"]), "b").to_dict()
    {'x': 0.0, 'a': 1.0}
    """
    names, x, _ = rank_draws(result, outcome, scope, policies, directions)
    if x.shape[1] == 0:
        s = pd.Series(np.nan, index=names, name="p_best")
    else:
        best = np.argmax(x, axis=0)
        s = pd.Series(np.bincount(best, minlength=len(names)) / x.shape[1], index=names,
                      name="p_best")
    s.attrs["n_draws"] = int(x.shape[1])
    return s


def pairwise_beats(result: DoResult, outcome: str | Outcome, scope: str = "population",
                   policies: Sequence[str] | None = None, directions: Mapping[str, int] | None = None
                   ) -> pd.DataFrame:
    """Matrix ``M[A, B] = P(A beats B)`` (strictly better in the desirable direction).

    Over draws usable for both policies; ``P(A > B) + P(B > A) = 1`` when there are no ties.
    The diagonal is NaN.

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
    >>> ivs = [Intervention(name=n, parts=[Shift(node=n, delta=1.0)]) for n in ("x", "a")]
    >>> float(pairwise_beats(do_query(draws, ivs, outcomes=["b"]), "b").loc["a", "x"])  # P(a beats x)
    1.0
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
    edge_evidence: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Tidy summary: one row per policy x outcome x scope (columns :data:`SUMMARY_COLUMNS`).

    Parameters
    ----------
    result
        A :func:`~veerkracht_bayes.causal.do.do_query` result.
    outcomes
        Outcome names or composites (default: the result's outcomes).
    ci_prob
        Central interval probability (effects and ranks).
    min_relevant_change
        The minimal relevant change ``mrc`` (SD of the outcome) behind ``p_meaningful``.
    directions
        Desirable direction per outcome name (+1 / -1), overriding the defaults.
    scopes
        ``"within"`` and/or ``"population"``.
    edge_evidence
        ``edge key -> "data" | "literature" | "assumption"``
        (:func:`veerkracht_bayes.causal.evidence.edge_evidence`); default: the draws' engine
        classes, every non-data link counted as ``assumption``.

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
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> iv = Intervention(name="x up", parts=[Shift(node="x", delta=1.0)])
    >>> from veerkracht_bayes.causal.do import do_query
    >>> tab = summarise_effects(do_query(draws, [iv], outcomes=["b"]))
    >>> tab[["policy", "outcome", "mean"]].round(3).to_dict("records")[0]
    {'policy': 'x up', 'outcome': 'b', 'mean': 0.222}
    """
    if not 0.0 < ci_prob < 1.0:
        raise InterventionError(f"ci_prob {ci_prob!r} not in (0, 1)")
    if not (np.isfinite(min_relevant_change) and min_relevant_change >= 0):
        raise InterventionError(f"min_relevant_change {min_relevant_change!r} must be >= 0")
    outs = [_outcome(result, o) for o in (outcomes or result.outcomes)]
    lo_q, hi_q = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
    usable = result.usable()
    p_stable = usable.mean(axis=1)
    nan_stats = {k: np.nan for k in ("mean", "median", "lower", "upper", "p_meaningful",
                                     "p_positive", "p_best", "rank_mean", "rank_lower",
                                     "rank_upper", "share_assumption", "share_literature",
                                     "share_data")}
    rows = []
    for oc in outs:
        d = desirable_direction(oc, directions)
        reach = result.is_reachable(oc)
        shares = evidence_shares(result, oc, edge_evidence)  # (I, S, 3), scope-free
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_shares = np.nanmean(shares, axis=1)  # (I, 3)
        for scope in scopes:
            names, _, ranks = rank_draws(result, oc, scope, directions=directions)
            best = p_best(result, oc, scope, directions=directions)
            rpos = {n: k for k, n in enumerate(names)}
            eff = result.outcome_effect(oc, scope)
            for i, name in enumerate(result.names):
                keep = usable[i] & np.isfinite(eff[i])
                x = eff[i][keep]
                reason = result.suppressed[i]
                row = {"policy": name, "outcome": oc.name, "subgroup": result.subgroups[i] or "all",
                       "scope": scope, "direction": d, "reachable": bool(reach[i]),
                       "ci_prob": ci_prob, "mrc": min_relevant_change,
                       "p_stable": float(p_stable[i]), "n_draws": int(eff.shape[1]),
                       "n_used": int(x.size), "suppressed": reason is not None,
                       "reason": reason or "", **nan_stats}
                if x.size == 0:
                    row["evidence"] = "no path" if not reach[i] else ""
                    rows.append(row)
                    continue
                if name in rpos and ranks.shape[1]:
                    r = ranks[rpos[name]]
                    row.update({"p_best": float(best.get(name, np.nan)), "rank_mean": float(r.mean()),
                                "rank_lower": float(np.quantile(r, lo_q, method="inverted_cdf")),
                                "rank_upper": float(np.quantile(r, hi_q, method="inverted_cdf"))})
                dx = d * x
                row.update({"p_meaningful": float((dx > min_relevant_change).mean()),
                            "p_positive": float((dx > 0).mean())})
                if not reach[i]:
                    row["evidence"] = "no path"
                else:
                    row.update({"mean": float(x.mean()), "median": float(np.median(x)),
                                "lower": float(np.quantile(x, lo_q)),
                                "upper": float(np.quantile(x, hi_q))})
                    sh = mean_shares[i]
                    row.update({f"share_{c}": float(v) for c, v in zip(EVIDENCE_CLASSES, sh)})
                    row["evidence"] = evidence_label(sh)
                rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
