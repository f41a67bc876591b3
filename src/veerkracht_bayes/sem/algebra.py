"""The algebra of the cyclic linear SEM, written once for NumPy, JAX and PyTensor.

Structural part on standardised latents::

    eta = B eta + Gamma x + zeta,   zeta ~ N(0, diag(psi)),   A = (I - B)^-1

Every function here takes arrays of one array library and returns arrays of the same library:
NumPy (posterior draws, diagnostics, tests), JAX (do-queries, trajectories) or PyTensor (the PyMC
models). The library is read from the arguments' types, or named with ``xp`` (``"numpy"``,
``"jax"``, ``"pytensor"`` or the module itself: ``numpy``, ``jax.numpy``, ``pytensor.tensor``).
JAX and PyTensor are imported only when their arrays are used, so importing this module imports
neither (and never PyMC). Leading dimensions are batch dimensions (posterior draws) where the
docstring says so.

- :func:`edge_index`, :func:`structural_indices`, :func:`assemble`,
  :func:`structural_matrices`: ``B`` and ``Gamma`` from an
  edge coefficient vector (row = target, column = source); :func:`link_matrix` from a mapping
  ``"source->target" -> value`` (NumPy).
- :func:`equilibrium_matrix`, :func:`solve_equilibrium`: ``(I - B)^-1`` and ``(I - B)^-1 c`` by
  an LU solve.
- :func:`exogenous_variance`, :func:`unit_variance_psi`, :func:`standardised_psi`: the
  disturbance variances that give every latent variance 1,
  ``(A∘A) psi = 1 - diag(A Gamma S_x Gamma' A')``.
- :func:`latent_covariance`: ``A diag(psi) A' (+ A Gamma S_x Gamma' A')``.
- :func:`perron_bound`, :func:`spectral_radius`: the smooth upper bound of the Perron root of
  ``|B|`` used by the models' stability barrier, and the exact spectral radius.
- :func:`stability_barrier`, :func:`standardisation_barrier`: the models' smooth barriers (log
  densities), also used to draw from the truncated priors by rejection.
- :func:`apply_mechanisms`: ``B`` under a do-intervention (mechanism changes, cut rows).

Examples
--------
>>> import numpy as np
>>> B = np.array([[0.0, 0.5], [0.2, 0.0]])
>>> A = equilibrium_matrix(B)
>>> np.allclose(A @ (np.eye(2) - B), np.eye(2))
True
>>> psi = standardised_psi(A)
>>> np.allclose(np.diag(latent_covariance(A, psi)), 1.0)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "EdgeIndex",
    "apply_mechanisms",
    "assemble",
    "backend",
    "edge_index",
    "equilibrium_matrix",
    "exogenous_variance",
    "latent_covariance",
    "link_matrix",
    "perron_bound",
    "power_squarings",
    "solve_equilibrium",
    "spectral_radius",
    "stability_barrier",
    "standardisation_barrier",
    "standardised_psi",
    "structural_indices",
    "structural_matrices",
    "unit_variance_psi",
]

Array = Any
BACKENDS = ("numpy", "jax", "pytensor")


# --------------------------------------------------------------------------- backends
def backend(*arrays: Array, xp: str | ModuleType | None = None) -> str:
    """The array library of ``arrays``: ``"numpy"``, ``"jax"`` or ``"pytensor"``.

    Parameters
    ----------
    *arrays
        Arrays (NumPy arrays and Python numbers count as NumPy; any JAX or PyTensor array wins).
    xp
        Name or module of the library; overrides the arrays' types.

    Examples
    --------
    >>> import numpy as np
    >>> backend(np.zeros(2))
    'numpy'
    >>> backend(xp="jax")
    'jax'
    """
    if xp is not None:
        name = xp if isinstance(xp, str) else xp.__name__
        for b in BACKENDS:
            if name == b or name.startswith(b + "."):
                return b
        raise ValueError(f"unknown array library {name!r} (expected one of {BACKENDS})")
    found = "numpy"
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("pytensor"):
            return "pytensor"
        if mod.startswith(("jax", "jaxlib")):
            found = "jax"
    return found


class _Ops:
    """The few operations whose spelling differs between the libraries."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "numpy":
            self.m = np
        elif name == "jax":
            import jax.numpy as jnp

            self.m = jnp
        else:
            import pytensor.tensor as pt

            self.m = pt

    # creation
    def zeros(self, shape: tuple, like: Array) -> Array:
        if self.name == "pytensor":
            return self.m.zeros(shape)
        return self.m.zeros(shape, dtype=getattr(like, "dtype", float))

    def eye(self, n: int, like: Array) -> Array:
        if self.name == "pytensor":
            return self.m.eye(n)
        return self.m.eye(n, dtype=getattr(like, "dtype", float))

    # indexing
    def scatter(self, base: Array, rows: np.ndarray, cols: np.ndarray, values: Array) -> Array:
        """``base`` with ``base[..., rows, cols] = values``."""
        if self.name == "numpy":
            base[..., rows, cols] = values  # a fresh array: filled in place
            return base
        if self.name == "jax":
            return base.at[..., rows, cols].set(values)
        if base.ndim == 2:
            return self.m.set_subtensor(base[rows, cols], values)
        return self.m.set_subtensor(base[..., rows, cols], values)

    def put_last(self, base: Array, idx: np.ndarray, values: Array) -> Array:
        """``base`` with ``base[..., idx] = values``."""
        if self.name == "numpy":
            base[..., idx] = values  # a fresh array: filled in place
            return base
        if self.name == "jax":
            return base.at[..., idx].set(values)
        return self.m.set_subtensor(base[..., idx], values)

    # linear algebra
    def solve(self, M: Array, b: Array) -> Array:
        """``M^-1 b`` for a matrix right-hand side ``b (..., P, K)``."""
        if self.name == "pytensor":
            return self.m.linalg.solve(M, b)
        return self.m.linalg.solve(M, b)

    def solve_vec(self, M: Array, b: Array) -> Array:
        """``M^-1 b`` for vectors ``b (..., P)`` (batched like ``M (..., P, P)``)."""
        if self.name == "pytensor":
            if M.ndim == 2 and b.ndim == 1:
                return self.m.linalg.solve(M, b)
            return self.m.linalg.solve(M, b, b_ndim=1)
        if M.ndim == 2 and b.ndim == 1:
            return self.m.linalg.solve(M, b)
        return self.m.linalg.solve(M, b[..., None])[..., 0]

    def matmul(self, a: Array, b: Array) -> Array:
        if self.name == "pytensor" and a.ndim <= 2 and b.ndim <= 2:
            return self.m.dot(a, b)
        return self.m.matmul(a, b)

    def size(self, a: Array, axis: int) -> Any:
        """Length of an axis: an int where known (PyTensor: the static shape), else symbolic."""
        if self.name == "pytensor":
            n = a.type.shape[axis]
            return a.shape[axis] if n is None else int(n)
        return int(a.shape[axis])

    def transpose(self, a: Array) -> Array:
        """Swap the last two axes."""
        return self.m.swapaxes(a, -1, -2)

    def logsumexp(self, z: Array) -> Array:
        """log-sum-exp over the last axis."""
        if self.name == "pytensor":
            return self.m.logsumexp(z, axis=-1)
        zmax = self.m.max(z, axis=-1, keepdims=True)
        return zmax[..., 0] + self.m.log(self.m.sum(self.m.exp(z - zmax), axis=-1))

    def log_sigmoid(self, z: Array) -> Array:
        """``log(1 / (1 + exp(-z)))``, stable for large ``|z|``."""
        if self.name == "pytensor":
            return -self.m.softplus(-z)
        if self.name == "jax":
            import jax

            return jax.nn.log_sigmoid(z)
        return -np.logaddexp(0.0, -z)

    def held_positive(self, a: Array) -> Array:
        """A positive array, held constant for gradients in every backend.

        ``log a`` is rounded to a multiple of ``2^-32`` (a relative change below ``1.2e-10``), so
        the value is piecewise constant and its derivative is 0 wherever it exists: in PyTensor,
        in JAX, and in a PyTensor graph converted to JAX. (PyTensor's ``disconnected_grad`` is a
        view that its rewrites remove before a graph is converted, after which JAX differentiated
        through whatever computed ``a``.)
        """
        m = self.m
        return m.exp(m.round(m.log(a) * 2.0 ** 32) / 2.0 ** 32)


