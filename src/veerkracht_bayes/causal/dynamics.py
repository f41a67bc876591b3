"""Time to effect: partial adjustment with a first-order delay per edge (docs/math.md, time to effect).

Each edge ``j -> k`` carries a memory ``m_kj`` of its source that adjusts at rate ``r_kj``::

    m_kj[t+1] = m_kj[t] + r_kj * (eta_j[t] - m_kj[t])
    eta_k[t]  = sum_j B_do[k, j] * m_kj[t] + c_do_k

At the fixed point ``m_kj = eta_j``, so ``eta = B_do eta + c_do``: the trajectory converges to the
equilibrium of :func:`veerkracht_bayes.causal.do.do_query` whenever the iteration is stable.

Time unit: one step is ``dt`` years (default 1 year). The rates per year by delay class are
:data:`RATES_PER_YEAR`; for other step lengths the rate is ``1 - (1 - r)^dt`` (the same
exponential adjustment per unit of time). Choices (fraction of the remaining gap closed per year):

* ``immediate`` 1.0 — within the first step (weeks to months);
* ``short`` 0.7 — half-life ~0.6 y (about a year to act fully);
* ``medium`` 0.35 — half-life ~1.6 y (a few years);
* ``long`` 0.15 — half-life ~4.3 y (five to ten years);
* ``generational`` 0.05 — half-life ~13.5 y (about 90 % after 45 years: a generation).

Trajectories start at the baseline equilibrium; at ``t = 0`` the intervention switches on, so the
effect at ``t = 0`` is only its direct impact on the nodes it acts on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from veerkracht_bayes.runtime import x64
from veerkracht_bayes.causal.do import Outcome, SubgroupInfo, query_setup
from veerkracht_bayes.errors import InterventionError, did_you_mean
from veerkracht_bayes.causal.interventions import Intervention, NativeScale
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.sem import algebra


__all__ = ["RATES_PER_YEAR", "edge_rates", "Trajectories", "simulate_trajectories"]

#: Adjustment rate per year of each delay class.
RATES_PER_YEAR: dict[str, float] = {"immediate": 1.0, "short": 0.7, "medium": 0.35, "long": 0.15,
                                    "generational": 0.05}


def edge_rates(delays: Sequence[str], dt: float = 1.0,
               rates: Mapping[str, float] | None = None) -> np.ndarray:
    """Rate per step for each edge's delay class.

    Parameters
    ----------
    delays
        Delay class per edge.
    dt
        Step length in years.
    rates
        Rates per year by class (default :data:`RATES_PER_YEAR`).

    Examples
    --------
    >>> edge_rates(["immediate", "short", "long"]).round(3)
    array([1.  , 0.7 , 0.15])
    """
    rates = dict(RATES_PER_YEAR if rates is None else rates)
    out = []
    for d in delays:
        if d not in rates:
            raise InterventionError(f"unknown delay class {d!r}{did_you_mean(d, rates)} "
                                    f"(expected one of {sorted(rates)})")
        r = rates[d]
        if not 0.0 < r <= 1.0:
            raise InterventionError(f"rate {r!r} for delay class {d!r} not in (0, 1]")
        out.append(1.0 - (1.0 - r) ** dt)
    return np.asarray(out, float)


@partial(jax.jit, static_argnames=("T",))
def _impulse_kernel(beta, set_mask, mscale, mmask, mval, src, tgt, rate, Wt, cols, *, T):
    """Outcome responses to a unit constant injection at each node in ``cols``, all draws.

    With ``d_t = mem_t - m[src]`` (edge memories relative to the baseline) the per-edge recursion
    of the module docstring is linear in the injection ``u = c_do - (I - B_do) m``::

        d_0 = 0,   d_{t+1} = (1 - r) d_t + r (A d_t + u)[src],   y_t = W' (A d_t + u)

    (``A[tgt_e, e] = B_do[tgt_e, src_e]``), so ``y_t = G_t u`` with ``G_0 = W'`` and
    ``G_{t+1} = G_t + (h_t r) Src``, ``h_0 = W' A``, ``h_{t+1} = h_t F`` (``F`` the edge
    transition, ``Src`` the edge-to-source incidence). Propagating the ``K`` outcome rows
    backwards costs ``O(K E)`` per step and draw, independent of the number of interventions.

    ``beta (S, E)`` holds ``B[tgt_e, src_e]`` (only the edges enter the dynamics). Returns
    ``(J, S, T + 1, K)``: ``G_t[k, cols[j]]`` per draw.
    """
    P = set_mask.shape[0]
    # B_do on the edges (the edges into a hard-set node are cut), as in do._intervened
    w = algebra.apply_mechanisms(beta, mscale[tgt, src], mmask[tgt, src], mval[tgt, src], set_mask[tgt],
                                 xp="jax")  # (S, E) coefficient of each edge
    src1h = jax.nn.one_hot(src, P, dtype=beta.dtype)  # (E, P)
    tgt1h = jax.nn.one_hot(tgt, P, dtype=beta.dtype).T  # (P, E)
    h0 = Wt[None, :, :] @ tgt1h * w[:, None, :]  # (S, K, E)
    G0 = jnp.broadcast_to(Wt[:, cols], (beta.shape[0],) + Wt[:, cols].shape)  # (S, K, J)
    src_cols = src1h[:, cols]  # (E, J)

    def step(carry, _):
        h, G = carry
        hr = h * rate
        v = hr @ src1h  # (S, K, P)
        G = G + hr @ src_cols
        h = h * (1.0 - rate) + (v @ tgt1h) * w[:, None, :]
        return (h, G), G

    _, Gs = jax.lax.scan(step, (h0, G0), None, length=T)
    G = jnp.concatenate([G0[None], Gs], axis=0)  # (T + 1, S, K, J)
    return G.transpose(3, 1, 0, 2)


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Effect trajectories.

    Attributes
    ----------
    names
        Intervention names.
    outcomes
        Outcomes (columns of the last axis).
    times
        ``(T + 1,)`` time in years.
    effect
        ``(I, S, T + 1, K)`` within-target effect per outcome over time (NaN where suppressed).
    prevalence
        Per intervention (multiply for the population average).

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
    >>> tr = simulate_trajectories(draws, [iv], outcomes=["b"], horizon=5)
    >>> isinstance(tr, Trajectories), tr.names
    (True, ('x up',))
    """

    names: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    times: np.ndarray
    effect: np.ndarray
    prevalence: np.ndarray

    def outcome(self, name: str, scope: str = "within") -> np.ndarray:
        """``(I, S, T + 1)`` trajectory of one outcome."""
        names = [o.name for o in self.outcomes]
        if name not in names:
            raise InterventionError(f"unknown outcome {name!r}{did_you_mean(name, names)}")
        out = self.effect[..., names.index(name)]
        return out * self.prevalence[:, None, None] if scope == "population" else out


