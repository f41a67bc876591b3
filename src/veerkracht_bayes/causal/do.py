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
and condition number ``< cond_max``) and stable (spectral radius of ``B_do`` < 1), and the same for
the baseline system ``I - B`` (an effect is a difference from the baseline equilibrium, which must
exist and be reached). Effects are NaN where the intervened system is not solvable;
:meth:`DoResult.usable` is the mask of draws summaries use (both systems solvable and stable).

Computation: interventions that share an intervened structure ``B_do`` (the same sets and
mechanism changes; e.g. every pure shift, in every subgroup) share one SVD (``|det|``, condition
number) and one LU factorisation per draw; the injection ``u`` is sparse (non-zero only at shifted
and set nodes and at rows a mechanism change touches), so each effect is a combination of a few
columns of ``(I - B_do)^-1``. The spectral radius comes from the diagonal blocks (strongly
connected components) of the block-triangular form, computed with numpy while the JAX kernel runs.

Floating point: the public functions run in JAX's 64-bit mode (:func:`veerkracht_bayes.runtime.x64`,
a context that leaves the process setting as it was); closed-form checks to 1e-8 need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: E402

from veerkracht_bayes.runtime import x64  # noqa: E402
from veerkracht_bayes.errors import InterventionError, Problem, did_you_mean  # noqa: E402
from veerkracht_bayes.causal.interventions import (  # noqa: E402
    CompiledIntervention,
    Intervention,
    NativeScale,
    compile_interventions,
)
from veerkracht_bayes.causal.draws import StructuralDraws  # noqa: E402
from veerkracht_bayes.sem import algebra

