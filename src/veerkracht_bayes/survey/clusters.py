"""Per-cluster sufficient statistics of item scores (respondents nested in neighbourhoods).

Two-level models (:mod:`veerkracht_bayes.sem.twolevel`) and design effects need, per survey,
only these aggregates of the item scores ``y_ij`` (respondent ``i`` in cluster ``j``, ``p`` items):

- cluster sizes ``n_j`` (respondents) and weighted sizes ``w_j = sum_i w_ij``;
- the pooled within-cluster covariance ``S_PW = sum_j sum_i w~_ij (y_ij - ybar_j)(y_ij - ybar_j)' / (N - J)``
  with the level-1 weights scaled within each cluster to sum to its size (``w~_ij = n_j w_ij / w_j``;
  all ones without weights) and ``ybar_j`` the weighted cluster mean;
- the between covariance of the cluster means ``S_B = sum_j n_j (ybar_j - ybar)(ybar_j - ybar)' / (J - 1)``
  (Muthen's ``S_B``; ``ybar`` the size-weighted grand mean);
- for the exact two-level likelihood, the clusters grouped by size: per distinct size ``n`` the
  number of clusters ``k_n``, the mean of their cluster means ``m_n`` and the scatter
  ``C_n = sum_{j: n_j = n} (ybar_j - m_n)(ybar_j - m_n)'``. Grouping by size loses nothing:
  the per-cluster normal log-likelihood depends on the cluster means only through these.

From them come the ANOVA estimates per item:

- ``c = (N - sum_j n_j^2 / N) / (J - 1)`` (the "average" cluster size of one-way ANOVA),
  ``Sigma_B_hat = (S_B - S_PW) / c``, and the intraclass correlation
  ``ICC = Sigma_B_hat_kk / (Sigma_B_hat_kk + S_PW_kk)`` (it can be slightly negative when the
  clusters differ less than chance; it is reported as estimated, not clipped);
- Kish's design effect of the weights ``deff_w = N sum w^2 / (sum w)^2``;
- the clustering design effect ``deff_c = 1 + (m_bar - 1) ICC`` with the *weighted* mean cluster
  size of Gabler, Haeder and Lahiri (1999), ``m_bar = sum_j (sum_i w_ij)^2 / sum_ij w_ij^2``
  (equal weights: ``sum_j n_j^2 / N``, the size-weighted mean cluster size, which equals the
  cluster size when all clusters have the same size); the plain mean ``N / J`` is reported too;
- the overall design effect ``deff = deff_w * deff_c`` (Gabler et al.'s model-based product).

No microdata leave this module through :meth:`ClusterStatistics.summary`: counts, sizes, ICCs and
design effects only. (The size-class means are aggregates needed by the likelihood; a size class
of one cluster of one respondent would hold one respondent's answers, which is why the summary
never includes them.) Clusters smaller than ``min_cluster_size`` are listed in the summary, not
silently dropped; ``drop_small=True`` drops them and counts the respondents in the exclusions.

Rows with a missing item are excluded (the two-level likelihood here needs complete item
vectors) and counted per reason.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> cl = np.repeat(np.arange(30), 6)
>>> y = rng.normal(size=(30, 1))[cl] * 0.5 + rng.normal(size=(180, 2))
>>> cs = cluster_statistics(y, cl, item_names=["q1", "q2"])
>>> cs.n, cs.n_clusters, cs.sizes.tolist()
(180, 30, [6])
>>> bool(cs.icc[0] > 0.05)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veerkracht_bayes.errors import Problem, SurveyError

__all__ = [
    "ClusterStatistics",
    "cluster_statistics",
    "cluster_statistics_from_survey",
    "clustering_design_effect",
    "kish_design_effect",
    "weighted_mean_cluster_size",
]


def kish_design_effect(weights: np.ndarray) -> float:
    """Kish's design effect of unequal weights ``n sum w^2 / (sum w)^2``.

    Examples
    --------
    >>> kish_design_effect(np.array([1.0, 1.0, 2.0, 2.0]))
    1.1111111111111112
    """
    w = np.asarray(weights, dtype=float)
    return float(w.size * np.sum(w * w) / np.sum(w) ** 2)


def weighted_mean_cluster_size(weights: np.ndarray, cluster_index: np.ndarray) -> float:
    """Gabler-Haeder-Lahiri weighted mean cluster size ``sum_j (sum_i w_ij)^2 / sum_ij w_ij^2``.

    With equal weights this is ``sum_j n_j^2 / N``.

    Examples
    --------
    >>> weighted_mean_cluster_size(np.ones(6), np.array([0, 0, 0, 0, 1, 1]))
    3.3333333333333335
    """
    w = np.asarray(weights, dtype=float)
    idx = np.asarray(cluster_index, dtype=int)
    wj = np.bincount(idx, weights=w)
    return float(np.sum(wj * wj) / np.sum(w * w))


def clustering_design_effect(icc: np.ndarray | float, mean_cluster_size: float) -> np.ndarray:
    """``1 + (m_bar - 1) ICC`` (elementwise over items).

    Examples
    --------
    >>> clustering_design_effect(np.array([0.0, 0.05]), 11.0).tolist()
    [1.0, 1.5]
    """
    return 1.0 + (float(mean_cluster_size) - 1.0) * np.asarray(icc, dtype=float)


@dataclass(frozen=True)
class ClusterStatistics:
    """Per-cluster sufficient statistics of item scores; build with :func:`cluster_statistics`.

    Attributes
    ----------
    item_names
        The ``p`` items.
    n, n_clusters
        Respondents ``N`` and clusters ``J`` used.
    sizes, counts
        Distinct cluster sizes ``n`` (ascending) and the number of clusters ``k_n`` of each.
    class_means, class_scatter
        ``(K, p)`` mean of the cluster means per size class and ``(K, p, p)`` their scatter ``C_n``.
    S_PW, S_B
        Pooled within covariance and between covariance (module docstring).
    grand_mean
        ``(p,)`` size-weighted mean of the cluster means.
    center, scale
        ``(p,)`` the weighted mean and SD each item was standardised with (zeros and ones when
        ``standardise=False``); statistics are on the standardised scale.
    icc, sigma_b_hat
        ANOVA intraclass correlation per item and the moment estimate of ``Sigma_B``.
    anova_c
        The ANOVA cluster size ``c``.
    mean_cluster_size, weighted_mean_cluster_size
        ``N / J`` and Gabler et al.'s ``m_bar``.
    deff_weights, deff_cluster, deff
        Kish's weight design effect, the clustering design effect per item and their product.
    cluster_sizes, cluster_weighted_sizes
        Respondents and sum of weights per cluster (label -> number).
    small_clusters
        ``(label, size)`` of clusters below ``min_cluster_size`` (kept unless dropped).
    min_cluster_size, dropped_small
        The threshold and whether small clusters were dropped.
    n_excluded, exclusion_reasons
        Rows left out and why.
    cluster_column, source
        Where the clusters came from.

    Examples
    --------
    >>> import numpy as np
    >>> cs = cluster_statistics(np.random.default_rng(2).normal(size=(20, 2)), np.repeat(range(5), 4))
    >>> cs.p, cs.n_clusters, cs.S_PW.shape
    (2, 5, (2, 2))
    """

    item_names: tuple[str, ...]
    n: int
    n_clusters: int
    sizes: np.ndarray
    counts: np.ndarray
    class_means: np.ndarray = field(repr=False)
    class_scatter: np.ndarray = field(repr=False)
    S_PW: np.ndarray = field(repr=False)
    S_B: np.ndarray = field(repr=False)
    grand_mean: np.ndarray = field(repr=False)
    center: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)
    icc: np.ndarray = field(repr=False)
    sigma_b_hat: np.ndarray = field(repr=False)
    anova_c: float = 0.0
    mean_cluster_size: float = 0.0
    weighted_mean_cluster_size: float = 0.0
    deff_weights: float = 1.0
    deff_cluster: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    deff: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    cluster_sizes: dict[str, int] = field(default_factory=dict, repr=False)
    cluster_weighted_sizes: dict[str, float] = field(default_factory=dict, repr=False)
    small_clusters: tuple[tuple[str, int], ...] = ()
    min_cluster_size: int = 2
    dropped_small: bool = False
    n_excluded: int = 0
    exclusion_reasons: dict[str, int] = field(default_factory=dict)
    cluster_column: str | None = None
    source: str | None = None

    @property
    def p(self) -> int:
        """Number of items."""
        return len(self.item_names)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, sizes, ICCs and design effects (no microdata).

        Examples
        --------
        >>> import numpy as np
        >>> cs = cluster_statistics(np.random.default_rng(1).normal(size=(40, 1)), np.repeat(range(10), 4))
        >>> cs.summary()['n_clusters'], sorted(cs.summary())[:3]
        (10, ['anova_cluster_size', 'cluster_column', 'deff'])
        """
        return {
            "cluster_column": self.cluster_column,
            "source": self.source,
            "n_respondents": int(self.n),
            "n_clusters": int(self.n_clusters),
            "n_excluded": int(self.n_excluded),
            "exclusion_reasons": {k: int(v) for k, v in self.exclusion_reasons.items()},
            "size_classes": [{"size": int(s), "clusters": int(k)} for s, k in zip(self.sizes, self.counts)],
            "mean_cluster_size": float(self.mean_cluster_size),
            "weighted_mean_cluster_size": float(self.weighted_mean_cluster_size),
            "mean_cluster_size_definition": "Gabler-Haeder-Lahiri: sum_j (sum_i w_ij)^2 / sum_ij w_ij^2",
            "anova_cluster_size": float(self.anova_c),
            "deff_weights": float(self.deff_weights),
            "items": [{"item": it, "icc": float(self.icc[k]), "deff_cluster": float(self.deff_cluster[k]),
                       "deff": float(self.deff[k])} for k, it in enumerate(self.item_names)],
            "deff_cluster": {it: float(v) for it, v in zip(self.item_names, self.deff_cluster)},
            "deff": {it: float(v) for it, v in zip(self.item_names, self.deff)},
            "min_cluster_size": int(self.min_cluster_size),
            "small_clusters": [{"cluster": c, "size": int(s)} for c, s in self.small_clusters],
            "small_clusters_dropped": bool(self.dropped_small),
        }


