"""Sufficient statistics out of core: Parquet in chunks (pyarrow) and Dask dataframes.

The continuous-path likelihood needs, per missingness pattern ``p``, only
``W_p, Syy_p, Suy_p, Suu_p`` of the *standardised* items and *centred* covariates
(:mod:`veerkracht_bayes.sufficient_stats`). Standardisation needs weighted means and
standard deviations of the whole file, which are unknown while the chunks stream past.
This module therefore makes **one pass** and standardises **algebraically** afterwards:

* for every kept row it forms the raw vector ``v = [1, x_raw - k_x, (y_raw - k_y)·d]``
  (``d`` the row's observed-item mask, missing entries 0; ``k`` the first chunk's
  weighted means, a shift that keeps ``Σ w v vᵀ`` free of catastrophic cancellation)
  and accumulates ``V_p = Σ_{n in p} w_n v_n v_nᵀ`` per pattern with the *raw* weights;
* at the end the weighted means and SDs follow from the ``V_p`` (the item moments are the
  sums over the patterns in which the item is observed), and every model quantity is an
  affine map of ``v``: ``y_std = G_p v`` and ``u = [1, x_centred] = H v``, so
  ``Syy_p = c·G_p V_p G_pᵀ``, ``Suy_p = c·H V_p G_pᵀ``, ``Suu_p = c·H V_p Hᵀ``, ``W_p = c·V_p[0,0]``
  with ``c = n_used / Σ w`` (weights normalised to sum to the number of rows used).

Reverse coding ``(lo + hi) − y`` is affine too; its effect on a standardised item is a sign
flip, so unbounded reverse-coded items (whose ``hi`` is the observed maximum) need no
second pass. The result equals :func:`~veerkracht_bayes.sufficient_stats.model_data_from_survey`
on the same rows to floating-point precision (tests/test_out_of_core.py).

Row cleaning follows :func:`~veerkracht_bayes.survey_data.read_survey` (missing codes,
value labels, range checks with ``out_of_range``, missing ids excluded and counted,
duplicate ids an error — checked on 64-bit hashes of the ids —, invalid weights an
error). Subgroups and group columns are not needed for the statistics and are not read.

When the number of patterns exceeds ``max_fiml_patterns`` (``missing="auto"``) the
two-stage method is used as in memory, with an EM algorithm that runs **on the pattern
statistics** (:func:`em_pattern_stats`): the conditional expectation of the missing items
is linear in ``[u, y_o]``, so the expected complete-data statistics of a pattern are an
exact function of its ``V_p``. Memory is ``O(n_patterns · (1 + q + m)²)`` doubles (about
170 MB for MARVEL's 5,800 patterns), independent of the number of rows.

What cannot be done out of core: the per-respondent log-likelihood (LOO) needs the rows.
The returned :class:`StatsOnlyModelData` has ``y`` and ``x`` with zero rows; fit it with
``fit(..., pointwise=False)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .codebook import Codebook, load_codebook
from .errors import ModelError, Problem, SurveyError
from .sufficient_stats import ModelData, PatternStats

__all__ = ["StatsOnlyModelData", "StatsAccumulator", "stats_from_parquet", "stats_from_dask",
           "stats_from_frames", "em_pattern_stats"]


@dataclass(frozen=True)
class StatsOnlyModelData(ModelData):
    """A :class:`ModelData` holding sufficient statistics only (no per-row arrays).

    ``y`` is ``(0, m)``, ``x`` is ``(0, q)`` and ``weights`` is empty; :attr:`n` is the
    number of rows used and :attr:`x_cov` comes from the statistics. The pointwise
    log-likelihood cannot be computed (fit with ``pointwise=False``).
    """

    n_rows: int = 0

    @property
    def n(self) -> int:
        """Number of respondents used."""
        return int(self.n_rows)

    @property
    def x_cov(self) -> np.ndarray:
        """Weighted covariance of the centred covariates, from the pattern statistics."""
        if not self.x_names:
            return np.zeros((0, 0))
        st = self.stats
        return st.Suu[:, 1:, 1:].sum(axis=0) / st.W.sum()


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Layout:
    cb: Codebook
    item_cols: tuple[str, ...]
    item_construct: tuple[str, ...]
    cov_nodes: tuple[str, ...]
    cov_cols: tuple[str, ...]
    reverse: np.ndarray  # per column of (covariates + items): True if reverse coded
    cov_range: tuple[tuple[float | None, float | None], ...]

    @property
    def columns(self) -> list[str]:
        cb = self.cb
        return list(dict.fromkeys([cb.id_column] + ([cb.weight_column] if cb.weight_column else [])
                                  + list(self.cov_cols) + list(self.item_cols)))


def _layout(cb: Codebook, graph: object, covariates: Sequence[str] | None) -> _Layout:
    constructs = {k: [it.column for it in c.items] for k, c in cb.constructs.items() if c.items}
    if covariates is None:
        covariates = [node for node, items in constructs.items()
                      if graph.has_node(node) and not graph.parents(node)
                      and graph.node(node).role == "exogenous" and len(items) == 1]
    covariates = list(covariates)
    for node in covariates:
        if node not in constructs:
            raise ModelError(Problem(f"covariate node {node!r} has no item in the codebook", field=node))
    cov_cols = [constructs[c][0] for c in covariates]
    specs = {it.column: (k, it) for k, it in cb.item_specs()}
    items = [(c, k) for c, (k, _) in specs.items() if k not in covariates]
    rev = np.array([specs[c][1].reverse for c in cov_cols] + [specs[c][1].reverse for c, _ in items], bool)
    return _Layout(cb, tuple(c for c, _ in items), tuple(k for _, k in items), tuple(covariates),
                   tuple(cov_cols), rev, tuple(specs[c][1].range for c in cov_cols))


# ----------------------------------------------------------------------------- accumulation
@dataclass
class StatsAccumulator:
    """Streaming accumulator of raw per-pattern moments (mergeable: see :meth:`merge`)."""

    q: int
    m: int
    shift: np.ndarray | None = None  # (q + m,)
    V: dict[bytes, np.ndarray] = field(default_factory=dict)  # pattern key -> (1+q+m)^2
    count: dict[bytes, int] = field(default_factory=dict)
    cov_all: np.ndarray | None = None  # (q, 3): Σw, Σw x̃, Σw x̃² over rows with id (all, not only used)
    cov_min: np.ndarray | None = None
    cov_max: np.ndarray | None = None
    cov_values: list[set[float]] = field(default_factory=list)
    item_min: np.ndarray | None = None
    item_max: np.ndarray | None = None
    rows_read: int = 0
    n_missing_id: int = 0
    n_bad_cov: int = 0
    n_no_item_any: int = 0
    n_no_item_kept: int = 0
    id_hashes: list[np.ndarray] = field(default_factory=list)
    w_sum_all: float = 0.0
    w_all_zero: bool = True

    def __post_init__(self) -> None:
        d = self.q + self.m
        if self.cov_all is None:
            self.cov_all = np.zeros((self.q, 3))
            self.cov_min = np.full(self.q, np.inf)
            self.cov_max = np.full(self.q, -np.inf)
            self.cov_values = [set() for _ in range(self.q)]
            self.item_min = np.full(self.m, np.inf)
            self.item_max = np.full(self.m, -np.inf)
        del d

    def add(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, ids: np.ndarray) -> None:
        """Add cleaned rows: covariates ``x`` (n, q), unreversed items ``y`` (n, m), raw weights."""
        q, m = self.q, self.m
        self.id_hashes.append(ids)
        self.w_sum_all += float(w.sum())
        self.w_all_zero &= bool(np.all(w == 0))
        if self.shift is None:
            ks = []
            for j in range(q + m):
                col = x[:, j] if j < q else y[:, j - q]
                ok = ~np.isnan(col)
                ws = w[ok].sum()
                ks.append(float(np.sum(w[ok] * col[ok]) / ws) if ws > 0 else 0.0)
            self.shift = np.array(ks)
        kx, ky = self.shift[:q], self.shift[q:]
        for i in range(q):
            col = x[:, i]
            ok = ~np.isnan(col)
            xs = col[ok] - kx[i]
            self.cov_all[i] += [w[ok].sum(), np.sum(w[ok] * xs), np.sum(w[ok] * xs * xs)]
            if ok.any():
                self.cov_min[i] = min(self.cov_min[i], float(col[ok].min()))
                self.cov_max[i] = max(self.cov_max[i], float(col[ok].max()))
                if len(self.cov_values[i]) <= 2:
                    self.cov_values[i].update(np.unique(col[ok])[:3].tolist())
        with np.errstate(invalid="ignore"):
            self.item_min = np.fmin(self.item_min, np.nanmin(np.where(np.isnan(y), np.inf, y), axis=0))
            self.item_max = np.fmax(self.item_max, np.nanmax(np.where(np.isnan(y), -np.inf, y), axis=0))
        bad_cov = np.isnan(x).any(axis=1) if q else np.zeros(len(w), bool)
        obs = ~np.isnan(y)
        no_item = ~obs.any(axis=1)
        self.n_bad_cov += int(bad_cov.sum())
        self.n_no_item_any += int(no_item.sum())
        self.n_no_item_kept += int((no_item & ~bad_cov).sum())
        keep = ~bad_cov & ~no_item
        if not keep.any():
            return
        obs, w = obs[keep], w[keep]
        v = np.empty((int(keep.sum()), 1 + q + m))
        v[:, 0] = 1.0
        v[:, 1:1 + q] = x[keep] - kx
        v[:, 1 + q:] = np.where(obs, y[keep] - ky, 0.0)
        packed = np.packbits(obs, axis=1)
        keys, inverse = np.unique(packed, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
        for p in range(len(keys)):
            idx = order[bounds[p]:bounds[p + 1]]
            vp = v[idx]
            mom = vp.T @ (vp * w[idx, None])
            key = keys[p].tobytes()
            if key in self.V:
                self.V[key] += mom
                self.count[key] += len(idx)
            else:
                self.V[key] = mom
                self.count[key] = len(idx)

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        """Combine two accumulators (Dask tree reduction). Shifts are re-centred exactly."""
        if other.shift is None:
            return self
        if self.shift is None:
            return other
        out = StatsAccumulator(self.q, self.m, shift=self.shift.copy())
        q = self.q
        out.V = {k: v.copy() for k, v in self.V.items()}
        out.count = dict(self.count)
        # translate other's moments to self's shift: v_self = T v_other, since
        # y - k_self = (y - k_other) + (k_other - k_self) on observed entries
        delta = other.shift - self.shift
        for key, mom in other.V.items():
            obs = np.unpackbits(np.frombuffer(key, np.uint8))[: self.m].astype(bool)
            T = np.eye(1 + q + self.m)
            dm = np.concatenate([delta[:q], np.where(obs, delta[q:], 0.0)])
            T[1:, 0] = dm
            mom2 = T @ mom @ T.T
            if key in out.V:
                out.V[key] += mom2
                out.count[key] += other.count[key]
            else:
                out.V[key] = mom2
                out.count[key] = other.count[key]
        ca = other.cov_all.copy()
        dx = delta[:q]
        # x - k_self = (x - k_other) + dx
        ca2 = np.column_stack([ca[:, 0], ca[:, 1] + dx * ca[:, 0],
                               ca[:, 2] + 2 * dx * ca[:, 1] + dx * dx * ca[:, 0]])
        out.cov_all = self.cov_all + ca2
        out.cov_min = np.minimum(self.cov_min, other.cov_min)
        out.cov_max = np.maximum(self.cov_max, other.cov_max)
        out.cov_values = [a | b for a, b in zip(self.cov_values, other.cov_values)]
        out.item_min = np.fmin(self.item_min, other.item_min)
        out.item_max = np.fmax(self.item_max, other.item_max)
        for name in ("rows_read", "n_missing_id", "n_bad_cov", "n_no_item_any", "n_no_item_kept"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.id_hashes = self.id_hashes + other.id_hashes
        out.w_sum_all = self.w_sum_all + other.w_sum_all
        out.w_all_zero = self.w_all_zero and other.w_all_zero
        return out


# ----------------------------------------------------------------------------- chunk cleaning
def _where(offset: int, pos: int, label: str) -> str:
    return f"{label} data row {offset + pos + 1}"


def _clean_chunk(df: pd.DataFrame, lay: _Layout, *, offset: int, label: str, weights: bool,
                 out_of_range: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate one chunk like ``read_survey``; returns x, y (unreversed), raw w, id hashes, n missing id."""
    from .survey_data import _coerce_numeric, _infer_id

    cb = lay.cb
    absent = [c for c in lay.columns if c not in df.columns]
    if absent:
        raise SurveyError([Problem(f"codebook column {c!r} is missing from the data (expected a column "
                                   "with this name)", file=label, field=c, value=c) for c in absent])
    ids = df[cb.id_column].astype(object)
    id_missing = pd.isna(ids).to_numpy() | ids.map(lambda v: isinstance(v, str) and v.strip() == ""
                                                  ).to_numpy(dtype=bool)
    keep = np.flatnonzero(~id_missing)
    df = df.iloc[keep].reset_index(drop=True)
    idv = _infer_id(df[cb.id_column])
    hashes = pd.util.hash_pandas_object(idv.astype(str), index=False).to_numpy()
    problems: list[Problem] = []
    if cb.weight_column and weights:
        c = _coerce_numeric(df[cb.weight_column], ".")
        w = c.values
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        if len(c.bad_pos) or len(bad):
            p = int(c.bad_pos[0]) if len(c.bad_pos) else int(bad[0])
            val = df[cb.weight_column].iloc[p]
            problems.append(Problem(f"invalid weight {val!r} at {_where(offset, int(keep[p]), label)} "
                                    "(expected a finite non-negative number)", file=label,
                                    line=offset + int(keep[p]) + 1, location=f"column {cb.weight_column!r}",
                                    field=cb.weight_column, value=val))
    else:
        w = np.ones(len(df))
    specs = {it.column: it for _, it in cb.item_specs()}

    def column(col: str) -> np.ndarray:
        it = specs[col]
        c = _coerce_numeric(df[col], ".", it.missing_codes, it.value_labels or None)
        x = c.values
        if len(c.bad_pos):
            p = int(c.bad_pos[0])
            problems.append(Problem(f"text in numeric item {col!r} that is not a declared missing code: "
                                    f"{c.bad_vals[0]!r} at {_where(offset, int(keep[p]), label)}",
                                    file=label, line=offset + int(keep[p]) + 1, location=f"column {col!r}", field=col, value=c.bad_vals[0]))
        lo, hi = it.range
        obs = ~np.isnan(x)
        oor = np.zeros(len(x), bool)
        if lo is not None:
            oor |= obs & (x < lo)
        if hi is not None:
            oor |= obs & (x > hi)
        if it.scale in ("likert", "binary", "count"):
            oor |= obs & (x != np.round(x))
        if oor.any():
            if out_of_range == "error":
                p = int(np.flatnonzero(oor)[0])
                problems.append(Problem(
                    f"value out of range in item {col!r}: {x[p]!r} at {_where(offset, int(keep[p]), label)}; "
                    f"expected values in [{lo}, {hi}] (or pass out_of_range='missing')",
                    file=label, line=offset + int(keep[p]) + 1, location=f"column {col!r}", field=col, value=float(x[p])))
            else:
                x = np.where(oor, np.nan, x)
        return x

    x = np.column_stack([column(c) for c in lay.cov_cols]) if lay.cov_cols else np.zeros((len(df), 0))
    y = np.column_stack([column(c) for c in lay.item_cols])
    if problems:
        raise SurveyError(problems)
    return x, y, w, hashes, int(id_missing.sum())


