"""`StructuralDraws`: posterior (or fixed) draws of the structural parameters as dense arrays.

The intervention code works on plain arrays, one entry per posterior draw:

* ``B[s, k, j]`` — coefficient of the edge ``j -> k`` (row = target, column = source), zero
  where the graph has no edge;
* ``alpha[s, k]`` — intercept of node ``k``; the baseline mean is ``E[eta] = (I - B)^-1 alpha``;
* ``psi[s, k]`` — disturbance variance of node ``k``.

Draws are stacked chain-major (chain 0's draws first, then chain 1's, ...), a fixed order
shared by every array, so a draw index means the same draw everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.errors import InterventionError, Problem
from veerkracht_bayes.sem import algebra

__all__ = ["EDGE_CLASSES", "StructuralDraws"]

#: Allowed per-edge evidence classes (from the engine's diagnostics).
EDGE_CLASSES = ("data-informed", "prior-dominated")


def _posterior_dataset(obj: Any) -> Any:
    """Return the posterior ``xarray.Dataset`` of a DataTree / InferenceData / Dataset.

    The engine's ArviZ-native fits keep the constants in ``constant_data`` (``alpha`` on
    ``node``; ``psi`` of the exogenous nodes on ``exogenous``) and the sampled ``psi`` on
    ``latent``: they are joined here into ``alpha`` and ``psi`` on ``node``.
    """
    for getter in (lambda o: o["posterior"], lambda o: o.posterior):
        try:
            post = getter(obj)
        except (KeyError, AttributeError, TypeError):
            continue
        post = post.to_dataset() if hasattr(post, "to_dataset") else post
        return _with_constants(post, obj)
    return obj


def _with_constants(post: Any, obj: Any) -> Any:
    """``post`` with ``alpha``/``psi`` on ``node`` completed from ``obj``'s ``constant_data``."""
    try:
        const = obj["constant_data"]
    except (KeyError, AttributeError, TypeError):
        return post
    const = const.to_dataset() if hasattr(const, "to_dataset") else const
    sample = {"chain": post["chain"].values, "draw": post["draw"].values}
    out = post.copy()
    if "alpha" not in out and "alpha" in const:
        out["alpha"] = const["alpha"].expand_dims(sample).transpose("chain", "draw", "node")
    if "psi" in out and "latent" in out["psi"].dims:
        import xarray as xr

        parts = [out["psi"].rename(latent="node")]
        if "psi" in const and "exogenous" in const["psi"].dims:
            parts.append(const["psi"].rename(exogenous="node").expand_dims(sample))
        out = out.drop_vars("psi")
        out["psi"] = xr.concat(parts, dim="node").transpose("chain", "draw", "node")
    return out


