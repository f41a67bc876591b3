"""Neighbourhoods in a run: the two-level fit, design effects and neighbourhood-level policies.

With a ``[neighbourhoods]`` table the pipeline fits, *after* the single-level fit, the two-level
model of :mod:`veerkracht_bayes.sem.twolevel` to the per-neighbourhood statistics of the items of
the chosen constructs (:func:`veerkracht_bayes.survey.clusters.cluster_statistics_from_survey`)
and evaluates the neighbourhood-level policies on its between level
(:func:`veerkracht_bayes.causal.twolevel.between_do`). The single-level numbers (``effects.csv``,
the ranking) are not changed by it. A single-item construct of the two-level model gets its loading
from the codebook's per-item ``reliability:`` on the observed scale
(:func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`, as the single-level fit),
else from ``[model] reliability``; ``neighbourhoods.json`` records both (``meta.settings``).

What a neighbourhood-level policy is here
-----------------------------------------
A policy lever whose out-link points into a *between* construct (on MARVEL: meeting places,
neighbourhood professionals and community initiatives into community support; policies P05 and
P06) acts on that construct's neighbourhood means. Per posterior draw ``s`` the direct shift of
the target's mean (total-scale SD units) is the same assumed dose as the single-level route uses:

    shift_s(target) = sum over the policy's levers L with a link L -> target:
                      coverage_s(L) * b_s(L -> target)

with the coverage draw and the lever's per-exposure effect draw taken from the run's do-query
(``DoResult.doses`` and ``DoResult.draws.B``: same dose seed, same draws). That shift enters
``between_do`` as a per-draw shift of the between construct, and the between links (estimated from
the neighbourhood means) carry it to the other between constructs. A lever's out-links into
constructs without a between factor (e.g. meeting places -> social network) are not part of this
route; every row says which were left out (``not_in_route``).

The two fits are separate posteriors. The ``S`` draws of the two-level fit are paired with the
single-level draws at evenly spaced positions (draw ``j`` with single-level draw
``floor(j * S_single / S)``), a fixed, seed-free rule, so rerunning gives the same numbers.

No microdata: ``neighbourhoods.json`` holds counts, size classes, ICCs and design effects; small
neighbourhoods are counted, never listed by their code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.twolevel import between_do

# run_neighbourhoods (the pipeline's entry point; it needs a validated survey and a do-query) is
# reached as a module attribute.
__all__ = ["EFFECT_COLUMNS", "LINK_COLUMNS", "NeighbourhoodResult", "safe_cluster_summary",
           "policy_between_shifts", "neighbourhood_effect_rows", "twolevel_diagnostics", "links_table"]

log = logging.getLogger(__name__)

#: Columns of ``neighbourhood_effects.csv``, in order.
EFFECT_COLUMNS = (
    "policy", "advice", "outcome", "level", "mean", "lower", "upper", "ci_prob", "p_relevant", "p_positive",
    "reachable", "single_level_mean", "single_level_lower", "single_level_upper", "direct_links",
    "not_in_route", "n_draws", "rests_on",
)
#: Columns of ``neighbourhood_links.csv``, in order.
LINK_COLUMNS = ("level", "parameter", "name", "mean", "sd", "lower", "upper", "r_hat", "ess_bulk")


@dataclass
class NeighbourhoodResult:
    """What the ``[neighbourhoods]`` step produced.

    Attributes
    ----------
    summary
        :func:`safe_cluster_summary` of the cluster statistics (counts, ICCs, design effects).
    diagnostics
        :func:`twolevel_diagnostics` of the two-level fit (plus ``seconds``).
    effects
        ``neighbourhood_effects.csv`` (:data:`EFFECT_COLUMNS`).
    links
        ``neighbourhood_links.csv`` (:data:`LINK_COLUMNS`).
    meta
        Constructs, between constructs, links, policies, skipped policies, settings.
    fit
        The :class:`~veerkracht_bayes.inference.twolevel_fit.TwoLevelFit` (not written to disk).

    Examples
    --------
    >>> r = NeighbourhoodResult(summary={"n_clusters": 3}, diagnostics={"passed": True})
    >>> sorted(r.to_dict())
    ['cluster', 'fit', 'meta']
    """

    summary: dict[str, Any]
    diagnostics: dict[str, Any]
    effects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(EFFECT_COLUMNS)))
    links: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(LINK_COLUMNS)))
    meta: dict[str, Any] = field(default_factory=dict)
    fit: Any = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the two-level fit's diagnostics passed."""
        return bool(self.diagnostics.get("passed", False))

    def to_dict(self) -> dict[str, Any]:
        """``neighbourhoods.json``: ``cluster`` (design effects), ``fit`` (diagnostics), ``meta``."""
        return {"cluster": self.summary, "fit": self.diagnostics, "meta": self.meta}