def _accumulate(frames: Iterable[pd.DataFrame], lay: _Layout, *, label: str, weights: bool,
                out_of_range: str) -> StatsAccumulator:
    acc = StatsAccumulator(len(lay.cov_cols), len(lay.item_cols))
    offset = 0
    for df in frames:
        x, y, w, h, nmiss = _clean_chunk(df, lay, offset=offset, label=label, weights=weights,
                                         out_of_range=out_of_range)
        acc.rows_read += len(df)
        acc.n_missing_id += nmiss
        offset += len(df)
        acc.add(x, y, w, h)
    return acc


# ----------------------------------------------------------------------------- finalisation
def _finalise(acc: StatsAccumulator, lay: _Layout, *, label: str, data_hash: str | None,
              missing: str, max_fiml_patterns: int, em_tol: float = 1e-9) -> StatsOnlyModelData:
    q, m = acc.q, acc.m
    if acc.shift is None or acc.rows_read == 0:
        raise SurveyError(Problem("no data rows (expected at least one respondent)", file=label))
    if acc.w_all_zero:
        raise SurveyError(Problem("all weights are zero (expected at least one positive weight)", file=label,
                                  field=lay.cb.weight_column))
    hashes = np.sort(np.concatenate(acc.id_hashes)) if acc.id_hashes else np.zeros(0, np.uint64)
    if len(hashes) > 1 and np.any(hashes[1:] == hashes[:-1]):
        raise SurveyError(Problem(f"duplicate respondent ids in column {lay.cb.id_column!r} "
                                  "(expected each id exactly once)", file=label, field=lay.cb.id_column))
    if missing not in ("auto", "fiml", "two_stage"):
        raise ModelError(f"missing must be 'auto', 'fiml' or 'two_stage', got {missing!r}")
    keys_packed = list(acc.V)
    if not keys_packed:
        raise ModelError("no respondent has both items and covariates observed")
    masks = np.array([np.unpackbits(np.frombuffer(k, np.uint8))[:m] for k in keys_packed]).astype(bool)
    # same pattern order as np.unique(obs, axis=0) in memory (lexicographic on booleans)
    order = np.lexsort(masks.T[::-1])
    masks = masks[order]
    V = np.stack([acc.V[keys_packed[i]] for i in order])
    counts = np.array([acc.count[keys_packed[i]] for i in order])
    n_used = int(counts.sum())
    kx, ky = acc.shift[:q], acc.shift[q:]
    W_raw = V[:, 0, 0]
    # item moments over the rows where each item is observed
    Wj = masks.T.astype(float) @ W_raw
    s1 = np.array([V[masks[:, j], 0, 1 + q + j].sum() for j in range(m)])
    s2 = np.array([V[masks[:, j], 1 + q + j, 1 + q + j].sum() for j in range(m)])
    problems = []
    cj = np.zeros(m)
    sd = np.ones(m)
    for j in range(m):
        if not masks[:, j].any() or Wj[j] <= 0:
            problems.append(Problem(f"item {lay.item_cols[j]!r} has no observed value", field=lay.item_cols[j]))
            continue
        cj[j] = s1[j] / Wj[j]
        var = s2[j] / Wj[j] - cj[j] ** 2
        if not var > 1e-300:
            problems.append(Problem(f"item {lay.item_cols[j]!r} has no variance", field=lay.item_cols[j]))
            continue
        sd[j] = np.sqrt(var)
    if problems:
        raise ModelError(problems)
    sgn_y = np.where(lay.reverse[q:], -1.0, 1.0)
    center_raw = cj + ky
    item_center = center_raw.copy()
    for j in range(m):
        if lay.reverse[q + j]:
            it = lay.cb.item(lay.item_cols[j])
            lo, hi = it.range
            lo = acc.item_min[j] if lo is None else lo
            hi = acc.item_max[j] if hi is None else hi
            item_center[j] = lo + hi - center_raw[j]
    # covariates: affine x = a + b * x_raw, then centred over the used rows
    b = np.ones(q)
    a = np.zeros(q)
    for i in range(q):
        lo, hi = lay.cov_range[i]
        lo = acc.cov_min[i] if lo is None else lo
        hi = acc.cov_max[i] if hi is None else hi
        vals = acc.cov_values[i]
        if lay.reverse[i]:
            a_r, b_r = lo + hi, -1.0
        else:
            a_r, b_r = 0.0, 1.0
        rev_vals = {a_r + b_r * v for v in vals}
        if len(vals) <= 2 and rev_vals <= {0.0, 1.0}:
            a[i], b[i] = a_r, b_r
        else:
            sw, s1x, s2x = acc.cov_all[i]
            mu_t = s1x / sw
            sd_x = np.sqrt(s2x / sw - mu_t ** 2)
            mu_rev = a_r + b_r * (mu_t + kx[i])
            a[i], b[i] = (a_r - mu_rev) / sd_x, b_r / sd_x
    xbar_t = V[:, 0, 1:1 + q].sum(axis=0) / W_raw.sum() if q else np.zeros(0)
    x_mean = a + b * (xbar_t + kx) if q else np.zeros(0)
    D = 1 + q + m
    H = np.zeros((1 + q, D))
    H[0, 0] = 1.0
    for i in range(q):
        H[1 + i, 0] = -b[i] * xbar_t[i]
        H[1 + i, 1 + i] = b[i]
    scale = n_used / W_raw.sum()
    dmask = masks.astype(float)
    G = np.zeros((len(masks), m, D))
    coef = sgn_y / sd
    G[:, np.arange(m), 1 + q + np.arange(m)] = dmask * coef
    G[:, :, 0] = -dmask * coef * cj
    VG = np.einsum("pab,pjb->paj", V, G)
    Syy = scale * np.einsum("pia,paj->pij", G, VG)
    Suy = scale * np.einsum("ka,paj->pkj", H, VG)
    Suu = scale * np.einsum("ka,pab,lb->pkl", H, V, H)
    W = scale * W_raw
    Syy = 0.5 * (Syy + Syy.transpose(0, 2, 1))
    Suu = 0.5 * (Suu + Suu.transpose(0, 2, 1))
    n_pat = len(masks)
    if n_pat == 1 and masks.all():
        method = "complete"
    elif missing == "fiml" or (missing == "auto" and n_pat <= max_fiml_patterns):
        method = "fiml"
    else:
        method = "two_stage"
    info = 0.0
    stats = PatternStats(masks, W, Syy, Suy, Suu, np.zeros(0, dtype=np.int64))
    if method == "two_stage":
        em = em_pattern_stats(stats, tol=em_tol)
        info = float(np.mean(1.0 - (dmask * W[:, None]).sum(0) / W.sum()))
        stats = PatternStats(np.ones((1, m), dtype=bool), np.array([W.sum()]), em["Syy"][None],
                             em["Suy"][None], em["Suu"][None], np.zeros(0, dtype=np.int64))
    reasons: dict[str, int] = {}
    if q and acc.n_bad_cov:
        reasons["missing covariate (" + ", ".join(lay.cov_nodes) + ")"] = acc.n_bad_cov
    if acc.n_no_item_any:
        reasons["no item observed"] = acc.n_no_item_kept
    return StatsOnlyModelData(
        item_names=lay.item_cols, item_construct=lay.item_construct, y=np.zeros((0, m)),
        item_center=item_center, item_scale=sd, x_names=lay.cov_nodes, x=np.zeros((0, q)),
        x_mean=x_mean, weights=np.zeros(0), stats=stats,
        n_excluded=acc.n_bad_cov + acc.n_no_item_kept, exclusion_reasons=reasons,
        data_hash=data_hash, source=label, missing_method=method, missing_information=info,
        n_patterns=n_pat, n_rows=n_used)


