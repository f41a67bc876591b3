"""Time to effect: partial adjustment with a first-order delay per edge (MATH.md section 5).

Each edge ``j -> k`` carries a memory ``m_kj`` of its source that adjusts at rate ``r_kj``::

    m_kj[t+1] = m_kj[t] + r_kj * (eta_j[t] - m_kj[t])
    eta_k[t]  = sum_j B_do[k, j] * m_kj[t] + c_do_k

At the fixed point ``m_kj = eta_j``, so ``eta = B_do eta + c_do``: the trajectory converges to the
equilibrium of :func:`veerkracht_bayes.do_queries.do_query` whenever the iteration is stable.

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

import jax
import jax.numpy as jnp
import numpy as np

from .do_queries import Outcome, SubgroupInfo, _intervened, _subgroup_setup, draw_doses, resolve_outcomes
from .errors import InterventionError, did_you_mean
from .interventions import Intervention, NativeScale, compile_interventions
from .structural_draws import StructuralDraws

jax.config.update("jax_enable_x64", True)

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


def _traj_one(B, c, shift, set_mask, set_value, mscale, mmask, mval, src, tgt, rate, sel, T):
    P = B.shape[0]
    eye = jnp.eye(P, dtype=B.dtype)
    base = jnp.linalg.solve(eye - B, c)
    Bdo = _intervened(B, set_mask, mscale, mmask, mval)
    c_do = jnp.where(set_mask, set_value, c + shift)
    w = Bdo[tgt, src]

    def step(mem, _):
        eta = jnp.zeros(P, dtype=B.dtype).at[tgt].add(w * mem) + c_do
        new = mem + rate * (eta[src] - mem)
        return new, (eta - base)[sel]

    _, out = jax.lax.scan(step, base[src], None, length=T + 1)
    return out


_traj = jax.jit(
    jax.vmap(jax.vmap(_traj_one, in_axes=(0, 0, 0) + (None,) * 10),
             in_axes=(None, 0, 0, 0, 0, 0, 0, 0, None, None, None, None, None)),
    static_argnums=(12,))


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

    The doses are drawn exactly as in :func:`~veerkracht_bayes.do_queries.do_query` with the same
    seed, so the trajectories converge to its equilibrium effects draw by draw.

    Parameters
    ----------
    horizon
        Number of steps ``T``.
    dt
        Step length in years.
    rates
        Rates per year by delay class (default :data:`RATES_PER_YEAR`).
    """
    if draws.edge_delays is None:
        raise InterventionError("these draws carry no edge delay classes (build them from a graph)")
    subgroups = dict(subgroups or {})
    outs = resolve_outcomes(outcomes, draws.nodes)
    compiled = compile_interventions(interventions, draws.nodes, draws.edge_keys,
                                     subgroups=list(subgroups), native_scale=native_scale)
    S, P = draws.n_draws, len(draws.nodes)
    shifts = draw_doses(compiled, S, P, seed)
    prev, reasons, c = _subgroup_setup(compiled, draws, subgroups, min_cell_size)
    idx = {n: i for i, n in enumerate(draws.nodes)}
    W = np.zeros((P, len(outs)))
    for k, o in enumerate(outs):
        for n, v in o.weights.items():
            W[idx[n], k] = v
    sel = np.flatnonzero(W.any(axis=1))
    rate = edge_rates(draws.edge_delays, dt, rates)
    eff_nodes = _traj(jnp.asarray(draws.B), jnp.asarray(c), jnp.asarray(shifts),
                      jnp.asarray(compiled.set_mask), jnp.asarray(compiled.set_value),
                      jnp.asarray(compiled.mech_scale), jnp.asarray(compiled.mech_mask),
                      jnp.asarray(compiled.mech_value), jnp.asarray(draws.edge_sources),
                      jnp.asarray(draws.edge_targets), jnp.asarray(rate), jnp.asarray(sel),
                      int(horizon))
    eff = np.asarray(eff_nodes) @ W[sel]
    for i, r in enumerate(reasons):
        if r is not None:
            eff[i] = np.nan
    return Trajectories(compiled.names, tuple(outs), np.arange(horizon + 1) * dt, eff, prev)
