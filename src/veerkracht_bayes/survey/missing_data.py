"""Missing item values: exact pattern statistics or a two-stage EM approximation.

Full-information ML through per-pattern sufficient statistics is exact, and its cost
grows with the number of distinct missingness patterns. Scattered item non-response
(a few per cent on each of 50+ items) creates thousands of patterns; then the
**two-stage** method is used (Savalei & Bentler, 2009): an EM algorithm fits the
saturated model ``y | x ~ N(M u, S)`` to the incomplete data (exact observed-data ML),
and the structural model is fitted to the EM-expected complete-data sufficient
statistics. Point estimates are consistent; the posterior is slightly too narrow, by
about the fraction of missing information (reported as ``missing_information``). The
choice is recorded in the fit's provenance and in every brief.

The EM runs on **per-pattern statistics**, never on rows. For a pattern ``p`` with
observed set ``o`` and missing set ``r`` (``k = |r|`` items), write ``z = [u, y0]`` (``y0``
the items with missing entries 0) and ``Z_p = Σ_{n in p} w_n z_n z_nᵀ``. With the precision
matrix ``K = S⁻¹``, ``E[y_r | y_o, u] = M_r u − K_rr⁻¹ K_ro (y_o − M_o u) = J_p z`` is linear
in ``z``, with ``J_p = [M_r + C_p M, −C_p]`` and ``C_p = K_rr⁻¹ K_r· diag(d_p)`` (``k × m``).
The expected complete-data statistics then need only the ``k`` missing rows:

* ``Σ ŷ_r uᵀ = (J_p Z_p)[:, u]`` and ``Σ ŷ_r y_oᵀ = (J_p Z_p)[:, y]``,
* ``Σ ŷ_r ŷ_rᵀ = J_p Z_p J_pᵀ + W_p K_rr⁻¹``,

while the observed blocks ``Σ_p Z_p`` are constant and summed once. One iteration costs
``O(Σ_p k_p (q + m)²)`` (a ``k × D`` times ``D × D`` product per pattern, batched over the
patterns with the same ``k``) instead of ``O(n_patterns · m (q + m)²)``; the only large array
is the stack of ``Z_p`` itself, which may be passed in blocks (out of core). The same code
serves the in-memory path (:func:`em_saturated`, statistics from the rows) and the Parquet /
Dask path (:mod:`veerkracht_bayes.survey.out_of_core`), so both give the same numbers (up to
rounding). In memory, a pattern with fewer rows than ``Z_p`` has columns keeps its rows instead:
``J_p Z_p = Σ_n w_n (J_p z_n) z_nᵀ`` and ``J_p Z_p J_pᵀ = Σ_n w_n (J_p z_n)(J_p z_n)ᵀ`` cost
``k (q + m)`` per row, less than the ``k (q + m)²`` of the pattern's matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EMResult", "em_saturated", "em_pattern_blocks", "pattern_keys", "pattern_z", "conditional_fill"]


@dataclass(frozen=True)
class EMResult:
    """Saturated-model EM fit and its expected complete-data statistics.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(1).normal(size=(100, 2)); y[:10, 1] = np.nan
    >>> res = em_saturated(y, np.ones((100, 1)), np.ones(100))
    >>> isinstance(res, EMResult), res.Syy.shape
    (True, (2, 2))
    """

    M: np.ndarray  # (m, q+1)
    S: np.ndarray  # (m, m)
    Syy: np.ndarray
    Suy: np.ndarray
    Suu: np.ndarray
    W: float
    iterations: int
    converged: bool
    missing_information: float  # mean over items of the weighted share of missing cells


def _buckets(obs: np.ndarray) -> dict[int, np.ndarray]:
    k = (~obs).sum(axis=1)
    return {int(kk): np.flatnonzero(k == kk) for kk in np.unique(k) if kk > 0}


def conditional_fill(y: np.ndarray, u: np.ndarray, M: np.ndarray, S: np.ndarray,
                     buckets: dict[int, np.ndarray] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Conditional expectations of missing values given the observed ones.

    Returns
    -------
    (yhat, empty)
        ``yhat`` (n, m) with missing entries replaced by ``E[y_m | y_o, x]``; the second
        output is an empty array kept for backward compatibility.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0, np.nan]])
    >>> M = np.zeros((2, 1)); S = np.array([[1.0, 0.5], [0.5, 1.0]])  # E[y] = M u, Cov(y) = S
    >>> filled, _ = conditional_fill(y, np.ones((1, 1)), M, S)
    >>> filled.round(2)
    array([[1. , 0.5]])
    """
    obs = ~np.isnan(y)
    mu = u @ M.T
    yhat = np.where(obs, y, mu)
    K = np.linalg.inv(S)
    buckets = buckets if buckets is not None else _buckets(obs)
    for k, rows in buckets.items():
        miss = np.argsort(obs[rows], axis=1, kind="stable")[:, :k]  # missing indices first
        r = np.where(obs[rows], y[rows] - mu[rows], 0.0)
        Kmo_r = np.einsum("nkm,nm->nk", K[miss], r)
        Kmm = K[miss[:, :, None], miss[:, None, :]]
        delta = np.linalg.solve(Kmm, Kmo_r[..., None])[..., 0]
        fill = np.take_along_axis(mu[rows], miss, axis=1) - delta
        sub = yhat[rows]
        np.put_along_axis(sub, miss, fill, axis=1)
        yhat[rows] = sub
    return yhat, np.zeros(0)


