"""do-operator queries on a cyclic linear structural model, vectorised with JAX.

For every posterior draw ``s`` and intervention ``i`` the intervened system is

    B_do = (B with mechanism changes applied) with the rows of hard-set nodes zeroed
    c_do = c + shifts, with c_j := x_j for hard-set nodes j
    eta' = (I - B_do)^-1 c_do

where ``c`` is the intercept vector of the population the query is about (``alpha`` for the whole
population; ``(I - B) m_g`` for a subgroup whose baseline mean ``m_g`` is given). The effect is
``E[eta'] - E[eta] = eta' - m`` with ``m = (I - B)^-1 c``; disturbances have mean zero so the
expectation over the population's exogenous distribution is carried by ``c``. Equivalently
``effect = (I - B_do)^-1 u`` with the *injection* ``u = c_do - (I - B_do) m``: for a shift ``u = delta``
(independent of the baseline), for a set ``u_j = x_j - m_j`` (depends on the baseline mean), for a
mechanism change ``u = (B' - B) m``.

Per draw we record whether the intervened system is uniquely solvable (``|det(I - B_do)| > det_tol``
and condition number ``< cond_max``) and stable (spectral radius of ``B_do`` < 1). Effects are NaN
where the system is not solvable.

Floating point: importing this module enables JAX 64-bit mode
(``jax.config.update("jax_enable_x64", True)``); closed-form checks to 1e-8 need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: E402

from .errors import InterventionError, Problem, did_you_mean  # noqa: E402
from .interventions import (  # noqa: E402
    CompiledIntervention,
    Intervention,
    NativeScale,
    compile_interventions,
)
from .structural_draws import StructuralDraws  # noqa: E402

__all__ = [
    "DEFAULT_OUTCOMES",
    "Outcome",
    "SubgroupInfo",
    "DoResult",
    "resolve_outcomes",
    "draw_doses",
    "intervened_system",
    "do_query",
]

#: Outcomes reported when none are asked for.
DEFAULT_OUTCOMES = ("wellbeing", "stress", "societal_participation", "collective_agency",
                    "livelihood_security", "mental_problems")


class Outcome(BaseModel):
    """An outcome: one node, or a named weighted composite of nodes.

    ``"resilience"`` is never a node of the MARVEL diagram; a resilience index is a composite the
    user names and weights, e.g. ``Outcome(name="resilience_index", weights={"wellbeing": 0.5,
    "stress": -0.25, "individual_agency": 0.25})``. The composite effect is ``sum_k w_k effect_k``
    (weights are used as given, not normalised).

    ``direction`` is the desirable direction (+1: higher is better, -1: lower is better); ``None``
    means the package default (see :mod:`veerkracht_bayes.effect_summaries`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weights: dict[str, float] = Field(min_length=1)
    direction: int | None = None

    @model_validator(mode="after")
    def _dir(self) -> "Outcome":
        if self.direction not in (None, 1, -1):
            raise ValueError("direction must be +1, -1 or None")
        return self

    @classmethod
    def node(cls, node: str) -> "Outcome":
        """The single-node outcome ``node``."""
        return cls(name=node, weights={node: 1.0})

    @property
    def is_node(self) -> bool:
        """True for a single-node outcome named after its node with weight 1."""
        return list(self.weights) == [self.name] and self.weights[self.name] == 1.0


def resolve_outcomes(outcomes: Sequence[str | Outcome | Mapping] | None, nodes: Sequence[str]
                     ) -> list[Outcome]:
    """Turn names / mappings / :class:`Outcome` into checked outcomes (default: :data:`DEFAULT_OUTCOMES`
    that are nodes)."""
    if outcomes is None:
        outcomes = [o for o in DEFAULT_OUTCOMES if o in nodes]
    out: list[Outcome] = []
    probs: list[Problem] = []
    for o in outcomes:
        oc = Outcome.node(o) if isinstance(o, str) else (o if isinstance(o, Outcome)
                                                          else Outcome.model_validate(o))
        for n in oc.weights:
            if n not in nodes:
                hint = did_you_mean(n, nodes)
                if not hint and n.lower() == "resilience":
                    hint = (" ('resilience' is not a node; define a named composite of nodes, "
                            "e.g. Outcome(name='resilience_index', weights={...}))")
                probs.append(Problem(f"unknown outcome node {n!r}{hint} (expected a node of the graph)",
                                     location=f"outcome {oc.name!r}", field="outcome", value=n))
        out.append(oc)
    names = [o.name for o in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        probs.append(Problem(f"outcome names repeated: {dup}", field="outcome", value=dup))
    if probs:
        raise InterventionError(probs)
    return out


@dataclass(frozen=True)
class SubgroupInfo:
    """What a query needs to know about a subgroup.

    Attributes
    ----------
    prevalence
        (Weighted) share of the population in the subgroup, in (0, 1].
    n
        Unweighted number of respondents in the cell (for the minimum cell size); ``None`` when
        unknown (never suppressed).
    mean
        Optional ``(P,)`` baseline mean of the nodes in the subgroup (model scale); used only by
        hard sets and mechanism changes, whose effect depends on the baseline level.
    """

    prevalence: float
    n: int | None = None
    mean: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0.0 < float(self.prevalence) <= 1.0:
            raise InterventionError(Problem(f"subgroup prevalence {self.prevalence!r} not in (0, 1]",
                                            field="prevalence", value=self.prevalence))


# --------------------------------------------------------------------------- JAX kernels
def _intervened(B, set_mask, mscale, mmask, mval):
    Bm = jnp.where(mmask, mval, B * mscale)
    return Bm * (1.0 - set_mask.astype(B.dtype))[:, None]


def _kernel(B, c, shift, D, set_mask, set_value, mscale, mmask, mval, det_tol, cond_max):
    """One draw, one intervention: effect, data-only effect, |det|, cond, rho."""
    P = B.shape[0]
    eye = jnp.eye(P, dtype=B.dtype)
    m = jnp.linalg.solve(eye - B, c)
    Bdo = _intervened(B, set_mask, mscale, mmask, mval)
    c_do = jnp.where(set_mask, set_value, c + shift)
    M = eye - Bdo
    sv = jnp.linalg.svd(M, compute_uv=False)
    absdet = jnp.prod(sv)
    cond = sv[0] / sv[-1]
    ok = (absdet > det_tol) & (cond < cond_max)
    Msafe = jnp.where(ok, M, eye)
    u = c_do - M @ m
    eff = jnp.linalg.solve(Msafe, u)
    eff_data = jnp.linalg.solve(jnp.where(ok, eye - Bdo * D, eye), u)
    nan = jnp.full((P,), jnp.nan, dtype=B.dtype)
    rho = jnp.max(jnp.abs(jnp.linalg.eigvals(Bdo)))
    return (jnp.where(ok, eff, nan), jnp.where(ok, eff_data, nan), absdet, cond, rho)


_over_draws = jax.vmap(_kernel, in_axes=(0, 0, 0, None, None, None, None, None, None, None, None))
_batched = jax.jit(jax.vmap(_over_draws, in_axes=(None, 0, 0, None, 0, 0, 0, 0, 0, None, None)))


@jax.jit
def _baseline(B, c):
    eye = jnp.eye(B.shape[-1], dtype=B.dtype)
    return jnp.linalg.solve(eye - B, c[..., None])[..., 0]


def draw_doses(compiled: CompiledIntervention, n_draws: int, n_nodes: int,
               key: jax.Array | int = 0) -> np.ndarray:
    """Draw the shift doses: ``(I, S, P)`` shift per intervention, draw and node (model units).

    One dose per intervention part and posterior draw, from ``jax.random`` with a fixed key
    (an int seed or a key); the same key gives the same doses.
    """
    key = jax.random.PRNGKey(key) if isinstance(key, int) else key
    I, R = compiled.dose_code.shape
    kz, ku = jax.random.split(key)
    z = jax.random.normal(kz, (I, R, n_draws))
    uu = jax.random.uniform(ku, (I, R, n_draws))
    code = jnp.asarray(compiled.dose_code)[..., None]
    p1 = jnp.asarray(compiled.dose_p1)[..., None]
    p2 = jnp.asarray(compiled.dose_p2)[..., None]
    safe_med = jnp.where(p1 == 0, 1.0, p1)
    val = jnp.select(
        [code == 0, code == 1, code == 2, code == 3],
        [jnp.broadcast_to(p1, z.shape), p1 + p2 * z, p1 + (p2 - p1) * uu,
         jnp.sign(safe_med) * jnp.exp(jnp.log(jnp.abs(safe_med)) + p2 * z)],
    ) * jnp.asarray(compiled.dose_factor)[..., None]
    onehot = jax.nn.one_hot(jnp.asarray(compiled.dose_node), n_nodes, dtype=val.dtype)  # (I,R,P)
    return np.asarray(jnp.einsum("irs,irp->isp", val, onehot))


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class DoResult:
    """Effects of a batch of interventions, per draw.

    Attributes
    ----------
    names
        Intervention names (e.g. policy ids).
    nodes
        Node order of the effect arrays.
    effect
        ``(I, S, P)`` within-target effect (within the subgroup for targeted interventions; the
        whole population otherwise), NaN where not solvable or suppressed.
    effect_data_only
        ``(I, S, P)`` the part carried by walks that use only data-informed edges (see
        :mod:`veerkracht_bayes.effect_summaries`). Edges without a class count as prior-dominated,
        so without an edge classification only the intervention's own injection is "data-only".
    solvable, stable
        ``(I, S)`` flags; ``abs_det``, ``cond``, ``rho``: the numbers behind them.
    baseline_stable
        ``(S,)`` spectral radius of the baseline ``B`` < 1.
    subgroups, prevalence
        Target subgroup (or ``None``) and its prevalence (1.0 for everyone) per intervention.
    suppressed
        Per intervention: ``None`` or the reason the cell is suppressed.
    outcomes
        The outcomes asked for.
    doses
        ``(I, S, P)`` the shift drawn per draw (model units).
    """

    names: tuple[str, ...]
    nodes: tuple[str, ...]
    effect: np.ndarray
    effect_data_only: np.ndarray
    solvable: np.ndarray
    stable: np.ndarray
    abs_det: np.ndarray
    cond: np.ndarray
    rho: np.ndarray
    baseline_stable: np.ndarray
    subgroups: tuple[str | None, ...]
    prevalence: np.ndarray
    suppressed: tuple[str | None, ...]
    outcomes: tuple[Outcome, ...]
    doses: np.ndarray
    has_edge_class: bool = False
    meta: dict = field(default_factory=dict)

    def _weights(self, outcome: str | Outcome) -> np.ndarray:
        if isinstance(outcome, str):
            match = [o for o in self.outcomes if o.name == outcome]
            outcome = match[0] if match else resolve_outcomes([outcome], self.nodes)[0]
        idx = {n: i for i, n in enumerate(self.nodes)}
        w = np.zeros(len(self.nodes))
        for n, v in outcome.weights.items():
            w[idx[n]] = v
        return w

    def outcome_effect(self, outcome: str | Outcome, scope: str = "within",
                       data_only: bool = False) -> np.ndarray:
        """``(I, S)`` effect on one outcome.

        Parameters
        ----------
        outcome
            Outcome name (one of :attr:`outcomes` or any node) or an :class:`Outcome`.
        scope
            ``"within"`` (within the targeted subgroup) or ``"population"`` (population average:
            the within effect times the subgroup's prevalence).
        data_only
            Use the data-informed-walks part instead of the total.
        """
        if scope not in ("within", "population"):
            raise InterventionError(f"unknown scope {scope!r}{did_you_mean(scope, ['within', 'population'])}"
                                    " (expected 'within' or 'population')")
        arr = self.effect_data_only if data_only else self.effect
        out = arr @ self._weights(outcome)
        if scope == "population":
            out = out * self.prevalence[:, None]
        return out

    def p_stable(self) -> np.ndarray:
        """``(I,)`` share of draws whose intervened system is solvable and stable."""
        return (self.solvable & self.stable).mean(axis=1)

    def index(self, name: str) -> int:
        """Position of an intervention."""
        if name not in self.names:
            raise InterventionError(f"unknown intervention {name!r}{did_you_mean(name, self.names)}")
        return self.names.index(name)


# --------------------------------------------------------------------------- driver
def _subgroup_setup(compiled, draws, subgroups, min_cell_size):
    I, S, P = compiled.n, draws.n_draws, len(draws.nodes)
    prev = np.ones(I)
    reasons: list[str | None] = []
    c = np.broadcast_to(draws.alpha, (I, S, P)).copy()
    eye = np.eye(P)
    for i, g in enumerate(compiled.subgroups):
        reason = None
        if g is not None:
            info = subgroups[g]
            prev[i] = float(info.prevalence)
            if info.n is not None and info.n < min_cell_size:
                reason = (f"subgroup {g!r} has n={info.n} respondents, below the minimum cell size "
                          f"{min_cell_size}; estimates suppressed")
            if info.mean is not None:
                mg = np.asarray(info.mean, float)
                if mg.shape != (P,):
                    raise InterventionError(f"subgroup {g!r} mean has shape {mg.shape}; expected ({P},)")
                c[i] = mg @ np.swapaxes(eye - draws.B, 1, 2)  # (I - B) m_g per draw
        reasons.append(reason)
    return prev, tuple(reasons), c


def _data_mask(draws: StructuralDraws) -> np.ndarray:
    P = len(draws.nodes)
    D = np.zeros((P, P))
    if draws.edge_class is None:
        return D
    for e, (j, k) in enumerate(zip(draws.edge_sources, draws.edge_targets)):
        if draws.edge_class.get(draws.edge_keys[e]) == "data-informed":
            D[k, j] = 1.0
    return D


def intervened_system(draws: StructuralDraws, compiled: CompiledIntervention, i: int,
                      shift: np.ndarray, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(B_do (S,P,P), u (S,P))`` for intervention ``i``: the effect is ``(I - B_do)^-1 u``.

    Parameters
    ----------
    shift
        ``(S, P)`` drawn shift of this intervention.
    c
        ``(S, P)`` intercepts of the population (default ``alpha``).
    """
    c = draws.alpha if c is None else c
    B = jnp.asarray(draws.B)
    m = _baseline(B, jnp.asarray(c))
    f = jax.vmap(_intervened, in_axes=(0, None, None, None, None))
    Bdo = f(B, jnp.asarray(compiled.set_mask[i]), jnp.asarray(compiled.mech_scale[i]),
            jnp.asarray(compiled.mech_mask[i]), jnp.asarray(compiled.mech_value[i]))
    c_do = jnp.where(compiled.set_mask[i], compiled.set_value[i], c + shift)
    u = c_do - m + jnp.einsum("skj,sj->sk", Bdo, m)
    return np.asarray(Bdo), np.asarray(u)


def do_query(
    draws: StructuralDraws,
    interventions: Sequence[Intervention],
    outcomes: Sequence[str | Outcome | Mapping] | None = None,
    *,
    subgroups: Mapping[str, SubgroupInfo] | None = None,
    min_cell_size: int = 50,
    native_scale: Mapping[str, float | NativeScale] | None = None,
    seed: int | jax.Array = 0,
    det_tol: float = 1e-10,
    cond_max: float = 1e12,
) -> DoResult:
    """Equilibrium effects of interventions, per posterior draw.

    Parameters
    ----------
    draws
        Structural draws (posterior or fixed).
    interventions
        The interventions (validated here against the graph, units and subgroups).
    outcomes
        Outcome names / composites (default :data:`DEFAULT_OUTCOMES`); effects for every node are
        kept in the result anyway.
    subgroups
        Defined subgroups ``{name: SubgroupInfo}`` (from the codebook and the weighted data).
    min_cell_size
        Cells with fewer respondents are suppressed (NaN effects, with the reason).
    native_scale
        Known native scales for ``unit="native"``.
    seed
        Seed (or ``jax.random`` key) for the dose draws.
    det_tol, cond_max
        Solvability thresholds on ``|det(I - B_do)|`` and the condition number.

    Returns
    -------
    DoResult
    """
    subgroups = dict(subgroups or {})
    outs = resolve_outcomes(outcomes, draws.nodes)
    compiled = compile_interventions(interventions, draws.nodes, draws.edge_keys,
                                     subgroups=list(subgroups), native_scale=native_scale)
    S, P = draws.n_draws, len(draws.nodes)
    shifts = draw_doses(compiled, S, P, seed)
    prev, reasons, c = _subgroup_setup(compiled, draws, subgroups, min_cell_size)
    B = jnp.asarray(draws.B)
    eff, effd, absdet, cond, rho = _batched(
        B, jnp.asarray(c), jnp.asarray(shifts), jnp.asarray(_data_mask(draws)),
        jnp.asarray(compiled.set_mask), jnp.asarray(compiled.set_value),
        jnp.asarray(compiled.mech_scale), jnp.asarray(compiled.mech_mask),
        jnp.asarray(compiled.mech_value), det_tol, cond_max)
    eff, effd = np.array(eff), np.array(effd)
    absdet, cond, rho = np.asarray(absdet), np.asarray(cond), np.asarray(rho)
    solvable = (absdet > det_tol) & (cond < cond_max)
    for i, r in enumerate(reasons):
        if r is not None:
            eff[i] = np.nan
            effd[i] = np.nan
    return DoResult(
        names=compiled.names, nodes=tuple(draws.nodes), effect=eff, effect_data_only=effd,
        solvable=solvable, stable=rho < 1.0, abs_det=absdet, cond=cond, rho=rho,
        baseline_stable=draws.spectral_radius() < 1.0, subgroups=compiled.subgroups,
        prevalence=prev, suppressed=reasons, outcomes=tuple(outs), doses=shifts,
        has_edge_class=draws.edge_class is not None,
        meta={"seed": seed if isinstance(seed, int) else None, "det_tol": det_tol,
              "cond_max": cond_max, "min_cell_size": min_cell_size})
