"""Tests for veerkracht_bayes.causal.draws."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.causal.draws import StructuralDraws


def _posterior(graph, C=2, D=3, seed=0, shuffle=False):
    rng = np.random.default_rng(seed)
    E, P = len(graph.edges), len(graph.nodes)
    beta = rng.normal(size=(C, D, E))
    alpha = rng.normal(size=(C, D, P))
    psi = rng.uniform(0.5, 1, size=(C, D, P))
    ekeys, nodes = list(graph.edge_keys), list(graph.nodes)
    ds = xr.Dataset({"beta": (("chain", "draw", "edge"), beta),
                     "alpha": (("chain", "draw", "node"), alpha),
                     "psi": (("chain", "draw", "node"), psi)},
                    coords={"edge": ekeys, "node": nodes})
    if shuffle:  # coordinates in another order, dims transposed: must be matched by name
        ds = ds.isel(edge=rng.permutation(E), node=rng.permutation(P)).transpose("edge", "draw", "chain",
                                                                               "node")
    return ds, beta, alpha, psi


def test_from_arrays_places_coefficients(marvel):
    E, P = len(marvel.edges), len(marvel.nodes)
    beta = np.arange(1, E + 1, dtype=float)[None] / 100
    d = StructuralDraws.from_arrays(marvel, beta, np.zeros(P))
    ix = marvel.node_index
    for e_i, e in enumerate(marvel.edges):
        assert d.B[0, ix[e.target], ix[e.source]] == beta[0, e_i]
    assert np.count_nonzero(d.B) == E
    np.testing.assert_array_equal(d.beta(), beta)
    assert d.edge_delays == tuple(e.delay for e in marvel.edges)


@pytest.mark.parametrize("shuffle", [False, True])
def test_from_posterior_stacks_chain_major(marvel, shuffle):
    ds, beta, alpha, psi = _posterior(marvel, shuffle=shuffle)
    d = StructuralDraws.from_posterior(ds, marvel)
    assert d.n_draws == 6
    # draw index 4 = chain 1, draw 1
    np.testing.assert_allclose(d.beta()[4], beta[1, 1])
    np.testing.assert_allclose(d.alpha[4], alpha[1, 1])
    np.testing.assert_allclose(d.psi[2], psi[0, 2])
    # a DataTree-like object with a posterior group works too
    d2 = StructuralDraws.from_posterior({"posterior": ds}, marvel)
    np.testing.assert_array_equal(d2.B, d.B)


def test_from_posterior_errors(marvel):
    ds, *_ = _posterior(marvel)
    with pytest.raises(InterventionError, match="lacks variable"):
        StructuralDraws.from_posterior(ds.drop_vars("psi"), marvel)
    with pytest.raises(InterventionError, match="lacks edge coordinate"):
        StructuralDraws.from_posterior(ds.isel(edge=slice(1, None)), marvel)


def test_spectral_radius_vectorised_matches_loop(marvel):
    rng = np.random.default_rng(3)
    beta = rng.normal(0, 0.4, (20, len(marvel.edges)))
    d = StructuralDraws.from_arrays(marvel, beta, np.zeros(len(marvel.nodes)))
    ref = [max(abs(np.linalg.eigvals(d.B[s]))) for s in range(20)]
    np.testing.assert_allclose(d.spectral_radius(), ref, rtol=1e-10)
    base = d.baseline_mean()
    assert base.shape == (20, len(marvel.nodes))


def test_bad_shapes_and_classes(marvel):
    P = len(marvel.nodes)
    with pytest.raises(InterventionError, match="expected"):
        StructuralDraws(tuple(marvel.nodes), tuple(marvel.edge_keys), np.zeros((2, P, P)),
                        np.zeros((3, P)), np.zeros((2, P)))
    with pytest.raises(InterventionError, match="edge_class"):
        StructuralDraws.from_arrays(marvel, np.zeros(len(marvel.edges)), np.zeros(P),
                                    edge_class={"stress->wellbeing": "data"})
