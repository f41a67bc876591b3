"""Scale handling: reverse coding, ordinal codes, weighted standardisation, construct scores.

All functions are pure (they return new arrays) and treat ``NaN`` as missing.

Conventions
-----------
* Reverse coding maps ``x`` to ``(lo + hi) - x`` on the item's valid range, so that
  after reversal a higher value always means *more* of the construct.
* Ordinal codes are ``0 .. k-1`` (``k`` = number of categories), ``-1`` for missing.
* Weighted standardisation uses weights normalised to sum to the number of observed
  values, the weighted mean and the weighted (population, ``ddof=0``) standard deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "reverse_code",
    "ordinal_codes",
    "weighted_mean_sd",
    "standardise",
    "construct_scores",
]


def reverse_code(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reverse-code values on the range ``[lo, hi]``: ``(lo + hi) - x``.

    Parameters
    ----------
    x
        Values (``NaN`` = missing, kept).
    lo, hi
        The item's valid minimum and maximum.

    Returns
    -------
    np.ndarray
        Float array of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> reverse_code(np.array([1.0, 2.0, 5.0]), 1, 5)
    array([5., 4., 1.])
    """
    return (float(lo) + float(hi)) - np.asarray(x, dtype=float)


def ordinal_codes(x: np.ndarray, lo: float, k: int) -> np.ndarray:
    """Integer category codes ``0..k-1`` for Likert values ``lo..lo+k-1``; ``-1`` for missing.

    Parameters
    ----------
    x
        Likert responses (``NaN`` = missing); must be integers in ``[lo, lo + k - 1]``.
    lo
        The value of the lowest category.
    k
        Number of categories.

    Raises
    ------
    ValueError
        If an observed value is not an integer category in range.

    Examples
    --------
    >>> import numpy as np
    >>> ordinal_codes(np.array([1.0, 3.0, np.nan, 5.0]), 1, 5)
    array([ 0,  2, -1,  4])
    """
    x = np.asarray(x, dtype=float)
    obs = ~np.isnan(x)
    c = x[obs] - float(lo)
    if np.any(c != np.round(c)) or np.any(c < 0) or np.any(c > k - 1):
        bad = x[obs][(c != np.round(c)) | (c < 0) | (c > k - 1)][0]
        raise ValueError(f"value {bad:g} is not one of the {k} categories {lo:g}..{lo + k - 1:g}")
    out = np.full(x.shape, -1, dtype=np.int64)
    out[obs] = c.astype(np.int64)
    return out


def weighted_mean_sd(x: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted mean and standard deviation (``ddof=0``) over the non-missing values.

    Returns ``(nan, nan)`` when no value is observed.

    Examples
    --------
    >>> import numpy as np
    >>> m, s = weighted_mean_sd(np.array([1.0, 2.0, 3.0, np.nan]), np.array([1.0, 1.0, 2.0, 1.0]))
    >>> round(m, 4), round(s, 4)
    (2.25, 0.8292)
    """
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    obs = ~np.isnan(x)
    if not obs.any() or w[obs].sum() <= 0:
        return float("nan"), float("nan")
    xo, wo = x[obs], w[obs]
    m = float(np.sum(wo * xo) / np.sum(wo))
    v = float(np.sum(wo * (xo - m) ** 2) / np.sum(wo))
    return m, float(np.sqrt(v))


def standardise(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Standardise columns to weighted mean 0 and weighted sd 1 (``NaN`` kept).

    Parameters
    ----------
    x
        A vector or an ``(n, p)`` matrix.
    weights
        Respondent weights of length ``n`` (any positive scale); ``None`` = equal weights.

    Returns
    -------
    np.ndarray
        Standardised copy; a constant column becomes all zeros (sd taken as 1).

    Examples
    --------
    >>> import numpy as np
    >>> z = standardise(np.array([1.0, 2.0, 3.0]))
    >>> z.round(4)
    array([-1.2247,  0.    ,  1.2247])
    """
    x = np.asarray(x, dtype=float)
    one = x.ndim == 1
    m = x[:, None] if one else x
    out = np.empty_like(m)
    for j in range(m.shape[1]):
        mu, sd = weighted_mean_sd(m[:, j], weights)
        out[:, j] = (m[:, j] - mu) / (sd if sd > 0 else 1.0)
    return out[:, 0] if one else out


def construct_scores(
    items: np.ndarray,
    columns: Sequence[str],
    constructs: Mapping[str, Sequence[str]],
    weights: np.ndarray | None = None,
    *,
    method: str = "mean",
    standardise_items: bool = True,
    min_items: int = 1,
) -> dict[str, np.ndarray]:
    """Per-respondent construct scores from an item matrix (the continuous path).

    Parameters
    ----------
    items
        ``(n, p)`` item matrix (already reverse-coded; ``NaN`` = missing).
    columns
        The ``p`` column names of ``items``.
    constructs
        Construct -> its item columns.
    weights
        Respondent weights (for the weighted standardisation).
    method
        ``"mean"``: mean of the observed items; ``"sum"``: mean times the number of
        items (a sum score prorated over missing items).
    standardise_items
        Standardise each item (weighted) before averaging.
    min_items
        A respondent with fewer observed items of the construct gets ``NaN``.

    Returns
    -------
    dict[str, np.ndarray]
        Construct -> score vector of length ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> items = np.array([[1.0, 2.0, 5.0], [3.0, 4.0, 1.0], [5.0, 3.0, 3.0]])
    >>> scores = construct_scores(items, ["a1", "a2", "b1"], {"a": ["a1", "a2"], "b": ["b1"]})
    >>> sorted(scores), scores["b"].shape
    (['a', 'b'], (3,))
    """
    if method not in ("mean", "sum"):
        raise ValueError(f"method must be 'mean' or 'sum', got {method!r}")
    x = np.asarray(items, dtype=float)
    if standardise_items:
        x = standardise(x, weights)
    pos = {c: i for i, c in enumerate(columns)}
    out = {}
    for name, cols in constructs.items():
        missing = [c for c in cols if c not in pos]
        if missing:
            raise KeyError(f"construct {name!r}: item column(s) {missing} not in the item matrix")
        block = x[:, [pos[c] for c in cols]]
        n_obs = np.sum(~np.isnan(block), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(block, axis=1) / n_obs
        mean[n_obs < max(min_items, 1)] = np.nan
        out[name] = mean * len(cols) if method == "sum" else mean
    return out