# ----------------------------------------------------------------------------- pattern EM
#: rows per batch of thin patterns in :func:`em_saturated` (bounds the E-step's temporaries)
_ROWS_PER_BATCH = 8192


@dataclass
class _Batch:
    """Patterns with the same number ``k >= 1`` of missing items.

    Either their moment matrices ``Z`` (a view into a Z block), or, for patterns with fewer
    rows than ``Z`` has columns, the rows themselves: ``rows`` ``(R, D)`` the values of
    ``z = [u, y0]`` ordered by pattern, ``row_w`` their weights, ``starts`` each pattern's
    first row. ``Z_p = Σ w z zᵀ`` is then never formed (``J_p Z_p = Σ w (J_p z) zᵀ``).
    """

    Z: np.ndarray | None  # (P, D, D)
    miss: np.ndarray  # (P, k) missing item indices
    d: np.ndarray  # (P, m) 1.0 where observed
    W: np.ndarray  # (P,)
    rows: np.ndarray | None = None  # (R, D)
    row_w: np.ndarray | None = None  # (R,)
    starts: np.ndarray | None = None  # (P,)
    pattern: np.ndarray | None = None  # (R,) each row's pattern in the batch


def _k_groups(kmiss: np.ndarray, masks: np.ndarray):  # noqa: ANN202 - a generator of tuples
    """For patterns sorted by their number of missing items ``kmiss``: each ``k >= 1`` with the
    slice ``a:b`` of its patterns, their masks and missing item indices (ascending)."""
    for k in np.unique(kmiss):
        if k == 0:
            continue
        a, b = np.searchsorted(kmiss, [k, k + 1])
        mk = masks[a:b]
        yield a, b, mk, np.argsort(mk, axis=1, kind="stable")[:, :k]  # False (missing) first


def _sort_block_by_k(Z: np.ndarray, masks: np.ndarray, W: np.ndarray, *, copy: bool
                     ) -> tuple[np.ndarray, list[_Batch], np.ndarray, np.ndarray]:
    """Order a block's patterns by their number of missing items; return its k >= 1 batches."""
    kmiss = (~masks).sum(axis=1)
    order = np.argsort(kmiss, kind="stable")
    if np.any(order != np.arange(len(order))):
        if copy:
            Z = Z[order]
        else:  # a temporary of one block, released at once (callers pass bounded blocks)
            Z[:] = Z[order]
        masks, W, kmiss = masks[order], W[order], kmiss[order]
    batches = [_Batch(Z[a:b], miss, mk.astype(float), W[a:b]) for a, b, mk, miss in _k_groups(kmiss, masks)]
    return Z, batches, masks, W


