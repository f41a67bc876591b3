"""A small cyclic model fitted on simulated data (shared by the ArviZ-tree tests).

Nodes: covariate ``x``, constructs ``a``, ``b`` and ``d`` with two items each and ``c`` with one
item (a fixed loading), a feedback cycle ``a -> b -> c -> a`` and a construct ``d`` without causes
(its disturbance variance is 1, a constant); a few respondents miss items, so the
data have several missingness patterns, some smaller than the ``observed_data`` size floor.
"""

from __future__ import annotations

import numpy as np

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.survey.statistics import prepare_model_data

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "+"), ("d", "b", "+")]
ITEMS = ["a1", "a2", "b1", "b2", "c1", "d1", "d2"]
CONSTRUCT = ["a", "a", "b", "b", "c", "d", "d"]


def small_graph() -> CausalGraph:
    nodes = ["x", "a", "b", "c", "d"]
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "small",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n == "x" else "construct"} for n in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "t"} for s, t, sg in EDGES]}))


def small_data(seed: int = 3, n: int = 300):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    a = 0.4 * x[:, 0] + rng.normal(size=n)
    d = rng.normal(size=n)
    b = 0.4 * a + 0.3 * d + rng.normal(size=n)
    c = 0.3 * b + rng.normal(size=n)
    a = a + 0.1 * c
    eta = np.column_stack([a, a, b, b, c, d, d])
    y = 0.8 * eta + rng.normal(0, 0.6, size=(n, 7))
    y[rng.random(n) < 0.08, 1] = np.nan  # one larger pattern
    y[:3, 4] = np.nan  # and one with 3 respondents
    return prepare_model_data(y, ITEMS, CONSTRUCT, covariates=x, covariate_names=["x"])


#: Draws and tuning steps per chain of the fits of the small model in the default suite. The
#: compiled chains depend on them (not on the data or the seed): every fit with these numbers
#: reuses one program (in memory, or from the persistent cache across workers), while each other
#: (draws, tune) costs a compilation of about 10 s CPU against 1 s of sampling.
SHARED_DRAWS, SHARED_TUNE = 100, 150


def small_fit(draws: int = SHARED_DRAWS, tune: int = SHARED_TUNE, seed: int = 11):
    """Fit the small model (2 chains); returns the FitResult."""
    from veerkracht_bayes.inference.sampling import fit

    return fit(small_graph(), small_data(), draws=draws, tune=tune, chains=2, random_seed=seed,
               prior_draws=300, progressbar=False)


def small_marvel_survey(n: int = 600, seed: int = 4):
    """A small synthetic MARVEL survey read with its codebook (for tests that stop before sampling)."""
    import veerkracht_bayes as vb
    from veerkracht_bayes.datasets.synthetic import simulate_population

    s = simulate_population(n, seed)
    return vb.read_survey(s.data, s.codebook, graph="marvel")


class StopBeforeSampling(Exception):
    """Raised by a stand-in for a fitting function once it has recorded its arguments."""
