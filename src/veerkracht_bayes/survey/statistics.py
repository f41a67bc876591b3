"""Model-ready data for the continuous path: standardised items and sufficient statistics.

The Gaussian (pseudo-)log-likelihood of the marginal structural model depends on
the data only through, per missingness pattern ``p``,

* ``W_p``   = Σ w_n,
* ``Syy_p`` = Σ w_n y_n y_nᵀ   (missing entries set to 0),
* ``Suy_p`` = Σ w_n u_n y_nᵀ   with ``u_n = [1, x_n]`` (intercept and centred covariates),
* ``Suu_p`` = Σ w_n u_n u_nᵀ,

so one log-density evaluation costs O(n_patterns · m³) whatever the number of
respondents (docs/math.md). Weights are normalised to sum to ``n`` (pseudo-likelihood).
Rows with a missing covariate cannot enter a model conditional on covariates: they
are excluded and counted (never silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from veerkracht_bayes.errors import ModelError, Problem

__all__ = ["ModelData", "PatternStats", "pattern_stats", "prepare_model_data", "model_data_from_survey",
           "SurveyColumns", "survey_columns", "weighted_mean_sd"]


@dataclass(frozen=True)
class PatternStats:
    """Sufficient statistics grouped by missingness pattern.

    Attributes
    ----------
    masks
        ``(n_patterns, m)`` boolean, True where an item is observed.
    W
        ``(n_patterns,)`` summed weights.
    Syy, Suy, Suu
        Weighted cross-products (see module docstring); missing entries are 0.
    pattern_of_row
        ``(n,)`` index of each respondent's pattern.

    Examples
    --------
    >>> import numpy as np
    >>> st = pattern_stats(np.array([[0.1, np.nan], [0.3, 0.2]]), np.ones((2, 1)), np.ones(2))
    >>> isinstance(st, PatternStats), st.masks.tolist()
    (True, [[True, False], [True, True]])
    """

    masks: np.ndarray
    W: np.ndarray
    Syy: np.ndarray
    Suy: np.ndarray
    Suu: np.ndarray
    pattern_of_row: np.ndarray

    @property
    def n_patterns(self) -> int:
        """Number of distinct missingness patterns."""
        return int(self.masks.shape[0])


def unique_patterns(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a boolean matrix and each row's index: ``np.unique(obs, axis=0)``, fast.

    Rows are packed to bits in big-endian 64-bit words, so the distinct rows come out in the
    same (lexicographic) order as ``np.unique(obs, axis=0, return_inverse=True)``, with a 1-D
    sort instead of a row sort when there are at most 64 columns (16 s -> well under 1 s for
    a million rows of 57 items).
    """
    obs = np.asarray(obs, dtype=bool)
    n, m = obs.shape
    if n == 0:
        return np.zeros((0, m), dtype=bool), np.zeros(0, dtype=np.intp)
    packed = np.packbits(obs, axis=1)
    nb = -(-packed.shape[1] // 8) * 8
    if nb != packed.shape[1]:
        packed = np.concatenate([packed, np.zeros((n, nb - packed.shape[1]), np.uint8)], axis=1)
    words = np.ascontiguousarray(packed).view(">u8")
    if words.shape[1] == 1:
        _, first, inverse = np.unique(words[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(words, axis=0, return_index=True, return_inverse=True)
    return obs[first], inverse.reshape(-1)


def pattern_stats(y: np.ndarray, u: np.ndarray, w: np.ndarray) -> PatternStats:
    """Group rows by missingness pattern of ``y`` and sum the cross-products.

    Parameters
    ----------
    y
        ``(n, m)`` item values, NaN where missing.
    u
        ``(n, q+1)`` design rows ``[1, x_n]`` (complete).
    w
        ``(n,)`` weights.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[0.1, 0.2], [0.3, np.nan], [-0.4, 0.5]])
    >>> st = pattern_stats(y, np.ones((3, 1)), np.ones(3))
    >>> st.n_patterns, st.W
    (2, array([1., 2.]))
    """
    y = np.asarray(y, dtype=float)
    u = np.asarray(u, dtype=float)
    w = np.asarray(w, dtype=float)
    obs = ~np.isnan(y)
    keys, inverse = unique_patterns(obs)
    y0 = np.where(obs, y, 0.0)
    n_pat, m = keys.shape
    q1 = u.shape[1]
    W = np.bincount(inverse, weights=w, minlength=n_pat)
    Syy = np.zeros((n_pat, m, m))
    Suy = np.zeros((n_pat, q1, m))
    Suu = np.zeros((n_pat, q1, q1))
    if n_pat == 1:  # complete data: no regrouping copy
        bounds = np.array([0, y0.shape[0]])
    else:
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(n_pat + 1))
        y0, u, w = y0[order], u[order], w[order]  # one copy; each pattern is a contiguous block
    for p in range(n_pat):
        sl = slice(bounds[p], bounds[p + 1])
        wy = y0[sl] * w[sl, None]
        Syy[p] = y0[sl].T @ wy
        Suy[p] = u[sl].T @ wy
        Suu[p] = u[sl].T @ (u[sl] * w[sl, None])
    return PatternStats(keys.astype(bool), W, Syy, Suy, Suu, inverse)


@dataclass(frozen=True)
class ModelData:
    """Everything the continuous-path model needs from a survey, in model order.

    Attributes
    ----------
    item_names
        Item (column) names, length ``m``.
    item_construct
        Graph node of each item.
    y
        ``(n, m)`` standardised items (weighted mean 0, sd 1; NaN missing).
    item_center, item_scale
        Weighted mean and sd used to standardise (to map back to native units).
    x_names
        Observed exogenous nodes used as fixed covariates (conditioned on).
    x
        ``(n, q)`` centred covariate values.
    x_mean
        Weighted means removed from ``x``.
    weights
        ``(n,)`` normalised to sum to ``n``.
    stats
        :class:`PatternStats` of ``y`` given ``u = [1, x]``.
    n_excluded, exclusion_reasons
        Rows not used and why.
    data_hash
        Hash of the source data (provenance).

    Examples
    --------
    >>> import numpy as np
    >>> md = prepare_model_data(np.random.default_rng(0).normal(size=(50, 2)), ["a1", "b1"], ["a", "b"])
    >>> isinstance(md, ModelData), md.stats.n_patterns
    (True, 1)
    """

    item_names: tuple[str, ...]
    item_construct: tuple[str, ...]
    y: np.ndarray
    item_center: np.ndarray
    item_scale: np.ndarray
    x_names: tuple[str, ...]
    x: np.ndarray
    x_mean: np.ndarray
    weights: np.ndarray
    stats: PatternStats
    n_excluded: int = 0
    exclusion_reasons: dict[str, int] = field(default_factory=dict)
    data_hash: str | None = None
    source: str | None = None
    missing_method: str = "complete"
    missing_information: float = 0.0
    n_patterns: int = 1

    @property
    def n(self) -> int:
        """Number of respondents used."""
        return int(self.y.shape[0])

    @property
    def constructs(self) -> list[str]:
        """Observed constructs (nodes with at least one item), in first-item order."""
        return list(dict.fromkeys(self.item_construct))

    @property
    def x_cov(self) -> np.ndarray:
        """Weighted covariance matrix of the covariates (``(q, q)``)."""
        if not self.x_names:
            return np.zeros((0, 0))
        w = self.weights / self.weights.sum()
        return (self.x * w[:, None]).T @ self.x


def weighted_mean_sd(col: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean and standard deviation (divisor: the sum of weights) of the observed values.

    Examples
    --------
    >>> import numpy as np
    >>> weighted_mean_sd(np.array([1.0, 3.0, np.nan]), np.array([1.0, 1.0, 5.0]))
    (2.0, 1.0)
    """
    ok = ~np.isnan(col)
    ww = w[ok]
    mu = float(np.sum(ww * col[ok]) / np.sum(ww))
    var = float(np.sum(ww * (col[ok] - mu) ** 2) / np.sum(ww))
    return mu, float(np.sqrt(var))


def prepare_model_data(
    items: np.ndarray,
    item_names: Sequence[str],
    item_construct: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
    covariate_names: Sequence[str] = (),
    data_hash: str | None = None,
    source: str | None = None,
    missing: str = "auto",
    max_fiml_patterns: int = 200,
) -> ModelData:
    """Standardise items, centre covariates and compute pattern sufficient statistics.

    Parameters
    ----------
    items
        ``(n, m)`` numeric item scores with reverse coding applied, NaN for missing.
    item_names, item_construct
        Column name and graph node of each item.
    weights
        Survey weights (any positive scale; normalised here to sum to ``n``).
    covariates
        ``(n, q)`` values of observed exogenous nodes (complete rows are required; rows
        with a missing covariate are excluded and counted).
    covariate_names
        Graph node of each covariate column.
    missing
        ``"fiml"`` (exact per-pattern statistics), ``"two_stage"`` (EM-expected complete-data
        statistics; see :mod:`veerkracht_bayes.survey.missing_data`) or ``"auto"``: exact when there
        are at most ``max_fiml_patterns`` patterns.

    Raises
    ------
    ModelError
        If an item has no observed value or no variance, or shapes disagree.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).normal(size=(100, 3))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1"], ["a", "a", "b"])
    >>> md.n, md.item_names
    (100, ('a1', 'a2', 'b1'))
    """
    y = np.array(items, dtype=float, copy=True)
    n, m = y.shape
    if len(item_names) != m or len(item_construct) != m:
        raise ModelError("item_names and item_construct must have one entry per item column")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).copy()
    x = np.zeros((n, 0)) if covariates is None else np.array(covariates, dtype=float, copy=True)
    if x.ndim == 1:
        x = x[:, None]
    reasons: dict[str, int] = {}
    keep = np.ones(n, dtype=bool)
    if x.shape[1]:
        bad = np.isnan(x).any(axis=1)
        if bad.any():
            reasons["missing covariate (" + ", ".join(covariate_names) + ")"] = int(bad.sum())
            keep &= ~bad
    all_missing = np.isnan(y).all(axis=1)
    if all_missing.any():
        reasons["no item observed"] = int((all_missing & keep).sum())
        keep &= ~all_missing
    if not keep.all():
        y, x, w = y[keep], x[keep], w[keep]
    n_used = y.shape[0]
    if n_used == 0:
        raise ModelError("no respondent has both items and covariates observed")
    w = w * (n_used / w.sum())
    center = np.zeros(m)
    scale = np.ones(m)
    problems = []
    obs = ~np.isnan(y)
    w_obs = w @ obs  # summed weight of the respondents who answered each item
    y0 = np.where(obs, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_all = (w @ y0) / w_obs
        y0 -= mu_all  # in place: deviations, zeroed where missing, squared
        y0 *= obs
        y0 *= y0
        var_all = (w @ y0) / w_obs
    del y0
    for j in range(m):
        if not w_obs[j] > 0:
            problems.append(Problem(f"item {item_names[j]!r} has no observed value",
                                    field=item_names[j]))
            continue
        mu, sd = float(mu_all[j]), float(np.sqrt(max(var_all[j], 0.0)))
        if not sd > 1e-12 * max(1.0, abs(mu)):
            problems.append(Problem(f"item {item_names[j]!r} has no variance (every value {mu:g})",
                                    field=item_names[j]))
            continue
        center[j], scale[j] = mu, sd
    if problems:
        raise ModelError(problems)
    y -= center
    y /= scale
    x_mean = (w @ x) / w.sum() if x.shape[1] else np.zeros(0)
    x = x - x_mean
    u = np.concatenate([np.ones((n_used, 1)), x], axis=1)
    n_pat = int(unique_patterns(obs)[0].shape[0])
    if missing not in ("auto", "fiml", "two_stage"):
        raise ModelError(f"missing must be 'auto', 'fiml' or 'two_stage', got {missing!r}")
    if n_pat == 1 and obs.all():
        method = "complete"
    elif missing == "fiml" or (missing == "auto" and n_pat <= max_fiml_patterns):
        method = "fiml"
    else:
        method = "two_stage"
    info = 0.0
    if method == "two_stage":
        from veerkracht_bayes.survey.missing_data import em_saturated

        em = em_saturated(y, u, w)
        info = em.missing_information
        stats = PatternStats(np.ones((1, m), dtype=bool), np.array([em.W]), em.Syy[None],
                             em.Suy[None], em.Suu[None], np.zeros(n_used, dtype=np.int64))
    else:
        stats = pattern_stats(y, u, w)
    return ModelData(
        item_names=tuple(item_names), item_construct=tuple(item_construct), y=y,
        item_center=center, item_scale=scale, x_names=tuple(covariate_names), x=x,
        x_mean=x_mean, weights=w, stats=stats, n_excluded=int((~keep).sum()),
        exclusion_reasons=reasons, data_hash=data_hash, source=source,
        missing_method=method, missing_information=info, n_patterns=n_pat,
    )


@dataclass(frozen=True)
class SurveyColumns:
    """A survey's item columns split into covariates and items (:func:`survey_columns`).

    Attributes
    ----------
    values
        ``(n, k)`` every item column, reverse-coded (``SurveyData.item_matrix(reverse=True)``).
    columns
        The column names, in the order of ``values``.
    column_node
        The node each column measures.
    covariates
        The covariate nodes.
    x
        ``(n, q)`` the covariates, coded: binary ones 0/1, the others standardised (weighted).
    weights
        The survey weights.

    Examples
    --------
    >>> import pandas as pd
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import shipped_path
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> g = vb.load_graph("marvel")
    >>> sc = survey_columns(vb.read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph=g), g)
    >>> isinstance(sc, SurveyColumns), sc.values.shape == (len(sc.weights), len(sc.columns))
    (True, True)
    """

    values: np.ndarray
    columns: list[str]
    column_node: dict[str, str]
    covariates: list[str]
    x: np.ndarray
    weights: np.ndarray

    @property
    def item_positions(self) -> list[int]:
        """Positions (in ``columns``) of the columns that are not covariates."""
        return [j for j, c in enumerate(self.columns) if self.column_node[c] not in self.covariates]


def survey_columns(survey: object, graph: object, covariates: Sequence[str] | None = None) -> SurveyColumns:
    """Choose and code the covariates of a survey, as every model path does.

    Observed exogenous nodes (no parents, role ``exogenous``, exactly one item) are the
    covariates unless ``covariates`` names them. Binary covariates stay 0/1; the others are
    standardised with the survey weights. Shared by :func:`model_data_from_survey`, the ordinal
    path and the multi-group model.

    Raises
    ------
    ModelError
        A named covariate node has no item in the codebook.

    Examples
    --------
    >>> import veerkracht_bayes as vb
    >>> from veerkracht_bayes.resources import shipped_path
    >>> g = vb.load_graph("marvel")
    >>> s = vb.read_survey(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"),
    ...                    shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph=g)
    >>> sc = survey_columns(s, g)
    >>> sc.x.shape == (len(sc.weights), len(sc.covariates)), len(sc.item_positions) < len(sc.columns)
    (True, True)
    """
    y_all, cols = survey.item_matrix(reverse=True)
    constructs = survey.constructs
    col_node = {c: node for node, items in constructs.items() for c in items}
    if covariates is None:
        covariates = [node for node, items in constructs.items()
                      if graph.has_node(node) and not graph.parents(node)
                      and graph.node(node).role == "exogenous" and len(items) == 1]
    covariates = list(covariates)
    w = survey.weights
    xcols = []
    for node in covariates:
        if node not in constructs:
            raise ModelError(Problem(f"covariate node {node!r} has no item in the codebook", field=node))
        j = cols.index(constructs[node][0])
        v = y_all[:, j].copy()
        vals = np.unique(v[~np.isnan(v)])
        if not set(vals.tolist()) <= {0.0, 1.0}:
            mu, sd = weighted_mean_sd(v, w)
            v = (v - mu) / sd
        xcols.append(v)
    x = np.column_stack(xcols) if xcols else np.zeros((len(w), 0))
    return SurveyColumns(y_all, list(cols), col_node, covariates, x, w)


def model_data_from_survey(survey: object, graph: object, *, covariates: Sequence[str] | None = None,
                           missing: str = "auto") -> ModelData:
    """Model-ready data from a validated :class:`~veerkracht_bayes.survey.reading.SurveyData`.

    Observed exogenous nodes (no parents, role ``exogenous``, exactly one item) become
    covariates ``x`` unless ``covariates`` says otherwise. Binary covariates stay 0/1
    (their coefficient is the SD change of the target per unit, like Cohen's d);
    other covariates are standardised (weighted), so their coefficients are standardised
    betas. All other items are returned reverse-coded for :func:`prepare_model_data`.

    Parameters
    ----------
    survey
        A SurveyData.
    graph
        The CausalGraph whose nodes the codebook maps onto.
    covariates
        Explicit list of covariate nodes (default: inferred as above).

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> from veerkracht_bayes.resources import shipped_path
    >>> from veerkracht_bayes.survey.reading import read_survey
    >>> g = load_graph("marvel")
    >>> df = pd.read_csv(shipped_path("data", "synthetic", "veerkracht_synthetic.csv.gz"), nrows=200)
    >>> survey = read_survey(df, shipped_path("data", "synthetic", "codebook_synthetic.yaml"), graph=g)
    >>> md = model_data_from_survey(survey, g)
    >>> md.n, md.x_names
    (200, ('adverse_life_events', 'single_parent_household'))
    """
    sc = survey_columns(survey, graph, covariates)
    keep = sc.item_positions
    return prepare_model_data(
        sc.values[:, keep], [sc.columns[j] for j in keep], [sc.column_node[sc.columns[j]] for j in keep],
        weights=sc.weights, covariates=sc.x if sc.covariates else None, covariate_names=sc.covariates,
        data_hash=survey.sha256, source=str(survey.source), missing=missing,
    )
