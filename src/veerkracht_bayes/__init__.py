"""veerkracht_bayes: structural Bayesian models on signed, cyclic expert causal diagrams.

The package's subpackages follow the analysis, top to bottom, each importing only from those
above it: ``graph`` -> ``priors`` -> ``survey`` (and ``datasets``) -> ``sem`` -> ``inference`` ->
``causal`` -> ``report`` -> ``workflow`` -> ``cli`` (see ARCHITECTURE.md). The public API is
re-exported here lazily, so ``import veerkracht_bayes`` stays light (PyMC and JAX load only when a
modelling function is first used) and changes no process-wide setting.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("veerkracht-bayes")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

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
