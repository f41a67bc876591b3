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

The preposterior by simulation and reweighting (``method="reweight"``, the default)
------------------------------------------------------------------------------------
For each of ``outer_draws`` posterior draws the wave's sufficient statistics (the sample covariance
of its scale scores; :func:`wave_scores` gives their model-implied covariance from
:mod:`veerkracht_bayes.sem.algebra`) are drawn from their Wishart distribution (cost flat in
``n``), and the posterior is updated by Pareto-smoothed importance reweighting of the existing
draws with the exact likelihood of those statistics, restricted to the factor that measuring the
candidate adds (its score given the others); see :func:`evsi_reweight`. Where the weights
degenerate (Pareto ``k`` above the threshold) an optional refit callback replaces the update
(:func:`veerkracht_bayes.workflow.uncertainty.wave_refit`: a short NUTS refit of the package's
model on a simulated wave); otherwise the share of such waves is reported (``share_k_bad``).

The preposterior (Gaussian approximation, ``method="gaussian"``, cost flat in ``n``)
------------------------------------------------------------------------------------
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
from veerkracht_bayes.sem import algebra

__all__ = [
    "MAX_SHARE_BAD",
    "NULL_MARGIN_SE",
    "VOI_COLUMNS",
    "VOI_METHODS",
    "decision_utilities",
    "evpi",
    "evsi",
    "evsi_reweight",
    "informed_links",
    "measured_nodes",
    "pareto_k_threshold",
    "psis_weights",
    "reweight_status",
    "sampling_covariance",
    "scale_reliability",
    "value_of_information",
    "wave_scores",
]

VOI_COLUMNS = ("construct", "n", "evsi", "evpi", "evsi_se", "outcome", "measured", "items",
               "reliability", "n_informed_links", "informed_links", "best_policy_now", "method",
               "outer_draws", "pareto_k_max", "share_k_bad", "n_refits", "status", "evsi_raw",
               "evsi_null", "evsi_gaussian")
VOI_METHODS = ("reweight", "gaussian")
#: Share of simulated waves whose importance weights may degenerate (Pareto ``k`` above the
#: threshold, no refit) before the reweighted EVSI is checked against its null baseline.
MAX_SHARE_BAD = 0.1
#: How many combined standard errors the reweighted EVSI must exceed its null baseline by (the
#: value the same degenerate weights give when they carry no information) to be reported.
NULL_MARGIN_SE = 3.0


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
    fit measures nothing).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> layout = SimpleNamespace(latent=("a", "b", "y"), unobserved_latent=("b",), covariates=("age",))
    >>> constructs, covariates = measured_nodes(SimpleNamespace(prior_only=False, layout=layout))
    >>> sorted(constructs), sorted(covariates)
    (['a', 'y'], ['age'])
    >>> measured_nodes(SimpleNamespace(prior_only=True))
    (set(), set())
    """
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
    from veerkracht_bayes.graph.identification import (
        LIKELIHOOD,
        identification_report,
        model_classes,
    )

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

    Examples
    --------
    With ``b = 0.5 a + zeta`` (so ``Sigma_{a,b} = [[1, .5], [.5, 1.25]]``) and ``psi_y = 1`` the
    block for ``y``'s two parents is ``Sigma_{a,b}^-1``:

    >>> import numpy as np
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("y ~ a + b; b ~ a")
    >>> B = np.zeros((2, 3, 3)); B[:, 1, 0] = 0.5; B[:, 2, 1] = 0.3
    >>> d = StructuralDraws(("a", "b", "y"), ("a->b", "a->y", "b->y"), B, np.zeros((2, 3)), np.ones((2, 3)))
    >>> sampling_covariance(g, d, ["a", "b", "y"], ["a->y", "b->y"]).round(2).tolist()
    [[1.25, -0.5], [-0.5, 1.0]]
    """
    idx = {n: j for j, n in enumerate(draws.nodes)}
    Bbar, psibar = draws.B.mean(axis=0), draws.psi.mean(axis=0)
    Sig = algebra.latent_covariance(algebra.equilibrium_matrix(Bbar, xp="numpy"), psibar, xp="numpy")
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