__all__ = [
    "DEFAULT_OUTCOMES",
    "Outcome",
    "SubgroupInfo",
    "DoResult",
    "resolve_outcomes",
    "draw_doses",
    "intervened_system",
    "QuerySetup",
    "query_setup",
    "do_query",
    "StructureGroup",
    "structure_groups",
    "subgroup_setup",
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
    means the package default (see :mod:`veerkracht_bayes.causal.summaries`).

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> o = vb.Outcome(name="resilience_index", weights={"wellbeing": 0.5, "stress": -0.5})
    >>> sorted(o.weights)
    ['stress', 'wellbeing']
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
    that are nodes).

    Examples
    --------
    >>> [o.name for o in resolve_outcomes(["a", Outcome(name="ab", weights={"a": 0.5, "b": 0.5})], ["x", "a", "b"])]
    ['a', 'ab']
    """
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

    Examples
    --------
    >>> SubgroupInfo(prevalence=0.2, n=120).prevalence
    0.2
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
    return algebra.apply_mechanisms(B, mscale, mmask, mval, set_mask[:, None], xp="jax")


@jax.jit
def _baseline(B, c):
    return algebra.solve_equilibrium(B, c, xp="jax")


def _spectral_radius(B: np.ndarray, g: "StructureGroup | None", blocks, singles) -> np.ndarray:
    """``(S,)`` spectral radius of ``B_do`` (``B`` under the structure of group ``g``; ``None``:
    ``B`` itself) from the diagonal blocks of its block-triangular form (numpy, on the host).

    ``blocks`` are the strongly connected components (size > 1) of a sparsity pattern that
    contains ``B_do``'s, grouped by size; ``singles`` the one-node components. The eigenvalues of a
    block-triangular matrix are those of its diagonal blocks (a one-node block's eigenvalue is its
    diagonal entry), so this equals ``max |eigvals(B_do)|`` at a fraction of the cost.
    """

    def sub(ix_r, ix_c):
        Bs = B[:, ix_r, ix_c]
        if g is None:
            return Bs
        return algebra.apply_mechanisms(Bs, g.mscale[ix_r, ix_c], g.mmask[ix_r, ix_c], g.mval[ix_r, ix_c],
                                        g.set_mask[ix_r], xp="numpy")

    parts = []
    if singles:
        ix = np.asarray(singles)
        parts.append(np.abs(sub(ix, ix)))
    for idx in blocks:  # (n_blocks, k) node indices of same-size blocks
        ix = np.asarray(idx)
        Bs = sub(ix[:, :, None], ix[:, None, :])  # (S, n_blocks, k, k)
        parts.append(np.abs(np.linalg.eigvals(Bs)).reshape(B.shape[0], -1))
    if not parts:
        return np.zeros(B.shape[0])
    return np.max(np.concatenate(parts, axis=1), axis=1)


def _dense_B(Bvals, flat, P):
    """Rebuild ``(S, P, P)`` from the values at the flat positions ``flat``."""
    index = algebra.EdgeIndex(jnp.arange(Bvals.shape[-1]), flat // P, flat % P, (P, P))
    return algebra.assemble(Bvals, index, xp="jax")



@jax.jit
def _structure_kernel(Bvals, flat, set_mask, mscale, mmask, mval, cols, det_tol, cond_max):
    """One intervened structure, all draws: columns ``cols`` of ``(I - B_do)^-1``, ``|det|``,
    condition number and solvability.

    Returns ``X (J, S, P)`` with ``X[j, s] = (I - B_do[s])^-1 e_{cols[j]}`` (NaN where not
    solvable), ``absdet``, ``cond`` (each ``(S,)``); the spectral radius is computed on the host
    meanwhile. ``B`` is passed sparse: its values ``Bvals (S, nnz)`` at the flat positions
    ``flat`` (see :func:`_sparse_B`).
    """
    P = set_mask.shape[0]
    B = _dense_B(Bvals, flat, P)
    S = B.shape[0]
    eye = jnp.eye(P, dtype=B.dtype)
    Bdo = _intervened(B, set_mask, mscale, mmask, mval)
    M = eye - Bdo
    sv = jnp.linalg.svd(M, compute_uv=False)
    absdet = jnp.prod(sv, axis=-1)
    cond = sv[:, 0] / sv[:, -1]
    ok = (absdet > det_tol) & (cond < cond_max)
    E = jnp.broadcast_to(jax.nn.one_hot(cols, P, dtype=B.dtype).T, (S, P, cols.shape[0]))
    nan = jnp.asarray(jnp.nan, dtype=B.dtype)

    def cols_of_inverse(A):
        X = jnp.linalg.solve(jnp.where(ok[:, None, None], A, eye), E)  # (S, P, J)
        return jnp.where(ok[:, None, None], X, nan).transpose(2, 0, 1)

    return cols_of_inverse(M), absdet, cond


@partial(jax.jit, static_argnames=("n_draws", "need_z", "need_u", "need_b"))
def _dose_values(key, code, p1, p2, factor, *, n_draws, need_z, need_u, need_b=False):
    """``(I, R, S)`` dose per intervention part and draw. The normal (``z``) and uniform (``u``)
    variates are drawn from two split keys, the beta variates (code 4, ``p1 = a``, ``p2 = b``)
    from ``fold_in(key, 4)``; each only when some dose needs it (skipping one leaves the others'
    numbers unchanged: the beta key is separate from the two split keys)."""
    I, R = code.shape
    kz, ku = jax.random.split(key)
    shape = (I, R, n_draws)
    zero = jnp.zeros(shape, dtype=p1.dtype)
    z = jax.random.normal(kz, shape) if need_z else zero
    uu = jax.random.uniform(ku, shape) if need_u else zero
    code, p1, p2 = code[..., None], p1[..., None], p2[..., None]
    if need_b:
        is_b = code == 4
        a = jnp.broadcast_to(jnp.where(is_b, p1, 1.0), shape)
        b = jnp.broadcast_to(jnp.where(is_b, p2, 1.0), shape)
        bb = jax.random.beta(jax.random.fold_in(key, 4), a, b, shape, dtype=p1.dtype)
    else:
        bb = zero
    safe_med = jnp.where(p1 == 0, 1.0, p1)
    return jnp.select(
        [code == 0, code == 1, code == 2, code == 3, code == 4],
        [jnp.broadcast_to(p1, z.shape), p1 + p2 * z, p1 + (p2 - p1) * uu,
         jnp.sign(safe_med) * jnp.exp(jnp.log(jnp.abs(safe_med)) + p2 * z), bb],
    ) * factor[..., None]


def _dose_parts(compiled: CompiledIntervention, n_draws: int, key: jax.Array | int) -> np.ndarray:
    code = compiled.dose_code
    if not code.any():  # fixed doses only: nothing to draw (and nothing to compile)
        fixed = np.where(code == 0, compiled.dose_p1, 0.0) * compiled.dose_factor
        return np.repeat(fixed[..., None], n_draws, axis=-1)
    key = jax.random.PRNGKey(key) if isinstance(key, int) else key
    return np.asarray(_dose_values(key, jnp.asarray(code), jnp.asarray(compiled.dose_p1),
                                   jnp.asarray(compiled.dose_p2), jnp.asarray(compiled.dose_factor),
                                   n_draws=n_draws, need_z=bool(np.isin(code, (1, 3)).any()),
                                   need_u=bool((code == 2).any()), need_b=bool((code == 4).any())))


def _dense_doses(compiled: CompiledIntervention, vals: np.ndarray, n_nodes: int) -> np.ndarray:
    I, R, S = vals.shape
    out = np.zeros((I, S, n_nodes))
    for i in range(I):
        for r in range(R):
            if compiled.dose_factor[i, r] != 0.0:
                out[i, :, compiled.dose_node[i, r]] += vals[i, r]
    return out


@x64
def draw_doses(compiled: CompiledIntervention, n_draws: int, n_nodes: int,
               key: jax.Array | int = 0) -> np.ndarray:
    """Draw the shift doses: ``(I, S, P)`` shift per intervention, draw and node (model units).

    One dose per intervention part and posterior draw, from ``jax.random`` with a fixed key
    (an int seed or a key); the same key gives the same doses.

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Intervention, Normal, Shift, compile_interventions
    >>> iv = Intervention(name="x up", parts=[Shift(node="x", delta=Normal(mean=1.0, sd=0.1))])
    >>> doses = draw_doses(compile_interventions([iv], ["x", "a"], []), n_draws=4, n_nodes=2, key=0)
    >>> doses.shape
    (1, 4, 2)
    """
    return _dense_doses(compiled, _dose_parts(compiled, n_draws, key), n_nodes)


# --------------------------------------------------------------------------- structure groups
@dataclass
class StructureGroup:
    """Interventions sharing one intervened structure ``B_do`` (sets and mechanism changes).

    Built by :func:`structure_groups`. ``members`` are the interventions' indices;
    ``set_mask``, ``mscale``, ``mmask`` and ``mval`` are their common set nodes and mechanism
    changes (as :class:`~veerkracht_bayes.causal.interventions.CompiledIntervention`).

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Intervention, Set, compile_interventions
    >>> ivs = [Intervention(name="hold a", parts=[Set(node="a", value=1.0)])]
    >>> (g,), _ = structure_groups(compile_interventions(ivs, ["x", "a"], ["x->a"]))
    >>> g.members, g.set_mask.tolist(), g.is_identity
    ([0], [False, True], False)
    """

    members: list[int]
    set_mask: np.ndarray
    mscale: np.ndarray
    mmask: np.ndarray
    mval: np.ndarray
    mech_rows: np.ndarray  # rows of B changed by a mechanism change (set rows excluded)
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # union of injection nodes

    @property
    def is_identity(self) -> bool:
        """No set and no mechanism change: ``B_do = B``."""
        return not (self.set_mask.any() or self.mmask.any() or (self.mscale != 1.0).any())

    @property
    def needs_baseline(self) -> bool:
        return bool(self.set_mask.any() or self.mech_rows.size)


def structure_groups(compiled: CompiledIntervention) -> tuple[list[StructureGroup], np.ndarray]:
    """Group interventions by intervened structure ``B_do``; also return each one's group index.

    Interventions with the same set nodes and mechanism changes share one ``(I - B_do)`` per
    draw, so the do-query factorises it once per group.

    Examples
    --------
    >>> from veerkracht_bayes.causal.interventions import Intervention, Set, Shift, compile_interventions
    >>> ivs = [Intervention(name="up x", parts=[Shift(node="x", delta=1.0)]),
    ...        Intervention(name="hold a", parts=[Set(node="a", value=1.0)]),
    ...        Intervention(name="up a", parts=[Shift(node="a", delta=0.5)])]
    >>> groups, gid = structure_groups(compile_interventions(ivs, ["x", "a"], ["x->a"]))
    >>> [g.members for g in groups], gid.tolist(), [g.is_identity for g in groups]
    ([[0, 2], [1]], [0, 1, 0], [True, False])
    """
    keys: dict[bytes, int] = {}
    groups: list[StructureGroup] = []
    gid = np.zeros(compiled.n, int)
    for i in range(compiled.n):
        sm, ms, mm = compiled.set_mask[i], compiled.mech_scale[i], compiled.mech_mask[i]
        mv = np.where(mm, compiled.mech_value[i], 0.0)
        k = sm.tobytes() + ms.tobytes() + mm.tobytes() + mv.tobytes()
        if k not in keys:
            rows = np.flatnonzero((mm | (ms != 1.0)).any(axis=1) & ~sm)
            keys[k] = len(groups)
            groups.append(StructureGroup([], sm, ms, mm, mv, rows))
        gid[i] = keys[k]
        groups[keys[k]].members.append(i)
    return groups, gid


def _injections(draws: StructuralDraws, compiled: CompiledIntervention, groups: list[StructureGroup],
                vals: np.ndarray, means: Sequence[np.ndarray | None]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per intervention the sparse injection ``u``: node indices ``(J,)`` and values ``(J, S)``.

    The effect is ``(I - B_do)^-1 u`` with ``u = c_do - (I - B_do) m`` (``m`` the baseline mean of
    the target population). Written out, ``u`` is non-zero only at shifted nodes (``u = delta``),
    set nodes (``u_j = x_j - m_j``) and rows changed by a mechanism change
    (``u_k = ((B_do - B) m)_k``); elsewhere it is exactly zero. Sets ``g.cols`` per group.
    """
    B = draws.B
    m_alpha: np.ndarray | None = None
    out: list[tuple[np.ndarray, np.ndarray]] = [None] * compiled.n  # type: ignore[list-item]
    for g in groups:
        dB = None
        if g.mech_rows.size:
            Br = B[:, g.mech_rows, :]
            dB = np.where(g.mmask[g.mech_rows], g.mval[g.mech_rows], Br * g.mscale[g.mech_rows]) - Br
        setn = np.flatnonzero(g.set_mask)
        cols: set[int] = set()
        for i in g.members:
            acc: dict[int, np.ndarray] = {}
            for r in range(compiled.dose_node.shape[1]):
                if compiled.dose_factor[i, r] != 0.0:
                    j = int(compiled.dose_node[i, r])
                    acc[j] = acc[j] + vals[i, r] if j in acc else vals[i, r].copy()
            if g.needs_baseline:
                if means[i] is not None:
                    m = np.broadcast_to(means[i], (draws.n_draws, len(draws.nodes)))
                else:
                    if m_alpha is None:
                        m_alpha = np.asarray(_baseline(jnp.asarray(B), jnp.asarray(draws.alpha)))
                    m = m_alpha
                for j in setn:
                    acc[int(j)] = compiled.set_value[i, j] - m[:, j]
                if dB is not None:
                    du = np.einsum("srp,sp->rs", dB, m)
                    for r, k in enumerate(g.mech_rows):
                        k = int(k)
                        acc[k] = acc[k] + du[r] if k in acc else du[r]
            nodes = np.array(sorted(acc), dtype=int)
            out[i] = (nodes, np.stack([acc[int(j)] for j in nodes]) if nodes.size
                      else np.zeros((0, draws.n_draws)))
            cols.update(int(j) for j in nodes)
        g.cols = np.array(sorted(cols), dtype=int)
    return out