def em_pattern_stats(stats: PatternStats, *, max_iter: int = 2000, tol: float = 1e-9,
                     batch: int = 256) -> dict[str, Any]:
    """EM for the saturated model ``y | u ~ N(M u, S)`` run on per-pattern statistics.

    For a pattern with observed set ``o`` and missing set ``r``, ``E[y_r | y_o, u] =
    M_r u + S_ro S_oo⁻¹ (y_o − M_o u)`` is linear in ``z = [u, y0]``: ``ŷ = J_p z``, so
    ``Σ w ŷ ŷᵀ = J_p Z_p J_pᵀ`` with ``Z_p = Σ w z zᵀ`` built from ``Suu_p, Suy_p, Syy_p``,
    plus ``W_p · Cov(y_r | y_o)``. The result is the same fixed point as
    :func:`veerkracht_bayes.missing_data.em_saturated` on the rows.

    Returns
    -------
    dict
        ``M, S, Syy, Suy, Suu, W, iterations, converged``.
    """
    masks, W = stats.masks, stats.W
    n_pat, m = masks.shape
    q1 = stats.Suu.shape[1]
    Z = np.zeros((n_pat, q1 + m, q1 + m))
    Z[:, :q1, :q1] = stats.Suu
    Z[:, :q1, q1:] = stats.Suy
    Z[:, q1:, :q1] = stats.Suy.transpose(0, 2, 1)
    Z[:, q1:, q1:] = stats.Syy
    Suu = stats.Suu.sum(0)
    Wt = float(W.sum())
    Suu_inv = np.linalg.inv(Suu)
    # start: available-case moments
    Wj = masks.T.astype(float) @ W
    mean0 = stats.Suy[:, 0, :].sum(0) / Wj
    M = np.zeros((m, q1))
    M[:, 0] = mean0
    S = np.diag(np.maximum(np.einsum("pjj->j", stats.Syy) / Wj - mean0 ** 2, 1e-3))
    groups: dict[int, np.ndarray] = {}
    kmiss = (~masks).sum(1)
    for k in np.unique(kmiss):
        groups[int(k)] = np.flatnonzero(kmiss == k)
    converged = False
    it = 0
    Syy = Suy = None
    for it in range(1, max_iter + 1):
        K = np.linalg.inv(S)
        Syy_e = np.zeros((m, m))
        Suy_e = np.zeros((q1, m))
        for k, pats_all in groups.items():
            for b0 in range(0, len(pats_all), batch):  # bounded memory: batch patterns at a time
                pats = pats_all[b0:b0 + batch]
                Zp = Z[pats]
                dm = masks[pats].astype(float)
                # J = [diag(1-d) M | diag(d)] - P Kmm^-1 K_m: R,   R = diag(d)[-M | I]
                J = np.zeros((len(pats), m, q1 + m))
                J[:, :, :q1] = (1.0 - dm)[:, :, None] * M[None]
                J[:, np.arange(m), q1 + np.arange(m)] = dm
                if k > 0:
                    miss = np.argsort(masks[pats], axis=1, kind="stable")[:, :k]
                    Km = K[miss]  # (P, k, m)
                    Kmm_inv = np.linalg.inv(np.take_along_axis(Km, miss[:, None, :], axis=2))
                    R = np.concatenate([-dm[:, :, None] * M[None], dm[:, :, None] * np.eye(m)[None]], axis=2)
                    corr = Kmm_inv @ (Km @ R)  # (P, k, q1+m)
                    J[np.arange(len(pats))[:, None], miss, :] -= corr
                    np.add.at(Syy_e, (miss[:, :, None], miss[:, None, :]), Kmm_inv * W[pats][:, None, None])
                JZ = J @ Zp  # (P, m, q1+m)
                Syy_e += np.tensordot(JZ, J, axes=([0, 2], [0, 2]))
                Suy_e += JZ[:, :, :q1].sum(0).T
        Syy, Suy = 0.5 * (Syy_e + Syy_e.T), Suy_e
        M_new = Suy.T @ Suu_inv
        S_new = (Syy - M_new @ Suy - Suy.T @ M_new.T + M_new @ Suu @ M_new.T) / Wt
        S_new = 0.5 * (S_new + S_new.T)
        delta = max(np.max(np.abs(M_new - M)), np.max(np.abs(S_new - S)))
        M, S = M_new, S_new
        if delta < tol:
            converged = True
            break
    return {"M": M, "S": S, "Syy": Syy, "Suy": Suy, "Suu": Suu, "W": Wt, "iterations": it,
            "converged": converged}


