"""Process-wide resources: compiled programs are released before the process runs out of memory
mappings (``vm.max_map_count``), and released programs are compiled again when next needed."""

from __future__ import annotations

import sys

import pytest

from veerkracht_bayes.runtime import (
    mapped_regions,
    register_program_cache,
    release_compiled_programs,
    release_compiled_programs_if_needed,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="memory mappings are read from /proc (Linux only)")


def _compile_distinct_programs(n: int) -> list:
    import jax
    import jax.numpy as jnp

    kept = []
    for i in range(n):
        def f(x, c=float(i + 1)):
            return jnp.sum(jnp.sin(x * c) + jnp.exp(-x ** 2) @ jnp.ones((x.shape[1], x.shape[1])))

        g = jax.jit(jax.grad(f))
        g(jnp.ones((4, 4))).block_until_ready()
        kept.append(g)
    return kept


def test_mapped_regions_reads_the_process_and_its_cap():
    used, cap = mapped_regions()
    assert 0 < used < cap
    with open("/proc/sys/vm/max_map_count") as f:
        assert cap == int(f.read())


def test_compiled_programs_hold_mappings_until_released():
    release_compiled_programs()
    before = mapped_regions()[0]
    programs = _compile_distinct_programs(20)
    grown = mapped_regions()[0] - before
    # each CPU program keeps its code in many mappings: 20 programs add at least 20
    assert grown >= 20
    release_compiled_programs()
    # the jitted functions are still referenced here, but their compiled programs are gone
    assert mapped_regions()[0] - before < grown / 2
    # and a released program is compiled again on its next call, with the same result
    import jax.numpy as jnp

    assert float(programs[0](jnp.ones((4, 4))).sum()) == pytest.approx(
        float(_compile_distinct_programs(1)[0](jnp.ones((4, 4))).sum()))


def test_release_empties_registered_caches_and_the_sampler_cache():
    import pymc as pm

    from veerkracht_bayes.inference.jax_nuts import JaxNutsSettings, compiled_sampler

    own: dict = {"key": "program"}
    register_program_cache(own.clear)
    with pm.Model() as model:
        pm.HalfNormal("s", 1.0)
    settings = JaxNutsSettings(draws=10, tune=10, chains=1, chain_method="sequential")
    _, mcmc = compiled_sampler(model, settings)
    assert compiled_sampler(model, settings)[1] is mcmc
    release_compiled_programs()
    assert own == {}
    assert compiled_sampler(model, settings)[1] is not mcmc


def test_release_if_needed_acts_only_past_the_threshold():
    cache: dict = {"key": "program"}
    register_program_cache(cache.clear)
    used, cap = mapped_regions()
    assert release_compiled_programs_if_needed(fraction=min(1.0, 2 * used / cap)) is False
    assert cache == {"key": "program"}
    assert release_compiled_programs_if_needed(fraction=0.0) is True
    assert cache == {}