def _ops(*arrays: Array, xp: str | ModuleType | None = None) -> _Ops:
    return _Ops(backend(*arrays, xp=xp))


def _asarray(ops: _Ops, a: Array) -> Array:
    if ops.name == "numpy":
        return np.asarray(a, dtype=float)
    if ops.name == "jax":
        return ops.m.asarray(a)
    return ops.m.as_tensor_variable(a)


# --------------------------------------------------------------------------- assembly
@dataclass(frozen=True)
class EdgeIndex:
    """Where a subset of edge coefficients sits in a coefficient matrix.

    Attributes
    ----------
    edges
        Positions of the selected edges in the coefficient vector.
    rows, cols
        Row (target) and column (source) of each selected edge.
    shape
        ``(rows, columns)`` of the matrix.

    Examples
    --------
    >>> idx = edge_index(["a"], ["b"], ["a", "b"], ["a", "b"])
    >>> isinstance(idx, EdgeIndex), idx.shape
    (True, (2, 2))
    """

    edges: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.edges.shape[0])


def edge_index(sources: Sequence[str], targets: Sequence[str], row_nodes: Sequence[str],
               col_nodes: Sequence[str] | None = None, *, select: Iterable[bool] | None = None) -> EdgeIndex:
    """Positions of the edges ``sources[j] -> targets[j]`` in a ``row_nodes x col_nodes`` matrix.

    An edge is kept when its target is a row node, its source a column node and ``select`` (if
    given) is true for it; the others are left out (their coefficient is not in the matrix).

    Parameters
    ----------
    sources, targets
        Node names per edge, in the order of the coefficient vector.
    row_nodes
        Nodes of the rows (targets).
    col_nodes
        Nodes of the columns (sources); default ``row_nodes`` (a square ``B``).
    select
        Optional flag per edge.

    Examples
    --------
    >>> ix = edge_index(["a", "b", "x"], ["b", "a", "a"], ["a", "b"])
    >>> ix.edges.tolist(), ix.rows.tolist(), ix.cols.tolist(), ix.shape
    ([0, 1], [1, 0], [0, 1], (2, 2))
    """
    col_nodes = row_nodes if col_nodes is None else col_nodes
    ri = {n: i for i, n in enumerate(row_nodes)}
    ci = {n: i for i, n in enumerate(col_nodes)}
    sel = [True] * len(sources) if select is None else list(select)
    keep = [j for j, (s, t) in enumerate(zip(sources, targets)) if sel[j] and t in ri and s in ci]
    return EdgeIndex(np.array(keep, dtype=int), np.array([ri[targets[j]] for j in keep], dtype=int),
                     np.array([ci[sources[j]] for j in keep], dtype=int), (len(ri), len(ci)))