def safe_cluster_summary(stats: Any) -> dict[str, Any]:
    """The cluster statistics' JSON summary without neighbourhood codes of small clusters.

    Small clusters (below ``min_cluster_size``) are counted (``n_small_clusters``,
    ``small_cluster_respondents``), never listed by label: a small cell's code plus its size can
    point at respondents. Adds the items ranked by ICC (``most_clustered``); ``source`` keeps the
    file name only.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> cl = ["a"] * 6 + ["b"] * 6 + ["c"]
    >>> cs = cluster_statistics(np.random.default_rng(0).normal(size=(13, 2)), cl, item_names=["q1", "q2"],
    ...                         min_cluster_size=2)
    >>> s = safe_cluster_summary(cs)
    >>> s["n_small_clusters"], s["small_cluster_respondents"], "small_clusters" in s
    (1, 1, False)
    """
    s = dict(stats.summary())
    if s.get("source"):  # the file name only: no local folders in the outputs
        s["source"] = Path(str(s["source"])).name
    small = s.pop("small_clusters", []) or []
    s["n_small_clusters"] = len(small)
    s["small_cluster_respondents"] = int(sum(int(x["size"]) for x in small))
    items = sorted(s.get("items", []), key=lambda r: -float(r["icc"]) if np.isfinite(r["icc"]) else 0.0)
    s["most_clustered"] = [r["item"] for r in items]
    return s


def _pairing(n_single: int, n_two: int) -> np.ndarray:
    """Single-level draw paired with each two-level draw (evenly spaced)."""
    return (np.arange(n_two) * n_single) // max(n_two, 1)


