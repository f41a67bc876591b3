"""Fit the two-level (within / between neighbourhoods) model of :mod:`veerkracht_bayes.sem.twolevel`
with the package's JAX NUTS driver.

The result holds the posterior of the within links ``beta_within``, the between links
``beta_between`` (standardised on between-neighbourhood SDs; derived) and ``beta_between_raw``
(total-scale units; sampled), the between variance shares ``share`` (one per between construct;
derived), the between disturbance SDs ``between_sd`` (sampled) and their standardised variances
``psi_between``, the item random-intercept variances ``theta_between``, the implied item ICCs
``item_icc`` and the stability bounds ``rho_within`` / ``rho_between``.
:meth:`TwoLevelFit.between_arrays` gives the arrays that
:func:`veerkracht_bayes.causal.twolevel.between_do` takes (the causal layer stays free of PyMC).
Single-item constructs take the same per-item reliabilities as the single-level fit
(``item_reliability``; the codebook's values on the observed scale in a run), recorded like there
in ``idata.attrs["provenance"]`` (``settings.reliability``, ``settings.item_reliability``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from veerkracht_bayes.errors import ModelError, Problem
from veerkracht_bayes.inference.sampling import JAX_DRIVER_SAMPLERS, SamplerSettings
from veerkracht_bayes.sem.twolevel import TwoLevelLayout, build_twolevel_model, twolevel_layout
from veerkracht_bayes.survey.clusters import ClusterStatistics

__all__ = ["TwoLevelFit", "fit_twolevel"]


@dataclass
class TwoLevelFit:
    """A fitted two-level model.

    Attributes
    ----------
    idata
        ``posterior`` and ``sample_stats`` (an ``xarray.DataTree``).
    layout
        The :class:`~veerkracht_bayes.sem.twolevel.TwoLevelLayout`.
    stats
        The cluster statistics it was fitted to.
    settings
        Sampler settings.

    Examples
    --------
    >>> from veerkracht_bayes.datasets.clustered import simulate_clustered
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> df, truth = simulate_clustered(n_clusters=60, min_size=5, max_size=15, seed=1)
    >>> items = list(truth.item_construct)
    >>> cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items)
    >>> res = fit_twolevel(cs, truth.item_construct, between=list(truth.between),
    ...                    between_links=list(truth.between_links), within_links=list(truth.within_links),
    ...                    draws=100, tune=100, chains=1, progressbar=False)  # doctest: +SKIP
    >>> res.between_arrays()["B"].shape  # doctest: +SKIP
    (100, 3, 3)
    """

    idata: xr.DataTree
    layout: TwoLevelLayout
    stats: ClusterStatistics
    settings: SamplerSettings
    #: wall-clock seconds of the whole fit (model, compilation, warm-up and sampling)
    seconds: float = float("nan")
    #: wall-clock seconds of the sampler alone (curvature scale, warm-up, draws)
    sampling_seconds: float = float("nan")

    @property
    def diverging_share(self) -> float:
        """Share of post-warm-up transitions that diverged."""
        div = self.idata["sample_stats"].to_dataset()["diverging"].values
        return float(div.mean()) if div.size else 0.0

    def stability(self) -> dict[str, float]:
        """Largest posterior draw of the stability bound ``rho`` per level (``rho_within``,
        ``rho_between``; the Perron bound of ``|B|``, below 1 means a stable system); levels without
        links are left out."""
        return {k: float(self.draws(k).max()) for k in ("rho_within", "rho_between") if k in self.posterior}

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior dataset."""
        return self.idata["posterior"].to_dataset()

    def draws(self, name: str) -> np.ndarray:
        """All draws of a variable, chains stacked: ``(S, ...)``."""
        if name not in self.posterior:
            raise ModelError(Problem(f"no variable {name!r} in the posterior", field="name", value=name))
        da = self.posterior[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        arr = da.transpose("chain", "draw", *other).values
        return arr.reshape((-1,) + arr.shape[2:])

    def between_arrays(self) -> dict[str, Any]:
        """``B`` (S, K_B, K_B) between coefficients, ``share`` (S, K_B) and ``nodes`` (the between constructs)."""
        from veerkracht_bayes.sem.algebra import assemble

        lay = self.layout
        S = self.draws("share").shape[0] if lay.between else 0
        bb = self.draws("beta_between") if lay.between_links else np.zeros((S, 0))
        return {"B": assemble(bb, lay.between_index()), "share": self.draws("share"), "nodes": lay.between}

    def within_arrays(self) -> dict[str, Any]:
        """``B`` (S, K, K) within coefficients and ``nodes`` (every measured construct)."""
        from veerkracht_bayes.sem.algebra import assemble

        lay = self.layout
        S = self.draws("nu").shape[0]
        bw = self.draws("beta_within") if lay.within_links else np.zeros((S, 0))
        return {"B": assemble(bw, lay.within_index()), "nodes": lay.constructs}

    def summary_table(self, prob: float = 0.9) -> Any:
        """One row per headline parameter: ``parameter``, ``level``, ``name``, mean, SD, central
        interval, R-hat (NaN with one chain) and bulk ESS (a pandas DataFrame).

        Parameters: ``share`` (between variance shares), ``beta_between`` (standardised between
        links), ``beta_between_raw`` (total-scale units), ``psi_between`` (standardised between
        disturbance: 0 = a construct's neighbourhood variance comes only from its parents),
        ``beta_within``, ``lambda`` (loadings), ``item_icc`` and ``theta_between``."""
        import pandas as pd

        a = (1 - prob) / 2
        import arviz as az

        from veerkracht_bayes.inference.diagnostics import constant_entries_quiet

        post = self.posterior
        nchain = post.sizes.get("chain", 1)
        with constant_entries_quiet():  # psi of exogenous constructs is fixed: NaN in the table
            rhat = az.rhat(post) if nchain > 1 else None
            ess = az.ess(post)
        rows = []
        lay = self.layout
        specs = [("share", "between", lay.between), ("beta_between", "between", lay.between_links),
                 ("beta_between_raw", "between", lay.between_links), ("psi_between", "between", lay.between),
                 ("beta_within", "within", lay.within_links), ("lambda", "item", lay.items),
                 ("item_icc", "item", lay.items), ("theta_between", "item", lay.items)]
        for var, level, names in specs:
            if not names or var not in self.posterior:
                continue
            x = self.draws(var)
            for k, nm in enumerate(names):
                lo, hi = np.quantile(x[:, k], [a, 1 - a])
                row = {"parameter": var, "level": level, "name": nm, "mean": float(x[:, k].mean()),
                       "sd": float(x[:, k].std()), "lower": float(lo), "upper": float(hi)}
                row["r_hat"] = (float(np.asarray(rhat[var].values).reshape(-1)[k]) if rhat is not None
                                else float("nan"))
                row["ess_bulk"] = float(np.asarray(ess[var].values).reshape(-1)[k])
                rows.append(row)
        return pd.DataFrame(rows)

    def n_divergent(self) -> int:
        """Divergent transitions after warm-up."""
        return int(self.idata["sample_stats"].to_dataset()["diverging"].values.sum())


def _initvals(model: Any, layout: TwoLevelLayout, stats: ClusterStatistics, chains: int, seed: int
              ) -> list[dict[str, np.ndarray]]:
    free = {rv.name for rv in model.free_RVs}
    rng = np.random.default_rng(seed)
    single = np.array([c in layout.single_item_constructs for c in layout.item_construct], dtype=bool)
    nf = int((~single).sum())
    icc = np.clip(np.nan_to_num(stats.icc), 0.005, 0.5)
    out = []
    for _ in range(chains):
        iv: dict[str, np.ndarray] = {"nu": np.asarray(stats.grand_mean, float) + rng.normal(0, 0.01, len(layout.items)),
                                     "item_between_sd": np.sqrt(icc) * 0.5 * np.exp(rng.normal(0, 0.1, len(icc)))}
        if "loading" in free:
            iv["loading"] = np.full(nf, 0.7) * np.exp(rng.normal(0, 0.05, nf))
            iv["residual_var"] = np.full(nf, 0.5) * np.exp(rng.normal(0, 0.05, nf))
        if "beta_within" in free:
            iv["beta_within"] = rng.normal(0, 0.02, len(layout.within_links))
        if "beta_between" in free:
            iv["beta_between"] = rng.normal(0, 0.02, len(layout.between_links))
        if layout.within_prior:
            from veerkracht_bayes.sem.preconditioning import edge_groups

            pri = layout.within_priors()
            for name, _, idx in edge_groups(pri, list(layout.within_links)):
                lo = [pri[layout.within_links[i]].lower for i in idx]
                hi = [pri[layout.within_links[i]].upper for i in idx]
                iv[name] = np.array([0.05 if a is not None else (-0.05 if b is not None else 0.0)
                                     for a, b in zip(lo, hi)]) * np.exp(rng.normal(0, 0.1, len(idx)))
        if "beta_between_raw" in free:
            iv["beta_between_raw"] = rng.normal(0, 0.02, len(layout.between_links))
        # a construct's between share starts at its items' mean ICC over a loading of 0.7
        bicc = np.array([icc[[i for i, c in enumerate(layout.item_construct) if c == b]].mean()
                         for b in layout.between])
        if "share" in free:
            iv["share"] = np.clip(bicc / 0.49, 0.02, 0.5)
        if "between_sd" in free:
            iv["between_sd"] = np.sqrt(np.clip(bicc / 0.49, 0.005, 0.5)) * np.exp(rng.normal(0, 0.1, len(bicc)))
        out.append({k: v for k, v in iv.items() if k in free})
    return out


def fit_twolevel(stats: ClusterStatistics, item_construct: Mapping[str, str], graph: Any | None = None, *,
                 between: Sequence[str] | None = None, between_links: Iterable[object] | None = None,
                 within_links: Iterable[object] | None = None, settings: SamplerSettings | None = None,
                 reliability: float = 0.8, link_sd: float = 0.5, share_prior: tuple[float, float] = (1.0, 4.0),
                 theta_b_sd: float = 0.2, priors: Any | None = None, between_scale: str = "raw",
                 between_sd: float = 0.3, between_link_sd: float = 0.5,
                 item_reliability: Mapping[str, float] | None = None, **overrides: Any) -> TwoLevelFit:
    """Fit the two-level SEM (:mod:`veerkracht_bayes.sem.twolevel`) to per-cluster statistics with NUTS.

    Parameters
    ----------
    stats
        :func:`~veerkracht_bayes.survey.clusters.cluster_statistics` (or
        :func:`~veerkracht_bayes.survey.clusters.cluster_statistics_from_survey`) of the items.
    item_construct
        Item -> construct, in the statistics' item order.
    graph
        The diagram: default source of the within links (links among measured constructs) and the
        between links (links among the between constructs). May be None when both are given.
    between
        Between (neighbourhood-level) constructs; default the measured collective constructs
        (:data:`~veerkracht_bayes.sem.twolevel.COLLECTIVE_CONSTRUCTS`).
    between_links, within_links
        ``"a->b"`` keys or ``(a, b)`` pairs (defaults above).
    settings, overrides
        Sampler settings (numpyro driver only), e.g. ``draws=300, tune=300, chains=2, random_seed=1``.
    reliability, link_sd, share_prior, theta_b_sd, between_sd, between_link_sd, between_scale
        Priors and the between parameterisation (see :func:`~veerkracht_bayes.sem.twolevel.twolevel_layout`):
        by default the between level is raw (between disturbance SDs ``~ HalfNormal(between_sd)``,
        raw between links ``~ Normal(0, between_link_sd)``; shares and standardised links derived);
        ``share_prior`` applies only with ``between_scale="standardised"``.
    priors
        A :class:`~veerkracht_bayes.priors.spec.PriorSet` (e.g. ``default_priors("marvel")``): each
        within link gets the diagram link's literature prior with its sign constraint
        (:func:`~veerkracht_bayes.sem.model_builder.edge_prior_values`; needs ``graph``). None: the
        within links get ``Normal(0, link_sd)``. Between links always get the documented default.
    item_reliability
        Item -> observed-scale reliability of a single item, overriding ``reliability`` for it
        (fixed loading ``sqrt(value)`` at both levels, within residual variance ``1 - value``; as
        :func:`~veerkracht_bayes.inference.sampling.fit`). Recorded in ``idata.attrs["provenance"]``.

    Returns
    -------
    TwoLevelFit

    Examples
    --------
    >>> from veerkracht_bayes.datasets.clustered import simulate_clustered
    >>> from veerkracht_bayes.survey.clusters import cluster_statistics
    >>> df, truth = simulate_clustered(n_clusters=60, min_size=5, max_size=15, seed=1)
    >>> items = list(truth.item_construct)
    >>> cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items)
    >>> res = fit_twolevel(cs, truth.item_construct, between=list(truth.between),
    ...                    between_links=list(truth.between_links), within_links=list(truth.within_links),
    ...                    draws=100, tune=100, chains=1, progressbar=False)  # doctest: +SKIP
    >>> res.summary_table().query("parameter == 'share'")  # doctest: +SKIP
    """
    from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, sample_nuts
    from veerkracht_bayes.inference.sampling import enable_compilation_cache
    from veerkracht_bayes.runtime import ensure_cpu_devices

    ensure_cpu_devices()
    settings = settings or SamplerSettings()
    if overrides:
        settings = SamplerSettings(**{**settings.__dict__, **overrides})
    if settings.sampler not in JAX_DRIVER_SAMPLERS:
        raise ModelError(f"the two-level model is sampled with the JAX driver only (sampler "
                         f"{' or '.join(JAX_DRIVER_SAMPLERS)}; got {settings.sampler!r})")
    enable_compilation_cache()
    t0 = time.perf_counter()
    within_prior = None
    if priors is not None:
        from veerkracht_bayes.sem.model_builder import edge_prior_values

        if graph is None:
            raise ModelError(Problem("literature priors need the diagram (graph) to match the within links",
                                     field="graph"))
        within_prior = edge_prior_values(priors, graph)
    layout = twolevel_layout(graph, item_construct, between=between, between_links=between_links,
                             within_links=within_links, reliability=reliability, link_sd=link_sd,
                             share_prior=share_prior, theta_b_sd=theta_b_sd, between_scale=between_scale,
                             between_sd=between_sd, between_link_sd=between_link_sd,
                             item_reliability=item_reliability)
    if within_prior is not None:
        missing = [k for k in layout.within_links if k not in within_prior]
        if missing:
            raise ModelError(Problem(f"within link {missing[0]!r} is not a link of the diagram, so it has no "
                                     "literature prior (give within_links from the diagram or priors=None)",
                                     field="within_links", value=missing[0]))
        layout = twolevel_layout(graph, item_construct, between=between, between_links=between_links,
                                 within_links=within_links, reliability=reliability, link_sd=link_sd,
                                 share_prior=share_prior, theta_b_sd=theta_b_sd, between_scale=between_scale,
                                 between_sd=between_sd, between_link_sd=between_link_sd,
                                 within_prior={k: within_prior[k] for k in layout.within_links},
                                 item_reliability=item_reliability)
    model = build_twolevel_model(stats, layout)
    initvals = _initvals(model, layout, stats, settings.chains, settings.random_seed)
    jset = JaxNutsSettings(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                           target_accept=settings.target_accept, dense_mass=settings.dense_mass,
                           max_tree_depth=settings.max_treedepth, progressbar=settings.progressbar,
                           chain_method="parallel" if settings.chains > 1 else "sequential",
                           kernel=settings.sampler)
    post, sstats, secs = sample_nuts(model, initvals, jset, settings.random_seed)
    idata = xr.DataTree.from_dict({"posterior": post, "sample_stats": sstats})
    idata.attrs["model"] = "twolevel"
    idata.attrs["cluster_column"] = str(stats.cluster_column)
    idata.attrs["between_scale"] = layout.between_scale
    idata.attrs["within_priors"] = "literature" if within_prior is not None else f"normal(0, {layout.link_sd})"
    import json

    from veerkracht_bayes.inference.provenance import collect_provenance

    # the same record as the single-level fit's (settings.reliability / settings.item_reliability)
    prov = collect_provenance(seed=settings.random_seed, settings={
        **settings.__dict__, "reliability": layout.reliability, "item_reliability": dict(layout.item_reliability),
        "between_scale": layout.between_scale, "within_priors": idata.attrs["within_priors"]})
    idata.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
    return TwoLevelFit(idata=idata, layout=layout, stats=stats, settings=settings,
                       seconds=time.perf_counter() - t0, sampling_seconds=float(secs))
