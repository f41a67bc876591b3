"""A synthetic clustered survey with known neighbourhood effects (for the two-level model).

The shipped synthetic survey (:mod:`veerkracht_bayes.datasets.synthetic`) is left as it is; this
module is a separate, documented generator: respondents nested in neighbourhoods (``wijk_code``)
nested in municipalities (``gemeente_code``), item scores drawn from the two-level model of
:mod:`veerkracht_bayes.sem.twolevel` with a known truth (:class:`TwoLevelTruth`): within links,
between links among the between (collective) constructs, each between construct's between variance
share ``v_c``, loadings (equal across levels) and within / between item residual variances.

Within one cluster ``j``::

    eta~_B = (I - B_B)^-1 zeta_B,  Var(eta~_B) = 1;   eta_B = sqrt(v) * eta~_B
    y_ij = nu + Lambda_B eta_B + e_B,j + Lambda (sqrt(1 - v) * eta~_W,ij) + e_W,ij
    eta~_W,ij = (I - B_W)^-1 zeta_W,ij,  Var(eta~_W) = 1

(``v = 0`` for the other constructs; disturbance variances standardised with
:func:`veerkracht_bayes.sem.algebra.unit_variance_psi`.) Item scores are continuous. Cluster sizes
are unbalanced (uniform between ``min_size`` and ``max_size``). Weights are all 1 unless
``weights=True`` (then log-normal, for design-effect examples only: the truth does not depend on them).

Examples
--------
>>> df, truth = simulate_clustered(n_clusters=20, min_size=3, max_size=6, seed=1)
>>> sorted(truth.between), "wijk_code" in df.columns
(['collective_agency', 'community_support', 'neighbourhood_trust'], True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veerkracht_bayes.sem.algebra import assemble, edge_index, equilibrium_matrix, unit_variance_psi

__all__ = ["TwoLevelTruth", "boundary_twolevel_truth", "default_twolevel_truth", "simulate_clustered"]


@dataclass(frozen=True)
class TwoLevelTruth:
    """The true parameters of a clustered synthetic survey.

    Attributes
    ----------
    item_construct
        Item -> construct (in column order).
    between
        Between constructs and their between variance shares ``v_c``.
    within_links, between_links
        ``"a->b"`` -> standardised coefficient on each level.
    loading, theta_within, theta_between, intercept
        Per item.

    Examples
    --------
    >>> t = default_twolevel_truth()
    >>> round(t.item_icc()["neighbourhood_trust_1"], 3)
    0.18
    """

    item_construct: dict[str, str]
    between: dict[str, float]
    within_links: dict[str, float]
    between_links: dict[str, float]
    loading: dict[str, float]
    theta_within: dict[str, float]
    theta_between: dict[str, float]
    intercept: dict[str, float] = field(default_factory=dict)

    def item_icc(self) -> dict[str, float]:
        """True intraclass correlation of each item: ``diag(Sigma_B) / diag(Sigma_B + Sigma_W)``."""
        out = {}
        for it, c in self.item_construct.items():
            lam = self.loading[it]
            v = self.between.get(c, 0.0)
            b = lam ** 2 * v + self.theta_between[it]
            w = lam ** 2 * (1.0 - v) + self.theta_within[it]
            out[it] = b / (b + w)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON ready), with the implied item ICCs."""
        d = asdict(self)
        d["item_icc"] = self.item_icc()
        return d

    def write(self, path: str | Path) -> Path:
        """Write the truth as YAML and return the path."""
        import yaml

        path = Path(path)
        path.write_text("# SYNTHETIC two-level truth (veerkracht_bayes.datasets.clustered)\n"
                        + yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path


def default_twolevel_truth() -> TwoLevelTruth:
    """The default truth: three collective constructs (between level) and one individual construct.

    Between shares 0.25 / 0.15 / 0.10; between links ``community_support -> collective_agency``
    (0.5, the MARVEL link) and ``neighbourhood_trust -> community_support`` (0.4); within links
    ``community_support -> collective_agency`` (0.3) and ``social_network -> community_support`` (0.3).

    Examples
    --------
    >>> default_twolevel_truth().between_links["community_support->collective_agency"]
    0.5
    """
    cons = {"neighbourhood_trust": 3, "community_support": 3, "collective_agency": 3, "social_network": 3}
    ic = {f"{c}_{k + 1}": c for c, m in cons.items() for k in range(m)}
    lam = {it: [0.8, 0.7, 0.6][int(it[-1]) - 1] for it in ic}
    return TwoLevelTruth(
        item_construct=ic,
        between={"neighbourhood_trust": 0.25, "community_support": 0.15, "collective_agency": 0.10},
        within_links={"community_support->collective_agency": 0.3, "social_network->community_support": 0.3},
        between_links={"community_support->collective_agency": 0.5, "neighbourhood_trust->community_support": 0.4},
        loading=lam, theta_within={it: 1.0 - lam[it] ** 2 - 0.02 for it in ic},
        theta_between={it: 0.02 for it in ic}, intercept={it: 0.0 for it in ic})


def boundary_twolevel_truth() -> TwoLevelTruth:
    """A boundary truth: collective agency's neighbourhood variance comes only from community support.

    As :func:`default_twolevel_truth`, but the between link ``community_support -> collective_agency``
    is 1 on the between-standardised scale (0.63 in total-scale units: ``sqrt(0.06 / 0.15)``), so
    collective agency's between disturbance variance is exactly 0 and its share
    ``v = 0.63^2 * 0.15 = 0.06``. A model must reach this boundary smoothly.

    Examples
    --------
    >>> t = boundary_twolevel_truth()
    >>> t.between["collective_agency"], t.between_links["community_support->collective_agency"]
    (0.06, 1.0)
    """
    d = default_twolevel_truth()
    return TwoLevelTruth(item_construct=d.item_construct,
                         between={"neighbourhood_trust": 0.25, "community_support": 0.15, "collective_agency": 0.06},
                         within_links=d.within_links,
                         between_links={"community_support->collective_agency": 1.0,
                                        "neighbourhood_trust->community_support": 0.4},
                         loading=d.loading, theta_within=d.theta_within, theta_between=d.theta_between,
                         intercept=d.intercept)


def _system(links: Mapping[str, float], nodes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [k.split("->") for k in links]
    ix = edge_index([a for a, _ in pairs], [b for _, b in pairs], nodes)
    B = assemble(np.array(list(links.values()), dtype=float), ix)
    A = equilibrium_matrix(B)
    psi = unit_variance_psi(A)
    if np.any(psi < -1e-9):
        raise ValueError(f"links {dict(links)} give no standardised solution (psi {psi})")
    # psi = 0 is allowed: a boundary truth (a construct fully explained by its parents)
    return A, np.clip(psi, 0.0, None)


def simulate_clustered(truth: TwoLevelTruth | None = None, *, n_clusters: int = 200, min_size: int = 20,
                       max_size: int = 80, n_municipalities: int = 20, weights: bool = False,
                       seed: int = 2023) -> tuple[Any, TwoLevelTruth]:
    """Draw a clustered survey from a known two-level model (module docstring).

    Parameters
    ----------
    truth
        The parameters (default :func:`default_twolevel_truth`).
    n_clusters
        Neighbourhoods (``wijk_code`` ``W0001``...).
    min_size, max_size
        Respondents per neighbourhood, uniform in ``[min_size, max_size]``.
    n_municipalities
        Municipalities (``gemeente_code``); neighbourhoods are assigned in turn.
    weights
        Draw log-normal survey weights (SD 0.3 on the log scale); default all 1.
    seed
        Random seed.

    Returns
    -------
    (pandas.DataFrame, TwoLevelTruth)
        Columns ``respondent_id``, ``wijk_code``, ``gemeente_code``, ``weight`` and the items.

    Examples
    --------
    >>> df, truth = simulate_clustered(n_clusters=10, min_size=2, max_size=4, seed=3)
    >>> int(df["wijk_code"].nunique()), list(df.columns[:4])
    (10, ['respondent_id', 'wijk_code', 'gemeente_code', 'weight'])
    """
    import pandas as pd

    truth = truth or default_twolevel_truth()
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    rng = np.random.default_rng(seed)
    items = list(truth.item_construct)
    constructs = list(dict.fromkeys(truth.item_construct.values()))
    between = [c for c in constructs if c in truth.between]
    A_W, psi_W = _system(truth.within_links, constructs)
    A_B, psi_B = _system(truth.between_links, between)
    v = np.array([truth.between.get(c, 0.0) for c in constructs])
    vb = np.array([truth.between[c] for c in between])
    ci = np.array([constructs.index(truth.item_construct[i]) for i in items])
    lam = np.array([truth.loading[i] for i in items])
    thw = np.array([truth.theta_within[i] for i in items])
    thb = np.array([truth.theta_between[i] for i in items])
    nu = np.array([truth.intercept.get(i, 0.0) for i in items])
    sizes = rng.integers(min_size, max_size + 1, size=n_clusters)
    cl = np.repeat(np.arange(n_clusters), sizes)
    N = cl.size
    eta_b = (rng.normal(size=(n_clusters, len(between))) * np.sqrt(psi_B)) @ A_B.T * np.sqrt(vb)
    eta_b_full = np.zeros((n_clusters, len(constructs)))
    eta_b_full[:, [constructs.index(c) for c in between]] = eta_b
    y_b = lam * eta_b_full[:, ci] + rng.normal(size=(n_clusters, len(items))) * np.sqrt(thb)
    eta_w = (rng.normal(size=(N, len(constructs))) * np.sqrt(psi_W)) @ A_W.T * np.sqrt(1.0 - v)
    y = nu + y_b[cl] + lam * eta_w[:, ci] + rng.normal(size=(N, len(items))) * np.sqrt(thw)
    w = np.exp(rng.normal(0.0, 0.3, N)) if weights else np.ones(N)
    df = pd.DataFrame({"respondent_id": np.arange(1, N + 1),
                       "wijk_code": [f"W{j + 1:04d}" for j in cl],
                       "gemeente_code": [f"G{(j % n_municipalities) + 1:03d}" for j in cl],
                       "weight": w * N / w.sum()})
    for k, it in enumerate(items):
        df[it] = y[:, k]
    return df, truth