def _combine(out: np.ndarray, X: np.ndarray, pos: Mapping[int, int], nodes: np.ndarray,
             u: np.ndarray, ok: np.ndarray) -> None:
    """``out[s] = sum_j X[pos[nodes[j]], s] * u[j, s]`` in place (NaN where not ``ok``)."""
    if not nodes.size:
        out.fill(0.0)
        if not ok.all():
            out[~ok] = np.nan
        return
    np.multiply(X[pos[int(nodes[0])]], u[0][:, None], out=out)
    for j, uj in zip(nodes[1:], u[1:]):
        out += X[pos[int(j)]] * uj[:, None]


def _sparse_B(draws: StructuralDraws, compiled: CompiledIntervention
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparsity pattern ``(P, P)`` covering every ``B_do`` (non-zeros of ``B`` in any draw, and
    entries a mechanism change sets), its flat positions, and ``B``'s values there ``(S, nnz)``.

    Passing ``(S, nnz)`` values instead of the dense ``(S, P, P)`` array keeps the host-to-device
    transfer small; the kernels rebuild the dense matrix exactly.
    """
    B = draws.B
    pattern = (B != 0).any(axis=0) | compiled.mech_mask.any(axis=0)
    rows, cols = np.nonzero(pattern)
    return pattern, rows * B.shape[-1] + cols, B[:, rows, cols]


def _scc_blocks(pattern: np.ndarray
                ) -> tuple[tuple[tuple[tuple[int, ...], ...], ...], tuple[int, ...]]:
    """Strongly connected components of a sparsity pattern (``pattern[k, j]``: edge ``j -> k``):
    same-size blocks stacked (static, hashable), and the one-node components."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, lab = connected_components(csr_matrix(pattern), directed=True, connection="strong")
    by_size: dict[int, list[tuple[int, ...]]] = {}
    singles: list[int] = []
    for c in range(n):
        idx = tuple(int(j) for j in np.flatnonzero(lab == c))
        if len(idx) == 1:
            singles.append(idx[0])
        else:
            by_size.setdefault(len(idx), []).append(idx)
    return tuple(tuple(v) for _, v in sorted(by_size.items())), tuple(singles)


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
    solvable, stable
        ``(I, S)`` flags; ``abs_det``, ``cond``, ``rho``: the numbers behind them.
    baseline_stable
        ``(S,)`` spectral radius of the baseline ``B`` < 1.
    baseline_solvable
        ``(S,)`` the baseline system ``I - B`` is solvable (same thresholds); ``None``: not
        recorded (treated as solvable).
    subgroups, prevalence
        Target subgroup (or ``None``) and its prevalence (1.0 for everyone) per intervention.
    suppressed
        Per intervention: ``None`` or the reason the cell is suppressed.
    outcomes
        The outcomes asked for.
    doses
        ``(I, S, P)`` the shift drawn per draw (model units).
    reachable
        ``(I, P)`` whether the intervention can move the node at all: a directed path (length 0
        included) in the intervened graph from a node it acts on; ``None``: not recorded.
    injections
        Per intervention the sparse injection ``u`` (node indices ``(J,)``, values ``(J, S)``).
    draws, compiled
        The structural draws and the compiled interventions (for the evidence decomposition,
        :mod:`veerkracht_bayes.causal.evidence`).

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
    >>> res = do_query(draws, [iv], outcomes=["b"])
    >>> isinstance(res, DoResult), res.names, bool(res.stable.all())
    (True, ('x up',), True)
    """

    names: tuple[str, ...]
    nodes: tuple[str, ...]
    effect: np.ndarray
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
    baseline_solvable: np.ndarray | None = None
    reachable: np.ndarray | None = None
    injections: tuple | None = None
    draws: StructuralDraws | None = None
    compiled: CompiledIntervention | None = None

    def _weights(self, outcome: str | Outcome) -> np.ndarray:
        if isinstance(outcome, str):
            match = [o for o in self.outcomes if o.name == outcome]
            outcome = match[0] if match else resolve_outcomes([outcome], self.nodes)[0]
        idx = {n: i for i, n in enumerate(self.nodes)}
        w = np.zeros(len(self.nodes))
        for n, v in outcome.weights.items():
            w[idx[n]] = v
        return w

    def outcome_effect(self, outcome: str | Outcome, scope: str = "within") -> np.ndarray:
        """``(I, S)`` effect on one outcome.

        Parameters
        ----------
        outcome
            Outcome name (one of :attr:`outcomes` or any node) or an :class:`Outcome`.
        scope
            ``"within"`` (within the targeted subgroup) or ``"population"`` (population average:
            the within effect times the subgroup's prevalence).
        """
        if scope not in ("within", "population"):
            raise InterventionError(f"unknown scope {scope!r}{did_you_mean(scope, ['within', 'population'])}"
                                    " (expected 'within' or 'population')")
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf of unusable draws
            out = self.effect @ self._weights(outcome)
        if scope == "population":
            out = out * self.prevalence[:, None]
        return out

    def usable(self) -> np.ndarray:
        """``(I, S)`` draws the summaries use: the intervened and the baseline system are both
        solvable and stable (an unstable system never reaches its algebraic equilibrium)."""
        base = np.asarray(self.baseline_stable, bool)
        if self.baseline_solvable is not None:
            base = base & np.asarray(self.baseline_solvable, bool)
        return self.solvable & self.stable & base[None, :]

    def p_stable(self) -> np.ndarray:
        """``(I,)`` share of draws that are usable (:meth:`usable`)."""
        return self.usable().mean(axis=1)

    def is_reachable(self, outcome: str | Outcome) -> np.ndarray:
        """``(I,)`` whether some node of the outcome (non-zero weight) can be moved by the
        intervention (a directed path from a node it acts on); all True when not recorded."""
        if self.reachable is None:
            return np.ones(len(self.names), bool)
        w = self._weights(outcome) != 0
        return (self.reachable & w[None, :]).any(axis=1)

    def index(self, name: str) -> int:
        """Position of an intervention."""
        if name not in self.names:
            raise InterventionError(f"unknown intervention {name!r}{did_you_mean(name, self.names)}")
        return self.names.index(name)


# --------------------------------------------------------------------------- driver
def _subgroup_meta(compiled, draws, subgroups, min_cell_size):
    """Prevalence, suppression reason and baseline mean (or ``None``) per intervention."""
    I, P = compiled.n, len(draws.nodes)
    prev = np.ones(I)
    reasons: list[str | None] = []
    means: list[np.ndarray | None] = []
    for i, g in enumerate(compiled.subgroups):
        reason, mg = None, None
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
        reasons.append(reason)
        means.append(mg)
    return prev, tuple(reasons), means


@dataclass(frozen=True)
class QuerySetup:
    """What a do-query and a trajectory simulation prepare alike from their arguments.

    Attributes
    ----------
    outcomes
        The resolved outcomes.
    compiled
        The interventions compiled against the draws' nodes, links and subgroups.
    doses
        The dose draws (:func:`draw_doses` parts), one row per dose part and draw.
    prevalence, suppressed
        Per intervention: the target population's share and why its estimates are suppressed
        (None: not suppressed).
    groups
        Interventions grouped by intervened structure ``B_do``.
    injections
        Per intervention the sparse injection ``u``: node indices ``(J,)`` and values ``(J, S)``.

    Examples
    --------
    Built by :func:`query_setup`:

    >>> import numpy as np
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> g = graph_from_lavaan("b ~ a")
    >>> d = StructuralDraws.from_arrays(g, np.full((3, 1), 0.4), np.zeros(2))
    >>> q = query_setup(d, [Intervention(name="up a", parts=[Shift(node="a", delta=1.0)])], ["b"])
    >>> isinstance(q, QuerySetup), q.compiled.names, len(q.groups), len(q.injections)
    (True, ('up a',), 1, 1)
    """

    outcomes: list[Outcome]
    compiled: CompiledIntervention
    doses: np.ndarray
    prevalence: np.ndarray
    suppressed: tuple[str | None, ...]
    groups: list[StructureGroup]
    injections: list[tuple[np.ndarray, np.ndarray]]


def query_setup(draws: StructuralDraws, interventions: Sequence[Intervention],
                outcomes: Sequence[str | Outcome | Mapping] | None = None, *,
                subgroups: Mapping[str, SubgroupInfo] | None = None, min_cell_size: int = 50,
                native_scale: Mapping[str, float | NativeScale] | None = None,
                seed: int | jax.Array = 0) -> QuerySetup:
    """Resolve outcomes, compile the interventions, draw the doses and build the injections.

    The one setup of :func:`do_query` and
    :func:`~veerkracht_bayes.causal.dynamics.simulate_trajectories`, so that both see the same
    doses for the same seed (arguments as :func:`do_query`).

    Examples
    --------
    >>> import numpy as np
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> g = vb.load_graph("marvel")
    >>> sign = np.array([1.0 if e.sign == "+" else -1.0 for e in g.edges])
    >>> d = StructuralDraws.from_arrays(g, 0.1 * sign[None, :].repeat(4, 0), np.zeros(len(g.nodes)))
    >>> iv = vb.Intervention(name="P05", parts=[vb.Shift(node="meeting_places", delta=0.3,
    ...                                                   unit="exposure")])
    >>> q = query_setup(d, [iv], ["wellbeing"])
    >>> q.compiled.names, [o.name for o in q.outcomes], q.prevalence.tolist()
    (('P05',), ['wellbeing'], [1.0])
    """
    subgroups = dict(subgroups or {})
    outs = resolve_outcomes(outcomes, draws.nodes)
    compiled = compile_interventions(interventions, draws.nodes, draws.edge_keys,
                                     subgroups=list(subgroups), native_scale=native_scale)
    vals = _dose_parts(compiled, draws.n_draws, seed)
    prev, reasons, means = _subgroup_meta(compiled, draws, subgroups, min_cell_size)
    groups, _ = structure_groups(compiled)
    inj = _injections(draws, compiled, groups, vals, means)
    return QuerySetup(outs, compiled, vals, prev, reasons, groups, inj)


def subgroup_setup(compiled: CompiledIntervention, draws: StructuralDraws,
                   subgroups: Mapping[str, SubgroupInfo], min_cell_size: int
                   ) -> tuple[np.ndarray, tuple[str | None, ...], np.ndarray]:
    """Prevalence, suppression reasons and the ``(I, S, P)`` intercepts of each target population
    (``alpha``, or ``(I - B) m_g`` for a subgroup with a baseline mean ``m_g``).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import CausalGraph
    >>> from veerkracht_bayes.graph.spec import GraphSpec
    >>> g = CausalGraph(GraphSpec.model_validate({"spec_version": 1, "name": "xa",
    ...     "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual", "role": "construct"}
    ...               for n in ("x", "a")],
    ...     "edges": [{"source": "x", "target": "a", "sign": "+", "evidence": "t"}]}))
    >>> from veerkracht_bayes.causal.draws import StructuralDraws
    >>> draws = StructuralDraws.from_arrays(g, [[0.5]], [0.0, 0.0])
    >>> from veerkracht_bayes.causal.interventions import Intervention, Shift, compile_interventions
    >>> iv = Intervention(name="up x", parts=[Shift(node="x", delta=1.0)], subgroup="low")
    >>> comp = compile_interventions([iv], g.nodes, g.edge_keys, subgroups=["low"])
    >>> prev, why, c = subgroup_setup(comp, draws, {"low": SubgroupInfo(0.3, n=20, mean=np.array([-1.0, 0.0]))}, 50)
    >>> prev.tolist(), why[0] is not None, c[0, 0].tolist()
    ([0.3], True, [-1.0, 0.5])
    """
    I, S, P = compiled.n, draws.n_draws, len(draws.nodes)
    prev, reasons, means = _subgroup_meta(compiled, draws, subgroups, min_cell_size)
    c = np.broadcast_to(draws.alpha, (I, S, P)).copy()
    eye = np.eye(P)
    for i, mg in enumerate(means):
        if mg is not None:
            c[i] = mg @ np.swapaxes(eye - draws.B, 1, 2)  # (I - B) m_g per draw
    return prev, reasons, c


def _reachable(draws: StructuralDraws, compiled: CompiledIntervention,
               inj: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``(I, P)`` nodes reachable from each intervention's injection nodes (length-0 paths
    included) along the graph's edges, with the incoming edges of set nodes cut."""
    P = len(draws.nodes)
    A = np.zeros((P, P), bool)  # A[k, j]: edge j -> k
    A[draws.edge_targets, draws.edge_sources] = True
    out = np.zeros((compiled.n, P), bool)
    for i, (nodes, _) in enumerate(inj):
        Ai = A & ~compiled.set_mask[i][:, None]
        r = np.zeros(P, bool)
        r[np.asarray(nodes, int)] = True
        while True:
            nxt = r | Ai[:, r].any(axis=1)
            if (nxt == r).all():
                break
            r = nxt
        out[i] = r
    return out


