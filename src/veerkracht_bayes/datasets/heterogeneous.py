"""Small synthetic surveys whose links differ between groups (validation of the multi-group model).

:func:`simulate_groups` draws respondents of several groups from a linear cyclic structural model
on any small graph: group ``g`` has links ``beta + delta_g`` (``delta_g`` given per link), latent
intercepts ``alpha_g`` and the population's disturbance variances ``psi``, where ``psi`` standardises
the *population* system (links ``beta``, covariates ``x ~ N(0, I)``) to latent variance 1 -- the
parametrisation of :mod:`veerkracht_bayes.sem.multigroup`, so the truth is directly comparable to
its posterior. Each latent construct gets ``items_per_construct`` continuous items
``y = 2 + lambda eta + e`` with ``lambda ~ U(0.6, 0.85)`` and ``Var(e) = 1 - lambda^2`` (the same in
every group: measurement invariance). The MARVEL generator's own option is
``simulate_population(..., heterogeneity=...)`` in :mod:`veerkracht_bayes.datasets.synthetic`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from veerkracht_bayes.errors import ConfigError, Problem
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.sem import algebra

__all__ = ["GroupSimulation", "simulate_groups"]


@dataclass(frozen=True)
class GroupSimulation:
    """A simulated multi-group survey and its truth.

    Attributes
    ----------
    items, item_names, item_construct
        ``(n, m)`` item values and each column's name and construct.
    covariates, covariate_names
        ``(n, q)`` covariate values (standard normal) and their graph nodes.
    groups
        ``(n,)`` group label of each respondent.
    beta
        Population links (``"a->b" -> value``).
    delta
        ``group -> link -> deviation`` (every link, zeros included).
    alpha
        ``group -> latent -> intercept``.
    psi
        Population disturbance variances of the latents.
    latent
        ``(n, P)`` latent values (for brute-force checks), columns in ``latent_names`` order.

    Examples
    --------
    Returned by :func:`simulate_groups`:

    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> sim = simulate_groups(graph_from_lavaan("b ~ a"), {"a->b": 0.4}, {"u": 20, "v": 30}, seed=1)
    >>> isinstance(sim, GroupSimulation), sim.groups.shape, sorted(sim.delta)
    (True, (50,), ['u', 'v'])
    """

    items: np.ndarray
    item_names: tuple[str, ...]
    item_construct: tuple[str, ...]
    covariates: np.ndarray
    covariate_names: tuple[str, ...]
    groups: np.ndarray
    beta: dict[str, float]
    delta: dict[str, dict[str, float]]
    alpha: dict[str, dict[str, float]]
    psi: dict[str, float]
    latent: np.ndarray
    latent_names: tuple[str, ...]
    loadings: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def truth(self) -> dict[str, object]:
        """The truth as plain data (for YAML/JSON)."""
        return {"beta": dict(self.beta), "delta": {g: dict(v) for g, v in self.delta.items()},
                "alpha": {g: dict(v) for g, v in self.alpha.items()}, "psi": dict(self.psi)}


def simulate_groups(graph: CausalGraph, links: Mapping[str, float], n_per_group: Mapping[str, int], *,
                    deviations: Mapping[str, Mapping[str, float]] | None = None,
                    intercepts: Mapping[str, Mapping[str, float]] | None = None,
                    items_per_construct: int = 3, seed: int = 0) -> GroupSimulation:
    """Simulate a multi-group survey with group-specific links (module docstring).

    Parameters
    ----------
    graph
        The diagram: nodes without parents and role ``exogenous`` are covariates; every other node
        is a latent construct with ``items_per_construct`` items.
    links
        Population value of every link of the graph.
    n_per_group
        Respondents per group label.
    deviations
        ``group -> link -> delta``: the heterogeneity (links not named: no deviation).
    intercepts
        ``group -> latent -> alpha_g`` (default 0).
    seed
        Seed of ``numpy.random.default_rng``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> sim = simulate_groups(g, {"a->b": 0.4}, {"u": 50, "v": 50}, deviations={"v": {"a->b": 0.2}})
    >>> sim.items.shape, sim.covariate_names, sim.delta["v"]["a->b"]
    ((100, 3), ('a',), 0.2)
    """
    deviations = {str(g): dict(v) for g, v in (deviations or {}).items()}
    intercepts = {str(g): dict(v) for g, v in (intercepts or {}).items()}
    keys = list(graph.edge_keys)
    missing = [k for k in keys if k not in links]
    unknown = [k for k in links if k not in keys]
    if missing or unknown:
        raise ConfigError(Problem(f"links must name every link of the graph: missing {missing}, unknown {unknown}",
                                  field="links"))
    labels = [str(g) for g in n_per_group]
    for g, dv in deviations.items():
        if g not in labels:
            raise ConfigError(Problem(f"deviations name group {g!r}, not in n_per_group {labels}",
                                      field="deviations", value=g))
        bad = [k for k in dv if k not in keys]
        if bad:
            raise ConfigError(Problem(f"deviations of group {g!r} name unknown links {bad}", field="deviations"))
    covs = [n for n in graph.nodes if not graph.parents(n) and graph.node(n).role == "exogenous"]
    lat = [n for n in graph.nodes if n not in covs]
    P, q = len(lat), len(covs)
    src, tgt = [e.source for e in graph.edges], [e.target for e in graph.edges]
    b_ix, g_ix = algebra.edge_index(src, tgt, lat), algebra.edge_index(src, tgt, lat, covs)

    def mats(vals: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        beta = np.array([float(vals[k]) for k in keys])
        return algebra.assemble(beta, b_ix), algebra.assemble(beta, g_ix)

    B0, G0 = mats(links)
    A0 = algebra.equilibrium_matrix(B0)
    # covariates are independent standard normals: S_x = I
    psi = algebra.standardised_psi(A0, A0 @ G0, np.eye(q))
    if not (psi > 0).all():
        raise ConfigError("the population links leave no positive disturbance variance (Var(eta) = 1 impossible)")
    rng = np.random.default_rng(seed)
    lam = rng.uniform(0.6, 0.85, size=P * items_per_construct)
    cons = np.repeat(np.arange(P), items_per_construct)
    ys, xs, gs, etas = [], [], [], []
    delta_out: dict[str, dict[str, float]] = {}
    alpha_out: dict[str, dict[str, float]] = {}
    for g in labels:
        n = int(n_per_group[g])
        dv = {k: float(deviations.get(g, {}).get(k, 0.0)) for k in keys}
        delta_out[g] = dv
        Bg, Gg = mats({k: links[k] + dv[k] for k in keys})
        rho = float(algebra.spectral_radius(Bg))
        if not rho < 1:
            raise ConfigError(f"group {g!r}: spectral radius of B is {rho:.3f} (expected < 1)")
        al = np.array([float(intercepts.get(g, {}).get(n_, 0.0)) for n_ in lat])
        alpha_out[g] = dict(zip(lat, al.tolist()))
        x = rng.normal(size=(n, q))
        zeta = rng.normal(size=(n, P)) * np.sqrt(psi)
        eta = algebra.solve_equilibrium(Bg, al[None, :] + x @ Gg.T + zeta)
        y = 2.0 + eta[:, cons] * lam + np.sqrt(1 - lam**2) * rng.normal(size=(n, lam.size))
        ys.append(y), xs.append(x), gs.append(np.full(n, g, dtype=object)), etas.append(eta)
    names = tuple(f"{lat[c]}{j % items_per_construct + 1}" for j, c in enumerate(cons))
    return GroupSimulation(
        items=np.concatenate(ys), item_names=names, item_construct=tuple(lat[c] for c in cons),
        covariates=np.concatenate(xs), covariate_names=tuple(covs), groups=np.concatenate(gs),
        beta={k: float(links[k]) for k in keys}, delta=delta_out, alpha=alpha_out,
        psi=dict(zip(lat, psi.tolist())), latent=np.concatenate(etas), latent_names=tuple(lat), loadings=lam)