def reweight_status(evsi_raw: float, se: float, evsi_null: float, null_se: float,
                    share_bad_left: float, *, max_share_bad: float = MAX_SHARE_BAD,
                    margin_se: float = NULL_MARGIN_SE) -> str:
    """What a reweighted EVSI may be reported as: ``"ok"``, ``"rough"`` or ``"not_estimable"``.

    ``"ok"``: at most ``max_share_bad`` of the simulated waves have degenerate importance weights
    (no refit replaced them). Otherwise the estimate is compared with its *null baseline* (the
    EVSI that the same weights give for utilities permuted over the draws, i.e. when the wave
    carries no information on the decision: the upward selection bias of a maximum over a few
    dominant draws): ``"rough"`` when it exceeds that baseline by more than ``margin_se``
    combined standard errors (there is value beyond the weights' own bias, but the number leans
    high), else ``"not_estimable"``: at this wave size the posterior draws cannot represent the
    posterior after the wave, and the estimate cannot be told from that bias.

    Examples
    --------
    >>> reweight_status(1e-3, 1e-4, 1e-6, 1e-7, 0.02)
    'ok'
    >>> reweight_status(1.2e-3, 1e-4, 1.1e-3, 4e-5, 1.0)
    'not_estimable'
    >>> reweight_status(6e-3, 5e-4, 4e-4, 3e-5, 0.2)
    'rough'
    """
    if not share_bad_left > max_share_bad:
        return "ok"
    z = (evsi_raw - evsi_null) / max(float(np.hypot(se, null_se)), 1e-300)
    return "rough" if z > margin_se else "not_estimable"


def value_of_information(result: DoResult, graph: Any, outcome: str | Outcome, *,
                         measured: Iterable[str], covariates: Iterable[str] = (),
                         candidates: str | Sequence[str] = "unmeasured",
                         n: int | Sequence[int] = 2000, items: int = 3, reliability: float = 0.8,
                         scope: str = "population", seed: int = 0,
                         directions: Mapping[str, int] | None = None, method: str = "reweight",
                         outer_draws: int = 400, refit: Any = None) -> pd.DataFrame:
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
    method
        ``"reweight"`` (default): preposterior simulation of the wave's sufficient statistics
        and an update by Pareto-smoothed importance reweighting of the posterior draws
        (:func:`evsi_reweight`; ``outer_draws`` simulated waves, ``refit`` its fallback for
        degenerate weights); ``"gaussian"``: the fast Gaussian approximation (:func:`evsi`).
    outer_draws
        Simulated waves per candidate (``"reweight"``).
    refit
        Optional factory ``refit(construct, draws, policies) -> callable(j, W, n)`` of the
        fallback refit for one candidate (``draws``: the posterior draws that ``j`` indexes;
        ``policies``: the order of the utilities to return; see :func:`evsi_reweight` and
        :func:`veerkracht_bayes.workflow.uncertainty.wave_refit`).

    Returns
    -------
    pandas.DataFrame
        :data:`VOI_COLUMNS`, ranked by EVSI at the largest ``n`` (largest first; rows that are
        not estimable last). ``status`` (:func:`reweight_status`): ``"ok"``, ``"rough"`` (many
        degenerate weights, value above the null baseline: leans high) or ``"not_estimable"``
        (``evsi`` is NaN: the estimate, ``evsi_raw``, cannot be told from ``evsi_null``, the
        value the same weights give when the wave carries no information); ``evsi_gaussian``:
        the Gaussian approximation of the same row (equal to ``evsi`` for that method).

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
    if method not in VOI_METHODS:
        raise ConfigError(Problem(f"unknown method {method!r}{did_you_mean(method, VOI_METHODS)} "
                                  "(expected 'reweight' or 'gaussian')",
                                  field="method", value=method))
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
        nan = {"pareto_k_max": np.nan, "share_k_bad": np.nan, "n_refits": 0,
               "evsi_null": np.nan, "evsi_null_se": np.nan}
        diags = [nan] * len(ns)
        if links:  # the Gaussian approximation, cheap: reported next to the reweighted value
            theta = draws.B[keep][:, draws.edge_targets[[col[k] for k in links]],
                                  draws.edge_sources[[col[k] for k in links]]]
            V = sampling_covariance(graph, draws, meas | cov | {c}, links)
            ev_g, se_g = evsi(U, theta, V, [m * rho for m in ns], seed=seed)
        else:
            ev_g, se_g = np.zeros(len(ns)), np.zeros(len(ns))
        if method == "reweight":
            kept = draws.subset(np.flatnonzero(keep))
            names_o, Sig = wave_scores(graph, kept, meas, c, cov, items=items,
                                       reliability=reliability)
            if len(names_o) > 1:  # alone, a standardised score's variance says nothing about B
                ev, se, diags = evsi_reweight(U, Sig, ns, outer=outer_draws, seed=seed,
                                              refit=None if refit is None
                                              else refit(c, kept, names))
            else:
                ev, se = np.zeros(len(ns)), np.zeros(len(ns))
        else:
            ev, se = ev_g, se_g
        J = int(min(outer_draws, U.shape[1]))
        for m, e, s, dg, eg in zip(ns, ev, se, diags, ev_g):
            status = "ok"
            if method == "reweight" and np.isfinite(dg["share_k_bad"]):
                left = dg["share_k_bad"] - dg["n_refits"] / J
                status = reweight_status(float(e), float(s), dg["evsi_null"], dg["evsi_null_se"],
                                         left)
            shown = np.nan if status == "not_estimable" else float(e)
            rows.append({"construct": c, "n": m, "evsi": shown, "evpi": vpi, "evsi_se": float(s),
                         "outcome": oname, "measured": c in meas, "items": items,
                         "reliability": reliability, "n_informed_links": len(links),
                         "informed_links": ";".join(links), "best_policy_now": best_now,
                         "method": method,
                         "outer_draws": int(min(outer_draws, U.shape[1])) if method == "reweight"
                         else 0,
                         "pareto_k_max": dg["pareto_k_max"], "share_k_bad": dg["share_k_bad"],
                         "n_refits": int(dg["n_refits"]), "status": status,
                         "evsi_raw": float(e), "evsi_null": dg["evsi_null"],
                         "evsi_gaussian": float(eg)})
    df = pd.DataFrame(rows, columns=list(VOI_COLUMNS))
    if df.empty:
        return df
    top = df[df["n"] == max(ns)].set_index("construct")["evsi"]
    df["_k"] = df["construct"].map(top)
    return (df.sort_values(["_k", "construct", "n"], ascending=[False, True, True], kind="stable",
                           na_position="last")
              .drop(columns="_k").reset_index(drop=True))