# ----------------------------------------------------------------------------- public API
def _codebook(codebook: Codebook | str | Path, graph: object) -> Codebook:
    if isinstance(codebook, Codebook):
        return codebook
    return load_codebook(codebook, graph)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def stats_from_parquet(
    path: str | Path,
    codebook: Codebook | str | Path,
    graph: object,
    *,
    chunk_rows: int = 100_000,
    weights: bool = True,
    covariates: Sequence[str] | None = None,
    missing: str = "auto",
    max_fiml_patterns: int = 200,
    out_of_range: str = "error",
) -> StatsOnlyModelData:
    """Sufficient statistics of a Parquet survey, read in chunks (never the whole file).

    Parameters
    ----------
    path
        The Parquet file.
    codebook
        Codebook (or its YAML path) mapping columns onto graph nodes.
    graph
        The :class:`~veerkracht_bayes.causal_graph.CausalGraph` (covariate inference).
    chunk_rows
        Rows per record batch (memory ~ ``chunk_rows · columns · 8`` bytes plus the patterns).
    weights
        Use the codebook's weight column (False: equal weights).
    covariates, missing, max_fiml_patterns
        As in :func:`~veerkracht_bayes.sufficient_stats.model_data_from_survey` /
        :func:`~veerkracht_bayes.sufficient_stats.prepare_model_data`.
    out_of_range
        ``"error"`` or ``"missing"``, as in :func:`~veerkracht_bayes.survey_data.read_survey`.

    Returns
    -------
    StatsOnlyModelData
        Statistics equal to the in-memory path's; no per-row arrays.

    Raises
    ------
    SurveyError
        Missing columns, invalid weights or values (file and data row named), duplicate ids.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if chunk_rows < 1:
        raise SurveyError(Problem(f"chunk_rows must be >= 1, got {chunk_rows}", field="chunk_rows",
                                  value=chunk_rows))
    if not path.is_file():
        raise SurveyError(Problem("file not found (expected an existing Parquet file)", file=str(path)))
    cb = _codebook(codebook, graph)
    lay = _layout(cb, graph, covariates)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types
        raise SurveyError(Problem(f"cannot read as Parquet: {exc} (expected a Parquet file)",
                                  file=str(path))) from None
    present = set(pf.schema_arrow.names)
    cols = [c for c in lay.columns if c in present]
    absent = [c for c in lay.columns if c not in present]
    if absent:
        from .errors import did_you_mean

        raise SurveyError([Problem(f"codebook column {c!r} is missing from the data (expected a column with "
                                   f"this name){did_you_mean(c, sorted(present))}", file=str(path), field=c,
                                   value=c) for c in absent])
    frames = (b.to_pandas() for b in pf.iter_batches(batch_size=chunk_rows, columns=cols))
    acc = _accumulate(frames, lay, label=str(path), weights=weights, out_of_range=out_of_range)
    return _finalise(acc, lay, label=str(path), data_hash=_file_sha256(path), missing=missing,
                     max_fiml_patterns=max_fiml_patterns)


def stats_from_frames(
    frames: Iterable[pd.DataFrame],
    codebook: Codebook | str | Path,
    graph: object,
    *,
    weights: bool = True,
    covariates: Sequence[str] | None = None,
    missing: str = "auto",
    max_fiml_patterns: int = 200,
    out_of_range: str = "error",
    label: str = "<frames>",
) -> StatsOnlyModelData:
    """Sufficient statistics from any iterable of pandas chunks (same rules as Parquet)."""
    cb = _codebook(codebook, graph)
    lay = _layout(cb, graph, covariates)
    acc = _accumulate(frames, lay, label=label, weights=weights, out_of_range=out_of_range)
    return _finalise(acc, lay, label=label, data_hash=None, missing=missing,
                     max_fiml_patterns=max_fiml_patterns)


def stats_from_dask(
    ddf: Any,
    codebook: Codebook | str | Path,
    graph: object,
    *,
    weights: bool = True,
    covariates: Sequence[str] | None = None,
    missing: str = "auto",
    max_fiml_patterns: int = 200,
    out_of_range: str = "error",
) -> StatsOnlyModelData:
    """Sufficient statistics of a Dask dataframe: one accumulator per partition, merged.

    Each partition is cleaned and accumulated where it lives (``dask.delayed``); the
    accumulators (raw moments per pattern, each with its own shift) are merged exactly in a
    tree reduction and standardised once at the end. Error messages name the partition and
    the row within it.

    Raises
    ------
    ImportError
        When dask is not installed (``pip install "dask[dataframe]"``).
    """
    try:
        import dask
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("stats_from_dask needs dask: pip install \"dask[dataframe]\" "
                          "(an optional dependency of veerkracht_bayes)") from exc
    cb = _codebook(codebook, graph)
    lay = _layout(cb, graph, covariates)
    cols = lay.columns
    missing_cols = [c for c in cols if c not in ddf.columns]
    if missing_cols:
        raise SurveyError([Problem(f"codebook column {c!r} is missing from the dask dataframe", field=c,
                                   value=c) for c in missing_cols])

    def part(df: pd.DataFrame, i: int) -> StatsAccumulator:
        return _accumulate([df], lay, label=f"<dask partition {i}>", weights=weights,
                           out_of_range=out_of_range)

    parts = [dask.delayed(part)(d, i) for i, d in enumerate(ddf[cols].to_delayed())]
    while len(parts) > 1:
        parts = [dask.delayed(StatsAccumulator.merge)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    (acc,) = dask.compute(parts[0])
    return _finalise(acc, lay, label="<dask>", data_hash=None, missing=missing,
                     max_fiml_patterns=max_fiml_patterns)