def _baseline_solvable(B: np.ndarray, det_tol: float, cond_max: float) -> np.ndarray:
    """``(S,)`` the baseline system ``I - B`` is solvable (``|det| > det_tol``, cond < cond_max)."""
    sv = np.linalg.svd(np.eye(B.shape[-1]) - B, compute_uv=False)
    with np.errstate(divide="ignore"):
        return (np.prod(sv, axis=-1) > det_tol) & (sv[:, 0] / sv[:, -1] < cond_max)


@x64
def intervened_system(draws: StructuralDraws, compiled: CompiledIntervention, i: int,
                      shift: np.ndarray, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(B_do (S,P,P), u (S,P))`` for intervention ``i``: the effect is ``(I - B_do)^-1 u``.

    Parameters
    ----------
    shift
        ``(S, P)`` drawn shift of this intervention.
    c
        ``(S, P)`` intercepts of the population (default ``alpha``).

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
    >>> from veerkracht_bayes.causal.interventions import Intervention, Set, compile_interventions
    >>> comp = compile_interventions([Intervention(name="hold a", parts=[Set(node="a", value=1.0)])], g.nodes, g.edge_keys)
    >>> Bdo, c = intervened_system(draws, comp, 0, np.zeros((1, 3)))
    >>> Bdo[0].round(2)
    array([[0. , 0. , 0. ],
           [0. , 0. , 0. ],
           [0. , 0.4, 0. ]])
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


@x64
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
    >>> res = do_query(draws, [iv], outcomes=["a", "b"])
    >>> res.effect.shape, res.effect[0, 0].round(4).tolist()
    ((1, 1, 3), [1.0, 0.5556, 0.2222])
    """
    q = query_setup(draws, interventions, outcomes, subgroups=subgroups, min_cell_size=min_cell_size,
                    native_scale=native_scale, seed=seed)
    outs, compiled, vals, prev, reasons, groups, inj = (q.outcomes, q.compiled, q.doses, q.prevalence,
                                                        q.suppressed, q.groups, q.injections)
    I, S, P = compiled.n, draws.n_draws, len(draws.nodes)
    pattern, flat, Bvals = _sparse_B(draws, compiled)
    blocks, singles = _scc_blocks(pattern)
    Bvals, flat = jnp.asarray(Bvals), jnp.asarray(flat)
    # dispatch every kernel first (JAX runs them asynchronously), then fill the host-side arrays
    # while they run
    pending = [_structure_kernel(Bvals, flat, jnp.asarray(g.set_mask), jnp.asarray(g.mscale),
                                 jnp.asarray(g.mmask), jnp.asarray(g.mval), jnp.asarray(g.cols),
                                 det_tol, cond_max)
               for g in groups]
    shifts = _dense_doses(compiled, vals, P)
    eff = np.zeros((I, S, P))
    eff.fill(0.0)  # touch the pages now, while the kernels run
    reach = _reachable(draws, compiled, inj)
    base_ok = _baseline_solvable(draws.B, det_tol, cond_max)
    base_rho = _spectral_radius(draws.B, None, blocks, singles)
    rhos = [base_rho if g.is_identity else _spectral_radius(draws.B, g, blocks, singles)
            for g in groups]
    absdet, cond, rho = np.empty((I, S)), np.empty((I, S)), np.empty((I, S))
    for g, res, rh in zip(groups, pending, rhos):
        X, ad, cn = res
        X = np.asarray(X)
        ad, cn = np.asarray(ad), np.asarray(cn)
        ok = (ad > det_tol) & (cn < cond_max)
        pos = {int(j): q for q, j in enumerate(g.cols)}
        for i in g.members:
            absdet[i], cond[i], rho[i] = ad, cn, rh
            if reasons[i] is not None:
                eff[i] = np.nan
                continue
            nodes, u = inj[i]
            _combine(eff[i], X, pos, nodes, u, ok)
    solvable = (absdet > det_tol) & (cond < cond_max)
    return DoResult(
        names=compiled.names, nodes=tuple(draws.nodes), effect=eff,
        solvable=solvable, stable=rho < 1.0, abs_det=absdet, cond=cond, rho=rho,
        baseline_stable=base_rho < 1.0, subgroups=compiled.subgroups,
        prevalence=prev, suppressed=reasons, outcomes=tuple(outs), doses=shifts,
        has_edge_class=draws.edge_class is not None, baseline_solvable=base_ok, reachable=reach,
        injections=tuple(inj), draws=draws, compiled=compiled,
        meta={"seed": seed if isinstance(seed, int) else None, "det_tol": det_tol,
              "cond_max": cond_max, "min_cell_size": min_cell_size})