def _e_step(batches: Sequence[_Batch], M: np.ndarray, S: np.ndarray, Syy_obs: np.ndarray,
            Suy_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, q1 = M.shape
    K = np.linalg.inv(S)
    K = 0.5 * (K + K.T)
    cross = np.zeros((m, q1 + m))
    rr = np.zeros(m * m)
    for bt in batches:
        P, k = bt.miss.shape
        miss = bt.miss
        Kmm = K[miss[:, :, None], miss[:, None, :]]
        Kmm_inv = np.linalg.inv(Kmm)
        C = Kmm_inv @ (K[miss] * bt.d[:, None, :])  # (P, k, m); zero in missing columns
        J = np.empty((P, k, q1 + m))
        J[:, :, :q1] = M[miss] + C @ M
        J[:, :, q1:] = -C
        if bt.Z is not None:
            JZ = J @ bt.Z  # (P, k, D)
            JZJ = JZ @ J.transpose(0, 2, 1)  # (P, k, k)
        else:  # the rows of thin patterns: J_p Z_p = Σ w a zᵀ and J_p Z_p J_pᵀ = Σ w a aᵀ, a = J_p z
            a = np.einsum("rkd,rd->rk", J[bt.pattern], bt.rows)
            wa = a * bt.row_w[:, None]
            JZ = np.add.reduceat(wa[:, :, None] * bt.rows[:, None, :], bt.starts, axis=0)
            JZJ = np.add.reduceat(wa[:, :, None] * a[:, None, :], bt.starts, axis=0)
        JZJ += bt.W[:, None, None] * Kmm_inv
        rows = miss.reshape(-1)
        onehot = np.zeros((P * k, m))
        onehot[np.arange(P * k), rows] = 1.0
        cross += onehot.T @ JZ.reshape(P * k, q1 + m)
        flat = (miss[:, :, None] * m + miss[:, None, :]).reshape(-1)
        rr += np.bincount(flat, weights=JZJ.reshape(-1), minlength=m * m)
    X = cross[:, q1:]
    Syy = Syy_obs + X + X.T + rr.reshape(m, m)
    Syy = 0.5 * (Syy + Syy.T)
    Suy = Suy_obs + cross[:, :q1].T
    return Syy, Suy


def em_pattern_blocks(
    blocks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    q1: int,
    *,
    max_iter: int = 2000,
    tol: float = 1e-9,
    in_place: bool = False,
) -> EMResult:
    """EM for ``y | u ~ N(M u, S)`` on per-pattern statistics given in blocks.

    Parameters
    ----------
    blocks
        Sequence of ``(Z, masks, W)``: ``Z`` ``(P, D, D)`` the patterns' weighted moment
        matrices of ``z = [u, y0]`` (``D = q1 + m``; rows/columns of missing items 0),
        ``masks`` ``(P, m)`` True where observed, ``W`` ``(P,)`` summed weights.
    q1
        Columns of the design ``u`` (intercept plus covariates).
    max_iter, tol
        Stop when the largest change of ``M`` and ``S`` is below ``tol``.
    in_place
        Reorder each ``Z`` in place by the number of missing items (saves a copy of the
        largest array; the caller's blocks are permuted).

    Returns
    -------
    EMResult
        The fit and the expected complete-data statistics at the final ``(M, S)``.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import pattern_stats
    >>> y = np.random.default_rng(1).normal(size=(200, 2)); y[:30, 1] = np.nan
    >>> st = pattern_stats(y, np.ones((200, 1)), np.ones(200))
    >>> res = em_pattern_blocks([(pattern_z(st.Suu, st.Suy, st.Syy), st.masks, st.W)], 1)
    >>> res.converged
    True
    """
    if not blocks:
        raise ValueError("em_pattern_blocks needs at least one block of patterns")
    m = blocks[0][1].shape[1]
    D = q1 + m
    Syy_obs = np.zeros((m, m))
    Suy_obs = np.zeros((q1, m))
    Suu = np.zeros((q1, q1))
    Wj = np.zeros(m)
    Wt = 0.0
    batches: list[_Batch] = []
    for Z, masks, W in blocks:
        masks = np.asarray(masks, bool)
        W = np.asarray(W, float)
        if Z.shape[1:] != (D, D) or masks.shape != (len(Z), m) or W.shape != (len(Z),):
            raise ValueError(f"inconsistent block shapes {Z.shape}, {masks.shape}, {W.shape} for D={D}")
        Zt = Z.sum(axis=0)
        Syy_obs += Zt[q1:, q1:]
        Suy_obs += Zt[:q1, q1:]
        Suu += Zt[:q1, :q1]
        Wj += masks.T.astype(float) @ W
        Wt += float(W.sum())
        _, bts, _, _ = _sort_block_by_k(Z, masks, W, copy=not in_place)
        batches.extend(bts)
    return _em_iterate(batches, q1, Syy_obs, Suy_obs, Suu, Wj, Wt, max_iter=max_iter, tol=tol)


def _em_iterate(batches: Sequence[_Batch], q1: int, Syy_obs: np.ndarray, Suy_obs: np.ndarray,
                Suu: np.ndarray, Wj: np.ndarray, Wt: float, *, max_iter: int, tol: float) -> EMResult:
    """The EM iterations on prepared batches and the observed totals (``Σ_p Z_p`` blocks)."""
    m = len(Wj)
    Suu = 0.5 * (Suu + Suu.T)
    # a design column collinear with others (e.g. a covariate constant in the rows given) leaves M
    # unidentified along that direction and EM would wander along it without converging; the
    # minimum-norm solution (pseudo-inverse) fixes it, and M u, all that the E-step uses, is the same
    Suu_inv = np.linalg.inv(Suu) if np.linalg.cond(Suu) < 1e10 else np.linalg.pinv(Suu, hermitian=True)
    # start: available-case means and variances
    mean0 = Suy_obs[0] / Wj
    M = np.zeros((m, q1))
    M[:, 0] = mean0
    S = np.diag(np.maximum(np.diag(Syy_obs) / Wj - mean0 ** 2, 1e-3))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        Syy, Suy = _e_step(batches, M, S, Syy_obs, Suy_obs)
        M_new = Suy.T @ Suu_inv
        S_new = (Syy - M_new @ Suy - Suy.T @ M_new.T + M_new @ Suu @ M_new.T) / Wt
        S_new = 0.5 * (S_new + S_new.T)
        delta = max(np.max(np.abs(M_new - M)), np.max(np.abs(S_new - S)))
        M, S = M_new, S_new
        if delta < tol:
            converged = True
            break
    Syy, Suy = _e_step(batches, M, S, Syy_obs, Suy_obs)  # expected statistics at the fixed point
    frac = float(np.mean(1.0 - Wj / Wt))
    return EMResult(M=M, S=S, Syy=Syy, Suy=Suy, Suu=Suu, W=Wt, iterations=it, converged=converged,
                    missing_information=frac)


def em_saturated(y: np.ndarray, u: np.ndarray, w: np.ndarray, *, max_iter: int = 2000,
                 tol: float = 1e-9) -> EMResult:
    """EM for the saturated regression ``y | u ~ N(M u, S)`` with missing ``y``.

    The rows are grouped by missingness pattern (patterns found by 64-bit keys, ordered by
    their number of missing items). A pattern with at least ``D = q + 1 + m`` rows is reduced
    to its moment matrix ``Z_p`` (one ``D × D`` product), as the out-of-core path
    (:func:`em_pattern_blocks`) gets it; a pattern with fewer rows keeps them, and the E-step
    forms ``J_p Z_p = Σ w (J_p z) zᵀ`` from the rows (``k · D`` per row instead of
    ``k · D²`` per pattern). Both are the same E-step up to rounding; the iterations are
    shared. Scattered non-response makes most patterns a few rows: on the shipped survey
    (20,000 rows, 57 items, 5,829 patterns) the stack of ``Z_p`` would be 168 MB. Memory besides
    the data: the thin patterns' rows (a copy, in batches of about 8,192 rows) and ``D²`` doubles
    per pattern of at least ``D`` rows; while they are set up, one sorted copy of all rows too.

    Parameters
    ----------
    y
        ``(n, m)`` with NaN for missing.
    u
        ``(n, q+1)`` complete design ``[1, x]``.
    w
        ``(n,)`` weights (pseudo-likelihood).
    max_iter, tol
        Stop when the largest change of ``M`` and ``S`` is below ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=(300, 2)); y[rng.random(300) < 0.2, 1] = np.nan
    >>> res = em_saturated(y, np.ones((300, 1)), np.ones(300))
    >>> res.converged, 0 < res.missing_information < 1
    (True, True)
    """
    y = np.asarray(y, float)
    u = np.asarray(u, float)
    w = np.asarray(w, float)
    obs = ~np.isnan(y)
    keys, inverse = pattern_keys(obs)
    n_pat = len(keys)
    cnt = np.bincount(inverse, minlength=n_pat)
    first = np.full(n_pat, len(y))
    np.minimum.at(first, inverse, np.arange(len(y)))
    masks = obs[first]
    # patterns ordered by number of missing items, rows ordered by pattern
    porder = np.argsort((~masks).sum(axis=1), kind="stable")
    rank = np.empty(n_pat, np.int64)
    rank[porder] = np.arange(n_pat)
    prow = rank[inverse]
    rows = np.argsort(prow, kind="stable")
    masks, cnt = masks[porder], cnt[porder]
    bounds = np.concatenate([[0], np.cumsum(cnt)])
    kmiss = (~masks).sum(axis=1)
    q1, m = u.shape[1], y.shape[1]
    D = q1 + m
    z = np.empty((len(y), D))
    z[:, :q1] = u[rows]
    zy = z[:, q1:]
    np.take(y, rows, axis=0, out=zy)
    zy[np.isnan(zy)] = 0.0
    ws = w[rows]
    Zt = z.T @ (z * ws[:, None])  # Σ_p Z_p
    Wp = np.bincount(prow, weights=w, minlength=n_pat)
    batches: list[_Batch] = []
    for a, b, mk, miss in _k_groups(kmiss, masks):
        # a pattern with fewer rows than D keeps its rows (k·D per row and iteration, no D×D matrix)
        thick = np.flatnonzero(cnt[a:b] >= D)
        if len(thick):
            Z = np.empty((len(thick), D, D))
            for i, p in enumerate(a + thick):
                seg = z[bounds[p]:bounds[p + 1]]
                np.matmul(seg.T, seg * ws[bounds[p]:bounds[p + 1], None], out=Z[i])
            batches.append(_Batch(Z, miss[thick], mk[thick].astype(float), Wp[a:b][thick]))
        thin_all = np.flatnonzero(cnt[a:b] < D)
        # in batches of about _ROWS_PER_BATCH rows: the E-step's temporaries are rows x k x D
        cut = np.cumsum(cnt[a + thin_all]) // _ROWS_PER_BATCH
        for thin in np.split(thin_all, np.flatnonzero(np.diff(cut)) + 1) if len(thin_all) else ():
            lens = cnt[a + thin]
            offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
            ridx = np.repeat(bounds[a + thin] - offs, lens) + np.arange(int(lens.sum()))
            batches.append(_Batch(None, miss[thin], mk[thin].astype(float), Wp[a:b][thin], rows=z[ridx],
                                  row_w=ws[ridx], starts=offs, pattern=np.repeat(np.arange(len(thin)), lens)))
    del z, zy
    Suu = Zt[:q1, :q1]
    return _em_iterate(batches, q1, Zt[q1:, q1:].copy(), Zt[:q1, q1:].copy(), Suu, masks.T.astype(float) @ Wp,
                       float(Wp.sum()), max_iter=max_iter, tol=tol)


def pattern_keys(obs: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """Distinct rows of the boolean ``obs`` as packed byte keys and each row's key number.

    Rows are packed to bits and padded to 8-byte words, so for up to 64 items a pattern is
    one ``uint64`` (a 1-D sort instead of a lexicographic row sort). Keys are in increasing
    order of their words; ``inverse[i]`` is row ``i``'s key.

    Examples
    --------
    >>> import numpy as np
    >>> keys, inverse = pattern_keys(np.array([[True, False], [True, True], [True, False]]))
    >>> len(keys), inverse.tolist()
    (2, [0, 1, 0])
    """
    packed = np.packbits(obs, axis=1)
    nb = -(-packed.shape[1] // 8) * 8
    if nb != packed.shape[1]:
        packed = np.concatenate([packed, np.zeros((len(packed), nb - packed.shape[1]), np.uint8)], axis=1)
    words = np.ascontiguousarray(packed).view(np.uint64)
    if words.shape[1] == 1:
        uniq, inverse = np.unique(words[:, 0], return_inverse=True)
        uniq = uniq[:, None]
    else:
        uniq, inverse = np.unique(words, axis=0, return_inverse=True)
    return [u.tobytes() for u in uniq], inverse.reshape(-1)


def pattern_z(Suu: np.ndarray, Suy: np.ndarray, Syy: np.ndarray) -> np.ndarray:
    """Stack per-pattern ``Suu, Suy, Syy`` into the moment matrices ``Z_p`` of ``[u, y0]``.

    Examples
    --------
    >>> import numpy as np
    >>> Z = pattern_z(np.array([[[2.0]]]), np.array([[[1.0, 0.5]]]), np.array([[[1.0, 0.2], [0.2, 1.0]]]))
    >>> Z[0]
    array([[2. , 1. , 0.5],
           [1. , 1. , 0.2],
           [0.5, 0.2, 1. ]])
    """
    n_pat, q1, m = Suy.shape
    Z = np.empty((n_pat, q1 + m, q1 + m))
    Z[:, :q1, :q1] = Suu
    Z[:, :q1, q1:] = Suy
    Z[:, q1:, :q1] = Suy.transpose(0, 2, 1)
    Z[:, q1:, q1:] = Syy
    return Z