def structural_indices(edges: Sequence[Any], edge_kind: Mapping[str, str], latent: Sequence[str],
                       covariates: Sequence[str], kinds: Sequence[str] = ("latent", "prior_only")
                       ) -> tuple[EdgeIndex, EdgeIndex]:
    """Index of ``B`` (latent x latent) and ``Gamma`` (latent x covariate) of a latent system.

    Parameters
    ----------
    edges
        The graph's edges (objects with ``source``, ``target`` and ``key``), in the order of the
        coefficient vector.
    edge_kind
        Kind of each edge by key (``latent``, ``prior_only``, ``covariate``, ``absent``).
    latent
        Latent nodes of the system (rows of both matrices, columns of ``B``).
    covariates
        Covariates (columns of ``Gamma``); every covariate link into ``latent`` is in ``Gamma``.
    kinds
        Edge kinds in ``B``: ``("latent", "prior_only")`` for the full system,
        ``("latent",)`` for the likelihood system of the cut posterior.

    Examples
    --------
    >>> from types import SimpleNamespace as E
    >>> es = [E(source="a", target="b", key="a->b"), E(source="x", target="a", key="x->a")]
    >>> ib, ig = structural_indices(es, {"a->b": "latent", "x->a": "covariate"}, ["a", "b"], ["x"])
    >>> ib.edges.tolist(), ig.edges.tolist(), ig.shape
    ([0], [1], (2, 1))
    """
    src = [e.source for e in edges]
    tgt = [e.target for e in edges]
    cov = set(covariates)
    in_b = [edge_kind[e.key] in kinds and e.source not in cov for e in edges]
    return (edge_index(src, tgt, latent, select=in_b),
            edge_index(src, tgt, latent, covariates))


