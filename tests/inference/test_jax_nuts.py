"""The JAX NUTS driver: data containers as arguments, one compiled program per model shape."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from veerkracht_bayes.inference import jax_nuts  # noqa: E402
from veerkracht_bayes.graph.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.graph.spec import GraphSpec  # noqa: E402
from veerkracht_bayes.sem.model_builder import DATA_PREFIX, build_model  # noqa: E402
from veerkracht_bayes.inference.sampling import draw_prior, initial_values  # noqa: E402
from veerkracht_bayes.survey.statistics import prepare_model_data  # noqa: E402

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]


def _graph() -> CausalGraph:
    nodes = ["x", "a", "b", "c"]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "jn",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


def _data(seed: int, shift: float):
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=(n, 1))
    a = 0.4 * x[:, 0] + rng.normal(size=n)
    b = shift * a + rng.normal(size=n)
    c = 0.3 * b + rng.normal(size=n)
    eta = np.column_stack([a, b, c])
    y = np.repeat(eta, 2, axis=1) * 0.8 + rng.normal(0, 0.6, size=(n, 6))
    # a few missingness patterns (FIML), the same in every data set (same shapes)
    y[np.random.default_rng(99).random(y.shape) < 0.02] = np.nan
    return prepare_model_data(y, [f"i{j}" for j in range(6)], ["a", "a", "b", "b", "c", "c"],
                              covariates=x, covariate_names=["x"])


@pytest.fixture(scope="module")
def two_models():
    g = _graph()
    out = []
    for seed, shift in ((1, 0.5), (2, 0.1)):
        md = _data(seed, shift)
        model, layout = build_model(g, md)
        out.append((g, md, model, layout))
    return out


def test_data_containers_are_named_and_shaped(two_models):
    _, md, model, _ = two_models[0]
    names = [v.name for v in jax_nuts.data_inputs(model)]
    assert names == sorted(DATA_PREFIX + k for k in ("masks", "W", "Syy", "Suy", "Suu", "x_cov", "whiten__nu"))
    syy = model[DATA_PREFIX + "Syy"]
    assert syy.type.shape == md.stats.Syy.shape  # static shape


def test_compiled_logp_equals_model_logp_for_new_data_same_program(two_models):
    """The cached program, given the second data set as arguments, reproduces the second model's
    own PyMC log-density: the data are not stale constants of the first compilation."""
    import jax
    import jax.numpy as jnp
    import pytensor

    (g, md1, m1, lay1), (_, md2, m2, lay2) = two_models
    assert md1.stats.Syy.shape == md2.stats.Syy.shape, "fixture: the two data sets must share a shape"
    s = jax_nuts.JaxNutsSettings(draws=10, tune=10, chains=1, chain_method="sequential")
    comp1, mcmc1 = jax_nuts.compiled_sampler(m1, s)
    comp2, mcmc2 = jax_nuts.compiled_sampler(m2, s)
    assert mcmc1 is mcmc2  # same model shape: one compiled sampler
    prior = draw_prior(m2, lay2, g, 20, 3, md2.x_cov)
    point = jax_nuts.value_initvals(m2, initial_values(m2, lay2, prior, 1, 3))
    point = {k: v[0] for k, v in point.items()}
    # in 64 bits, as the sampler runs (alone, without an earlier test having switched x64 on, the
    # arrays would be float32 and agree only to ~1e-8)
    with jax.enable_x64(True):
        for comp, model in ((comp1, m1), (comp2, m2)):
            ref = float(pytensor.function(model.value_vars, model.logp(), mode="FAST_COMPILE")(
                *[point[v.name] for v in model.value_vars]))
            data = [jnp.asarray(v) for v in jax_nuts.data_values(model)]
            z = comp.from_value(point, data)  # the sampler's (whitened) coordinates
            got = float(comp.logp({k: jnp.asarray(v) for k, v in z.items()}, data))
            assert np.isfinite(ref) and got == pytest.approx(ref, rel=1e-10, abs=1e-8)
        # and the two data sets give different values (the test can fail)
        v1 = float(comp1.logp(point, [jnp.asarray(v) for v in jax_nuts.data_values(m1)]))
        v2 = float(comp2.logp(point, [jnp.asarray(v) for v in jax_nuts.data_values(m2)]))
    assert abs(v1 - v2) > 1.0


def test_other_prior_gives_other_program(two_models):
    """A model that differs only in a prior constant must not reuse the compiled program."""
    from veerkracht_bayes.sem.model_builder import EdgePriorValues

    g, md, model, layout = two_models[0]
    eps = dict(layout.edge_priors)
    k = next(iter(eps))
    p = eps[k]
    eps[k] = EdgePriorValues(p.distribution, p.mean + 0.1, p.sd, p.lower, p.upper, p.nu)

    class _Priors:
        def for_edge(self, key):  # noqa: ANN001, ANN201 - duck-typed PriorSet
            return eps[key]

    s = jax_nuts.JaxNutsSettings(draws=10, tune=10, chains=1, chain_method="sequential")
    m_other, _ = build_model(g, md, _Priors())
    assert jax_nuts.model_fingerprint(m_other, s) != jax_nuts.model_fingerprint(model, s)
    assert jax_nuts.model_fingerprint(two_models[1][2], s) == jax_nuts.model_fingerprint(model, s)


def test_sample_nuts_layout(two_models):
    g, md, model, layout = two_models[0]
    prior = draw_prior(model, layout, g, 50, 1, md.x_cov)
    s = jax_nuts.JaxNutsSettings(draws=40, tune=60, chains=2)
    post, stats, secs = jax_nuts.sample_nuts(model, initial_values(model, layout, prior, 2, 1), s, 7)
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 40 and secs > 0
    assert list(post["beta"].dims) == ["chain", "draw", "edge"]
    assert list(post["edge"].values) == list(layout.edge_keys)
    assert {"diverging", "energy", "n_steps", "tree_depth", "acceptance_rate", "lp", "step_size"} <= set(stats)
    assert not any(k.endswith("__") for k in post.data_vars)  # constrained values only
    assert float(post["lambda"].min()) > 0 and float(post["theta"].min()) > 0
    # same seed, same numbers
    post2, _, _ = jax_nuts.sample_nuts(model, initial_values(model, layout, prior, 2, 1), s, 7)
    np.testing.assert_array_equal(post["beta"].values, post2["beta"].values)


def test_new_data_and_seed_do_not_compile_the_sampler_again(two_models, caplog):
    """The chains' program takes the data, scales and check point as inputs: a second data set of
    the same shape with another seed and other starts runs without any sampler compilation."""
    import logging

    import jax

    g, md1, m1, lay1 = two_models[0]
    _, md2, m2, lay2 = two_models[1]
    s = jax_nuts.JaxNutsSettings(draws=20, tune=20, chains=2, chain_method="parallel")
    if jax.local_device_count() < 2:
        pytest.skip("needs two XLA devices (asked for by veerkracht_bayes.runtime.ensure_cpu_devices in the test session on a machine with 2+ cores)")
    p1 = draw_prior(m1, lay1, g, 20, 1, md1.x_cov)
    p2 = draw_prior(m2, lay2, g, 20, 2, md2.x_cov)
    jax_nuts.sample_nuts(m1, initial_values(m1, lay1, p1, 2, 1), s, 1)
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING, logger="jax"):
            post, _, _ = jax_nuts.sample_nuts(m2, initial_values(m2, lay2, p2, 2, 2), s, 2)
    finally:
        jax.config.update("jax_log_compiles", False)
    compiled = [r.getMessage() for r in caplog.records if "Finished XLA compilation" in r.getMessage()]
    assert not [c for c in compiled if "_fun" in c or "per_chain" in c or "pmap" in c], compiled
    assert post.sizes["draw"] == 20


def test_unit_scale_variables_are_not_measured_and_the_rest_unchanged(two_models):
    """``curvature_scale(..., unit=(v,))`` gives ``v`` scale 1 without measuring it and the other
    coordinates the same scales as a full measurement (same gradients, fewer rows)."""
    import jax.numpy as jnp

    g, md, model, layout = two_models[0]
    comp, _ = jax_nuts.compiled_sampler(model, jax_nuts.JaxNutsSettings(draws=10, tune=10, chains=1,
                                                                    chain_method="sequential"))
    prior = draw_prior(model, layout, g, 20, 3, md.x_cov)
    data = [jnp.asarray(v) for v in jax_nuts.data_values(model)]
    pts = comp.from_value(jax_nuts.value_initvals(model, initial_values(model, layout, prior, 1, 3)), data)
    unit = "nu"
    full, frac_full = comp.curvature_scale(pts, data)
    part, frac_part = comp.curvature_scale(pts, data, unit=(unit,))
    np.testing.assert_array_equal(part[unit], np.ones_like(full[unit]))
    assert not np.allclose(full[unit], 1.0)  # the test can fail: measured, nu's scale is not 1
    for k in full:
        if k != unit:
            np.testing.assert_allclose(part[k], full[k], rtol=1e-12)
    assert 0 < frac_part <= 1 and 0 < frac_full <= 1
