"""Shared data for the polychoric-route tests: a cyclic 3-latent model (a -> b -> c -> a, plus a
covariate x -> a) measured by 5-category and binary items, given to both the exact ordinal
path (:class:`OrdinalData`) and the polychoric route (its stage-1 result)."""

from __future__ import annotations

import numpy as np

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem.ordinal import OrdinalData
from veerkracht_bayes.sem.polychoric_likelihood import PolychoricData, polychoric_data
from veerkracht_bayes.survey.polychoric import polychoric

EDGES = [("x", "a", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
TRUE_BETA = np.array([0.4, 0.5, 0.45, -0.3])
#: theta-parameterisation loadings; items 0, 1 of each construct have 5 categories, item 2 is binary
LAMBDA = np.array([1.2, 0.9, 1.0] * 3)
N_CAT = np.array([5, 5, 2] * 3)


class WidePriors:
    """|beta| ~ N(0, 1) truncated to the sign (data-dominated posteriors)."""

    class _P:
        distribution, mean, sd, nu = "truncated_normal", 0.0, 1.0, None

    def for_edge(self, key: str):
        return self._P()


def make_graph() -> CausalGraph:
    nodes = ["x", "a", "b", "c"]
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "polychoric-test",
        "nodes": [{"id": k, "label_en": k, "label_nl": k, "resource": "individual",
                   "role": "exogenous" if k == "x" else "construct"} for k in nodes],
        "edges": [{"source": s, "target": t, "sign": sg, "evidence": "test"} for s, t, sg in EDGES],
    })
    return CausalGraph(spec)


def simulate(n: int, seed: int, beta: np.ndarray = TRUE_BETA, lam: np.ndarray = LAMBDA,
             missing: float = 0.05, acov: str = "full") -> tuple[OrdinalData, PolychoricData]:
    """Standardised latents, ordered-probit items (theta parameterisation), 5 % missing at random;
    ``acov`` is stage 1's covariance estimator (``"model"``: simulated with ``seed``)."""
    rng = np.random.default_rng(seed)
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = beta[1], beta[2], beta[3]
    G = np.array([[beta[0]], [0.0], [0.0]])
    A = np.linalg.inv(np.eye(3) - B)
    AG = A @ G
    psi = np.linalg.solve(A * A, 1.0 - (AG ** 2).sum(1))
    x = rng.normal(size=(n, 1))
    eta = (x @ G.T + rng.normal(size=(n, 3)) * np.sqrt(psi)) @ A.T
    c_idx = np.repeat(np.arange(3), 3)
    ystar = eta[:, c_idx] * lam + rng.normal(size=(n, 9))
    codes = np.empty((n, 9), dtype=np.int64)
    for i in range(9):
        sd = np.sqrt(1 + lam[i] ** 2)
        cut = sd * (np.array([-1.2, -0.4, 0.3, 1.1]) + rng.normal(0, 0.2)) if N_CAT[i] == 5 else [sd * 0.9]
        codes[:, i] = np.digitize(ystar[:, i], cut)
    codes[rng.random(codes.shape) < missing] = -1
    names = tuple(f"{c}{i}" for c in "abc" for i in range(3))
    xc = x - x.mean(0)
    od = OrdinalData(item_names=names, item_construct=tuple(np.repeat(list("abc"), 3)), n_categories=N_CAT.copy(),
                     codes=codes, x_names=("x",), x=xc, weights=np.ones(n))
    mat = np.column_stack([np.where(codes < 0, np.nan, codes).astype(float), x[:, 0]])
    st = polychoric(mat, ["ordinal"] * 9 + ["continuous"], names=names + ("x_item",), acov=acov, seed=seed)
    pdata = polychoric_data(st, dict(zip(names, od.item_construct, strict=True)), covariates={"x": "x_item"})
    return od, pdata