def structural_matrices(beta: Array, edges: Sequence[Any], edge_kind: Mapping[str, str],
                        latent: Sequence[str], covariates: Sequence[str],
                        kinds: Sequence[str] = ("latent", "prior_only"), *,
                        xp: str | ModuleType | None = None) -> tuple[Array, Array]:
    """``B`` and ``Gamma`` of a latent system from edge coefficients.

    :func:`structural_indices` then :func:`assemble` for both matrices (same arguments).

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace as E
    >>> es = [E(source="a", target="b", key="a->b"), E(source="x", target="a", key="x->a")]
    >>> B, G = structural_matrices(np.array([0.5, 0.2]), es, {"a->b": "latent", "x->a": "covariate"},
    ...                            ["a", "b"], ["x"])
    >>> B.tolist(), G.tolist()
    ([[0.0, 0.0], [0.5, 0.0]], [[0.2], [0.0]])
    """
    ib, ig = structural_indices(edges, edge_kind, latent, covariates, kinds)
    return assemble(beta, ib, xp=xp), assemble(beta, ig, xp=xp)


def link_matrix(links: Mapping[str, float], row_nodes: Sequence[str],
                col_nodes: Sequence[str] | None = None) -> np.ndarray:
    """The NumPy coefficient matrix of links given as ``{"source->target": value}``.

    Row = target (in ``row_nodes``), column = source (in ``col_nodes``, default ``row_nodes``);
    zero where no link is named. The same matrix as :func:`assemble` on :func:`edge_index`.

    Parameters
    ----------
    links
        Coefficient of each link, keyed ``"source->target"``.
    row_nodes, col_nodes
        Nodes of the rows (targets) and columns (sources).

    Raises
    ------
    ValueError
        A key that is not ``"source->target"``, or a link whose target is not a row node or
        whose source is not a column node (named in the message).

    Examples
    --------
    >>> link_matrix({"a->b": 0.5, "b->a": -0.2}, ["a", "b"])
    array([[ 0. , -0.2],
           [ 0.5,  0. ]])
    >>> link_matrix({"x->b": 0.3}, ["a", "b"], ["x"])
    array([[0. ],
           [0.3]])
    """
    pairs = []
    for key in links:
        parts = str(key).split("->")
        if len(parts) != 2:
            raise ValueError(f"link {key!r}: expected 'source->target'")
        pairs.append(parts)
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    index = edge_index(sources, targets, row_nodes, col_nodes)
    if len(index) != len(pairs):
        kept = set(index.edges.tolist())
        bad = [k for j, k in enumerate(links) if j not in kept]
        raise ValueError(f"links {bad} do not join the matrix's nodes (targets {list(row_nodes)}, "
                         f"sources {list(row_nodes if col_nodes is None else col_nodes)})")
    values = np.array([float(v) for v in links.values()], dtype=float)
    return assemble(values, index, xp="numpy")


def assemble(beta: Array, index: EdgeIndex, *, xp: str | ModuleType | None = None) -> Array:
    """The coefficient matrix ``(..., rows, cols)`` of the edges in ``index``, zero elsewhere.

    Parameters
    ----------
    beta
        ``(..., E)`` edge coefficients (leading axes: draws).
    index
        From :func:`edge_index` or :func:`structural_indices`.
    xp
        Array library (default: from ``beta``).

    Examples
    --------
    >>> import numpy as np
    >>> ix = edge_index(["a", "b"], ["b", "a"], ["a", "b"])
    >>> assemble(np.array([[0.3, -0.2]]), ix)
    array([[[ 0. , -0.2],
            [ 0.3,  0. ]]])
    """
    ops = _ops(beta, xp=xp)
    beta = _asarray(ops, beta)
    lead = tuple(beta.shape[:-1]) if ops.name != "pytensor" else ()
    if ops.name == "pytensor" and beta.ndim != 1:
        raise ValueError("assemble: PyTensor coefficients must be one vector (no draw axis)")
    base = ops.zeros(lead + tuple(index.shape), beta)
    if not len(index):
        return base
    return ops.scatter(base, index.rows, index.cols, beta[..., index.edges])