def _label(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return None
        if float(v).is_integer():
            return str(int(v))
    s = str(v).strip()
    return s or None


def cluster_statistics(items: np.ndarray, clusters: Sequence[object], weights: np.ndarray | None = None, *,
                       item_names: Sequence[str] | None = None, min_cluster_size: int = 2,
                       drop_small: bool = False, standardise: bool = True,
                       cluster_column: str | None = None, source: str | None = None,
                       rows: Sequence[int] | None = None) -> ClusterStatistics:
    """Per-cluster sufficient statistics, ICCs and design effects of item scores.

    Parameters
    ----------
    items
        ``(N, p)`` item scores (NaN = missing; rows with a missing item are excluded and counted).
    clusters
        One cluster label per row. A missing or blank label is an error naming the rows.
    weights
        Survey weights per row (default equal). Scaled within each cluster to sum to its size for
        the within statistics (module docstring); used as given for the design effects.
    item_names
        Names of the items (default ``y1..yp``).
    min_cluster_size
        Clusters with fewer respondents are listed in ``small_clusters``.
    drop_small
        Drop those clusters (their respondents are counted as excluded) instead of keeping them.
    standardise
        Standardise each item by its weighted mean and SD first (the model's priors assume it).
    cluster_column, source
        Names for messages and the summary.
    rows
        1-based source row of each row (for located errors; default ``1..N``).

    Returns
    -------
    ClusterStatistics

    Raises
    ------
    SurveyError
        Blank cluster labels (first rows named), wrong shapes, fewer than 2 clusters, or
        non-positive weights.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0], [2.0], [3.0], [5.0], [6.0], [10.0]])
    >>> cs = cluster_statistics(y, ["a", "a", "b", "b", "c", "c"], standardise=False)
    >>> cs.S_PW.round(3).tolist(), cs.counts.tolist()
    ([[3.5]], [3])
    """
    y = np.asarray(items, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    N0, p = y.shape
    names = tuple(item_names) if item_names is not None else tuple(f"y{k + 1}" for k in range(p))
    col = cluster_column or "cluster"
    if len(names) != p:
        raise SurveyError(Problem(f"{len(names)} item names for {p} item columns", file=source, field="item_names"))
    labs_in = list(clusters)
    if len(labs_in) != N0:
        raise SurveyError(Problem(f"{len(labs_in)} cluster labels for {N0} rows (expected one per row)",
                                  file=source, field=col))
    src_rows = np.arange(1, N0 + 1) if rows is None else np.asarray(rows, dtype=int)
    labs = [_label(v) for v in labs_in]
    blank = [i for i, v in enumerate(labs) if v is None]
    if blank:
        shown = ", ".join(str(int(src_rows[i])) for i in blank[:5])
        more = f" and {len(blank) - 5} more" if len(blank) > 5 else ""
        raise SurveyError(Problem(f"{len(blank)} rows have a missing or blank cluster label in column {col!r} "
                                  f"(rows {shown}{more}); every respondent needs a cluster (expected a "
                                  "neighbourhood code)", file=source, line=int(src_rows[blank[0]]),
                                  location=f"column {col!r}", field=col, value=labs_in[blank[0]]))
    w = np.ones(N0) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    if w.shape[0] != N0:
        raise SurveyError(Problem(f"{w.shape[0]} weights for {N0} rows", file=source, field="weights"))
    bad_w = np.flatnonzero(~(w > 0) | ~np.isfinite(w))
    if bad_w.size:
        raise SurveyError(Problem(f"weights must be positive and finite; row {int(src_rows[bad_w[0]])} has "
                                  f"{w[bad_w[0]]!r}", file=source, line=int(src_rows[bad_w[0]]), field="weights",
                                  value=float(w[bad_w[0]])))
    reasons: dict[str, int] = {}
    keep = ~np.isnan(y).any(axis=1)
    if (~keep).any():
        reasons["missing item"] = int((~keep).sum())
    lab_arr = np.asarray(labs, dtype=object)
    # cluster sizes before dropping (after item exclusions)
    uniq, inv = np.unique(lab_arr[keep].astype(str), return_inverse=True)
    n_j0 = np.bincount(inv, minlength=len(uniq))
    small = tuple((str(uniq[j]), int(n_j0[j])) for j in np.flatnonzero(n_j0 < min_cluster_size))
    if drop_small and small:
        small_set = {c for c, _ in small}
        drop = keep & np.array([v in small_set for v in lab_arr.astype(str)])
        reasons["cluster below min_cluster_size"] = int(drop.sum())
        keep &= ~drop
    y, w, lab_arr = y[keep], w[keep], lab_arr[keep].astype(str)
    N = y.shape[0]
    uniq, idx = np.unique(lab_arr, return_inverse=True)
    J = len(uniq)
    if J < 2:
        raise SurveyError(Problem(f"{J} cluster(s) with complete item data; a two-level analysis needs at least 2",
                                  file=source, field=col))
    if standardise:
        center = (w @ y) / w.sum()
        scale = np.sqrt((w @ (y - center) ** 2) / w.sum())
        scale = np.where(scale > 0, scale, 1.0)
        y = (y - center) / scale
    else:
        center, scale = np.zeros(p), np.ones(p)
    n_j = np.bincount(idx, minlength=J).astype(float)
    w_j = np.bincount(idx, weights=w, minlength=J)
    wt = w * (n_j / w_j)[idx]  # level-1 weights scaled to the cluster size
    ybar = np.zeros((J, p))
    np.add.at(ybar, idx, wt[:, None] * y)
    ybar /= n_j[:, None]
    r = y - ybar[idx]
    S_PW = (r * wt[:, None]).T @ r / max(N - J, 1)
    gm = (n_j @ ybar) / N
    d = ybar - gm
    S_B = (d * n_j[:, None]).T @ d / (J - 1)
    c = (N - np.sum(n_j ** 2) / N) / (J - 1)
    sig_b = (S_B - S_PW) / c
    icc = np.diag(sig_b) / (np.diag(sig_b) + np.diag(S_PW))
    sizes = np.unique(n_j).astype(int)
    counts = np.array([int(np.sum(n_j == s)) for s in sizes], dtype=int)
    cm = np.zeros((len(sizes), p))
    cs = np.zeros((len(sizes), p, p))
    for k, s in enumerate(sizes):
        sel = ybar[n_j == s]
        cm[k] = sel.mean(axis=0)
        e = sel - cm[k]
        cs[k] = e.T @ e
    mbar_w = weighted_mean_cluster_size(w, idx)
    deff_w = kish_design_effect(w)
    deff_c = clustering_design_effect(icc, mbar_w)
    return ClusterStatistics(
        item_names=names, n=int(N), n_clusters=int(J), sizes=sizes, counts=counts, class_means=cm,
        class_scatter=cs, S_PW=S_PW, S_B=S_B, grand_mean=gm, center=np.asarray(center), scale=np.asarray(scale),
        icc=icc, sigma_b_hat=sig_b, anova_c=float(c), mean_cluster_size=float(N / J),
        weighted_mean_cluster_size=mbar_w, deff_weights=deff_w, deff_cluster=deff_c, deff=deff_w * deff_c,
        cluster_sizes={str(u): int(n) for u, n in zip(uniq, n_j)},
        cluster_weighted_sizes={str(u): float(x) for u, x in zip(uniq, w_j)},
        small_clusters=small, min_cluster_size=int(min_cluster_size), dropped_small=bool(drop_small and small),
        n_excluded=int(N0 - N), exclusion_reasons=reasons, cluster_column=cluster_column, source=source)


def cluster_statistics_from_survey(survey: Any, cluster_column: str = "wijk_code", *,
                                   constructs: Sequence[str] | None = None, **kwargs: Any
                                   ) -> tuple[ClusterStatistics, dict[str, str]]:
    """:func:`cluster_statistics` of a validated survey's items (reverse-coded), clustered by a column.

    Parameters
    ----------
    survey
        A :class:`~veerkracht_bayes.survey.reading.SurveyData`.
    cluster_column
        The cluster column (default ``wijk_code``, the neighbourhood); must be in the survey.
    constructs
        Constructs whose items to use (default: every construct with at least one item).
    **kwargs
        Passed to :func:`cluster_statistics`.

    Returns
    -------
    (ClusterStatistics, dict)
        The statistics and the construct of each item.

    Raises
    ------
    SurveyError
        The column is absent (did-you-mean) or has blank values (rows named), or a construct has
        no items.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import shipped_path
    >>> d = shipped_path("data", "synthetic")
    >>> survey = vb.read_survey(d / "veerkracht_synthetic.csv.gz", d / "codebook_synthetic.yaml")
    >>> cs, ic = cluster_statistics_from_survey(survey, "wijk_code", constructs=["neighbourhood_trust"])
    >>> cs.n_clusters, sorted(set(ic.values()))
    (200, ['neighbourhood_trust'])
    """
    from veerkracht_bayes.errors import did_you_mean

    df = survey.data
    src = str(survey.source)
    if cluster_column not in df.columns:
        known = [str(c) for c in df.columns]
        raise SurveyError(Problem(f"cluster column {cluster_column!r} is not in the survey"
                                  f"{did_you_mean(cluster_column, known)} (expected a neighbourhood code column, "
                                  "e.g. the codebook's group_columns)", file=src, location=f"column {cluster_column!r}",
                                  field=cluster_column, value=cluster_column))
    y_all, cols = survey.item_matrix(reverse=True)
    cmap = survey.constructs
    wanted = list(cmap) if constructs is None else list(constructs)
    item_construct: dict[str, str] = {}
    for c in wanted:
        if c not in cmap:
            raise SurveyError(Problem(f"construct {c!r} has no items in the codebook{did_you_mean(c, list(cmap))}",
                                      file=src, field="constructs", value=c))
        for it in cmap[c]:
            item_construct[it] = c
    sel = [cols.index(it) for it in item_construct]
    rows = getattr(survey, "source_rows", None)
    rows = rows if rows is not None and len(rows) == len(df) else None
    cs = cluster_statistics(y_all[:, sel], df[cluster_column].tolist(), survey.weights,
                            item_names=list(item_construct), cluster_column=cluster_column, source=src,
                            rows=rows, **kwargs)
    return cs, item_construct
