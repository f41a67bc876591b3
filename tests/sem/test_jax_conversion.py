"""sem.jax_conversion: the same values and gradients as PyMC's conversion, with fewer LAPACK calls.

Each of the five operations with its own derivative is compared with PyMC's
``get_jaxified_graph`` of the same graph (values, gradients and a directional derivative in
forward mode of a scalar that uses every output, 1e-9 relative), unbatched and batched (PyTensor's Blockwise), lower and upper
triangles, vector and matrix right-hand sides; random, well-conditioned inputs from fixed
seeds. The structural check counts LAPACK's triangular solves in the compiled gradient of a
Cholesky factor followed by two solves with it: one, the factor's inverse, where JAX's own rules
make several.
"""

from __future__ import annotations

import jax
import numpy as np
import pytensor.tensor as pt
import pytest
from pymc.sampling.jax import get_jaxified_graph

from veerkracht_bayes.runtime import x64
from veerkracht_bayes.sem.jax_conversion import jaxify

RTOL = 1e-9


def _spd(rng: np.random.Generator, *shape: int) -> np.ndarray:
    a = rng.standard_normal((*shape[:-1], shape[-1], shape[-1]))
    return a @ np.swapaxes(a, -1, -2) / shape[-1] + np.eye(shape[-1])


def _general(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return np.eye(shape[-1]) + 0.3 * rng.standard_normal((*shape[:-1], shape[-1], shape[-1])) / np.sqrt(shape[-1])


@x64
def _compare(inputs: list, output, values: list[np.ndarray]) -> None:
    """Value and gradient (in every input) of ``output`` under both conversions."""
    ours = jaxify(inputs, [output])
    ref = get_jaxified_graph(inputs=inputs, outputs=[output])
    argnums = tuple(range(len(values)))
    v_ours, g_ours = jax.value_and_grad(lambda *a: ours(*a)[0], argnums=argnums)(*values)
    v_ref, g_ref = jax.value_and_grad(lambda *a: ref(*a)[0], argnums=argnums)(*values)
    np.testing.assert_allclose(float(v_ours), float(v_ref), rtol=RTOL)
    for a, b in zip(g_ours, g_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=RTOL * np.abs(b).max())
    # forward mode (the polychoric pilot's Jacobians): the same derivative along a direction
    direction = [np.cos(np.arange(v.size)).reshape(v.shape) for v in values]
    d_ours = jax.jvp(lambda *a: ours(*a)[0], tuple(values), tuple(direction))[1]
    d_ref = jax.jvp(lambda *a: ref(*a)[0], tuple(values), tuple(direction))[1]
    np.testing.assert_allclose(float(d_ours), float(d_ref), rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_inverse_and_log_determinant(batch: tuple) -> None:
    rng = np.random.default_rng(1)
    x = pt.tensor("x", shape=(*batch, 5, 5))
    w = rng.standard_normal((5, 5))
    out = pt.sum(pt.linalg.inv(x) * w) + 0.7 * pt.sum(pt.linalg.slogdet(x)[1])
    _compare([x], out, [_general(rng, *batch, 5)])


@pytest.mark.parametrize("b_ndim", [1, 2])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_general_solve(b_ndim: int, batch: tuple) -> None:
    rng = np.random.default_rng(2)
    a = pt.tensor("a", shape=(*batch, 4, 4))
    b_shape = (*batch, 4) if b_ndim == 1 else (*batch, 4, 2)
    b = pt.tensor("b", shape=b_shape)
    x = pt.linalg.solve(a, b, b_ndim=b_ndim)
    out = pt.sum(x * rng.standard_normal(b_shape[-b_ndim:]))
    _compare([a, b], out, [_general(rng, *batch, 4), rng.standard_normal(b_shape)])


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_cholesky_and_triangular_solves(lower: bool, batch: tuple) -> None:
    """log|K| and tr(K^-1 G) through a factor and two triangular solves, as the likelihood forms them."""
    rng = np.random.default_rng(3)
    k = pt.tensor("k", shape=(*batch, 6, 6))
    g = pt.tensor("g", shape=(*batch, 6, 6))
    c = pt.linalg.cholesky(k, lower=lower)
    f = c if lower else pt.swapaxes(c, -1, -2)  # K = F F' with F lower in both cases
    v = pt.linalg.solve_triangular(c if lower else pt.swapaxes(c, -1, -2), g, lower=True)
    u = pt.linalg.solve_triangular(f, pt.swapaxes(v, -1, -2), lower=True)
    logdet = 2.0 * pt.sum(pt.log(pt.diagonal(c, axis1=-2, axis2=-1)))
    out = logdet - pt.sum(pt.diagonal(u, axis1=-2, axis2=-1))
    gv = rng.standard_normal((*batch, 6, 6))
    _compare([k, g], out, [_spd(rng, *batch, 6), gv + np.swapaxes(gv, -1, -2)])


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("unit_diagonal", [False, True])
def test_triangular_solve_vector(lower: bool, unit_diagonal: bool) -> None:
    rng = np.random.default_rng(4)
    m = pt.matrix("m")
    b = pt.vector("b")
    x = pt.linalg.solve_triangular(m, b, lower=lower, unit_diagonal=unit_diagonal, b_ndim=1)
    out = pt.sum(x * rng.standard_normal(5))
    tri = np.tril if lower else np.triu
    mv = tri(rng.standard_normal((5, 5))) * 0.3 + np.eye(5) * 2.0
    _compare([m, b], out, [mv, rng.standard_normal(5)])


@x64
def test_factor_inverse_is_formed_once() -> None:
    """The gradient of log|K| - tr(K^-1 G) via a Cholesky factor calls LAPACK's triangular solve
    once (the factor's inverse, shared by every reverse pass); PyMC's conversion more often."""
    k, g = pt.matrix("k"), pt.matrix("g")
    c = pt.linalg.cholesky(k)
    v = pt.linalg.solve_triangular(c, g, lower=True)
    u = pt.linalg.solve_triangular(c, v.T, lower=True)
    out = 2.0 * pt.sum(pt.log(pt.diagonal(c))) - pt.sum(pt.diagonal(u))
    rng = np.random.default_rng(5)
    args = (_spd(rng, 6), np.eye(6))

    def trsm_calls(conv) -> int:
        f = conv([k, g], [out])
        hlo = jax.jit(jax.grad(lambda a, b: f(a, b)[0])).lower(*args).compile().as_text()
        return sum("custom-call(" in line and "trsm" in line for line in hlo.splitlines())

    assert trsm_calls(jaxify) == 1
    assert trsm_calls(lambda i, o: get_jaxified_graph(inputs=i, outputs=o)) > 1


@x64
def test_shared_variables_become_constants() -> None:
    import pytensor

    s = pytensor.shared(np.array([[2.0, 0.0], [0.0, 5.0]]), name="s")
    x = pt.matrix("x")
    f = jaxify([x], [pt.linalg.slogdet(x + s)[1]])
    assert float(f(np.zeros((2, 2)))[0]) == pytest.approx(np.log(10.0))
