"""Tests of the one SEM algebra (sem.algebra): NumPy, JAX and PyTensor give the same numbers, and
the numbers match closed forms.

Backends are compared to 1e-10 (all in float64: the same LU solves, in a different order of
floating-point operations). Closed forms: ``A (I - B) = I``; the standardised ``psi`` gives unit
latent variances; a chain ``a -> b`` with coefficient ``c`` has ``psi = (1, 1 - c^2)``; a two-cycle
with coefficients ``a, b`` has spectral radius ``sqrt(|a b|)``; the Perron bound is never below the
spectral radius (Collatz-Wielandt) and within ``log(P)/1000 + 1e-3`` of it on a two-cycle.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veerkracht_bayes.runtime import x64
from veerkracht_bayes.sem import algebra

TOL = 1e-10


def _system(seed: int, P: int, q: int, density: float, radius: float):
    """A random sparse B (spectral radius ``radius``), Gamma, S_x and the edge list that builds them."""
    rng = np.random.default_rng(seed)
    nodes = [f"n{i}" for i in range(P)]
    covs = [f"x{j}" for j in range(q)]
    edges = [(s, t) for t in nodes for s in nodes if s != t and rng.random() < density]
    edges += [(c, t) for c in covs for t in nodes if rng.random() < 0.5]
    beta = rng.normal(0.0, 0.4, (3, len(edges)))
    ib = algebra.edge_index([s for s, _ in edges], [t for _, t in edges], nodes)
    ig = algebra.edge_index([s for s, _ in edges], [t for _, t in edges], nodes, covs)
    B = algebra.assemble(beta, ib)
    rho = algebra.spectral_radius(B)
    scale = np.where(rho > 0, radius / np.maximum(rho, 1e-12), 1.0)
    cols = np.zeros(len(edges), bool)
    cols[ib.edges] = True
    beta = np.where(cols[None, :], beta * scale[:, None], beta * 0.5)
    L = rng.normal(size=(q, q))
    Sx = L @ L.T / max(q, 1) + 0.5 * np.eye(q)
    return beta, ib, ig, Sx


systems = st.builds(_system, st.integers(0, 10_000), st.integers(1, 6), st.integers(0, 3),
                    st.floats(0.1, 0.6), st.floats(0.05, 0.9))


@x64
def _jax_all(beta, ib, ig, Sx):
    import jax

    return jax.jit(lambda b: _jax_parts(b, ib, ig, Sx))(beta)


def _jax_parts(b, ib, ig, Sx):
    import jax.numpy as jnp

    B, G = algebra.assemble(b, ib), algebra.assemble(b, ig)
    A = algebra.equilibrium_matrix(B)
    AG = A @ G
    psi = algebra.standardised_psi(A, AG, jnp.asarray(Sx))
    cov = algebra.latent_covariance(A, psi, AG, jnp.asarray(Sx))
    eq = algebra.solve_equilibrium(B, b[:, : B.shape[-1]] if b.shape[1] >= B.shape[-1] else jnp.ones(B.shape[:-1]))
    return [B, G, A, psi, cov, algebra.perron_bound(jnp.abs(B)), eq]


def _numpy_all(beta, ib, ig, Sx):
    B, G = algebra.assemble(beta, ib), algebra.assemble(beta, ig)
    A = algebra.equilibrium_matrix(B)
    AG = A @ G
    psi = algebra.standardised_psi(A, AG, Sx)
    cov = algebra.latent_covariance(A, psi, AG, Sx)
    eq = algebra.solve_equilibrium(B, beta[:, : B.shape[-1]] if beta.shape[1] >= B.shape[-1] else np.ones(B.shape[:-1]))
    return [B, G, A, psi, cov, algebra.perron_bound(np.abs(B)), eq, algebra.spectral_radius(B)]


def _pytensor_fn(ib, ig, Sx):
    b = pt.vector("beta")
    B, G = algebra.assemble(b, ib, xp="pytensor"), algebra.assemble(b, ig, xp="pytensor")
    A = algebra.equilibrium_matrix(B, xp="pytensor")
    AG = pt.dot(A, G)
    psi = algebra.standardised_psi(A, AG, Sx, xp="pytensor")
    cov = algebra.latent_covariance(A, psi, AG, Sx, xp="pytensor")
    rho = algebra.perron_bound(pt.abs(B), xp="pytensor")
    return pytensor.function([b], [B, G, A, psi, cov, rho], on_unused_input="ignore", mode="FAST_COMPILE")


@settings(max_examples=8, deadline=None)
@given(systems)
def test_numpy_and_jax_agree(sys) -> None:
    ref, got = _numpy_all(*sys), _jax_all(*sys)
    assert len(got) == len(ref) - 1
    for r, g in zip(ref, got):
        g = np.asarray(g)
        np.testing.assert_allclose(g, r, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(x64(lambda: np.asarray(algebra.spectral_radius(_as_jax(ref[0]))))(), ref[7],
                               rtol=1e-9, atol=1e-12)


def _as_jax(a):
    import jax.numpy as jnp

    return jnp.asarray(a)


@settings(max_examples=3, deadline=None)
@given(systems)
def test_pytensor_agrees_with_numpy(sys) -> None:
    beta, ib, ig, Sx = sys
    ref = _numpy_all(beta, ib, ig, Sx)[:6]
    f = _pytensor_fn(ib, ig, Sx)
    for s in range(beta.shape[0]):
        got = f(beta[s])
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r[s], rtol=TOL, atol=TOL)


@settings(max_examples=25, deadline=None)
@given(systems)
def test_closed_forms(sys) -> None:
    B, _, A, _, cov, bound, _, rho = _numpy_all(*sys)
    P = B.shape[-1]
    np.testing.assert_allclose(A @ (np.eye(P) - B), np.broadcast_to(np.eye(P), B.shape), atol=1e-10)
    # (A∘A) psi = 1 - dx gives unit variances whenever the solve exists
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), 1.0, atol=1e-9)
    # the stability bound is an upper bound of the spectral radius
    assert np.all(bound >= rho - 1e-12)
    # one factorisation for many vectors (2-D B) equals the batched solve
    c = np.random.default_rng(1).normal(size=(4, P))
    one = algebra.solve_equilibrium(B[0], c)
    np.testing.assert_allclose(one, np.linalg.solve(np.eye(P) - B[0], c.T).T, atol=1e-12)
    np.testing.assert_allclose(algebra.solve_equilibrium(np.broadcast_to(B[0], (4, P, P)), c), one,
                               atol=1e-12)


@pytest.mark.parametrize("c", [-0.8, -0.3, 0.0, 0.45, 0.9])
def test_chain_psi_closed_form(c: float) -> None:
    ib = algebra.edge_index(["a"], ["b"], ["a", "b"])
    A = algebra.equilibrium_matrix(algebra.assemble(np.array([c]), ib))
    np.testing.assert_allclose(algebra.standardised_psi(A), [1.0, 1.0 - c * c], atol=1e-14)
    np.testing.assert_allclose(algebra.latent_covariance(A, np.array([1.0, 1.0 - c * c])),
                               [[1.0, c], [c, 1.0]], atol=1e-14)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (-0.6, 0.3), (0.9, -0.2), (0.1, 0.0)])
def test_two_cycle_radius_and_bound(a: float, b: float) -> None:
    B = np.array([[0.0, a], [b, 0.0]])
    rho = np.sqrt(abs(a * b))
    assert algebra.spectral_radius(B[None])[0] == pytest.approx(rho, abs=1e-12)
    bound = algebra.perron_bound(np.abs(B))
    assert bound >= rho
    if a * b != 0:  # irreducible |B|: the power iteration has converged, the bound is tight
        assert bound <= rho + np.log(2) / 1000 + 1e-3


def test_covariate_psi_closed_form() -> None:
    """One latent with a covariate effect g and Var(x) = v: psi = 1 - g^2 v."""
    g, v = 0.4, 2.0
    A = algebra.equilibrium_matrix(np.zeros((1, 1)))
    assert algebra.standardised_psi(A, np.array([[g]]), np.array([[v]]))[0] == pytest.approx(1 - g * g * v)


def test_structural_indices_split_b_and_gamma() -> None:
    es = [SimpleNamespace(source=s, target=t, key=f"{s}->{t}")
          for s, t in [("a", "b"), ("x", "a"), ("u", "a"), ("b", "u"), ("b", "a")]]
    kind = {"a->b": "latent", "x->a": "covariate", "u->a": "prior_only", "b->u": "prior_only", "b->a": "latent"}
    beta = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    ib, ig = algebra.structural_indices(es, kind, ["a", "b", "u"], ["x"])
    np.testing.assert_array_equal(algebra.assemble(beta, ib)[0],
                                  [[0, 0.5, 0.3], [0.1, 0, 0], [0, 0.4, 0]])
    np.testing.assert_array_equal(algebra.assemble(beta, ig)[0], [[0.2], [0], [0]])
    ib_lik, _ = algebra.structural_indices(es, kind, ["a", "b"], ["x"], ("latent",))
    np.testing.assert_array_equal(algebra.assemble(beta, ib_lik)[0], [[0, 0.5], [0.1, 0]])


def test_apply_mechanisms_cuts_rows_and_changes_links() -> None:
    B = np.array([[0.0, 0.5, 0.1], [0.2, 0.0, 0.0], [0.3, 0.4, 0.0]])
    mscale = np.ones((3, 3))
    mscale[2, 0] = 0.5
    mmask = np.zeros((3, 3), bool)
    mmask[2, 1] = True
    mval = np.full((3, 3), -0.7)
    out = algebra.apply_mechanisms(B, mscale, mmask, mval, np.array([True, False, False])[:, None])
    np.testing.assert_allclose(out, [[0, 0, 0], [0.2, 0, 0], [0.15, -0.7, 0]])


@x64
def _jax_grads(beta, ib, ig, Sx):
    import jax
    import jax.numpy as jnp

    def f(b):
        B = algebra.assemble(b, ib)
        A = algebra.equilibrium_matrix(B)
        psi = algebra.standardised_psi(A, A @ algebra.assemble(b, ig), jnp.asarray(Sx))
        return algebra.perron_bound(jnp.abs(B)) + jnp.sum(psi ** 2)

    return np.asarray(jax.jit(jax.grad(f))(jnp.asarray(beta)))


def test_gradients_agree_jax_pytensor() -> None:
    """The stability bound holds its test vector constant for the gradient in both backends."""
    beta, ib, ig, Sx = _system(7, 5, 2, 0.4, 0.8)
    b = pt.vector("beta")
    B = algebra.assemble(b, ib, xp="pytensor")
    A = algebra.equilibrium_matrix(B, xp="pytensor")
    psi = algebra.standardised_psi(A, pt.dot(A, algebra.assemble(b, ig, xp="pytensor")), Sx, xp="pytensor")
    obj = algebra.perron_bound(pt.abs(B), xp="pytensor") + pt.sum(psi ** 2)
    grad = pytensor.function([b], pytensor.grad(obj, b, disconnected_inputs="ignore"), mode="FAST_COMPILE")
    np.testing.assert_allclose(grad(beta[0]), _jax_grads(beta[0], ib, ig, Sx), rtol=1e-8, atol=1e-10)


@x64
def test_gradient_of_a_pytensor_graph_converted_to_jax_holds_the_test_vector() -> None:
    """The samplers differentiate PyMC's graph after its conversion to JAX: that gradient must be
    PyTensor's (test vector held constant), not one through the power iteration, and its program
    must not run the squarings backwards."""
    import jax
    from pymc.sampling.jax import get_jaxified_graph

    beta, ib, ig, Sx = _system(7, 5, 2, 0.4, 0.8)
    b = pt.vector("beta")
    obj = algebra.perron_bound(pt.abs(algebra.assemble(b, ib, xp="pytensor")), xp="pytensor")
    ref = pytensor.function([b], pytensor.grad(obj, b), mode="FAST_COMPILE")(beta[0])
    f = get_jaxified_graph(inputs=[b], outputs=[obj])
    grad = jax.jit(jax.grad(lambda x: f(x)[0]))
    np.testing.assert_allclose(np.asarray(grad(beta[0])), ref, rtol=1e-8, atol=1e-12)
    squarings = algebra.power_squarings(128)
    hlo = grad.lower(beta[0]).as_text()
    assert hlo.count("dot_general") < 2 * squarings, "the gradient runs through the power iteration"


def test_backend_detection() -> None:
    assert algebra.backend(np.zeros(2)) == "numpy"
    assert algebra.backend(pt.vector("v")) == "pytensor"
    assert algebra.backend(xp=np) == "numpy"
    with pytest.raises(ValueError, match="unknown array library"):
        algebra.backend(xp="torch")


def test_importing_algebra_imports_no_pytensor_or_jax() -> None:
    import subprocess
    import sys

    code = ("import sys; import veerkracht_bayes.sem.algebra; "
            "bad = [m for m in ('pytensor', 'pymc', 'jax') if m in sys.modules]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_barriers_agree_across_backends() -> None:
    rho = np.array([0.2, 0.97, 0.99, 1.01, 1.5])
    psi = np.array([[0.5, 0.03, 0.01], [1.0, 0.9, -0.2]])
    ref_r = algebra.stability_barrier(rho, 0.99, 0.005)
    ref_p = algebra.standardisation_barrier(psi)
    # closed form: log(1 / (1 + exp(-z)))
    np.testing.assert_allclose(ref_r, -np.log1p(np.exp(-(0.99 - rho) / 0.005)), rtol=1e-12)
    np.testing.assert_allclose(ref_p, np.sum(-np.log1p(np.exp(-(psi - 0.02) / 0.01)), axis=1), rtol=1e-12)
    r, p = pt.vector("r"), pt.matrix("p")
    f = pytensor.function([r, p], [algebra.stability_barrier(r, 0.99, 0.005, xp="pytensor"),
                                   algebra.standardisation_barrier(p, xp="pytensor")], mode="FAST_COMPILE")
    got_r, got_p = f(rho, psi)
    np.testing.assert_allclose(got_r, ref_r, rtol=1e-12)
    np.testing.assert_allclose(got_p, ref_p, rtol=1e-12)
    jr = x64(lambda: np.asarray(algebra.stability_barrier(_as_jax(rho), 0.99, 0.005)))()
    jp = x64(lambda: np.asarray(algebra.standardisation_barrier(_as_jax(psi))))()
    np.testing.assert_allclose(jr, ref_r, rtol=1e-12)
    np.testing.assert_allclose(jp, ref_p, rtol=1e-12)


def test_link_matrix_matches_assemble_and_names_bad_links() -> None:
    links = {"a->b": 0.3, "b->c": -0.2, "c->a": 0.1}
    ib = algebra.edge_index(["a", "b", "c"], ["b", "c", "a"], ["a", "b", "c"])
    np.testing.assert_array_equal(algebra.link_matrix(links, ["a", "b", "c"]),
                                  algebra.assemble(np.array([0.3, -0.2, 0.1]), ib))
    np.testing.assert_array_equal(algebra.link_matrix({"x->b": 0.4}, ["a", "b"], ["x"]), [[0.0], [0.4]])
    with pytest.raises(ValueError, match=r"\['a->z'\]"):
        algebra.link_matrix({"a->b": 0.1, "a->z": 0.2}, ["a", "b"])
    with pytest.raises(ValueError, match="expected 'source->target'"):
        algebra.link_matrix({"ab": 0.1}, ["a", "b"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_variance_psi_on_free_nodes(seed: int) -> None:
    """Nodes outside ``free`` have psi 0 and variance dx; the free ones get variance 1 exactly,
    the same numbers as a solve of the sub-system, in every backend."""
    rng = np.random.default_rng(seed)
    P = 5
    B = rng.normal(0.0, 0.2, (P, P)) * (1 - np.eye(P))
    B[:, 0] = np.abs(B[:, 0])
    B[0] = 0.0  # node 0 exogenous (no parents); its variance 1 enters through dx
    B[3] = 0.0  # node 3 a lever (no parents, no variance)
    free = np.array([False, True, True, False, True])
    A = algebra.equilibrium_matrix(B)
    dx = A[:, 0] ** 2  # variance passed on from the exogenous node
    psi = algebra.unit_variance_psi(A, dx, free=free)
    assert np.all(psi[~free] == 0.0)
    var = (A * A) @ psi + dx
    np.testing.assert_allclose(var[free], 1.0, atol=1e-12)
    idx = np.flatnonzero(free)
    np.testing.assert_array_equal(psi[idx], np.linalg.solve((A * A)[np.ix_(idx, idx)], 1.0 - dx[idx]))
    np.testing.assert_array_equal(algebra.unit_variance_psi(A, dx, free=idx), psi)  # positions = mask
    # JAX and PyTensor: the same numbers (batched in JAX)
    jp = x64(lambda: np.asarray(algebra.unit_variance_psi(_as_jax(np.stack([A, A])), _as_jax(np.stack([dx, dx])),
                                                          free=free)))()
    np.testing.assert_allclose(jp, np.stack([psi, psi]), rtol=TOL, atol=TOL)
    a_t, d_t = pt.matrix("A"), pt.vector("dx")
    f = pytensor.function([a_t, d_t], algebra.unit_variance_psi(a_t, d_t, free=free, xp="pytensor"),
                          mode="FAST_COMPILE")
    np.testing.assert_allclose(f(A, dx), psi, rtol=TOL, atol=TOL)