@x64
def simulate_trajectories(
    draws: StructuralDraws,
    interventions: Sequence[Intervention],
    outcomes: Sequence[str | Outcome] | None = None,
    *,
    horizon: int = 30,
    dt: float = 1.0,
    rates: Mapping[str, float] | None = None,
    subgroups: Mapping[str, SubgroupInfo] | None = None,
    min_cell_size: int = 50,
    native_scale: Mapping[str, float | NativeScale] | None = None,
    seed: int | jax.Array = 0,
) -> Trajectories:
    """Trajectories ``t = 0..horizon`` steps of the effect, per draw (``jax.lax.scan``).

    The doses are drawn exactly as in :func:`~veerkracht_bayes.causal.do.do_query` with the same
    seed, so the trajectories converge to its equilibrium effects draw by draw.

    Parameters
    ----------
    horizon
        Number of steps ``T``.
    dt
        Step length in years.
    rates
        Rates per year by delay class (default :data:`RATES_PER_YEAR`).

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
    >>> tr = simulate_trajectories(draws, [iv], outcomes=["b"], horizon=10)
    >>> tr.times.shape, tr.effect.shape
    ((11,), (1, 1, 11, 1))
    """
    if draws.edge_delays is None:
        raise InterventionError("these draws carry no edge delay classes (build them from a graph)")
    q = query_setup(draws, interventions, outcomes, subgroups=subgroups, min_cell_size=min_cell_size,
                    native_scale=native_scale, seed=seed)
    outs, compiled, prev, reasons, groups, inj = (q.outcomes, q.compiled, q.prevalence, q.suppressed,
                                                  q.groups, q.injections)
    I, S, P = compiled.n, draws.n_draws, len(draws.nodes)
    idx = {n: i for i, n in enumerate(draws.nodes)}
    W = np.zeros((P, len(outs)))
    for k, o in enumerate(outs):
        for n, v in o.weights.items():
            W[idx[n], k] = v
    rate = edge_rates(draws.edge_delays, dt, rates)
    beta = jnp.asarray(draws.B[:, draws.edge_targets, draws.edge_sources])
    src, tgt = jnp.asarray(draws.edge_sources), jnp.asarray(draws.edge_targets)
    # dispatch every kernel first (JAX runs them asynchronously), allocate the result meanwhile
    pending = [_impulse_kernel(beta, jnp.asarray(g.set_mask), jnp.asarray(g.mscale),
                               jnp.asarray(g.mmask), jnp.asarray(g.mval), src, tgt, jnp.asarray(rate),
                               jnp.asarray(W.T), jnp.asarray(g.cols), T=int(horizon))
               for g in groups]
    eff = np.empty((I, S, int(horizon) + 1, len(outs)))
    eff.fill(0.0)  # touch the pages now, while the kernels run
    for g, G in zip(groups, pending):
        G = np.asarray(G)
        pos = {int(j): q for q, j in enumerate(g.cols)}
        for i in g.members:
            if reasons[i] is not None:
                eff[i] = np.nan
                continue
            nodes, u = inj[i]
            if not nodes.size:
                eff[i] = 0.0
                continue
            e = eff[i]
            np.multiply(G[pos[int(nodes[0])]], u[0][:, None, None], out=e)
            for j, uj in zip(nodes[1:], u[1:]):
                e += G[pos[int(j)]] * uj[:, None, None]
    return Trajectories(compiled.names, tuple(outs), np.arange(horizon + 1) * dt, eff, prev)
