"""Fit the multi-group structural model (:mod:`veerkracht_bayes.sem.multigroup`) with the package's
JAX NUTS driver.

The result holds the posterior of the population links ``beta``, the between-group SDs ``tau``,
the group deviations ``delta`` and the group links ``beta_group``, and the per-group intercepts
and disturbance variances; :meth:`MultiGroupFit.group_arrays` gives, per group, the arrays that
:meth:`veerkracht_bayes.causal.draws.StructuralDraws.from_arrays` takes (the causal layer stays free
of PyMC). In cut mode the prior-only links are completed exactly as in the single-group fit
(:func:`~veerkracht_bayes.inference.sampling.fit`): drawn from their priors under the population
system's barriers, and shared by every group. Single-item constructs take the same per-item
reliabilities as the single-group fit (``item_reliability``; the codebook's values on the observed
scale in a run), recorded like there in ``idata.attrs["provenance"]`` (``settings.reliability``,
``settings.item_reliability``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.inference.sampling import (
    JAX_DRIVER_SAMPLERS,
    SamplerSettings,
    cut_completion,
    draw_prior,
)
from veerkracht_bayes.sem.multigroup import (
    DEFAULT_TAU_SD,
    GroupData,
    MultiGroupLayout,
    build_multigroup_model,
)

__all__ = ["MultiGroupFit", "fit_multigroup"]

log = logging.getLogger(__name__)


@dataclass
class MultiGroupFit:
    """A fitted multi-group model.

    Examples
    --------
    Returned by :func:`fit_multigroup` (it samples: tens of seconds, so not run here):

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.multigroup import prepare_group_data
    >>> y = np.random.default_rng(0).normal(size=(200, 4))
    >>> gd = prepare_group_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["u", "v"] * 100)
    >>> res = fit_multigroup(graph_from_lavaan("b ~ a"), gd, draws=200, tune=200, chains=2,
    ...                      random_seed=1, progressbar=False)  # doctest: +SKIP
    >>> isinstance(res, MultiGroupFit), res.posterior["beta_group"].dims  # doctest: +SKIP
    (True, ('chain', 'draw', 'group', 'edge'))
    """

    idata: xr.DataTree
    layout: MultiGroupLayout
    graph: CausalGraph
    data: GroupData
    settings: SamplerSettings

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior dataset."""
        return self.idata["posterior"].to_dataset()

    def _flat(self, name: str) -> np.ndarray:
        da = self.posterior[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        arr = da.transpose("chain", "draw", *other).values
        return arr.reshape((-1,) + arr.shape[2:])

    def population_arrays(self) -> dict[str, np.ndarray]:
        """``beta`` (S, E), ``alpha`` (S, P) zeros and ``psi`` (S, P) of the pooled population."""
        beta = self._flat("beta")
        return {"beta": beta, "alpha": np.zeros((beta.shape[0], len(self.graph.nodes))), "psi": self._flat("psi")}

    def group_arrays(self, group: str) -> dict[str, np.ndarray]:
        """``beta`` (S, E), ``alpha`` (S, P) and ``psi`` (S, P) of one group, in graph order."""
        if group not in self.layout.labels:
            from veerkracht_bayes.errors import Problem, did_you_mean

            raise ModelError(Problem(f"unknown group {group!r}{did_you_mean(group, list(self.layout.labels))}",
                                     field="group", value=group))
        g = self.layout.labels.index(group)
        return {"beta": self._flat("beta_group")[:, g], "alpha": self._flat("alpha_group")[:, g],
                "psi": self._flat("psi_group")[:, g]}

    def deviation_table(self, prob: float = 0.9) -> object:
        """One row per group x pooled link: posterior mean, SD and central interval of ``delta``
        and of the group link, and the link's ``tau`` (a pandas DataFrame)."""
        import pandas as pd

        a = (1 - prob) / 2
        delta = self._flat("delta") if self.layout.pooled_edges else np.zeros((1, 0, 0))
        tau = self._flat("tau") if self.layout.pooled_edges else np.zeros((1, 0))
        bg = self._flat("beta_group")
        keys = list(self.layout.base.edge_keys)
        rows = []
        for g, lab in enumerate(self.layout.labels):
            for j, k in enumerate(self.layout.pooled_edges):
                d = delta[:, g, j]
                b = bg[:, g, keys.index(k)]
                lo, hi = np.quantile(d, [a, 1 - a])
                blo, bhi = np.quantile(b, [a, 1 - a])
                rows.append({"group": lab, "link": k, "delta_mean": float(d.mean()), "delta_sd": float(d.std()),
                             "delta_lower": float(lo), "delta_upper": float(hi),
                             "beta_group_mean": float(b.mean()), "beta_group_lower": float(blo),
                             "beta_group_upper": float(bhi), "tau_mean": float(tau[:, j].mean())})
        return pd.DataFrame(rows)


def _initvals(model, layout: MultiGroupLayout, graph: CausalGraph, data: GroupData,
              settings: SamplerSettings) -> list[dict[str, np.ndarray]]:
    """Per-chain starts: population links from barrier-truncated prior draws, data-based measurement
    starts, no group deviations (so every group system starts stable)."""
    from veerkracht_bayes.sem.preconditioning import edge_groups, measurement_start

    base = layout.base
    prior = draw_prior(None, base, graph, max(settings.chains * 4, 50), settings.random_seed, data.pooled.x_cov)
    free = {rv.name: rv for rv in model.free_RVs}
    keys = list(base.edge_keys)
    sampled = list(base.sampled_edges or keys)
    groups = edge_groups(base.edge_priors, sampled)
    beta = prior["beta"].isel(chain=0).values
    picks = np.random.default_rng(settings.random_seed).choice(beta.shape[0], settings.chains, replace=False)
    meas = measurement_start(data.pooled.stats, base.item_construct, base.free_items, settings.chains,
                             settings.random_seed) if base.items else [{}] * settings.chains
    G, plk = data.n_groups, len(base.lik_latent)
    out = []
    for c, i in enumerate(picks):
        iv: dict[str, np.ndarray] = {}
        for name, _, idx in groups:
            # shrink toward zero: a stable start for every group system
            iv[name] = 0.5 * beta[int(i), [keys.index(sampled[j]) for j in idx]]
        iv.update({k: v for k, v in meas[c].items() if k in free})
        if "tau" in free:
            iv["tau"] = np.full(len(layout.pooled_edges), 0.5 * layout.tau_sd)
            iv["delta_z"] = np.zeros((G, len(layout.pooled_edges)))
        iv["alpha_raw"] = np.zeros((G, plk))
        iv["log_scale_raw"] = np.zeros((G, plk))
        if "loading_group" in free:
            lam = meas[c].get("loading")
            fl_idx = [list(base.items).index(s) for s in layout.free_loadings]
            free_pos = np.cumsum(base.free_items) - 1
            iv["loading_group"] = np.tile(np.asarray(lam)[free_pos[fl_idx]], (G, 1))
        if "nu_group_free" in free:
            fi_idx = [list(base.items).index(s) for s in layout.free_intercepts]
            iv["nu_group_free"] = np.tile(np.asarray(meas[c]["nu"])[fi_idx], (G, 1))
        out.append(iv)
    return out


def fit_multigroup(
    graph: CausalGraph,
    data: GroupData,
    priors: object | None = None,
    *,
    settings: SamplerSettings | None = None,
    tau_sd: float = DEFAULT_TAU_SD,
    pooled_links: Sequence[str] | None = None,
    free_loadings: Sequence[str] = (),
    free_intercepts: Sequence[str] = (),
    vague: bool = False,
    reliability: float = 0.8,
    unmeasured: str = "cut",
    item_reliability: Mapping[str, float] | None = None,
    **overrides: object,
) -> MultiGroupFit:
    """Fit the multi-group model with NUTS (the package's JAX driver).

    Parameters
    ----------
    graph, data, priors
        The diagram, the grouped data (:func:`~veerkracht_bayes.sem.multigroup.prepare_group_data`)
        and the population links' priors.
    settings, overrides
        Sampler settings (only the ``numpyro`` driver is supported here).
    tau_sd, pooled_links, free_loadings, free_intercepts, vague, reliability, unmeasured
        See :func:`~veerkracht_bayes.sem.multigroup.build_multigroup_model`.
    item_reliability
        Item column -> observed-scale reliability of a single item, overriding ``reliability`` for
        it in every group (as :func:`~veerkracht_bayes.inference.sampling.fit`; a run passes
        :func:`~veerkracht_bayes.survey.codebook.continuous_path_reliabilities`). Recorded in
        ``idata.attrs["provenance"]`` (``settings.item_reliability``).

    Returns
    -------
    MultiGroupFit

    Examples
    --------
    It samples (tens of seconds), so not run here:

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.multigroup import prepare_group_data
    >>> y = np.random.default_rng(0).normal(size=(200, 4))
    >>> gd = prepare_group_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["u", "v"] * 100)
    >>> res = fit_multigroup(graph_from_lavaan("b ~ a"), gd, draws=200, tune=200, chains=2,
    ...                      random_seed=1, progressbar=False)  # doctest: +SKIP
    >>> res.layout.labels  # doctest: +SKIP
    ('u', 'v')
    """
    from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, sample_nuts
    from veerkracht_bayes.inference.sampling import enable_compilation_cache
    from veerkracht_bayes.runtime import ensure_cpu_devices

    ensure_cpu_devices()
    settings = settings or SamplerSettings()
    if overrides:
        settings = SamplerSettings(**{**settings.__dict__, **overrides})
    if settings.sampler not in JAX_DRIVER_SAMPLERS:
        raise ModelError(f"the multi-group model is sampled with the JAX driver only (sampler "
                         f"{' or '.join(JAX_DRIVER_SAMPLERS)}; got {settings.sampler!r})")
    enable_compilation_cache()
    model, layout = build_multigroup_model(graph, data, priors, vague=vague, reliability=reliability, tau_sd=tau_sd,
                                           pooled_links=pooled_links, free_loadings=free_loadings,
                                           free_intercepts=free_intercepts, unmeasured=unmeasured,
                                           item_reliability=item_reliability)
    initvals = _initvals(model, layout, graph, data, settings)
    jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                           target_accept=settings.target_accept, dense_mass=settings.dense_mass,
                           max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,
                           chain_method="parallel" if settings.chains > 1 else "sequential",
                           kernel=settings.sampler)
    post, stats, _ = sample_nuts(model, initvals, jset, settings.random_seed)
    base = layout.base
    if base.cut_active:
        post, redraws = cut_completion(post, base, graph, data.pooled.x_cov, settings.random_seed)
        # prior-only links are shared by every group
        keys = list(base.edge_keys)
        po = [i for i, k in enumerate(keys) if base.edge_kind[k] in ("prior_only", "absent")]
        bg = post["beta_group"].values.copy()
        bg[..., po] = post["beta"].values[..., None, po]
        post["beta_group"] = (post["beta_group"].dims, bg)
        lik = {graph.node_index[n] for n in base.lik_latent}
        other = [graph.node_index[n] for n in base.latent if graph.node_index[n] not in lik]
        pg = post["psi_group"].values.copy()
        pg[..., other] = post["psi"].values[..., None, other]
        post["psi_group"] = (post["psi_group"].dims, pg)
        post.attrs["cut_redraws"] = int(redraws)
    idata = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    idata.attrs["groups"] = ",".join(layout.labels)
    import json

    from veerkracht_bayes.inference.provenance import collect_provenance

    # the same record as the single-group fit's (settings.reliability / settings.item_reliability)
    prov = collect_provenance(seed=settings.random_seed, hashes={"data": data.pooled.data_hash},
                              settings={**settings.__dict__, "vague": vague, "reliability": reliability,
                                        "item_reliability": dict(base.item_reliability), "tau_sd": tau_sd,
                                        "unmeasured": unmeasured})
    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    return MultiGroupFit(idata=idata, layout=layout, graph=graph, data=data, settings=settings)
