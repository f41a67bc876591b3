"""Shared pytest fixtures (generic only; module-specific fixtures live in their test files)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests live in folders that mirror the subpackages; shared helpers (_*.py) stay at this level.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Keep BLAS/OpenMP single-threaded: the test machines have few cores and tests run in parallel.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

from veerkracht_bayes.graph.causal_graph import CausalGraph  # noqa: E402
from veerkracht_bayes.runtime import ensure_cpu_devices, release_compiled_programs_if_needed  # noqa: E402

# One XLA CPU device per core before any test starts JAX (parallel chains), as fit() would ask.
ensure_cpu_devices()


#: Test modules that take the longest, longest first (from ``pytest -n auto --durations`` of a
#: full run on 2 cores, fixtures plus calls: about 300 s for the ordinal SBC module, 2-3 min for the
#: notebooks, 30-80 s for the others). xdist's default scheduler hands tests out in collection
#: order, so putting the longest modules first keeps the two workers' loads even at the end of
#: the run (longest processing time first); an unlisted module keeps its place after these. A
#: stale entry costs only balance, never a test.
HEAVY_MODULES_FIRST = (
    "tests/sem/test_ordinal_sbc.py",
    "tests/test_notebooks.py",
    "tests/sem/test_ordinal_model.py",
    "tests/workflow/test_voi_refit.py",
    "tests/cli/test_cli_run.py",
    "tests/workflow/test_pipeline_polychoric.py",
    "tests/inference/test_multigroup_sbc.py",
    "tests/sem/test_sbc.py",
    "tests/workflow/test_for_whom_run.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules of ``HEAVY_MODULES_FIRST`` first, in that order (a stable sort: the order
    inside a module, and of all other modules, is kept)."""
    rank = {m: i for i, m in enumerate(HEAVY_MODULES_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::", 1)[0], len(rank)))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Drop cached compiled programs once a worker's memory mappings pass 40% of the kernel's cap.

    A worker compiles several hundred programs in a full run, each holding a hundred or more
    mappings; past ``vm.max_map_count`` (65,530) LLVM can no longer load programs and tests fail
    with "Failed to materialize symbols" or abort the worker. The package's samplers apply the same
    rule at 50% before they compile; doctests, do-queries and fixtures compile without a sampler,
    so the run checks after every test too.
    """
    release_compiled_programs_if_needed(fraction=0.4)


@pytest.fixture(scope="session")
def marvel() -> CausalGraph:
    """The shipped MARVEL diagram (loaded once per session; do not mutate)."""
    return CausalGraph.marvel()