# ============================================================================ preposterior refit
def _gpd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Pareto fit (Zhang & Stephens 2009, with the weak prior on ``k`` used by PSIS)
    to each row of the ascending exceedances ``x (J, M)``; returns ``(k, sigma)`` per row
    (``k = inf`` where no Pareto tail can be fitted). Row for row the same estimate as ArviZ's
    ``psislw``, vectorised over the rows."""
    M = x.shape[1]
    m = 30 + int(np.sqrt(M))
    ba = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        xq = x[:, max(int(M / 4 + 0.5) - 1, 0)]
        b = ba[None, :] / (3.0 * xq[:, None]) + 1.0 / x[:, -1][:, None]
        kk = np.log1p(-b[:, :, None] * x[:, None, :]).mean(axis=2)
        L = M * (np.log(-(b / kk)) - kk - 1.0)
        L = np.where(np.isfinite(L), L, -np.inf)
        Lm = L.max(axis=1, keepdims=True)
        w = np.exp(L - Lm)
        w /= w.sum(axis=1, keepdims=True)
        bp = np.nansum(b * w, axis=1)
        k = np.log1p(-bp[:, None] * x).mean(axis=1)
        sigma = -k / bp
    k = (M * k + 10 * 0.5) / (M + 10)
    # first quartile not above the minimum: far from a generalised Pareto tail (as in ArviZ)
    k = np.where((xq <= x[:, 0]) | ~np.isfinite(k), np.inf, k)
    return k, sigma


def psis_weights(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed importance weights (Vehtari, Simpson, Gelman, Yao & Gabry 2024, JMLR 25:72)
    of each row of ``log_w (J, S)``.

    Returns
    -------
    weights, k_hat
        ``(J, S)`` normalised smoothed weights and the ``(J,)`` Pareto shape estimates; above
        ``0.7`` (for ``S`` in the thousands; the threshold is ``min(1 - 1/log10(S), 0.7)``) the
        importance-sampling estimate is not reliable.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w, k = psis_weights(rng.normal(0, 0.1, (2, 4000)))
    >>> bool((k < 0.5).all()), bool(np.allclose(w.sum(axis=1), 1.0))
    (True, True)
    """
    lw = np.asarray(log_w, float)
    J, S = lw.shape
    lw = lw - lw.max(axis=1, keepdims=True)
    M = int(min(0.2 * S, 3.0 * np.sqrt(S)))
    k_hat = np.full(J, np.inf)
    if M >= 5:
        order = np.argsort(lw, axis=1)
        tail = order[:, -M:]
        cut = np.exp(np.take_along_axis(lw, order[:, -M - 1:-M], axis=1))  # (J, 1)
        x = np.exp(np.take_along_axis(lw, tail, axis=1)) - cut
        ok = x[:, -1] > 0
        k, sigma = _gpd_fit(np.where(ok[:, None], x, 1.0))
        p = (np.arange(1, M + 1) - 0.5) / M
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            kc = np.where(np.abs(k) < 1e-8, 1e-8, k)[:, None]
            q = cut + sigma[:, None] * ((1.0 - p[None, :]) ** (-kc) - 1.0) / kc
            q = np.log(np.minimum(q, 1.0))
        good = ok & np.isfinite(k) & np.isfinite(q).all(axis=1)
        k_hat = np.where(ok, k, 0.0)
        rows = np.flatnonzero(good)
        lw[rows[:, None], tail[rows]] = q[rows]
    w = np.exp(lw)
    w /= w.sum(axis=1, keepdims=True)
    return w, k_hat