# --------------------------------------------------------------------------- equilibrium
def equilibrium_matrix(B: Array, *, xp: str | ModuleType | None = None) -> Array:
    """``A = (I - B)^-1`` per draw, by an LU solve against the identity.

    (PyTensor: its matrix-inverse op, which NumPy and JAX also compute as that solve.) Where
    only ``A c`` is needed, use :func:`solve_equilibrium` instead.

    Parameters
    ----------
    B
        ``(..., P, P)`` coefficients (row = target).

    Examples
    --------
    >>> import numpy as np
    >>> equilibrium_matrix(np.array([[0.0, 0.5], [0.0, 0.0]]))
    array([[1. , 0.5],
           [0. , 1. ]])
    """
    ops = _ops(B, xp=xp)
    B = _asarray(ops, B)
    eye = ops.eye(ops.size(B, -1), B)
    if ops.name == "pytensor":
        return ops.m.linalg.inv(eye - B)
    return ops.solve(eye - B, ops.m.broadcast_to(eye, B.shape) if B.ndim > 2 else eye)


def solve_equilibrium(B: Array, c: Array, *, xp: str | ModuleType | None = None) -> Array:
    """The equilibrium ``(I - B)^-1 c`` of vectors ``c (..., P)``.

    With ``B (P, P)`` one factorisation serves every row of ``c`` (any leading shape); with a
    batch ``B (S, P, P)`` the vectors ``c (S, P)`` are solved draw by draw.

    Examples
    --------
    >>> import numpy as np
    >>> B = np.array([[0.0, 0.5], [0.0, 0.0]])
    >>> solve_equilibrium(B, np.array([[1.0, 2.0], [0.0, 1.0]]))
    array([[2. , 2. ],
           [0.5, 1. ]])
    """
    ops = _ops(B, c, xp=xp)
    B, c = _asarray(ops, B), _asarray(ops, c)
    M = ops.eye(ops.size(B, -1), B) - B
    if B.ndim == 2 and c.ndim >= 2:
        flat = c.reshape((-1, c.shape[-1]))
        return ops.transpose(ops.solve(M, ops.transpose(flat))).reshape(c.shape)
    return ops.solve_vec(M, c)


# --------------------------------------------------------------------------- standardisation
def exogenous_variance(AG: Array | None, x_cov: Array | None, *, xp: str | ModuleType | None = None
                       ) -> Array | None:
    """``diag(A Gamma S_x Gamma' A')`` per draw: the variance the covariates give each latent.

    Parameters
    ----------
    AG
        ``(..., P, q)`` total effects of the covariates ``A Gamma`` (None or ``q = 0``: none).
    x_cov
        ``(q, q)`` covariance of the covariates.

    Returns
    -------
    ``(..., P)`` or None when there are no covariates.

    Examples
    --------
    >>> import numpy as np
    >>> exogenous_variance(np.array([[0.5], [0.0]]), np.array([[2.0]]))
    array([0.5, 0. ])
    """
    if AG is None or x_cov is None:
        return None
    ops = _ops(AG, x_cov, xp=xp)
    if ops.size(AG, -1) == 0:
        return None
    AG = _asarray(ops, AG)
    return ops.m.sum(ops.matmul(AG, _asarray(ops, x_cov)) * AG, axis=-1)


def unit_variance_psi(A: Array, dx: Array | None = None, *,
                      free: Sequence[int] | Sequence[bool] | np.ndarray | None = None,
                      xp: str | ModuleType | None = None) -> Array:
    """Disturbance variances that give every latent variance 1: ``(A∘A) psi = 1 - dx``.

    ``Var(eta_k) = sum_j A_kj^2 psi_j + dx_k``; setting it to 1 is a linear system in ``psi``.
    Entries ``<= 0`` mean no standardised solution exists for this ``B`` (the caller decides).

    Parameters
    ----------
    A
        ``(..., P, P)`` equilibrium matrix ``(I - B)^-1``.
    dx
        ``(..., P)`` variance from outside the disturbances (covariates, exogenous nodes);
        None: zero.
    free
        Nodes whose ``psi`` is solved (boolean mask or positions); the others have no
        Gaussian disturbance (``psi = 0``: exogenous nodes or levers, whose variance, if any,
        is in ``dx``) and are not standardised. The system is then
        ``(A∘A)[free, free] psi[free] = 1 - dx[free]``. None: every node.

    Examples
    --------
    >>> import numpy as np
    >>> A = equilibrium_matrix(np.array([[0.0, 0.6], [0.0, 0.0]]))
    >>> unit_variance_psi(A)
    array([0.64, 1.  ])
    >>> unit_variance_psi(A, np.array([0.36, 1.0]), free=[True, False])  # node 1 exogenous
    array([0.64, 0.  ])
    """
    ops = _ops(A, dx, xp=xp)
    A = _asarray(ops, A)
    rhs = ops.m.ones_like(A[..., 0]) if dx is None else 1.0 - _asarray(ops, dx)
    if free is None:
        return ops.solve_vec(A * A, rhs)
    sel = np.asarray(free)
    idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(int)
    AA = (A * A)[..., idx, :][..., :, idx]
    sol = ops.solve_vec(AA, rhs[..., idx])
    return ops.put_last(ops.m.zeros_like(rhs), idx, sol)


