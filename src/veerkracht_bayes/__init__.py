"""veerkracht_bayes: structural Bayesian models on signed, cyclic expert causal diagrams.

The package's subpackages follow the analysis, top to bottom, each importing only from those
above it: ``graph`` -> ``priors`` -> ``survey`` -> ``sem`` (and ``datasets``) -> ``inference`` ->
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
    "load_graph": "graph.causal_graph",
    "load_priors": "priors.spec",
    "read_survey": "survey.reading",
    "load_policies": "causal.policies",
    "fit": "api",
    "compute_log_likelihood": "api",
    "do": "api",
    "trajectories": "api",
    "run": "workflow.pipeline",
    "brief": "api",
    "draw": "api",
    "structure": "api",
    "voi": "api",
    "Shift": "causal.interventions",
    "Set": "causal.interventions",
    "MechanismChange": "causal.interventions",
    "Intervention": "causal.interventions",
    "Outcome": "causal.do",
    "configure": "runtime",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"veerkracht_bayes.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'veerkracht_bayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
