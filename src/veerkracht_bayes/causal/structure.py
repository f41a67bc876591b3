"""How sure is the diagram? Inclusion probabilities of inferred links and the robustness of rankings.

The diagram is the report's, read by us: links marked ``inferred: true`` are our reading, not a
statement of the report. Each such link is treated as uncertain with a documented prior inclusion
probability ``pi`` (default 0.5: the text neither asserts nor denies it); every other link is
taken as present (``p_include = 1``).

Inclusion probability (spike-and-slab via Savage-Dickey)
---------------------------------------------------------
The model with link ``e`` absent is the slab model with ``beta_e = 0`` (nested; the link's prior is
independent of the other parameters). Its Bayes factor against the slab model is the
Savage-Dickey density ratio ``BF01 = p(beta_e = 0 | y) / p(beta_e = 0)`` (Dickey 1971; Wagenmakers
et al. 2010, Cogn Psychol 60:158), computed from the fit already made, and

    p_include = pi / (pi + (1 - pi) BF01).

``p(0)`` is the prior density at zero (the edge of the support for a sign-constrained prior);
``p(0 | y)`` is estimated by fitting a normal (truncated to the prior's support) to the posterior
draws by maximum likelihood: exact when the likelihood is Gaussian in ``beta_e``, which it is to
first order at the sample sizes of the survey.

A link outside the likelihood (cut: it touches a construct without survey items, or a policy lever)
has posterior = prior, so ``BF01 = 1`` exactly and ``p_include = pi``: **the data cannot say whether
such a link exists**. The table marks these links ``informed = False``. The same holds for an
ensemble of graph variants weighed by stacking: variants that differ only in cut links have the same
predictive density, so stacking cannot weigh them (docs/do_queries.md, "How sure is the diagram?").

The graph file has no field that marks a link's sign as ambiguous, so no sign-flip variants are
formed; the sign-constrained priors are kept. Every inferred MARVEL link's evidence states or
implies its direction (docs/do_queries.md, "How sure is the diagram?"); whether a policy's sign
survives the structural doubt is ``p_sign_holds``.

Robustness of the ranking
-------------------------
Structures are drawn from the inclusion probabilities (independent Bernoulli per uncertain link;
the posterior of the included links is kept — exact for cut links, whose draws are prior draws
independent of the rest, and a first-order approximation for informed ones). For each structure the
posterior-mean population effect of every policy is recomputed on a common subsample of the draws
with the excluded links set to zero, and the doses at their means (the effects are linear in the
dose and the doses are independent of the coefficients, so the posterior mean is unchanged).
``p_rank_holds`` is the share of structures in which a policy keeps the rank it has under the full
diagram (for the outcome, in its desirable direction); ``p_sign_holds`` the share in which the sign
of its mean effect is the one under the full diagram.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from veerkracht_bayes.causal.do import SubgroupInfo, do_query, resolve_outcomes
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Fixed, Intervention, Shift
from veerkracht_bayes.causal.summaries import desirable_direction
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean

__all__ = ["STRUCTURE_COLUMNS", "ROBUSTNESS_COLUMNS", "DEFAULT_PRIOR_INCLUSION", "VARIANTS",
           "prior_density_at_zero", "posterior_density_at_zero", "inclusion_probabilities",
           "structural_robustness"]

#: Prior inclusion probability of an inferred link (the text neither asserts nor denies it).
DEFAULT_PRIOR_INCLUSION = 0.5
#: Which links are uncertain: ``inferred`` (links marked inferred) or ``none``.
VARIANTS = ("inferred", "none")

STRUCTURE_COLUMNS = ("link", "inferred", "informed", "prior_inclusion", "bf01", "p_include",
                     "posterior_mean", "posterior_sd")
ROBUSTNESS_COLUMNS = ("policy", "outcome", "scope", "rank", "mean", "p_rank_holds",
                      "p_sign_holds", "n_structures")


def _bounds(prior: Any) -> tuple[float, float]:
    lo = getattr(prior, "lower", None)
    hi = getattr(prior, "upper", None)
    return (-np.inf if lo is None else float(lo)), (np.inf if hi is None else float(hi))


def prior_density_at_zero(prior: Any) -> float:
    """Density at 0 of an edge prior (``distribution``, ``mean``, ``sd``, ``lower``, ``upper``,
    ``nu``), truncated to its support; at a bound, the one-sided limit.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> p = NS(distribution="truncated_normal", mean=0.0, sd=1.0, lower=0.0, upper=None, nu=None)
    >>> round(prior_density_at_zero(p), 4)  # half-normal(1) at 0: 2 phi(0)
    0.7979
    """
    dist = str(getattr(prior, "distribution", "normal"))
    mean, sd = float(prior.mean), float(prior.sd)
    lo, hi = _bounds(prior)
    if dist == "student_t":
        base = stats.t(df=float(prior.nu), loc=mean, scale=sd)
    else:
        base = stats.norm(loc=mean, scale=sd)
    mass = base.cdf(hi) - base.cdf(lo)
    return float(base.pdf(0.0) / mass)


def posterior_density_at_zero(x: np.ndarray, lower: float = -np.inf, upper: float = np.inf) -> float:
    """Density at 0 of a normal, truncated to ``[lower, upper]``, fitted to draws ``x`` by
    maximum likelihood (the posterior under a Gaussian likelihood and a (truncated) normal prior).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(0.0, 1.0, 20000)
    >>> round(posterior_density_at_zero(x), 2)
    0.4
    """
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    m, s = float(x.mean()), float(x.std(ddof=1))
    if s <= 0:
        return float(np.inf) if m == 0.0 else 0.0
    if not (np.isfinite(lower) or np.isfinite(upper)):
        return float(stats.norm.pdf(0.0, m, s))

    def nll(p: np.ndarray) -> float:
        mu, ls = p
        sg = np.exp(ls)
        mass = stats.norm.cdf(upper, mu, sg) - stats.norm.cdf(lower, mu, sg)
        return float(-(stats.norm.logpdf(x, mu, sg).sum() - x.size * np.log(max(mass, 1e-300))))

    res = optimize.minimize(nll, np.array([m, np.log(s)]), method="Nelder-Mead",
                            options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 2000})
    mu, sg = res.x[0], float(np.exp(res.x[1]))
    mass = stats.norm.cdf(upper, mu, sg) - stats.norm.cdf(lower, mu, sg)
    return float(stats.norm.pdf(0.0, mu, sg) / max(mass, 1e-300))


def inclusion_probabilities(graph: Any, beta: np.ndarray, priors: Mapping[str, Any], *,
                            informed: Sequence[str] | set[str] = (),
                            prior_inclusion: float = DEFAULT_PRIOR_INCLUSION,
                            variants: str = "inferred") -> pd.DataFrame:
    """Per link its posterior inclusion probability (``structure.csv``).

    Parameters
    ----------
    graph
        The diagram (``edges`` with ``key`` and ``inferred``).
    beta
        ``(S, E)`` posterior draws of the coefficients in ``graph.edges`` order.
    priors
        ``edge key -> prior`` (``distribution``, ``mean``, ``sd``, ``lower``, ``upper``, ``nu``; e.g.
        the fit's ``layout.edge_priors``).
    informed
        Links in the likelihood of a fit with data; every other link has ``BF01 = 1``.
    prior_inclusion
        Prior inclusion probability of an uncertain link.
    variants
        ``"inferred"``: the inferred links are uncertain; ``"none"``: every link is present.

    Returns
    -------
    pandas.DataFrame
        :data:`STRUCTURE_COLUMNS`, one row per link in graph order.

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> g = vb.load_graph("marvel")
    >>> from types import SimpleNamespace as NS
    >>> pri = {e.key: NS(distribution="normal", mean=0.0, sd=0.3, lower=None, upper=None, nu=None)
    ...        for e in g.edges}
    >>> beta = np.random.default_rng(0).normal(0.0, 0.3, (400, len(g.edges)))
    >>> t = inclusion_probabilities(g, beta, pri)  # nothing informed: p_include = prior
    >>> sorted(set(t.loc[t["inferred"], "p_include"]))
    [0.5]
    """
    if variants not in VARIANTS:
        raise ConfigError(Problem(f"unknown structure variants {variants!r}"
                                  f"{did_you_mean(variants, VARIANTS)} (expected one of {VARIANTS})",
                                  field="structure.variants", value=variants))
    if not 0.0 < prior_inclusion < 1.0:
        raise ConfigError(Problem("prior inclusion probability must be in (0, 1)",
                                  field="structure.prior_inclusion", value=prior_inclusion))
    beta = np.asarray(beta, float)
    inf_set = set(informed)
    rows = []
    for q, e in enumerate(graph.edges):
        x = beta[:, q]
        uncertain = variants == "inferred" and bool(e.inferred)
        bf = 1.0
        if uncertain and e.key in inf_set:
            prior = priors[e.key]
            lo, hi = _bounds(prior)
            bf = posterior_density_at_zero(x, lo, hi) / prior_density_at_zero(prior)
        pi = prior_inclusion if uncertain else 1.0
        p = pi / (pi + (1.0 - pi) * bf) if uncertain else 1.0
        rows.append({"link": e.key, "inferred": bool(e.inferred), "informed": e.key in inf_set,
                     "prior_inclusion": pi, "bf01": bf if uncertain else np.nan, "p_include": p,
                     "posterior_mean": float(x.mean()), "posterior_sd": float(x.std(ddof=1))})
    return pd.DataFrame(rows, columns=list(STRUCTURE_COLUMNS))


def _mean_dose(iv: Intervention) -> Intervention:
    parts = [p.model_copy(update={"delta": Fixed(value=float(p.delta.mean_value()))})
             if isinstance(p, Shift) and not isinstance(p.delta, (int, float)) else p
             for p in iv.parts]
    return iv.model_copy(update={"parts": parts})


def structural_robustness(draws: StructuralDraws, interventions: Sequence[Intervention],
                          outcomes: Sequence[Any] | None, p_include: Mapping[str, float], *,
                          subgroups: Mapping[str, SubgroupInfo] | None = None,
                          n_structures: int = 200, draws_per_structure: int = 200,
                          scope: str = "population", seed: int = 0, min_cell_size: int = 0,
                          directions: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Probability that each policy's rank and sign hold over the structural uncertainty
    (``robustness.csv``).

    Parameters
    ----------
    draws
        Posterior draws of the full diagram.
    interventions
        The policies (shift interventions).
    outcomes
        Outcomes (default: the package's default outcomes).
    p_include
        ``link -> inclusion probability`` (:func:`inclusion_probabilities`); links absent or with
        probability 1 are always present.
    subgroups
        Subgroup prevalences for targeted policies.
    n_structures, draws_per_structure
        Structures drawn, and posterior draws (a common subsample) per structure.
    scope
        ``"population"`` or ``"within"``.
    seed
        Seed of the structure draws and the subsample.
    min_cell_size
        Policies whose subgroup has fewer respondents are suppressed (NaN row values; they take
        no rank).

    Returns
    -------
    pandas.DataFrame
        :data:`ROBUSTNESS_COLUMNS`; ``rank`` and ``mean`` are under the full diagram.

    Examples
    --------
    >>> list(ROBUSTNESS_COLUMNS[:4])
    ['policy', 'outcome', 'scope', 'rank']
    """
    rng = np.random.default_rng(seed)
    S = draws.n_draws
    sub = np.sort(rng.choice(S, size=min(draws_per_structure, S), replace=False))
    k = len(sub)
    col = {key: q for q, key in enumerate(draws.edge_keys)}
    unc = [key for key, p in p_include.items() if key in col and p < 1.0]
    probs = np.array([p_include[key] for key in unc])
    M = int(n_structures) if unc else 0
    incl = rng.random((M, len(unc))) < probs if M else np.zeros((0, 0), bool)
    Bsub = draws.B[sub]
    blocks = [Bsub]
    for m in range(M):
        Bm = Bsub.copy()
        for j in np.flatnonzero(~incl[m]):
            q = col[unc[j]]
            Bm[:, draws.edge_targets[q], draws.edge_sources[q]] = 0.0
        blocks.append(Bm)
    nb = len(blocks)
    big = StructuralDraws(draws.nodes, draws.edge_keys, np.concatenate(blocks),
                          np.tile(draws.alpha[sub], (nb, 1)), np.tile(draws.psi[sub], (nb, 1)),
                          draws.edge_class, draws.edge_delays)
    ivs = [_mean_dose(iv) for iv in interventions]
    outs = resolve_outcomes(outcomes, draws.nodes)
    res = do_query(big, ivs, outs, subgroups=subgroups, min_cell_size=min_cell_size)
    supp = np.array([r is not None for r in res.suppressed])
    usable = res.usable().reshape(len(ivs), nb, k)
    rows = []
    for o in outs:
        sign = desirable_direction(o, directions)
        eff = res.outcome_effect(o, scope=scope).reshape(len(ivs), nb, k)
        with np.errstate(invalid="ignore"):
            means = np.where(usable, eff, 0.0).sum(axis=2) / usable.sum(axis=2)  # (I, nb)
        util = means * sign
        order = np.argsort(-np.nan_to_num(util, nan=-np.inf), axis=0, kind="stable")
        ranks = np.empty_like(order)
        ranks[order, np.arange(nb)[None, :]] = np.arange(1, len(ivs) + 1)[:, None]
        for i, iv in enumerate(ivs):
            if supp[i]:
                rows.append({"policy": iv.name, "outcome": o.name, "scope": scope, "rank": np.nan,
                             "mean": np.nan, "p_rank_holds": np.nan, "p_sign_holds": np.nan,
                             "n_structures": M})
                continue
            hold_r = ranks[i, 1:] == ranks[i, 0]
            hold_s = np.sign(means[i, 1:]) == np.sign(means[i, 0])
            rows.append({"policy": iv.name, "outcome": o.name, "scope": scope,
                         "rank": int(ranks[i, 0]), "mean": float(means[i, 0]),
                         "p_rank_holds": float(hold_r.mean()) if M else 1.0,
                         "p_sign_holds": float(hold_s.mean()) if M else 1.0,
                         "n_structures": M})
    return pd.DataFrame(rows, columns=list(ROBUSTNESS_COLUMNS))
