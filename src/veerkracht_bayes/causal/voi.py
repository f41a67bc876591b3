"""What to measure next: the value of information of a survey wave for the policy decision.

The decision
------------
Pick the policy with the best expected population effect on one outcome (in its desirable
direction). With ``U[p, s]`` the utility of policy ``p`` in posterior draw ``s`` (the population
effect times the direction; draws usable for every policy),

* the value of deciding now is ``max_p E[U_p]``;
* **EVPI** (expected value of perfect information) ``= E[max_p U_p] - max_p E[U_p]``;
* **EVSI** of a survey wave ``y`` ``= E_y[max_p E[U_p | y]] - max_p E[U_p]``.

Both are in the outcome's units (SD of the outcome in the population). ``0 <= EVSI <= EVPI``.

The wave
--------
A wave of ``n`` respondents that measures construct ``c`` with ``k`` items, each of reliability
``r`` (squared standardised loading), brings into the likelihood every link between ``c`` and a
construct the survey already measures (for a measured ``c``: adds ``n`` respondents to the links
touching ``c`` that are in the likelihood). Those are the wave's *informed links* ``theta``, as the
model builder would classify them, less the links whose equation fails the order condition (a
feedback cycle without enough instruments: more respondents do not identify them); links to policy
levers stay cut (a survey does not measure programme exposure).

The preposterior (Gaussian approximation, cost flat in ``n``)
--------------------------------------------------------------
The wave's sufficient statistics (its moment matrix) determine the estimates of ``theta``; at the
posterior mean their sampling covariance is the regression formula per target node ``i``:
``V_i / n_eff`` with ``V_i = psi_i Sigma_{Pa(i)}^-1`` (``Sigma`` the model-implied covariance of the
measured parents of ``i``, ``psi_i`` its disturbance variance) and ``n_eff = n rho_k``, where
``rho_k = k r / (1 + (k - 1) r)`` is the Spearman-Brown reliability of the ``k``-item scale
(measurement error inflates the sampling variance by ``1 / rho_k``). Links of different targets are
taken as independent. With the current posterior of ``theta`` approximated as Gaussian
``N(mu, Sigma_theta)``, the posterior mean after the wave is
``m = mu + K (theta_hat - mu)``, ``K = Sigma_theta (Sigma_theta + V / n_eff)^-1``, and
``Sigma_post = Sigma_theta - K Sigma_theta`` does not depend on the data.

``E[U_p | theta]`` is estimated by least-squares regression of the draws' ``U_p`` on ``theta``
(linear and quadratic terms in the standardised ``theta``; the regression method of Strong,
Oakley & Brennan 2014, Med Decis Making 34:311, with the Gaussian preposterior of Jalal &
Alarid-Escudero 2018, Med Decis Making 38:174). For a quadratic regression
``E[U_p | y] = g_p(m) + tr(A_p Sigma_post)`` exactly under the Gaussian approximation, so one
simulated ``theta_hat = theta_s + e`` per posterior draw gives ``E[U_p | y]`` without a refit.
The noise ``e`` is centred over the draws, so the mean of the preposterior means is the prior
mean: EVSI is non-negative by construction (Jensen). No refit of the SEM is done: the cost of one
EVSI is one small regression and ``S`` matrix-vector products, whatever ``n``.

What it leaves out: a new wave also sharpens the psi / loadings and the links between *other*
constructs through the joint likelihood; correlated disturbances across targets; and the
non-Gaussian shape of the posterior of sign-constrained links. EVSI of a construct that lies on
no path from any lever to the outcome is zero up to the regression's Monte Carlo noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from veerkracht_bayes.causal.do import DoResult, Outcome
from veerkracht_bayes.causal.summaries import desirable_direction
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean

__all__ = ["VOI_COLUMNS", "decision_utilities", "evpi", "scale_reliability", "measured_nodes",
           "informed_links", "sampling_covariance", "evsi", "value_of_information"]

VOI_COLUMNS = ("construct", "n", "evsi", "evpi", "evsi_se", "outcome", "measured", "items",
               "reliability", "n_informed_links", "informed_links", "best_policy_now")


def decision_utilities(result: DoResult, outcome: str | Outcome, *, scope: str = "population",
                       directions: Mapping[str, int] | None = None
                       ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Utility ``U[p, s]`` of each policy in each draw: the effect times the desirable direction.

    Returns
    -------
    names, U, keep
        The (non-suppressed) policy names, ``(I, S_kept)`` utilities and the ``(S,)`` mask of the
        draws kept (usable for every policy, finite effects).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.do import do_query
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> B = np.zeros((3, 2, 2)); B[:, 1, 0] = [0.1, 0.2, 0.3]
    >>> d = StructuralDraws(("L", "y"), ("L->y",), B, np.zeros((3, 2)), np.ones((3, 2)))
    >>> r = do_query(d, [Intervention(name="p", parts=[Shift(node="L", delta=1.0)])], ["y"])
    >>> decision_utilities(r, "y")[1].round(2).tolist()
    [[0.1, 0.2, 0.3]]
    """
    sign = desirable_direction(outcome, directions)
    keep_i = [i for i in range(len(result.names)) if result.suppressed[i] is None]
    if not keep_i:
        raise ConfigError("every policy is suppressed; nothing to decide between")
    eff = result.outcome_effect(outcome, scope=scope)[keep_i] * sign
    keep = result.usable()[keep_i].all(axis=0) & np.isfinite(eff).all(axis=0)
    return [result.names[i] for i in keep_i], eff[:, keep], keep