def standardised_psi(A: Array, AG: Array | None = None, x_cov: Array | None = None, *,
                     xp: str | ModuleType | None = None) -> Array:
    """``psi`` solving ``(A∘A) psi = 1 - diag(A Gamma S_x Gamma' A')`` (Var(eta) = 1).

    Parameters
    ----------
    A
        ``(..., P, P)`` equilibrium matrix.
    AG, x_cov
        ``A Gamma (..., P, q)`` and ``S_x (q, q)``; None without covariates.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.eye(1)
    >>> standardised_psi(A, np.array([[0.6]]), np.array([[1.0]]))
    array([0.64])
    """
    return unit_variance_psi(A, exogenous_variance(AG, x_cov, xp=xp), xp=xp)


def latent_covariance(A: Array, psi: Array, AG: Array | None = None, x_cov: Array | None = None, *,
                      xp: str | ModuleType | None = None) -> Array:
    """Implied covariance of the latents ``A diag(psi) A' (+ A Gamma S_x Gamma' A')``.

    Without ``AG`` it is the covariance given the covariates; with ``AG`` and ``x_cov`` the
    marginal one.

    Examples
    --------
    >>> import numpy as np
    >>> A = equilibrium_matrix(np.array([[0.0, 0.6], [0.0, 0.0]]))
    >>> latent_covariance(A, np.array([0.64, 1.0]))
    array([[1. , 0.6],
           [0.6, 1. ]])
    """
    ops = _ops(A, psi, xp=xp)
    A, psi = _asarray(ops, A), _asarray(ops, psi)
    At = ops.transpose(A)
    S = ops.matmul(A * psi[..., None, :], At)
    ex = exogenous_variance(AG, x_cov, xp=xp)
    if ex is None:
        return S
    AG = _asarray(ops, AG)
    return S + ops.matmul(ops.matmul(AG, _asarray(ops, x_cov)), ops.transpose(AG))


# --------------------------------------------------------------------------- stability
def power_squarings(iters: int) -> int:
    """Number of repeated squarings that cover ``iters`` power iterations.

    Examples
    --------
    >>> power_squarings(128)
    7
    """
    return max(1, int(np.ceil(np.log2(max(iters, 2)))))


def perron_bound(absb: Array, iters: int = 128, *, xp: str | ModuleType | None = None) -> Array:
    """Smooth upper bound of the Perron root of ``|B|`` (hence of the spectral radius of ``B``).

    ``M = |B| + 1e-6`` is positive. A positive test vector ``v`` comes from power iteration on
    ``M + I`` (which converges even when ``|B|`` is periodic or reducible), done by repeated
    squaring: ``(M + I)^(2^s) 1`` with ``2^s >= iters``. By the Collatz-Wielandt formula
    ``max_i (M v)_i / v_i >= rho(M) >= rho(|B|) >= rho(B)`` for ANY positive ``v``, tight once
    ``v`` has converged; so ``v`` is held constant for the gradient (``log v`` rounded to
    ``2^-32``, whose derivative is 0 in NumPy, PyTensor and JAX alike, so no backward pass goes
    through the squarings) and the bound stays valid at every point. The max is smoothed by a
    log-sum-exp with temperature 1000 (which can only raise it, by at most ``log(P)/1000``).
    Vectorised over leading dimensions.

    Parameters
    ----------
    absb
        ``(..., P, P)`` absolute coefficients ``|B|``.
    iters
        Power iterations covered.

    Examples
    --------
    >>> import numpy as np
    >>> B = np.array([[0.0, 0.5], [0.5, 0.0]])
    >>> bool(abs(perron_bound(np.abs(B)) - 0.5) < 2e-3)
    True
    """
    ops = _ops(absb, xp=xp)
    absb = _asarray(ops, absb)
    m = ops.m
    mat = absb + 1e-6
    t = mat + ops.eye(ops.size(absb, -1), absb)
    for _ in range(power_squarings(iters)):
        t = ops.matmul(t, t)
        t = t / m.sum(t, axis=(-2, -1), keepdims=True)
    v = m.sum(t, axis=-1)
    v = ops.held_positive(v / m.sum(v, axis=-1, keepdims=True))
    ratio = ops.matmul(mat, v[..., None])[..., 0] / v
    return ops.logsumexp(1000.0 * ratio) / 1000.0


