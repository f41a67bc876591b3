"""veerkracht_bayes: structural Bayesian models on signed, cyclic expert causal diagrams.

The pipeline reads top to bottom — graph spec -> priors -> survey data -> PyMC model ->
sampling -> do-queries -> summaries/briefs — one module per stage. The most used entry
points are re-exported here lazily, so ``import veerkracht_bayes`` stays light (PyMC and JAX
load only when a modelling function is first used).
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("veerkracht-bayes")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

def _cpu_devices_for_chains() -> None:
    """Expose one XLA host device per CPU core, so numpyro runs chains in parallel.

    JAX reads ``XLA_FLAGS`` once, when it is first imported; without this flag it sees a
    single CPU device and numpyro's ``chain_method="parallel"`` silently falls back to
    running the chains one after the other. A flag set by the user is kept.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in flags:
        return
    n = max(1, min(os.cpu_count() or 1, 8))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_cpu_devices_for_chains()

_EXPORTS = {
    "CausalGraph": "causal_graph",
    "load_graph": "causal_graph",
    "GraphSpec": "graph_spec",
    "load_graph_spec": "graph_spec",
    "parse_lavaan": "lavaan_syntax",
    "draw_graph": "drawing",
    "load_priors": "prior_spec",
    "default_priors": "prior_spec",
    "Codebook": "codebook",
    "load_codebook": "codebook",
    "read_survey": "survey_data",
    "simulate_population": "synthetic",
    "model_data_from_survey": "sufficient_stats",
    "prepare_model_data": "sufficient_stats",
    "build_model": "model_builder",
    "fit": "sampling",
    "SamplerSettings": "sampling",
    "diagnose": "diagnostics",
    "StructuralDraws": "structural_draws",
    "Shift": "interventions",
    "Set": "interventions",
    "MechanismChange": "interventions",
    "Intervention": "interventions",
    "do_query": "do_queries",
    "simulate_trajectories": "dynamics",
    "load_policies": "policies",
    "summarise_effects": "effect_summaries",
    "write_brief": "brief",
    "run": "pipeline",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"veerkracht_bayes.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'veerkracht_bayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
