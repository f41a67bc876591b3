"""Inclusion probabilities on a real fit: a truly-zero inferred link falls, a strong one stays.

Fast twin: tests/causal/test_structure.py::test_zero_link_falls_strong_link_stays (conjugate
posteriors). Here: x -> a -> b -> c with the inferred links ``a->b`` (truth 0.5) and ``x->b``
(truth 0), continuous items (3 per construct, loading 0.8), n = 2000, default sign-constrained
priors, fitted with the package's sampler.
"""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.evidence import edge_evidence
from veerkracht_bayes.causal.structure import inclusion_probabilities
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.survey.statistics import prepare_model_data

EDGES = [("x", "a", 0.5, False), ("a", "b", 0.5, True), ("x", "b", 0.0, True), ("b", "c", 0.4, False)]


def graph() -> CausalGraph:
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "inclusion",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in "xabc"],
        "edges": [{"source": s, "target": t, "sign": "+", "evidence": "t", "inferred": inf}
                  for s, t, _, inf in EDGES]}))


def simulate(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    a = 0.5 * x + np.sqrt(0.75) * rng.normal(size=n)
    b = 0.5 * a + 0.0 * x + np.sqrt(0.75) * rng.normal(size=n)
    c = 0.4 * b + np.sqrt(0.84) * rng.normal(size=n)
    eta = np.repeat(np.column_stack([a, b, c]), 3, axis=1)
    y = 0.8 * eta + 0.6 * rng.normal(size=eta.shape)
    items = [f"{k}{j}" for k in "abc" for j in range(3)]
    return prepare_model_data(y, items, [i[0] for i in items], covariates=x[:, None],
                              covariate_names=["x"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_zero_link_falls_strong_link_stays_on_a_fit(seed):
    from veerkracht_bayes.inference.sampling import fit

    g = graph()
    res = fit(g, simulate(2000, seed), draws=300, tune=300, chains=2, random_seed=seed,
              prior_draws=200, progressbar=False, pointwise=False)
    beta = res.idata["posterior"]["beta"].stack(s=("chain", "draw")).transpose("s", "edge").values
    ev = edge_evidence(g, None, fit=res)
    t = inclusion_probabilities(g, beta, res.layout.edge_priors,
                                informed={k for k, v in ev.items() if v == "data"})
    p = t.set_index("link")["p_include"]
    assert p["x->b"] < 0.5  # below the prior: the data speak against the link
    assert p["a->b"] > 0.99