def spectral_radius(B: Array, *, xp: str | ModuleType | None = None) -> Array:
    """Exact spectral radius ``max |eigvals(B)|`` of each matrix of a stack ``(..., P, P)``.

    NumPy and JAX (CPU) arrays; zeros when ``P == 0``.

    Examples
    --------
    >>> import numpy as np
    >>> spectral_radius(np.array([[[0.0, 0.5], [0.5, 0.0]]]))
    array([0.5])
    """
    ops = _ops(B, xp=xp)
    if ops.name == "pytensor":
        raise NotImplementedError("spectral_radius: use perron_bound inside PyTensor models")
    B = _asarray(ops, B)
    if B.shape[-1] == 0:
        return ops.m.zeros(B.shape[:-2])
    return ops.m.max(ops.m.abs(ops.m.linalg.eigvals(B)), axis=-1)


#: Soft floor of the disturbance variances: the barrier ``log_sigmoid((psi - floor) / width)``.
PSI_FLOOR, PSI_WIDTH = 0.02, 0.01


def stability_barrier(rho: Array, rho_max: float, width: float, *, xp: str | ModuleType | None = None) -> Array:
    """Log of the smooth stability barrier ``sigmoid((rho_max - rho) / width)``.

    ``rho`` is the Perron bound (:func:`perron_bound`) per draw.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(stability_barrier(np.array([0.5, 0.99, 1.1]), 0.99, 0.005), 3).tolist()
    [-0.0, -0.693, -22.0]
    """
    ops = _ops(rho, xp=xp)
    return ops.log_sigmoid((rho_max - _asarray(ops, rho)) / width)


def standardisation_barrier(psi: Array, *, floor: float = PSI_FLOOR, width: float = PSI_WIDTH,
                            xp: str | ModuleType | None = None) -> Array:
    """Log of the smooth barrier that keeps every disturbance variance positive (R^2 < 1).

    ``sum_k log_sigmoid((psi_k - floor) / width)`` over the last axis (defaults
    :data:`PSI_FLOOR` = 0.02, :data:`PSI_WIDTH` = 0.01). The barrier is part of the model's
    prior: it down-weights disturbance variances near ``floor`` and below (a factor 1/2 at
    ``floor``).

    Examples
    --------
    >>> import numpy as np
    >>> float(np.round(standardisation_barrier(np.array([0.5, 0.02])), 3))
    -0.693
    >>> float(np.round(standardisation_barrier(np.array([0.1]), floor=0.1, width=0.03), 3))
    -0.693
    """
    ops = _ops(psi, xp=xp)
    return ops.m.sum(ops.log_sigmoid((_asarray(ops, psi) - floor) / width), axis=-1)


# --------------------------------------------------------------------------- interventions
def apply_mechanisms(B: Array, mscale: Array, mmask: Array, mval: Array, cut: Array, *,
                     xp: str | ModuleType | None = None) -> Array:
    """Coefficients under a do-intervention: ``where(mmask, mval, B * mscale) * (1 - cut)``.

    Mechanism changes scale a coefficient or set it to a value; ``cut`` (broadcast against
    ``B``) removes the incoming links of hard-set nodes (rows of ``B``, or the edges into them).

    Examples
    --------
    >>> import numpy as np
    >>> B = np.array([[0.0, 0.5], [0.2, 0.0]])
    >>> apply_mechanisms(B, np.ones((2, 2)), np.zeros((2, 2), bool), np.zeros((2, 2)),
    ...                  np.array([True, False])[:, None])
    array([[0. , 0. ],
           [0.2, 0. ]])
    """
    ops = _ops(B, xp=xp)
    B = _asarray(ops, B)
    m = ops.m
    cut = m.asarray(cut)
    return m.where(mmask, mval, B * mscale) * (1.0 - cut.astype(B.dtype))