def pareto_k_threshold(S: int) -> float:
    """``min(1 - 1/log10(S), 0.7)``: the largest reliable Pareto ``k`` for ``S`` draws.

    Examples
    --------
    >>> pareto_k_threshold(100), pareto_k_threshold(4000)
    (0.5, 0.7)
    """
    return float(min(1.0 - 1.0 / np.log10(max(S, 11)), 0.7))


def _wishart(L: np.ndarray, n: int, z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample covariances ``W = L A A' L' / n`` of ``n`` normal rows (Bartlett), from common
    random numbers ``z (J, p, p)`` (normals, below the diagonal) and ``u (J, p)`` (uniforms for
    the chi-square diagonal): the cost does not depend on ``n``."""
    from scipy import stats

    p = L.shape[1]
    df = n - np.arange(p)
    if (df < 1).any():
        raise ConfigError(Problem(f"a wave of n = {n} cannot estimate a covariance of {p} scores",
                                  field="n", value=n))
    A = np.tril(z, -1)
    A[:, np.arange(p), np.arange(p)] = np.sqrt(stats.chi2.ppf(u, df[None, :]))
    LA = L @ A
    return LA @ np.swapaxes(LA, 1, 2) / n


def wave_scores(graph: Any, draws: Any, measured: Iterable[str], construct: str,
                covariates: Iterable[str] = (), *, items: int = 3, reliability: float = 0.8,
                scope: str = "all") -> tuple[list[str], np.ndarray]:
    """The scores a wave observes and their model-implied covariance in every draw.

    The wave measures every construct the survey measures plus ``construct``, each by the mean
    of ``items`` items of reliability ``reliability`` (scale reliability ``rho`` by
    Spearman-Brown), and the observed covariates without error; policy levers are not observed.
    The scores' covariance is ``Sigma_eta[O, O] + diag(e)`` with ``Sigma_eta`` the implied latent
    covariance ``(I - B)^-1 diag(psi) (I - B)^-T`` of each draw
    (:func:`~veerkracht_bayes.sem.algebra.latent_covariance`) and ``e_o`` the error variance that
    gives score ``o`` reliability ``rho`` at the posterior mean of ``Var(eta_o)``.

    With ``scope="neighbours"`` only the candidate's measured graph neighbours (parents and
    children) are kept next to it: an update on part of the wave's statistics, so its EVSI is a
    lower bound of the whole wave's, in fewer dimensions (less degenerate importance weights).

    Returns
    -------
    names, Sigma
        Observed nodes (``construct`` last) and ``(S, p, p)`` covariances.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> B = np.zeros((2, 2, 2)); B[:, 1, 0] = 0.5
    >>> d = StructuralDraws(("a", "y"), ("a->y",), B, np.zeros((2, 2)), np.ones((2, 2)))
    >>> names, Sig = wave_scores(None, d, ["y"], "a", items=1, reliability=1.0)
    >>> names, Sig[0].round(2).tolist()
    (['y', 'a'], [[1.25, 0.5], [0.5, 1.0]])
    """
    cov = set(covariates) - {construct}
    lev = _levers(graph) if graph is not None else set()
    obs = (set(measured) | cov) - {construct} - lev
    if scope == "neighbours" and graph is not None:
        obs &= set(graph.parents(construct)) | set(graph.children(construct))
    names = [v for v in draws.nodes if v in obs] + [construct]
    rho = scale_reliability(items, reliability)
    idx = [draws.nodes.index(v) for v in names]
    A = algebra.equilibrium_matrix(draws.B, xp="numpy")
    Sig = algebra.latent_covariance(A, draws.psi, xp="numpy")[:, idx][:, :, idx]
    rel = np.array([1.0 if v in cov else rho for v in names])
    e = Sig[:, np.arange(len(idx)), np.arange(len(idx))].mean(axis=0) * (1.0 - rel) / rel
    return names, Sig + np.diag(e)[None]


def evsi_reweight(U: np.ndarray, Sigma: np.ndarray, n: int | Sequence[int], *, outer: int = 400,
                  seed: int = 0, refit: Any = None, k_max: float | None = None,
                  null_perms: int = 8, likelihood: str = "conditional"
                  ) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """EVSI by preposterior simulation: simulate the wave, update by importance reweighting.

    For each of ``outer`` posterior draws ``j``: simulate the wave's sample covariance
    ``W_j ~ Wishart(n, Sigma_j) / n`` of the observed scores (the last one is the candidate
    construct); weight every other posterior draw ``s`` by the exact likelihood of ``W_j`` under
    ``s``, restricted to what the candidate adds: the conditional density of its score given the
    other scores, ``-n/2 [log s2_s + (W_cc - 2 b_s'W_rc + b_s'W_rr b_s) / s2_s]`` with
    ``b_s = Sigma_rr^-1 Sigma_rc`` and ``s2_s`` its residual variance (cost flat in ``n``); the
    weights are Pareto-smoothed (:func:`psis_weights`) and ``E[U_p | W_j] = sum_s w_js U_ps``.
    The draw ``j`` itself is left out of its own update.

    Parameters
    ----------
    U
        ``(I, S)`` utilities of the policies in the draws.
    Sigma
        ``(S, p, p)`` implied covariance of the wave's scores (:func:`wave_scores`).
    n
        Wave size(s); the same simulated draws serve every ``n`` (common random numbers).
    outer
        Number of simulated waves (outer draws), at most ``S``.
    seed
        Seed of the outer draws and the simulated waves.
    refit
        Optional fallback ``refit(j, W, n) -> (I,)`` posterior mean utilities after a refit on
        a wave of ``n`` simulated from draw ``j`` (``W``: the simulated statistics, which it may
        use or replace by its own wave from the same draw), called for the waves whose weights
        degenerate (Pareto ``k`` above ``k_max``); it may return None (e.g. over its budget of
        refits). Where no refit is made the smoothed weights are used and the share of such
        waves is reported (``share_k_bad``).
    k_max
        Pareto ``k`` threshold (default :func:`pareto_k_threshold`).
    null_perms
        Permutations of the draws for the null baseline ``evsi_null``: the EVSI the same weights
        give for utilities permuted over the draws (no information on the decision), i.e. the
        upward bias of the maximum over weighted means (large when the weights degenerate).
    likelihood
        ``"conditional"`` (default): the factor of the candidate's score given the others (what
        measuring the candidate adds); ``"full"``: the whole wave (also the re-measurement of the
        other scores; what a refit on the simulated wave sees).

    Returns
    -------
    evsi, se, diagnostics
        Per ``n``: EVSI, its Monte Carlo standard error over the outer draws, and
        ``{"pareto_k_max", "share_k_bad", "ess_median", "n_refits", "evsi_null",
        "evsi_null_se"}``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(0.3, 0.1, 2000)
    >>> Sig = np.stack([[[1.0, x], [x, 1.0]] for x in b])  # the wave estimates the correlation b
    >>> U = np.stack([b, np.full(2000, 0.28)])
    >>> ev, se, diag = evsi_reweight(U, Sig, [50, 5000], outer=300)
    >>> bool(0 <= ev[0] < ev[1] <= evpi(U) + 3 * se[1])
    True
    """
    U = np.asarray(U, float)
    Sigma = np.asarray(Sigma, float)
    ns = [int(v) for v in np.atleast_1d(n)]
    I, S = U.shape
    p = Sigma.shape[-1]
    if Sigma.shape != (S, p, p):
        raise ConfigError(f"Sigma has shape {Sigma.shape}; expected ({S}, p, p)")
    k_max = pareto_k_threshold(S) if k_max is None else k_max
    if I < 2 or S < 2:
        zero = {"pareto_k_max": 0.0, "share_k_bad": 0.0, "ess_median": float(S), "n_refits": 0,
                "evsi_null": 0.0, "evsi_null_se": 0.0}
        return np.zeros(len(ns)), np.zeros(len(ns)), [dict(zero) for _ in ns]
    rng = np.random.default_rng(seed)
    J = int(min(outer, S))
    jj = rng.choice(S, size=J, replace=False)
    z = rng.standard_normal((J, p, p))
    u = rng.uniform(size=(J, p))
    Sj = 0.5 * (Sigma[jj] + np.swapaxes(Sigma[jj], 1, 2))
    try:
        L = np.linalg.cholesky(Sj)
    except np.linalg.LinAlgError:  # a draw at the edge of positive definiteness: clip eigenvalues
        lam, vec = np.linalg.eigh(Sj)
        L = np.linalg.cholesky((vec * np.clip(lam, 1e-9, None)[:, None, :]) @ np.swapaxes(vec, 1, 2))
    r = p - 1
    Srr, Src, Scc = Sigma[:, :r, :r], Sigma[:, :r, r], Sigma[:, r, r]
    with np.errstate(all="ignore"):
        beta = (np.linalg.solve(Srr + 1e-12 * np.eye(r), Src[..., None])[..., 0] if r
                else np.zeros((S, 0)))
    s2 = Scc - np.einsum("sa,sa->s", Src, beta)
    ok = np.isfinite(s2) & (s2 > 0) & np.isfinite(beta).all(axis=1)
    s2 = np.where(ok, s2, 1.0)
    beta = np.where(ok[:, None], beta, 0.0)
    bb = (beta[:, :, None] * beta[:, None, :]).reshape(S, r * r)
    if likelihood not in ("conditional", "full"):
        raise ConfigError(Problem(f"unknown likelihood {likelihood!r} (expected 'conditional' or "
                                  "'full')", field="likelihood", value=likelihood))
    if likelihood == "full":
        with np.errstate(all="ignore"):
            sgn, logdet_r = np.linalg.slogdet(Srr) if r else (np.ones(S), np.zeros(S))
            Pr = np.linalg.pinv(Srr) if r else np.zeros((S, 0, 0))
        ok &= sgn > 0
        logdet_r = np.where(ok, logdet_r, 0.0)
    perms = [np.random.default_rng([seed, 1, t]).permutation(S) for t in range(null_perms)]
    out, se, diags = np.zeros(len(ns)), np.zeros(len(ns)), []
    for q, m in enumerate(ns):
        W = _wishart(L, m, z, u)
        quad = (W[:, r, r][:, None] - 2.0 * W[:, :r, r] @ beta.T
                + W[:, :r, :r].reshape(J, r * r) @ bb.T)
        ll = -0.5 * m * (np.log(s2)[None, :] + quad / s2[None, :])
        if likelihood == "full":  # add the marginal of the other scores: the whole wave
            ll = ll - 0.5 * m * (logdet_r[None, :]
                                 + W[:, :r, :r].reshape(J, r * r) @ Pr.reshape(S, r * r).T)
        ll[:, ~ok] = -np.inf  # draws without a proper conditional density get no weight
        ll[np.arange(J), jj] = -np.inf  # leave the simulating draw out of its own update
        w, k_hat = psis_weights(ll)
        vals = w @ U.T  # (J, I)
        bad = np.flatnonzero(k_hat > k_max)
        n_ref = 0
        if refit is not None:
            for b in bad:
                got = refit(int(jj[b]), W[b], m)
                if got is not None:
                    vals[b] = np.asarray(got, float)
                    n_ref += 1
        best = vals.max(axis=1)
        jb = int(vals.mean(axis=0).argmax())
        out[q] = max(float(best.mean() - vals[:, jb].mean()), 0.0)
        se[q] = float(np.std(best - vals[:, jb], ddof=1) / np.sqrt(J))
        # the null baseline: the same weights applied to utilities whose draws are permuted (the
        # weights then carry no information on U), so its EVSI is the selection bias of the
        # weights alone (max over noisy weighted means); a large share of degenerate weights
        # makes it large
        nulls = []
        for perm in perms:
            v0 = w @ U[:, perm].T
            nulls.append(float(v0.max(axis=1).mean() - v0.mean(axis=0).max()))
        ess = 1.0 / (w ** 2).sum(axis=1)
        diags.append({"pareto_k_max": float(np.max(k_hat)), "share_k_bad": float(len(bad) / J),
                      "ess_median": float(np.median(ess)), "n_refits": n_ref,
                      "evsi_null": float(np.mean(nulls)),
                      "evsi_null_se": float(np.std(nulls, ddof=1) / np.sqrt(len(nulls)))})
    return out, se, diags
