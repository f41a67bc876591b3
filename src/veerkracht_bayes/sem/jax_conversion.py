"""PyTensor graphs to JAX functions whose matrix-algebra gradients are matrix products.

PyMC's bridge (``pymc.sampling.jax.get_jaxified_graph``) converts each PyTensor operation to
its ``jax.numpy`` / ``jax.scipy`` counterpart and leaves the gradient to JAX's own rules. For
the small dense systems of a structural model (15-26 latents) those rules cost more than the
arithmetic: the reverse pass of an LU solve, a Cholesky factor or a triangular solve calls
LAPACK's triangular solve again (two to four times per operation) with its pivot gathers, and on
the CPU each such call costs a few microseconds whatever the size. :func:`jaxify` converts the
same graph with the same rewrites, but gives five operations derivatives made of matrix products
with an inverse formed once (written as forward-mode rules, ``jax.custom_jvp``, so ``jax.grad``
and ``jax.jacfwd`` both work; the reverse pass is their transpose, again products):

* ``A = inv(X)``: ``dA = -A dX A``;
* ``slogdet(X)``: ``d log|det X| = tr(X^-1 dX)`` (the sign has no derivative);
* ``x = solve(A, b)`` (general ``A``), computed as ``A^-1 b``: ``dx = A^-1 (db - dA x)``;
* ``L = cholesky(K)`` (lower or upper): ``dL = L Phi(L^-1 dK L^-T)`` (``Phi``: lower triangle,
  halved diagonal), with ``dK`` read from the triangle that the factorisation reads, as in
  JAX's own rule;
* ``x = solve_triangular(L, b)``, computed as ``L^-1 b``: ``dx = L^-1 (db - tri(dL) x)``.

Every inverse of the same matrix is the same XLA expression, so XLA computes it once: the
continuous MARVEL log-density's gradient calls LAPACK's triangular solve 5 times instead of 22
(72 -> 64.5 us per gradient on one core, median of 15 alternating rounds). The values are the
same functions, computed in another order (agreement to about 1e-11 on the shipped survey's
model; tested against PyMC's conversion to 1e-9). Other operations, and these five inside the
inner graphs of other operations, convert as PyMC's bridge converts them.

Examples
--------
>>> import numpy as np, pytensor.tensor as pt
>>> x = pt.matrix("x")
>>> f = jaxify([x], [pt.linalg.slogdet(x)[1]])
>>> round(float(f(np.array([[2.0, 0.0], [0.0, 3.0]]))[0]), 6)  # log 6
1.791759
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["jaxify"]


def _t(a: Any) -> Any:
    import jax.numpy as jnp

    return jnp.swapaxes(a, -1, -2)


def _inverse() -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def inv(x: Any) -> Any:
        return jnp.linalg.inv(x)

    @inv.defjvp
    def inv_jvp(primals: tuple, tangents: tuple) -> tuple:
        a = jnp.linalg.inv(primals[0])
        return a, -(a @ tangents[0] @ a)

    return inv


def _slogdet() -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def logabsdet(x: Any) -> Any:
        return jnp.linalg.slogdet(x)[1]

    @logabsdet.defjvp
    def logabsdet_jvp(primals: tuple, tangents: tuple) -> tuple:
        x, = primals
        return jnp.linalg.slogdet(x)[1], jnp.sum(_t(jnp.linalg.inv(x)) * tangents[0], axis=(-2, -1))

    def slogdet(x: Any) -> tuple:
        return jax.lax.stop_gradient(jnp.linalg.slogdet(x)[0]), logabsdet(x)

    return slogdet


def _solve(b_ndim: int) -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def solve(a: Any, b: Any) -> Any:
        return jnp.linalg.inv(a) @ b

    @solve.defjvp
    def solve_jvp(primals: tuple, tangents: tuple) -> tuple:
        (a, b), (da, db) = primals, tangents
        ainv = jnp.linalg.inv(a)
        x = ainv @ b
        return x, ainv @ (db - da @ x)

    if b_ndim == 1:
        return lambda a, b: solve(a, b[..., None])[..., 0]
    return solve


def _triangular_inverse(m: Any, lower: bool, unit_diagonal: bool = False) -> Any:
    import jax
    import jax.numpy as jnp

    eye = jnp.broadcast_to(jnp.eye(m.shape[-1], dtype=m.dtype), m.shape)
    return jax.scipy.linalg.solve_triangular(m, eye, lower=lower, unit_diagonal=unit_diagonal)


def _cholesky(lower: bool) -> Callable:
    import jax
    import jax.numpy as jnp

    def factor(k: Any) -> Any:
        return jax.scipy.linalg.cholesky(k, lower=lower).astype(k.dtype)

    @jax.custom_jvp
    def cholesky(k: Any) -> Any:
        return factor(k)

    @cholesky.defjvp
    def cholesky_jvp(primals: tuple, tangents: tuple) -> tuple:
        c = factor(primals[0])
        dk = tangents[0] if lower else _t(tangents[0])
        f = c if lower else _t(c)  # K = F F', F lower
        finv = _triangular_inverse(c, lower)
        finv = finv if lower else _t(finv)
        # the factorisation reads one triangle of K (the lower one of F F'), as in JAX's own rule
        dk = jnp.tril(dk) + _t(jnp.tril(dk, -1))
        p = finv @ dk @ _t(finv)
        p = jnp.tril(p) - 0.5 * jnp.eye(p.shape[-1], dtype=p.dtype) * p
        df = f @ p
        return c, (df if lower else _t(df))

    return cholesky


def _solve_triangular(lower: bool, unit_diagonal: bool, b_ndim: int) -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def solve(m: Any, b: Any) -> Any:
        return _triangular_inverse(m, lower, unit_diagonal) @ b

    @solve.defjvp
    def solve_jvp(primals: tuple, tangents: tuple) -> tuple:
        (m, b), (dm, db) = primals, tangents
        minv = _triangular_inverse(m, lower, unit_diagonal)
        x = minv @ b
        k = 1 if unit_diagonal else 0
        dm = jnp.tril(dm, -k) if lower else jnp.triu(dm, k)
        return x, minv @ (db - dm @ x)

    if b_ndim == 1:
        return lambda m, b: solve(m, b[..., None])[..., 0]
    return solve


def _rule(op: Any) -> Callable | None:
    """Our JAX function for a core PyTensor operation, or None to convert it as PyMC does."""
    from pytensor.tensor.linalg.decomposition.cholesky import Cholesky
    from pytensor.tensor.linalg.inverse import MatrixInverse
    from pytensor.tensor.linalg.solvers.general import Solve
    from pytensor.tensor.linalg.solvers.triangular import SolveTriangular
    from pytensor.tensor.linalg.summary import SLogDet

    kind = type(op)
    if kind is MatrixInverse:
        return _inverse()
    if kind is SLogDet:
        return _slogdet()
    if kind is Solve and op.assume_a == "gen":
        return _solve(op.b_ndim)
    if kind is Cholesky:
        return _cholesky(bool(op.lower))
    if kind is SolveTriangular:
        return _solve_triangular(bool(op.lower), bool(op.unit_diagonal), op.b_ndim)
    return None


def _convert(op: Any, node: Any = None, **kwargs: Any) -> Callable:
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.blockwise import Blockwise

    if isinstance(op, Blockwise):
        core = _rule(op.core_op)
        if core is not None:
            return jnp.vectorize(core, signature=op.signature)
    else:
        core = _rule(op)
        if core is not None:
            return core
    return jax_funcify(op, node=node, **kwargs)


def jaxify(inputs: Sequence[Any], outputs: Sequence[Any]) -> Callable:
    """A JAX function of ``inputs`` that returns ``outputs`` (a list), as PyMC's
    ``get_jaxified_graph`` builds it, with the matrix-algebra gradients of this module.

    The graph gets PyTensor's JAX rewrites; shared variables among the graph's inputs become
    constants with their current values (pass data that must stay arguments as ``inputs``).

    Parameters
    ----------
    inputs
        The graph's input variables, in the order of the function's arguments.
    outputs
        The variables to compute.

    Returns
    -------
    Callable
        ``f(*arrays) -> list`` of the outputs' values, traceable by ``jax.jit`` and ``jax.grad``.

    Examples
    --------
    >>> import jax, numpy as np, pytensor.tensor as pt
    >>> x = pt.matrix("x")
    >>> f = jaxify([x], [pt.sum(pt.linalg.inv(x))])
    >>> g = jax.grad(lambda a: f(a)[0])(np.array([[2.0, 0.0], [0.0, 4.0]]))
    >>> np.round(np.asarray(g), 4).tolist()  # -A' 1 1' A' with A = diag(1/2, 1/4)
    [[-0.25, -0.125], [-0.125, -0.0625]]
    """
    import pytensor.tensor as pt
    from pytensor.compile.mode import JAX
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import graph_inputs
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import clone_replace
    from pytensor.link.jax.dispatch import jax_typify
    from pytensor.link.utils import fgraph_to_python

    outputs = list(outputs)
    shared = [v for v in graph_inputs(outputs) if isinstance(v, SharedVariable)]
    if shared:
        outputs = clone_replace(outputs, replace={v: pt.constant(v.get_value(borrow=True), name=v.name)
                                                  for v in shared})
    fgraph = FunctionGraph(inputs=list(inputs), outputs=outputs, clone=True)
    JAX.optimizer.rewrite(fgraph)
    return fgraph_to_python(fgraph, _convert, type_conversion_fn=jax_typify, fgraph_name="jaxified_graph")
