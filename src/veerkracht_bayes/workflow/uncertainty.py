"""Structural uncertainty, tornado and value of information from a fit (shared by ``vb.structure``,
``vb.voi`` and the pipeline).

The statistics live in :mod:`veerkracht_bayes.causal.structure`, :mod:`veerkracht_bayes.causal.tornado`
and :mod:`veerkracht_bayes.causal.voi`; this module only reads what they need from a fit result
(the edge priors and the measured constructs from its layout, the links in the likelihood from the
evidence classes). Nothing here refits the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from veerkracht_bayes.causal.do import DoResult, SubgroupInfo
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.structure import (DEFAULT_PRIOR_INCLUSION, inclusion_probabilities,
                                               structural_robustness)
from veerkracht_bayes.causal.voi import measured_nodes, value_of_information

__all__ = ["StructureResult", "structure_from_fit", "voi_from_fit"]


@dataclass(frozen=True)
class StructureResult:
    """How sure is the diagram: per link (``links``, ``structure.csv``) and per policy x outcome
    (``robustness``, ``robustness.csv``)."""

    links: pd.DataFrame
    robustness: pd.DataFrame

    def _repr_html_(self) -> str:
        return (self.links[self.links["inferred"]].to_html(index=False)
                + self.robustness.to_html(index=False))


def _edge_priors(fit_result: Any, graph: Any) -> dict[str, Any]:
    layout = getattr(fit_result, "layout", None)
    pri = dict(getattr(layout, "edge_priors", {}) or {})
    if not pri:
        from veerkracht_bayes.sem.model_builder import edge_prior_values

        pri = edge_prior_values(None, graph)
    return pri


def structure_from_fit(fit_result: Any, draws: StructuralDraws, interventions: Sequence[Any],
                       outcomes: Sequence[Any] | None, *, edge_evidence: Mapping[str, str],
                       subgroups: Mapping[str, SubgroupInfo] | None = None,
                       variants: str = "inferred",
                       prior_inclusion: float = DEFAULT_PRIOR_INCLUSION, n_structures: int = 200,
                       draws_per_structure: int = 200, seed: int = 0,
                       min_cell_size: int = 0) -> StructureResult:
    """Inclusion probabilities of the inferred links and the robustness of the rankings.

    Parameters
    ----------
    fit_result
        The engine's fit (``layout.edge_priors``); ``None``: the default priors.
    draws
        Its structural draws.
    interventions, outcomes, subgroups
        The policies, outcomes and subgroup prevalences of the run.
    edge_evidence
        Per link its evidence class; the ``data`` links are in the likelihood.
    variants, prior_inclusion, n_structures, draws_per_structure, seed, min_cell_size
        See :func:`~veerkracht_bayes.causal.structure.inclusion_probabilities` and
        :func:`~veerkracht_bayes.causal.structure.structural_robustness`.
    """
    graph = getattr(fit_result, "graph", None)
    beta = draws.B[:, draws.edge_targets, draws.edge_sources]
    informed = {k for k, v in edge_evidence.items() if v == "data"}
    links = inclusion_probabilities(graph, beta, _edge_priors(fit_result, graph), informed=informed,
                                    prior_inclusion=prior_inclusion, variants=variants)
    p_inc = dict(zip(links["link"], links["p_include"]))
    rob = structural_robustness(draws, interventions, outcomes, p_inc, subgroups=subgroups,
                                n_structures=n_structures, draws_per_structure=draws_per_structure,
                                seed=seed, min_cell_size=min_cell_size)
    return StructureResult(links=links, robustness=rob)


def voi_from_fit(fit_result: Any, do_result: DoResult, *, outcome: str = "wellbeing",
                 candidates: str | Sequence[str] = "unmeasured", n: int | Sequence[int] = 2000,
                 items: int = 3, reliability: float = 0.8, seed: int = 0) -> pd.DataFrame:
    """EVSI per candidate construct and wave size, and EVPI (``voi.csv``); see
    :func:`~veerkracht_bayes.causal.voi.value_of_information`.

    The measured constructs are read from the fit's layout (none for a prior-only fit: then no
    single construct connects to a measured one and every EVSI is zero — measure the survey first).
    """
    meas, cov = measured_nodes(fit_result)
    return value_of_information(do_result, fit_result.graph, outcome, measured=meas, covariates=cov,
                                candidates=candidates, n=n,
                                items=items, reliability=reliability, seed=seed)