def evpi(U: np.ndarray) -> float:
    """Expected value of perfect information ``E[max_p U_p] - max_p E[U_p]`` of ``U (I, S)``.

    Examples
    --------
    >>> import numpy as np
    >>> float(evpi(np.array([[1.0, 0.0], [0.0, 1.0]])))
    0.5
    """
    U = np.asarray(U, float)
    return float(U.max(axis=0).mean() - U.mean(axis=1).max())


def scale_reliability(items: int, reliability: float) -> float:
    """Spearman-Brown reliability of a ``k``-item scale whose items each have reliability ``r``.

    Examples
    --------
    >>> round(scale_reliability(3, 0.5), 3)
    0.75
    """
    if items < 1:
        raise ConfigError(Problem("items must be at least 1", field="items", value=items))
    if not 0.0 < reliability <= 1.0:
        raise ConfigError(Problem("reliability must be in (0, 1]", field="reliability",
                                  value=reliability))
    return items * reliability / (1.0 + (items - 1) * reliability)


def measured_nodes(fit: Any) -> tuple[set[str], set[str]]:
    """``(constructs with items, observed covariates)`` of a fit (from ``fit.layout``; a prior-only
    fit measures nothing)."""
    if getattr(fit, "prior_only", False):
        return set(), set()
    layout = fit.layout
    return set(layout.latent) - set(layout.unobserved_latent), set(layout.covariates)


def _levers(graph: Any) -> set[str]:
    try:
        return set(graph.nodes_where(role="policy_lever"))
    except AttributeError:
        return set()


def informed_links(graph: Any, measured: Iterable[str], construct: str,
                   covariates: Iterable[str] = ()) -> list[str]:
    """Links that a wave measuring ``construct`` (next to the ``measured`` constructs and the
    ``covariates``) informs: links touching ``construct`` that the model builder would put in the
    likelihood *and* whose equation passes the order condition
    (:func:`~veerkracht_bayes.graph.identification.identification_report`). A link in a feedback
    cycle without enough instruments leans on its prior whatever ``n``; links to policy levers are
    never in the likelihood.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> g = vb.load_graph("marvel")
    >>> informed_links(g, [], "wellbeing")
    []
    """
    from veerkracht_bayes.graph.identification import (LIKELIHOOD, identification_report,
                                                       model_classes)

    cov = [c for c in covariates if c != construct]
    meas = [m for m in dict.fromkeys([*measured, construct]) if m not in set(cov)]
    cls = model_classes(graph, meas, cov)
    rep = identification_report(graph, cls)
    return [s.link for s in rep.links
            if s.status == LIKELIHOOD and construct in (s.source, s.target)]