def policy_between_shifts(do_res: Any, policy: str, between: Sequence[str], n_draws: int | None = None
                          ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Per-draw direct shifts of between constructs by a policy's levers (module docstring).

    Parameters
    ----------
    do_res
        The run's :class:`~veerkracht_bayes.causal.do.DoResult` (its ``doses`` and ``draws.B``).
    policy
        The policy (intervention) name.
    between
        The between constructs.
    n_draws
        Draws wanted (the two-level fit's); default the do-query's. Draws are paired at evenly
        spaced positions.

    Returns
    -------
    (dict, list, list)
        ``{target: (n_draws,) shift}`` (total-scale SDs), the links used (``lever->target``) and the
        lever's other out-links (not in this route).

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> B = np.zeros((2, 3, 3)); B[:, 1, 0] = [0.2, 0.4]; B[:, 2, 0] = 0.1   # lever -> a, lever -> c
    >>> draws = SimpleNamespace(B=B, nodes=("lever", "a", "c"), edge_keys=("lever->a", "lever->c"))
    >>> doses = np.zeros((1, 2, 3)); doses[0, :, 0] = [0.5, 0.25]              # coverage draws
    >>> res = SimpleNamespace(names=("P",), doses=doses, draws=draws, nodes=draws.nodes)
    >>> shifts, used, other = policy_between_shifts(res, "P", ["a"])
    >>> shifts["a"].tolist(), used, other
    ([0.1, 0.1], ['lever->a'], ['lever->c'])
    """
    names = list(do_res.names)
    i = names.index(policy)
    draws = do_res.draws
    nodes = list(draws.nodes)
    idx = {n: k for k, n in enumerate(nodes)}
    doses = np.asarray(do_res.doses[i], dtype=float)  # (S, P)
    B = np.asarray(draws.B, dtype=float)
    S = B.shape[0]
    sel = _pairing(S, S if n_draws is None else int(n_draws))
    levers = [n for n in nodes if np.any(doses[:, idx[n]] != 0.0)]
    shifts: dict[str, np.ndarray] = {}
    used: list[str] = []
    other: list[str] = []
    for lever in levers:
        for key in draws.edge_keys:
            src, tgt = key.split("->", 1)
            if src != lever:
                continue
            if tgt in between:
                x = doses[:, idx[lever]] * B[:, idx[tgt], idx[lever]]
                shifts[tgt] = shifts.get(tgt, 0.0) + x[sel]
                used.append(key)
            else:
                other.append(key)
    return shifts, used, other


def neighbourhood_effect_rows(between_arrays: Mapping[str, Any], do_res: Any, policies: Sequence[Any], *,
                              ci_prob: float = 0.9, min_relevant_change: float = 0.05,
                              edge_evidence: Mapping[str, str] | None = None,
                              icc_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """``neighbourhood_effects.csv``: each policy's effect on every between construct's mean,
    through the between level, next to the single-level estimate of the same policy and outcome.

    Parameters
    ----------
    between_arrays
        ``{"B": (S, K, K), "share": (S, K), "nodes": K names}``
        (:meth:`~veerkracht_bayes.inference.twolevel_fit.TwoLevelFit.between_arrays`).
    do_res
        The run's do-query (doses, lever effects and the single-level effects).
    policies
        Policy objects (``id``, ``advice``) to evaluate.
    ci_prob, min_relevant_change
        Interval probability; ``p_relevant = P(|effect| >= min_relevant_change)``.
    edge_evidence
        Link -> evidence class (``literature``/``assumption``) for the ``rests_on`` text.
    icc_range
        Smallest and largest item ICC of the between constructs (for ``rests_on``).

    Examples
    --------
    A chain support -> agency at the between level, one lever into support:

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> nodes = ("lever", "community_support", "collective_agency")
    >>> B1 = np.zeros((4, 3, 3)); B1[:, 1, 0] = 0.4                  # lever -> support (per exposure)
    >>> draws = SimpleNamespace(B=B1, nodes=nodes, edge_keys=("lever->community_support",))
    >>> doses = np.zeros((1, 4, 3)); doses[0, :, 0] = 0.25               # coverage
    >>> eff = np.zeros((1, 4, 3)); eff[0, :, 1] = 0.1
    >>> res = SimpleNamespace(names=("P05",), doses=doses, draws=draws, nodes=nodes, effect=eff,
    ...                       outcome_effect=lambda o, scope: eff[:, :, nodes.index(o)],
    ...                       usable=lambda: np.ones((1, 4), bool))
    >>> Bb = np.zeros((4, 2, 2)); Bb[:, 1, 0] = 0.5                     # support -> agency
    >>> arr = {"B": Bb, "share": np.full((4, 2), 0.04), "nodes": ("community_support", "collective_agency")}
    >>> tab = neighbourhood_effect_rows(arr, res, [SimpleNamespace(id="P05", advice="5")])
    >>> tab[["outcome", "mean", "single_level_mean"]].round(3).values.tolist()
    [['community_support', 0.1, 0.1], ['collective_agency', 0.05, 0.0]]
    """
    B = np.asarray(between_arrays["B"], dtype=float)
    share = np.asarray(between_arrays["share"], dtype=float)
    nodes = list(between_arrays["nodes"])
    S = B.shape[0]
    a = (1 - ci_prob) / 2
    ev = dict(edge_evidence or {})
    rows = []
    names = list(do_res.names)
    for p in policies:
        pid = str(p.id)
        if pid not in names:
            continue
        shifts, used, other = policy_between_shifts(do_res, pid, nodes, S)
        res = between_do(B, share, nodes, shifts=shifts)
        eff = res["effect"]
        i = names.index(pid)
        usable = np.asarray(do_res.usable()[i], bool)
        coverage = sorted({k.split("->")[0] for k in used})
        lever_ev = sorted({ev.get(k, "prior") for k in used})
        blinks = [f"{nodes[s]}->{nodes[t]}" for t in range(len(nodes)) for s in range(len(nodes))
                  if np.any(B[:, t, s] != 0)]
        icc_txt = (f" (items' ICC from {icc_range[0]:.3f} to {icc_range[1]:.3f})" if icc_range is not None else "")
        rests = (f"assumption: coverage of {', '.join(coverage)}; prior ({'/'.join(lever_ev)}): per-exposure "
                 f"effect {', '.join(used)}; data: between shares"
                 + (f" and links {', '.join(blinks)}" if blinks else "")
                 + f" from the neighbourhood means{icc_txt}")
        reach = _reachable(B, [nodes.index(t) for t in shifts])
        for k, node in enumerate(nodes):
            x = eff[:, k]
            lo, hi = np.quantile(x, [a, 1 - a])
            single = np.asarray(do_res.outcome_effect(node, scope="population")[i], dtype=float)
            single = single[usable & np.isfinite(single)]
            if single.size:
                smean = float(single.mean())
                slo, shi = (float(v) for v in np.quantile(single, [a, 1 - a]))
            else:
                smean = slo = shi = float("nan")
            rows.append({
                "policy": pid, "advice": str(getattr(p, "advice", "")), "outcome": node, "level": "between",
                "mean": float(x.mean()), "lower": float(lo), "upper": float(hi), "ci_prob": float(ci_prob),
                "p_relevant": float(np.mean(np.abs(x) >= float(min_relevant_change))),
                "p_positive": float(np.mean(x > 0)), "reachable": bool(reach[k]),
                "single_level_mean": smean, "single_level_lower": slo, "single_level_upper": shi,
                "direct_links": "; ".join(k2 for k2 in used if k2.endswith("->" + node)),
                "not_in_route": "; ".join(other), "n_draws": int(S), "rests_on": rests,
            })
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))


def _reachable(B: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """Between constructs reachable from ``start`` along links present in any draw."""
    K = B.shape[1]
    adj = np.any(B != 0, axis=0)  # adj[t, s]: s -> t
    seen = np.zeros(K, bool)
    stack = list(start)
    while stack:
        s = stack.pop()
        if seen[s]:
            continue
        seen[s] = True
        stack += [t for t in range(K) if adj[t, s] and not seen[t]]
    return seen


def twolevel_diagnostics(fit: Any, *, rhat_max: float = 1.01, ess_min: float = 400.0) -> dict[str, Any]:
    """Convergence of a two-level fit: divergences, largest R-hat, smallest bulk/tail ESS and the
    worst quantity; ``passed`` when there are no divergent transitions, R-hat <= ``rhat_max``
    (checked with 2 or more chains) and both ESS >= ``ess_min``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from types import SimpleNamespace
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"share": (("chain", "draw", "b"), rng.normal(size=(2, 200, 2)))})
    >>> fit = SimpleNamespace(posterior=post, n_divergent=lambda: 0)
    >>> d = twolevel_diagnostics(fit, rhat_max=1.05, ess_min=100)
    >>> d["passed"], d["divergences"], d["n_chains"]
    (True, 0, 2)
    """
    import arviz as az

    post = fit.posterior
    nchain = int(post.sizes.get("chain", 1))
    ndraw = int(post.sizes.get("draw", 0))
    worst_r, worst_r_name = float("nan"), None
    worst_e, worst_e_name = float("inf"), None
    from veerkracht_bayes.inference.diagnostics import constant_entries_quiet

    with constant_entries_quiet():  # psi_within / psi_between of exogenous constructs are fixed at 1
        rhat = az.rhat(post) if nchain > 1 else None
        ess_b, ess_t = az.ess(post, method="bulk"), az.ess(post, method="tail")
    for var in post.data_vars:
        if rhat is not None:
            r = np.asarray(rhat[var].values, dtype=float).reshape(-1)
            if r.size and np.any(np.isfinite(r)):
                j = int(np.nanargmax(r))
                if not np.isfinite(worst_r) or r[j] > worst_r:
                    worst_r, worst_r_name = float(r[j]), f"{var}[{j}]"
        for e_arr in (ess_b, ess_t):
            e = np.asarray(e_arr[var].values, dtype=float).reshape(-1)
            if e.size and np.any(np.isfinite(e)):
                j = int(np.nanargmin(e))
                if e[j] < worst_e:
                    worst_e, worst_e_name = float(e[j]), f"{var}[{j}]"
    ndiv = int(fit.n_divergent())
    problems = []
    if ndiv:
        problems.append(f"{ndiv} divergent transitions of {nchain * ndraw}")
    if np.isfinite(worst_r) and worst_r > rhat_max:
        problems.append(f"max R-hat {worst_r:.3f} > {rhat_max} ({worst_r_name})")
    if np.isfinite(worst_e) and worst_e < ess_min:
        problems.append(f"min ESS {worst_e:.0f} < {ess_min:.0f} ({worst_e_name})")
    worst = worst_e_name if (np.isfinite(worst_e) and worst_e < ess_min) or not np.isfinite(worst_r) \
        or worst_r <= rhat_max else worst_r_name
    return {"passed": not problems, "problems": problems, "divergences": ndiv, "n_chains": nchain,
            "n_draws": ndraw, "rhat_max": worst_r if np.isfinite(worst_r) else None,
            "ess_min": worst_e if np.isfinite(worst_e) else None, "worst_quantity": worst,
            "thresholds": {"rhat_max": float(rhat_max), "ess_min": float(ess_min), "divergences": 0},
            "rhat_note": None if nchain > 1 else "R-hat needs 2 or more chains"}


def links_table(fit: Any, prob: float = 0.9) -> pd.DataFrame:
    """``neighbourhood_links.csv``: between shares, between and within links with intervals.

    Examples
    --------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> tab = pd.DataFrame([{"parameter": "share", "level": "between", "name": "a", "mean": 0.05, "sd": 0.01,
    ...                      "lower": 0.03, "upper": 0.07, "r_hat": 1.0, "ess_bulk": 400.0},
    ...                     {"parameter": "item_icc", "level": "item", "name": "q1", "mean": 0.02, "sd": 0.01,
    ...                      "lower": 0.01, "upper": 0.03, "r_hat": 1.0, "ess_bulk": 400.0}])
    >>> links_table(SimpleNamespace(summary_table=lambda prob: tab))["parameter"].tolist()
    ['share']
    """
    tab = fit.summary_table(prob)
    if not len(tab):
        return pd.DataFrame(columns=list(LINK_COLUMNS))
    tab = tab[tab["parameter"].isin(["share", "beta_between", "beta_within"])]
    return tab.reindex(columns=list(LINK_COLUMNS)).reset_index(drop=True)


def run_neighbourhoods(cfg: Any, vi: Any, do_res: Any, *, edge_evidence: Mapping[str, str] | None = None,
                       progressbar: bool = False) -> NeighbourhoodResult:
    """The ``[neighbourhoods]`` step of a run: cluster statistics, the two-level fit, its
    diagnostics, the neighbourhood-level policy effects and the link table.

    Examples
    --------
    It fits a model (seconds to minutes; ``tests/workflow/test_neighbourhoods.py`` runs it end to end):

    >>> import veerkracht_bayes as vb
    >>> result = vb.run("config_with_neighbourhoods.toml", fast=True)  # doctest: +SKIP
    >>> result.neighbourhoods.effects.columns[:3].tolist()  # doctest: +SKIP
    ['policy', 'advice', 'outcome']
    """
    from veerkracht_bayes.inference.twolevel_fit import fit_twolevel
    from veerkracht_bayes.survey.clusters import cluster_statistics_from_survey
    from veerkracht_bayes.survey.codebook import continuous_path_reliabilities

    nb, res = cfg.neighbourhoods, vi.neighbourhoods
    q = cfg.query
    stats, item_construct = cluster_statistics_from_survey(vi.survey, res["cluster"], constructs=res["constructs"],
                                                           min_cluster_size=nb.min_cluster_size)
    # single items take the codebook's reliability on the observed scale, as in the single-level fit;
    # every construct here is a latent of its own (graph=None: no covariates), and only the model's
    # single items are named
    n_items = {c: list(item_construct.values()).count(c) for c in set(item_construct.values())}
    item_rel = {it: v for it, v in continuous_path_reliabilities(vi.survey, None, cfg.model.reliability).items()
                if it in item_construct and n_items[item_construct[it]] == 1}
    t0 = time.perf_counter()
    fit = fit_twolevel(stats, item_construct, vi.graph, between=list(res["between"]), draws=nb.draws,
                       tune=nb.tune, chains=nb.chains, random_seed=cfg.sampler.seed,
                       target_accept=cfg.sampler.target_accept, progressbar=progressbar,
                       reliability=cfg.model.reliability, item_reliability=item_rel or None,
                       # within links take the diagram's literature priors, as in the main fit
                       priors=None if cfg.inputs.priors == "vague" else vi.priors)
    seconds = time.perf_counter() - t0
    # a summary needs the same ESS however many draws it took: the run's threshold as it stands
    # (--fast has already scaled it), not rescaled by this fit's draws (as for the group fits)
    ess_min = cfg.diagnostics.ess_min
    diag = twolevel_diagnostics(fit, rhat_max=cfg.diagnostics.rhat_max, ess_min=ess_min)
    diag["seconds"] = round(seconds, 1)
    summary = safe_cluster_summary(stats)
    arrays = fit.between_arrays()
    bnodes = list(arrays["nodes"])
    iccs = [float(r["icc"]) for r in summary.get("items", []) if item_construct.get(r["item"]) in bnodes]
    pols = [p for p in vi.policies.policies if p.id in res["policies"]]
    effects = neighbourhood_effect_rows(arrays, do_res, pols, ci_prob=q.ci_prob,
                                        min_relevant_change=q.min_relevant_change, edge_evidence=edge_evidence,
                                        icc_range=(min(iccs), max(iccs)) if iccs else None)
    lay = fit.layout
    meta = {"constructs": list(res["constructs"]), "between": bnodes, "item_construct": dict(item_construct),
            "between_links": list(lay.between_links), "within_links": list(lay.within_links),
            "policies": list(res["policies"]), "skipped_policies": dict(res.get("skipped") or {}),
            "settings": {"draws": nb.draws, "tune": nb.tune, "chains": nb.chains, "seed": cfg.sampler.seed,
                         "min_cluster_size": nb.min_cluster_size, "reliability": float(lay.reliability),
                         "item_reliability": dict(lay.item_reliability)},
            "pairing": "two-level draw j is paired with single-level draw floor(j * S_single / S_two)",
            "semantics": "a lever's out-link into a between construct shifts that construct's neighbourhood "
                         "means by coverage x per-exposure effect (the single-level route's dose draws); the "
                         "between links carry it on; out-links into other constructs are not in this route"}
    return NeighbourhoodResult(summary=summary, diagnostics=diag, effects=effects,
                               links=links_table(fit, q.ci_prob), meta=meta, fit=fit)
