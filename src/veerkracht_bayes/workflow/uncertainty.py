"""Structural uncertainty, tornado and value of information from a fit (shared by ``vb.structure``,
``vb.voi`` and the pipeline).

The statistics live in :mod:`veerkracht_bayes.causal.structure`, :mod:`veerkracht_bayes.causal.tornado`
and :mod:`veerkracht_bayes.causal.voi`; this module only reads what they need from a fit result
(the edge priors and the measured constructs from its layout, the links in the likelihood from the
evidence classes). Nothing here refits the model, except :func:`wave_refit`: the
value-of-information fallback that refits on a simulated wave when importance reweighting
degenerates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from veerkracht_bayes.causal.do import DoResult, SubgroupInfo
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.structure import (DEFAULT_PRIOR_INCLUSION, inclusion_probabilities,
                                               structural_robustness)
from veerkracht_bayes.causal.voi import measured_nodes, value_of_information

__all__ = ["StructureResult", "structure_from_fit", "voi_from_fit", "wave_refit"]


@dataclass(frozen=True)
class StructureResult:
    """How sure is the diagram: per link (``links``, ``structure.csv``) and per policy x outcome
    (``robustness``, ``robustness.csv``).

    Examples
    --------
    >>> import pandas as pd
    >>> r = StructureResult(links=pd.DataFrame({"link": ["a->b"], "inferred": [True], "p_include": [0.9]}),
    ...                     robustness=pd.DataFrame({"policy": ["up"], "outcome": ["b"], "p_rank_holds": [1.0]}))
    >>> r.links["p_include"].tolist(), r._repr_html_().count("<table")
    ([0.9], 2)
    """

    links: pd.DataFrame
    robustness: pd.DataFrame

    def _repr_html_(self) -> str:
        return (self.links[self.links["inferred"]].to_html(index=False)
                + self.robustness.to_html(index=False))


def _edge_priors(fit_result: Any, graph: Any) -> dict[str, Any]:
    layout = getattr(fit_result, "layout", None)
    pri = dict(getattr(layout, "edge_priors", {}) or {})
    if not pri:
        from veerkracht_bayes.sem.model_builder import edge_prior_values

        pri = edge_prior_values(None, graph)
    return pri


def structure_from_fit(fit_result: Any, draws: StructuralDraws, interventions: Sequence[Any],
                       outcomes: Sequence[Any] | None, *, edge_evidence: Mapping[str, str],
                       subgroups: Mapping[str, SubgroupInfo] | None = None,
                       variants: str = "inferred",
                       prior_inclusion: float = DEFAULT_PRIOR_INCLUSION, n_structures: int = 200,
                       draws_per_structure: int = 200, seed: int = 0,
                       min_cell_size: int = 0) -> StructureResult:
    """Inclusion probabilities of the inferred links and the robustness of the rankings.

    Parameters
    ----------
    fit_result
        The engine's fit (``layout.edge_priors``); ``None``: the default priors.
    draws
        Its structural draws.
    interventions, outcomes, subgroups
        The policies, outcomes and subgroup prevalences of the run.
    edge_evidence
        Per link its evidence class; the ``data`` links are in the likelihood.
    variants, prior_inclusion, n_structures, draws_per_structure, seed, min_cell_size
        See :func:`~veerkracht_bayes.causal.structure.inclusion_probabilities` and
        :func:`~veerkracht_bayes.causal.structure.structural_robustness`.

    Examples
    --------
    A stand-in fit (its graph and edge priors) and 200 hand-made draws of one link ``a -> b``
    that the data inform (its posterior sits far from 0, so it is kept):

    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> draws = StructuralDraws.from_arrays(g, np.random.default_rng(0).normal(0.4, 0.05, (200, 1)),
    ...                                     np.zeros((200, 2)))
    >>> pri = {"a->b": NS(distribution="normal", mean=0.0, sd=0.3, lower=None, upper=None, nu=None)}
    >>> res = structure_from_fit(NS(graph=g, layout=NS(edge_priors=pri)), draws,
    ...                          [Intervention(name="up", parts=[Shift(node="a", delta=1.0)])], ["b"],
    ...                          edge_evidence={"a->b": "data"}, n_structures=20, draws_per_structure=50)
    >>> round(float(res.links["p_include"].iloc[0]), 3), float(res.robustness["p_rank_holds"].iloc[0])
    (1.0, 1.0)
    """
    graph = getattr(fit_result, "graph", None)
    beta = draws.B[:, draws.edge_targets, draws.edge_sources]
    informed = {k for k, v in edge_evidence.items() if v == "data"}
    links = inclusion_probabilities(graph, beta, _edge_priors(fit_result, graph), informed=informed,
                                    prior_inclusion=prior_inclusion, variants=variants)
    p_inc = dict(zip(links["link"], links["p_include"]))
    rob = structural_robustness(draws, interventions, outcomes, p_inc, subgroups=subgroups,
                                n_structures=n_structures, draws_per_structure=draws_per_structure,
                                seed=seed, min_cell_size=min_cell_size)
    return StructureResult(links=links, robustness=rob)


def wave_refit(fit_result: Any, interventions: Sequence[Any], outcome: str, *,
               priors: Any = None, subgroups: Mapping[str, SubgroupInfo] | None = None,
               items: int = 3, reliability: float = 0.8, max_refits: int = 10,
               draws: int = 200, tune: int = 200, seed: int = 0, min_cell_size: int = 0) -> Any:
    """The refit fallback of the value of information: a short NUTS refit on a simulated wave.

    Returns a factory ``refit(construct, draws, policies) -> callable(j, W, n)`` for
    :func:`~veerkracht_bayes.causal.voi.value_of_information`. The callable simulates a wave of
    ``n`` respondents from posterior draw ``j`` (latents ``eta = (I - B_j)^-1 zeta``,
    ``zeta ~ N(0, psi_j)``; every measured construct and ``construct`` by ``items`` new items of
    reliability ``reliability``; the covariates at the survey's scale), appends it to the fit's
    survey (the two share no items: the wave's rows form their own missingness pattern), refits
    with the package's :func:`~veerkracht_bayes.inference.sampling.fit` (``draws`` + ``tune``
    per chain, the fit's other settings), reruns the policies' do-query on the new posterior and
    returns the posterior mean utility of each policy. The wave is a fresh draw from ``j``, not the
    statistics ``W`` the reweighting used; both are draws of the same preposterior. At most
    ``max_refits`` refits are made per candidate (then it returns None: the reweighting estimate
    is kept and flagged).

    Chains that never moved (log density not finite, or most transitions divergent: a start
    the wave makes invalid) are left out; without a healthy chain it returns None.

    Examples
    --------
    >>> callable(wave_refit(None, [], "wellbeing", max_refits=0))
    True
    """
    used: dict[str, int] = {}

    def factory(construct: str, kept: StructuralDraws, policies: Sequence[str]) -> Any:
        def refit(j: int, W: Any, n: int) -> Any:
            if used.get(construct, 0) >= max_refits or fit_result is None or fit_result.data is None:
                return None
            used[construct] = used.get(construct, 0) + 1
            return _refit_once(fit_result, kept, j, int(n), construct, interventions, outcome,
                               policies, priors=priors, subgroups=subgroups, items=items,
                               reliability=reliability, draws=draws, tune=tune, seed=seed + j,
                               min_cell_size=min_cell_size)
        return refit

    return factory


def _refit_once(fit_result: Any, kept: StructuralDraws, j: int, n: int, construct: str,
                interventions: Sequence[Any], outcome: str, policies: Sequence[str], *,
                priors: Any, subgroups: Any, items: int, reliability: float, draws: int,
                tune: int, seed: int, min_cell_size: int) -> Any:
    import numpy as np

    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.voi import decision_utilities
    from veerkracht_bayes.inference.sampling import SamplerSettings, fit
    from veerkracht_bayes.sem import algebra
    from veerkracht_bayes.survey.statistics import prepare_model_data

    data = fit_result.data
    graph = fit_result.graph
    rng = np.random.default_rng(seed)
    meas, cov = measured_nodes(fit_result)
    nodes = list(kept.nodes)
    A = algebra.equilibrium_matrix(kept.B[j], xp="numpy")
    zeta = rng.standard_normal((n, len(nodes))) * np.sqrt(np.clip(kept.psi[j], 0.0, None))
    eta = zeta @ A.T
    sd = np.sqrt(np.clip(np.diag(algebra.latent_covariance(A, kept.psi[j], xp="numpy")), 1e-12, None))
    wave_cons = [v for v in nodes if v in (meas - cov) or v == construct]
    lam = np.sqrt(reliability)
    cols, names, cons = [], [], []
    for v in wave_cons:
        z = eta[:, nodes.index(v)] / sd[nodes.index(v)]
        for q in range(items):
            cols.append(lam * z + np.sqrt(1.0 - reliability) * rng.standard_normal(n))
            names.append(f"{v}__wave{q + 1}")
            cons.append(v)
    wave = np.column_stack(cols)
    n0, m0 = data.y.shape
    Y = np.full((n0 + n, m0 + wave.shape[1]), np.nan)
    Y[:n0, :m0] = data.y
    Y[n0:, m0:] = wave
    X = None
    if data.x_names:
        xs = np.sqrt(np.diag(np.atleast_2d(data.x_cov)))
        xw = np.column_stack([eta[:, nodes.index(v)] / sd[nodes.index(v)] * s
                              for v, s in zip(data.x_names, xs)])
        X = np.vstack([data.x + data.x_mean, xw + data.x_mean])
    w = np.concatenate([np.asarray(data.weights, float), np.full(n, float(np.mean(data.weights)))])
    md = prepare_model_data(Y, [*data.item_names, *names], [*data.item_construct, *cons],
                            weights=w, covariates=X, covariate_names=list(data.x_names),
                            missing="fiml")
    st = fit_result.settings
    new = None
    for attempt in range(3):  # a chain may never leave its start: retry with other starts
        res = fit(graph, md, priors, settings=SamplerSettings(
            sampler=st.sampler, chains=st.chains, draws=draws, tune=tune,
            target_accept=st.target_accept, random_seed=seed + 7919 * attempt, progressbar=False,
            prior_draws=max(draws, 100), dense_mass=st.dense_mass,
            max_treedepth=st.max_treedepth), pointwise=False,
            # the fit's own measurement assumptions (its single items' reliabilities), not defaults
            reliability=float(fit_result.layout.reliability),
            item_reliability=dict(getattr(fit_result.layout, "item_reliability", None) or {}) or None)
        keep = _healthy_chains(res.idata)
        if keep.any():
            new = StructuralDraws.from_posterior(res.idata, graph)
            per = new.n_draws // keep.size
            new = new.subset(np.flatnonzero(np.repeat(keep, per)))
            break
    if new is None:
        return None
    dq = do_query(new, list(interventions), [outcome], subgroups=subgroups,
                  min_cell_size=min_cell_size)
    names_new, U, _ = decision_utilities(dq, outcome)
    mean = dict(zip(names_new, U.mean(axis=1)))
    if any(p not in mean for p in policies):
        return None
    return np.array([mean[p] for p in policies])


def _healthy_chains(idata: Any, max_divergent: float = 0.5) -> Any:
    """Per chain: did it move? A chain whose log density is not finite or whose transitions
    are mostly divergent never left its starting point (measured on the small test graph: one of
    two chains of a wave refit stuck at a prior draw with every transition divergent, its links
    about 2.5 times the posterior's); its draws are left out of the refit's posterior mean."""
    import numpy as np

    ss = idata["sample_stats"] if "sample_stats" in getattr(idata, "children", {}) else \
        getattr(idata, "sample_stats", None)
    if ss is None:
        return np.ones(1, bool)
    n_chain = int(ss.sizes["chain"])
    ok = np.ones(n_chain, bool)
    if "diverging" in ss:
        ok &= np.asarray(ss["diverging"].mean("draw").values, float) <= max_divergent
    if "lp" in ss:
        ok &= np.isfinite(np.asarray(ss["lp"].values, float)).all(axis=-1)
    return ok


def voi_from_fit(fit_result: Any, do_result: DoResult, *, outcome: str = "wellbeing",
                 candidates: str | Sequence[str] = "unmeasured", n: int | Sequence[int] = 2000,
                 items: int = 3, reliability: float = 0.8, seed: int = 0,
                 method: str = "reweight", outer_draws: int = 400, refit: Any = None
                 ) -> pd.DataFrame:
    """EVSI per candidate construct and wave size, and EVPI (``voi.csv``); see
    :func:`~veerkracht_bayes.causal.voi.value_of_information`.

    The measured constructs are read from the fit's layout (none for a prior-only fit: then no
    single construct connects to a measured one and every EVSI is zero — measure the survey first).
    ``method="reweight"`` simulates each wave's sufficient statistics from the posterior and
    updates by importance reweighting of the draws; ``"gaussian"`` is the fast approximation.
    ``refit``: the fallback for degenerate weights (:func:`wave_refit`), or None.

    Examples
    --------
    A prior-only stand-in fit measures nothing, so a wave on ``b`` informs no link:

    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> from veerkracht_bayes.causal.do import do_query
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> draws = StructuralDraws.from_arrays(g, np.random.default_rng(0).normal(0.4, 0.05, (200, 1)),
    ...                                     np.zeros((200, 2)))
    >>> dq = do_query(draws, [Intervention(name="up", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> tab = voi_from_fit(NS(prior_only=True, graph=g), dq, outcome="b", candidates="all", n=[100],
    ...                    outer_draws=20)
    >>> tab["construct"].tolist(), tab["evsi"].tolist(), tab["n_informed_links"].tolist()
    (['b'], [0.0], [0])
    """
    meas, cov = measured_nodes(fit_result)
    return value_of_information(do_result, fit_result.graph, outcome, measured=meas, covariates=cov,
                                candidates=candidates, n=n,
                                items=items, reliability=reliability, seed=seed, method=method,
                                outer_draws=outer_draws, refit=refit)