@dataclass(frozen=True, eq=False)
class StructuralDraws:
    """Draws of a linear cyclic structural model as dense arrays.

    Parameters
    ----------
    nodes
        Node ids, the order of every node axis.
    edge_keys
        Edge keys ``"source->target"``.
    B
        ``(S, P, P)`` coefficients, ``B[s, k, j]`` for edge ``j -> k``.
    alpha
        ``(S, P)`` intercepts.
    psi
        ``(S, P)`` disturbance variances.
    edge_class
        Optional ``edge key -> "data-informed" | "prior-dominated"`` from the engine's diagnostics.
    edge_delays
        Optional delay class per edge (same order as ``edge_keys``), used by the dynamics.

    Examples
    --------
    A three-node diagram with a feedback loop between ``a`` and ``b``, one draw of its links:

    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "loop",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("x", "a", "b")],
    ...     "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t"}
    ...               for s, t in (("x", "a"), ("a", "b"), ("b", "a"))]}))
    >>> draws = StructuralDraws.from_arrays(g, [[0.5, 0.4, 0.25]], [0.0, 0.0, 0.0])
    >>> draws.n_draws, draws.B.shape
    (1, (1, 3, 3))
    """

    nodes: tuple[str, ...]
    edge_keys: tuple[str, ...]
    B: np.ndarray
    alpha: np.ndarray
    psi: np.ndarray
    edge_class: dict[str, str] | None = None
    edge_delays: tuple[str, ...] | None = None
    _edge_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        P = len(self.nodes)
        B = np.asarray(self.B, dtype=float)
        alpha = np.asarray(self.alpha, dtype=float)
        psi = np.asarray(self.psi, dtype=float)
        if B.ndim != 3 or B.shape[1:] != (P, P):
            raise InterventionError(f"B has shape {B.shape}; expected (S, {P}, {P})")
        S = B.shape[0]
        for name, arr in (("alpha", alpha), ("psi", psi)):
            if arr.shape != (S, P):
                raise InterventionError(f"{name} has shape {arr.shape}; expected ({S}, {P})")
        idx = {n: i for i, n in enumerate(self.nodes)}
        src, tgt = [], []
        for key in self.edge_keys:
            a, _, b = key.partition("->")
            if a not in idx or b not in idx:
                raise InterventionError(Problem(f"edge key {key!r} names a node not in nodes",
                                                field="edge_keys", value=key))
            src.append(idx[a])
            tgt.append(idx[b])
        if self.edge_class is not None:
            bad = {k: v for k, v in self.edge_class.items() if v not in EDGE_CLASSES}
            if bad:
                raise InterventionError(f"edge_class values {bad} not in {EDGE_CLASSES}")
        if self.edge_delays is not None and len(self.edge_delays) != len(self.edge_keys):
            raise InterventionError("edge_delays must have one entry per edge key")
        object.__setattr__(self, "B", B)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "psi", psi)
        object.__setattr__(self, "_edge_index", (np.asarray(src, int), np.asarray(tgt, int)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        graph: CausalGraph,
        beta: np.ndarray,
        alpha: np.ndarray,
        psi: np.ndarray | None = None,
        edge_class: dict[str, str] | None = None,
    ) -> "StructuralDraws":
        """Build from per-edge coefficients.

        Parameters
        ----------
        graph
            The diagram; fixes node and edge order.
        beta
            ``(S, E)`` (or ``(E,)`` for one draw) coefficients in ``graph.edges`` order.
        alpha
            ``(S, P)`` (or ``(P,)``) intercepts in ``graph.nodes`` order.
        psi
            ``(S, P)`` disturbance variances (default: ones).
        edge_class
            Optional per-edge evidence class.
        """
        beta = np.atleast_2d(np.asarray(beta, dtype=float))
        alpha = np.atleast_2d(np.asarray(alpha, dtype=float))
        S, E = beta.shape
        P = len(graph.nodes)
        if E != len(graph.edges):
            raise InterventionError(f"beta has {E} edges; graph {graph.name!r} has {len(graph.edges)}")
        if alpha.shape[0] == 1 and S > 1:
            alpha = np.repeat(alpha, S, axis=0)
        psi = np.ones((S, P)) if psi is None else np.atleast_2d(np.asarray(psi, dtype=float))
        if psi.shape[0] == 1 and S > 1:
            psi = np.repeat(psi, S, axis=0)
        B = algebra.assemble(beta, algebra.edge_index([e.source for e in graph.edges],
                                                      [e.target for e in graph.edges], list(graph.nodes)),
                             xp="numpy")
        return cls(tuple(graph.nodes), tuple(graph.edge_keys), B, alpha, psi, edge_class,
                   tuple(e.delay for e in graph.edges))

    @classmethod
    def from_posterior(
        cls,
        posterior: Any,
        graph: CausalGraph,
        edge_class: dict[str, str] | None = None,
    ) -> "StructuralDraws":
        """Build from a posterior with variables ``beta`` (edge), ``alpha`` (node), ``psi`` (node).

        Parameters
        ----------
        posterior
            An ArviZ ``DataTree`` / ``InferenceData`` with a ``posterior`` group, or the
            posterior ``xarray.Dataset`` itself (dims ``chain``, ``draw``).
        graph
            The diagram; coordinates are matched by name and reordered to the graph's order.
        edge_class
            Optional per-edge evidence class.
        """
        ds = _posterior_dataset(posterior)
        missing = [v for v in ("beta", "alpha", "psi") if v not in ds]
        if missing:
            raise InterventionError(f"posterior lacks variable(s) {missing} (expected beta, alpha, psi)")

        def stacked(name: str, dim: str, labels: list[str]) -> np.ndarray:
            da = ds[name]
            have = [str(x) for x in da[dim].values]
            absent = [x for x in labels if x not in have]
            if absent:
                raise InterventionError(Problem(f"posterior {name} lacks {dim} coordinate(s) {absent}",
                                                field=name, value=absent))
            da = da.sel({dim: labels}).transpose("chain", "draw", dim)
            arr = np.asarray(da.values, dtype=float)
            return arr.reshape(-1, arr.shape[-1])

        beta = stacked("beta", "edge", list(graph.edge_keys))
        alpha = stacked("alpha", "node", list(graph.nodes))
        psi = stacked("psi", "node", list(graph.nodes))
        return cls.from_arrays(graph, beta, alpha, psi, edge_class)

    # ------------------------------------------------------------------ views
    @property
    def n_draws(self) -> int:
        """Number of draws ``S``."""
        return int(self.B.shape[0])

    @property
    def node_index(self) -> dict[str, int]:
        """Position of each node."""
        return {n: i for i, n in enumerate(self.nodes)}

    @property
    def edge_sources(self) -> np.ndarray:
        """Source node index per edge."""
        return self._edge_index[0]

    @property
    def edge_targets(self) -> np.ndarray:
        """Target node index per edge."""
        return self._edge_index[1]

    def beta(self) -> np.ndarray:
        """``(S, E)`` edge coefficients in ``edge_keys`` order."""
        return self.B[:, self.edge_targets, self.edge_sources]

    def baseline_mean(self) -> np.ndarray:
        """``(S, P)`` baseline equilibrium means ``(I - B)^-1 alpha`` (NaN where singular)."""
        eye = np.eye(len(self.nodes))
        out = np.full(self.alpha.shape, np.nan)
        for_solve = np.abs(np.linalg.det(eye - self.B)) > 1e-12
        out[for_solve] = algebra.solve_equilibrium(self.B[for_solve], self.alpha[for_solve], xp="numpy")
        return out

    def spectral_radius(self) -> np.ndarray:
        """``(S,)`` spectral radius of ``B`` per draw (vectorised eigenvalues)."""
        return algebra.spectral_radius(self.B, xp="numpy")

    def subset(self, draws: np.ndarray | slice) -> "StructuralDraws":
        """A new object holding only the selected draws."""
        return StructuralDraws(self.nodes, self.edge_keys, self.B[draws], self.alpha[draws],
                               self.psi[draws], self.edge_class, self.edge_delays)