def sampling_covariance(graph: Any, draws: Any, measured: Iterable[str], links: Sequence[str]
                        ) -> np.ndarray:
    """Per-respondent sampling covariance ``V`` of the informed links' estimates (before
    ``/ n_eff``): per target ``i`` the block ``psi_i Sigma_{Pa(i)}^-1`` over its measured parents,
    at the posterior mean of ``B`` and ``psi``; zero between targets.

    Parameters
    ----------
    graph
        The diagram.
    draws
        :class:`~veerkracht_bayes.causal.draws.StructuralDraws` (``B``, ``psi``).
    measured
        Nodes measured after the wave (the construct included).
    links
        The informed links.

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` in ``links`` order.
    """
    idx = {n: j for j, n in enumerate(draws.nodes)}
    Bbar, psibar = draws.B.mean(axis=0), draws.psi.mean(axis=0)
    P = len(draws.nodes)
    A = np.linalg.inv(np.eye(P) - Bbar)
    Sig = A @ np.diag(psibar) @ A.T
    meas = set(measured)
    lev = _levers(graph)
    K = len(links)
    V = np.zeros((K, K))
    pos = {k: q for q, k in enumerate(links)}
    by_target: dict[str, list[str]] = {}
    for k in links:
        by_target.setdefault(k.partition("->")[2], []).append(k)
    for tgt, ks in by_target.items():
        pa = [p for p in graph.parents(tgt) if p in meas and p not in lev]
        ix = [idx[p] for p in pa]
        inv = np.linalg.pinv(Sig[np.ix_(ix, ix)])
        for k1 in ks:
            for k2 in ks:
                a, b = pa.index(k1.partition("->")[0]), pa.index(k2.partition("->")[0])
                V[pos[k1], pos[k2]] = psibar[idx[tgt]] * inv[a, b]
    return V


def _features(z: np.ndarray, quad: bool) -> np.ndarray:
    cols = [np.ones((z.shape[0], 1)), z]
    if quad:
        iu = np.triu_indices(z.shape[1])
        cols.append((z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]])
    return np.concatenate(cols, axis=1)


