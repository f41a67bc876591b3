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
from veerkracht_bayes.runtime import ensure_cpu_devices  # noqa: E402

# One XLA CPU device per core before any test starts JAX (parallel chains), as fit() would ask.
ensure_cpu_devices()


@pytest.fixture(scope="session")
def marvel() -> CausalGraph:
    """The shipped MARVEL diagram (loaded once per session; do not mutate)."""
    return CausalGraph.marvel()