def evsi(U: np.ndarray, theta: np.ndarray, V: np.ndarray, n_eff: float | Sequence[float], *,
         seed: int = 0, quadratic: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """EVSI of data that estimate ``theta`` with sampling covariance ``V / n_eff``.

    Parameters
    ----------
    U
        ``(I, S)`` utilities per policy and draw.
    theta
        ``(S, K)`` the draws of the informed parameters (same draws as ``U``).
    V
        ``(K, K)`` per-unit sampling covariance (:func:`sampling_covariance`).
    n_eff
        One or more effective sample sizes.
    seed
        Seed of the simulated sampling noise (common to every ``n_eff``).
    quadratic
        Quadratic terms in the regression (default: when ``S >= 20 x`` the number of features).

    Returns
    -------
    evsi, se
        ``(len(n_eff),)`` EVSI and its Monte Carlo standard error.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> th = rng.normal(0.1, 0.2, (4000, 1))
    >>> U = np.stack([th[:, 0], np.zeros(4000)])
    >>> ev, se = evsi(U, th, np.eye(1), [1e9])
    >>> bool(abs(ev[0] - evpi(U)) < 3 * se[0] + 1e-3)
    True
    """
    U = np.asarray(U, float)
    theta = np.asarray(theta, float)
    ns = np.atleast_1d(np.asarray(n_eff, float))
    I, S = U.shape
    K = theta.shape[1]
    if K == 0 or I < 2:
        return np.zeros(len(ns)), np.zeros(len(ns))
    mu, sdv = theta.mean(axis=0), theta.std(axis=0)
    sdv = np.where(sdv > 0, sdv, 1.0)
    z = (theta - mu) / sdv
    nfeat_q = 1 + K + K * (K + 1) // 2
    quad = (S >= 20 * nfeat_q) if quadratic is None else quadratic
    X = _features(z, quad)
    coef, *_ = np.linalg.lstsq(X, U.T, rcond=None)  # (F, I)
    Sz = np.cov(z, rowvar=False).reshape(K, K)
    Vz = np.asarray(V, float) / np.outer(sdv, sdv)
    rng = np.random.default_rng(seed)
    # common standard-normal noise for every n (centred over the draws)
    L = np.linalg.cholesky(Vz + 1e-12 * np.eye(K) * max(np.trace(Vz), 1e-12))
    e0 = rng.standard_normal((S, K)) @ L.T
    e0 -= e0.mean(axis=0)
    iu = np.triu_indices(K)
    out, se = np.zeros(len(ns)), np.zeros(len(ns))
    for q, n in enumerate(ns):
        if not np.isfinite(n) or n <= 0:
            raise ConfigError(Problem("effective sample size must be positive", field="n", value=n))
        Kg = Sz @ np.linalg.pinv(Sz + Vz / n)
        m = (z + e0 / np.sqrt(n)) @ Kg.T  # preposterior means (standardised, centred)
        Xm = _features(m, quad)
        if quad:
            Spost = Sz - Kg @ Sz
            Xm[:, 1 + K:] += Spost[iu[0], iu[1]]
        Vals = Xm @ coef  # (S, I) E[U_p | y] per simulated wave
        best = Vals.max(axis=1)
        base = Vals.mean(axis=0).max()
        out[q] = max(float(best.mean() - base), 0.0)  # >= 0 by Jensen; clip rounding only
        jb = int(Vals.mean(axis=0).argmax())
        se[q] = float(np.std(best - Vals[:, jb], ddof=1) / np.sqrt(S))
    return out, se


def value_of_information(result: DoResult, graph: Any, outcome: str | Outcome, *,
                         measured: Iterable[str], covariates: Iterable[str] = (),
                         candidates: str | Sequence[str] = "unmeasured",
                         n: int | Sequence[int] = 2000, items: int = 3, reliability: float = 0.8,
                         scope: str = "population", seed: int = 0,
                         directions: Mapping[str, int] | None = None) -> pd.DataFrame:
    """EVSI per candidate construct and sample size, and the decision's EVPI (``voi.csv``).

    Parameters
    ----------
    result
        A do-query of the policies (population scope is used for the decision).
    graph
        The diagram.
    outcome
        The decision's outcome.
    measured, covariates
        Constructs the survey measures now and its observed covariates (:func:`measured_nodes`).
    candidates
        ``"unmeasured"`` (every construct the survey does not measure), ``"all"`` (every
        construct, measured ones at ``n`` more respondents) or a list of node ids.
    n, items, reliability
        Wave size(s), items per construct and each item's reliability.
    scope
        ``"population"`` (default) or ``"within"``.

    Returns
    -------
    pandas.DataFrame
        :data:`VOI_COLUMNS`, ranked by EVSI at the largest ``n`` (largest first).

    Examples
    --------
    >>> list(VOI_COLUMNS[:4])
    ['construct', 'n', 'evsi', 'evpi']
    """
    meas, cov = set(measured), set(covariates)
    constructs = [v for v in graph.nodes_where(role="construct")]
    if isinstance(candidates, str):
        if candidates == "unmeasured":
            cands = [c for c in constructs if c not in meas]
        elif candidates == "all":
            cands = list(constructs)
        else:
            raise ConfigError(Problem(f"unknown candidates {candidates!r}"
                                      f"{did_you_mean(candidates, ['unmeasured', 'all'])} (expected "
                                      "'unmeasured', 'all' or a list of constructs)",
                                      field="candidates", value=candidates))
    else:
        cands = list(candidates)
        bad = [c for c in cands if c not in graph.nodes]
        if bad:
            raise ConfigError(Problem(f"unknown construct {bad[0]!r}{did_you_mean(bad[0], graph.nodes)}",
                                      field="candidates", value=bad[0]))
    ns = [int(v) for v in np.atleast_1d(n)]
    rho = scale_reliability(items, reliability)
    names, U, keep = decision_utilities(result, outcome, scope=scope, directions=directions)
    vpi = evpi(U)
    best_now = names[int(U.mean(axis=1).argmax())]
    draws = result.draws
    oname = outcome if isinstance(outcome, str) else outcome.name
    col = {k: q for q, k in enumerate(draws.edge_keys)}
    rows = []
    for c in cands:
        links = informed_links(graph, meas, c, cov)
        if links:
            theta = draws.B[keep][:, draws.edge_targets[[col[k] for k in links]],
                                  draws.edge_sources[[col[k] for k in links]]]
            V = sampling_covariance(graph, draws, meas | cov | {c}, links)
            ev, se = evsi(U, theta, V, [m * rho for m in ns], seed=seed)
        else:
            ev, se = np.zeros(len(ns)), np.zeros(len(ns))
        for m, e, s in zip(ns, ev, se):
            rows.append({"construct": c, "n": m, "evsi": float(e), "evpi": vpi, "evsi_se": float(s),
                         "outcome": oname, "measured": c in meas, "items": items,
                         "reliability": reliability, "n_informed_links": len(links),
                         "informed_links": ";".join(links), "best_policy_now": best_now})
    df = pd.DataFrame(rows, columns=list(VOI_COLUMNS))
    if df.empty:
        return df
    top = df[df["n"] == max(ns)].set_index("construct")["evsi"]
    df["_k"] = df["construct"].map(top)
    return (df.sort_values(["_k", "construct", "n"], ascending=[False, True, True], kind="stable")
              .drop(columns="_k").reset_index(drop=True))
