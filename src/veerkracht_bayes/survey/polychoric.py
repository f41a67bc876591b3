"""Stage 1 of the polychoric route: thresholds, latent-response correlations and their
asymptotic covariance, from weighted one-pass tables (NumPy/SciPy only).

Every ordinal or binary item ``y_j`` with ``K_j`` categories is read as a coarsened standard
normal latent response ``y*_j``: ``y_j = k`` iff ``tau_{j,k-1} < y*_j <= tau_{j,k}``. Every
continuous item is standardised (after its codebook transform). The latent-response
correlation matrix ``R`` is estimated pair by pair, on pairwise available cases:

* **thresholds**: ``tau_{j,k} = Phi^-1(P_w(y_j <= k))`` from the weighted marginal proportions;
* **ordinal x ordinal (polychoric)**: with thresholds fixed, ``rho`` maximises the weighted
  bivariate-normal log-likelihood of the pair's weighted contingency table,
  ``sum_ab n_ab log pi_ab(rho)``, ``pi_ab`` a rectangle probability of ``Phi_2(.,.; rho)``
  (computed with Owen's T, :func:`bvn_cdf`), by Fisher scoring, all pairs at once;
* **continuous x ordinal (polyserial)**: the category-means estimator. Under bivariate
  normality ``E[z | y = k] = rho g_k`` with ``g_k = (phi(tau_{k-1}) - phi(tau_k)) / P_k``; the
  estimating equation ``sum_i w_i g_{k_i} (z_i - rho g_{k_i}) = 0`` gives
  ``rho = sum_k g_k Z_k / sum_k W_k g_k^2`` from the per-category weighted counts ``W_k`` and
  sums ``Z_k`` of ``z`` (it generalises the Olsson-Drasgow-Dorans 1982 two-step estimator and
  needs only those tables);
* **continuous x continuous (Pearson)**: ``rho = sum_i w_i z_ij z_il / W_jl`` with each item
  standardised on its own available rows.

**Cost.** All tables come from one pass over the rows: one-hot codes ``H`` (n x sum K) and
standardised continuous columns ``Z`` give every contingency table, per-category sum and cross
product as blocks of ``[H Z M]' diag(w) [H Z M]`` (``M`` the observed-indicators), O(N m^2)
with BLAS. Everything in the estimates afterwards depends only on the tables.

**Asymptotic covariance** (sandwich on the estimating equations, the two-step linearisation of
Muthen 1984 and Joreskog 1994). Every estimate solves ``sum_i w_i psi_i(theta) = 0``; its
per-respondent contribution is ``c_i = -D^-1 (w_i psi_i + D_{theta,nuisance} c_i^{nuisance})``,
where the nuisance parameters are the thresholds (``c_i^tau = w_i (1[y_ij <= k] - Phi(tau_k)) /
(W_j phi(tau_k))``) and the means and SDs used to standardise continuous items, and ``D`` are
expected Hessians computed from the tables (for a polychoric pair ``D_rho,rho = -W_jl sum
pi'^2 / pi``, ``D_rho,tau = -W_jl sum (pi'/pi) d pi / d tau``). The contribution of a respondent
to a pair depends only on their cell (ordinal) or on ``(z_i, k_i)`` (polyserial), so it is a
look-up in per-pair tables. ``Gamma = sum_i c_i c_i'`` (weights normalised to mean 1, rows
treated as independent draws: a with-replacement design, no strata or clusters). That second
pass is O(N s^2) for ``s = m(m-1)/2`` correlations, done by BLAS in row chunks
(``acov="diagonal"``: O(N s)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri, owens_t

from veerkracht_bayes.errors import ModelError, Problem, SurveyError

__all__ = ["PolychoricResult", "bvn_cdf", "cholesky_whitener", "polychoric", "whiten_correlations"]

#: finite stand-in for the infinite outer thresholds: Phi(38) == 1 in double precision
BIG = 38.0
_SQRT2PI = float(np.sqrt(2 * np.pi))


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.square(x)) / _SQRT2PI


def bvn_cdf(h: np.ndarray, k: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Bivariate standard normal CDF ``P(X <= h, Y <= k)`` with correlation ``rho`` (vectorised).

    Owen's T form: ``Phi2 = (Phi(h) + Phi(k)) / 2 - T(h, a_h) - T(k, a_k) - delta`` with
    ``a_h = (k - rho h) / (h sqrt(1 - rho^2))`` (and ``a_k`` symmetrically), ``delta = 1/2``
    when ``h k < 0`` (or one is 0 and ``h + k < 0``). Infinite arguments are clipped to ``±38``.

    Examples
    --------
    >>> round(float(bvn_cdf(0.0, 0.0, 0.5)), 6)  # 1/4 + asin(0.5) / (2 pi)
    0.333333
    """
    h, k, rho = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (h, k, rho)))
    h = np.clip(h, -BIG, BIG)
    k = np.clip(k, -BIG, BIG)
    h = np.where(h == 0.0, 1e-12, h)
    k = np.where(k == 0.0, 1e-12, k)
    s = np.sqrt(np.maximum(1.0 - rho * rho, 1e-300))
    ah = (k - rho * h) / (h * s)
    ak = (h - rho * k) / (k * s)
    delta = np.where(h * k < 0, 0.5, 0.0)
    out = 0.5 * (ndtr(h) + ndtr(k)) - owens_t(h, ah) - owens_t(k, ak) - delta
    return np.clip(out, 0.0, 1.0)


def _bvn_pdf(h: np.ndarray, k: np.ndarray, rho: np.ndarray) -> np.ndarray:
    s2 = 1.0 - rho * rho
    return np.exp(-(h * h - 2 * rho * h * k + k * k) / (2 * s2)) / (2 * np.pi * np.sqrt(s2))


@dataclass(frozen=True)
class PolychoricResult:
    """Stage-1 summaries of a survey for the polychoric route.

    Attributes
    ----------
    names, kinds
        Variables in order and their kind (``"ordinal"`` or ``"continuous"``).
    n_categories
        Categories per variable (0 for continuous ones).
    thresholds
        Per variable the ``K - 1`` thresholds (empty for continuous ones).
    threshold_se
        Their asymptotic standard errors.
    correlation
        ``(m, m)`` latent-response correlation matrix (unit diagonal).
    pairs
        ``(s, 2)`` index pairs ``i < j`` in the order of :attr:`r`.
    r
        ``(s,)`` estimated correlations (``correlation[pairs[:, 0], pairs[:, 1]]``).
    acov
        ``(s, s)`` asymptotic covariance of :attr:`r` (the sampling covariance itself, not scaled
        by N), or its diagonal as a diagonal matrix with ``acov="diagonal"``.
    pair_n
        ``(s,)`` weighted number of respondents per pair (weights normalised to mean 1).
    n
        Rows used.
    threshold_acov
        ``(t, t)`` asymptotic covariance of all thresholds, stacked item by item in column order
        (``t`` the total number of thresholds), from the same per-respondent contributions as
        :attr:`acov`; None unless ``acov="full"``.
    threshold_r_acov
        ``(t, s)`` asymptotic cross-covariance of the thresholds and :attr:`r` (the off-diagonal
        block of the joint covariance of ``(thresholds, r)``, as lavaan's WLS weight matrix
        uses it); None unless ``acov="full"``.

    Examples
    --------
    Returned by :func:`polychoric`:

    >>> import numpy as np
    >>> y = np.random.default_rng(1).integers(0, 3, (200, 3)).astype(float)
    >>> res = polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"])
    >>> isinstance(res, PolychoricResult), res.pairs.tolist(), res.n_categories.tolist(), res.n
    (True, [[0, 1], [0, 2], [1, 2]], [3, 3, 3], 200)
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    n_categories: np.ndarray
    thresholds: tuple[np.ndarray, ...]
    threshold_se: tuple[np.ndarray, ...]
    correlation: np.ndarray
    pairs: np.ndarray
    r: np.ndarray
    acov: np.ndarray
    pair_n: np.ndarray
    n: int
    threshold_acov: np.ndarray | None = None
    threshold_r_acov: np.ndarray | None = None

    @property
    def se(self) -> np.ndarray:
        """Asymptotic standard errors of :attr:`r`."""
        return np.sqrt(np.diag(self.acov))

    def index(self, a: str, b: str) -> int:
        """Position in :attr:`r` of the pair ``(a, b)`` (either order)."""
        i, j = sorted((self.names.index(a), self.names.index(b)))
        hit = np.flatnonzero((self.pairs[:, 0] == i) & (self.pairs[:, 1] == j))
        return int(hit[0])


def _check(data: np.ndarray, kinds: Sequence[str], names: Sequence[str]) -> list[int]:
    problems = []
    ncat = []
    for j, (kind, name) in enumerate(zip(kinds, names, strict=True)):
        col = data[:, j]
        obs = ~np.isnan(col)
        if kind not in ("ordinal", "continuous"):
            problems.append(Problem(f"kind must be 'ordinal' or 'continuous', got {kind!r}", field=name))
            ncat.append(0)
            continue
        if obs.sum() < 2:
            problems.append(Problem(f"fewer than 2 observed values in column {name!r}", field=name))
        if kind == "continuous":
            ncat.append(0)
            continue
        v = col[obs]
        if v.size and (np.any(v != np.round(v)) or v.min() < 0):
            bad = int(np.flatnonzero(obs)[np.flatnonzero((v != np.round(v)) | (v < 0))[0]])
            problems.append(Problem(f"ordinal codes must be integers 0..K-1, got {col[bad]!r}", field=name,
                                    line=bad + 1))
            ncat.append(0)
            continue
        k = int(v.max()) + 1 if v.size else 0
        if np.unique(v).size < 2:
            problems.append(Problem("an ordinal item needs at least 2 observed categories", field=name))
        ncat.append(k)
    if problems:
        raise SurveyError(problems)
    return ncat


def polychoric(data: np.ndarray, kinds: Sequence[str], *, weights: np.ndarray | None = None,
               names: Sequence[str] | None = None, acov: str = "full", chunk: int = 4096,
               max_iter: int = 50, model_rows: int | None = None, seed: int = 0) -> PolychoricResult:
    """Thresholds, polychoric / polyserial / Pearson correlations and their asymptotic covariance.

    Parameters
    ----------
    data
        ``(n, m)`` array; ordinal columns hold integer codes ``0..K-1``; NaN is missing.
    kinds
        ``"ordinal"`` or ``"continuous"`` per column (binary items are 2-category ordinal).
    weights
        Survey weights (normalised to mean 1 inside); None for equal weights.
    names
        Column names (default ``v0, v1, ...``).
    acov
        ``"full"`` (the sandwich over all correlations, averaged over the respondents' rows),
        ``"model"`` (the same sandwich averaged over rows simulated from the fitted latent-normal
        model: see :func:`polychoric`'s notes below), ``"diagonal"`` (the ``"full"`` diagonal only)
        or ``"none"``.
    chunk
        Rows per block of the covariance pass.
    model_rows
        Simulated rows for ``acov="model"`` (default ``max(n, 100_000)``).
    seed
        Seed of the simulation for ``acov="model"`` (the result is deterministic given it).

    Returns
    -------
    PolychoricResult

    Notes
    -----
    ``acov="model"`` evaluates the expectation in ``Gamma = n E[c c']`` under the fitted model
    instead of by the average over the ``n`` observed rows: the per-respondent contributions
    ``c`` (the same look-up tables, built from the data) are summed over ``model_rows`` rows
    whose latent responses are drawn from ``N(0, R_hat)`` (``R_hat`` the estimated correlation
    matrix, eigenvalues floored at 1e-3) and coarsened at the estimated thresholds, each row
    carrying the observed-indicators and weight of a respondent drawn at random. The empirical
    ``"full"`` matrix is an average of ``n`` fourth-moment terms: at n = 1,000 with 45
    correlations its mean is right but its noise (relative SD ~0.07 per diagonal entry) makes the
    stage-2 likelihood too sharp (the likelihood-ratio statistic at the truth beyond its 90 %
    point in 21 % of data sets; 10 % with ``"model"``, whose noise is ~0.04: docs/performance.md
    §4b.1). The model-based matrix adds Monte Carlo noise of order ``s / model_rows`` to the
    variation it inherits from ``R_hat`` and the thresholds; it assumes latent normality for the
    fourth moments, which the polychoric correlations assume already.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.multivariate_normal([0, 0], [[1, .5], [.5, 1]], size=4000)
    >>> y = np.column_stack([np.digitize(z[:, 0], [-.5, .5]), np.digitize(z[:, 1], [0.])]).astype(float)
    >>> res = polychoric(y, ["ordinal", "ordinal"])
    >>> bool(abs(res.r[0] - 0.5) < 4 * res.se[0])
    True
    >>> res_m = polychoric(y, ["ordinal", "ordinal"], acov="model", model_rows=20_000)
    >>> bool(abs(res_m.se[0] / res.se[0] - 1) < 0.1)
    True
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise SurveyError(Problem(f"data must be a 2-d array, got shape {data.shape}"))
    n, m = data.shape
    names = tuple(names) if names is not None else tuple(f"v{j}" for j in range(m))
    kinds = tuple(kinds)
    if len(kinds) != m or len(names) != m:
        raise SurveyError(Problem(f"{m} columns but {len(kinds)} kinds and {len(names)} names"))
    if acov not in ("full", "model", "diagonal", "none"):
        raise SurveyError(Problem(f"acov must be 'full', 'model', 'diagonal' or 'none', got {acov!r}",
                                  field="acov"))
    ncat = np.array(_check(data, kinds, names), dtype=int)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise SurveyError(Problem(f"weights must be {n} finite non-negative numbers with a positive sum",
                                  field="weights"))
    w = w * (n / w.sum())
    obs = ~np.isnan(data)
    ordi = [j for j in range(m) if kinds[j] == "ordinal"]
    cont = [j for j in range(m) if kinds[j] == "continuous"]

    # ---- univariate: thresholds (padded -BIG, tau..., +BIG), means/sds of continuous items
    W1 = (w[:, None] * obs).sum(axis=0)
    tpad: dict[int, np.ndarray] = {}
    tse: dict[int, np.ndarray] = {}
    for j in ordi:
        c = data[obs[:, j], j].astype(int)
        cum = np.cumsum(np.bincount(c, weights=w[obs[:, j]], minlength=ncat[j]))[:-1] / W1[j]
        cum = np.clip(cum, 1e-10, 1 - 1e-10)
        tau = ndtri(cum)
        tpad[j] = np.concatenate([[-BIG], tau, [BIG]])
        wj = w[obs[:, j]]
        ind = (c[:, None] <= np.arange(ncat[j] - 1)[None, :]).astype(float)
        tse[j] = np.sqrt(np.sum((wj[:, None] * (ind - cum[None, :])) ** 2, axis=0)) / (W1[j] * _phi(tau))
    mu = np.zeros(m)
    sd = np.ones(m)
    Z = np.zeros((n, m))
    for j in cont:
        o = obs[:, j]
        mu[j] = np.sum(w[o] * data[o, j]) / W1[j]
        sd[j] = np.sqrt(np.sum(w[o] * (data[o, j] - mu[j]) ** 2) / W1[j])
        if not sd[j] > 0:
            raise SurveyError(Problem("a continuous item has no variance", field=names[j]))
        Z[o, j] = (data[o, j] - mu[j]) / sd[j]

    # ---- all tables, as blocks of X' diag(w) X (X: one-hot codes, z-scores, observed indicators)
    offs = {}
    pos = 0
    for j in ordi:
        offs[j] = slice(pos, pos + ncat[j])
        pos += ncat[j]
    T = _weighted_tables(data, obs, w, Z, ordi, cont, ncat, offs, pos)
    nc = len(cont)
    zc = {j: pos + a for a, j in enumerate(cont)}
    mc = {j: pos + nc + a for a, j in enumerate(cont)}

    pairs = np.array([(i, j) for i in range(m) for j in range(i + 1, m)], dtype=int).reshape(-1, 2)
    s = len(pairs)
    r = np.zeros(s)
    pair_n = np.zeros(s)
    # per pair: how to build its contribution (a closure over look-up tables)
    contrib: list[tuple] = []

    # ---- ordinal x ordinal: vectorised Fisher scoring over all such pairs
    oo = [p for p, (i, j) in enumerate(pairs) if kinds[i] == "ordinal" and kinds[j] == "ordinal"]
    if oo:
        kmax = int(ncat[ordi].max())
        P = len(oo)
        ti = np.full((P, kmax + 1), BIG)
        tj = np.full((P, kmax + 1), BIG)
        nab = np.zeros((P, kmax, kmax))
        for a, p in enumerate(oo):
            i, j = pairs[p]
            ti[a, : ncat[i] + 1] = tpad[i]
            tj[a, : ncat[j] + 1] = tpad[j]
            nab[a, : ncat[i], : ncat[j]] = T[offs[i], offs[j]]
        # lavaan's zero.add = c(0.5, 0): 0.5 (weight units, weights of mean 1) in every empty
        # cell of a 2 x 2 table. Otherwise an empty cell, which a strong correlation makes likely
        # (e.g. two binary items with 18 % "yes" at rho = -0.5: 4 of 900 expected in the yes-yes
        # cell), puts the tetrachoric MLE at +-1, where its information is 0 and Gamma undefined
        two = np.array([ncat[pairs[p][0]] == 2 and ncat[pairs[p][1]] == 2 for p in oo])
        add = two[:, None, None] & (nab == 0) & (nab.sum(axis=(1, 2)) > 0)[:, None, None]
        add[:, 2:, :] = False
        add[:, :, 2:] = False
        nab = np.where(add, 0.5, nab)
        Wp = nab.sum(axis=(1, 2))
        # start: Pearson correlation of the codes
        ka = np.arange(kmax, dtype=float)
        pa = nab.sum(axis=2) / Wp[:, None]
        pb = nab.sum(axis=1) / Wp[:, None]
        ma, mb = pa @ ka, pb @ ka
        va, vb = pa @ ka ** 2 - ma ** 2, pb @ ka ** 2 - mb ** 2
        cab = np.einsum("pab,a,b->p", nab, ka, ka) / Wp - ma * mb
        rho = np.clip(cab / np.sqrt(va * vb), -0.95, 0.95)
        H_, K_ = ti[:, :, None], tj[:, None, :]

        def cells(rho_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rr = rho_[:, None, None]
            F = bvn_cdf(H_, K_, rr)
            f = _bvn_pdf(H_, K_, rr)
            pi = F[:, 1:, 1:] - F[:, :-1, 1:] - F[:, 1:, :-1] + F[:, :-1, :-1]
            dpi = f[:, 1:, 1:] - f[:, :-1, 1:] - f[:, 1:, :-1] + f[:, :-1, :-1]
            return pi, dpi

        for _ in range(max_iter):
            pi, dpi = cells(rho)
            ok = pi > 1e-300
            sc = np.where(ok, dpi / np.where(ok, pi, 1.0), 0.0)
            U = np.sum(nab * sc, axis=(1, 2))
            info = Wp * np.sum(np.where(ok, dpi * sc, 0.0), axis=(1, 2))
            step = U / np.maximum(info, 1e-12)
            # damped in Fisher-z: never jump past +-0.999
            new = np.tanh(np.clip(np.arctanh(rho) + step / np.maximum(1 - rho ** 2, 1e-6), -3.8, 3.8))
            done = np.max(np.abs(new - rho)) < 1e-10
            rho = new
            if done:
                break
        pi, dpi = cells(rho)
        ok = pi > 1e-300
        sc = np.where(ok, dpi / np.where(ok, pi, 1.0), 0.0)
        info = Wp * np.sum(np.where(ok, dpi * sc, 0.0), axis=(1, 2))
        srho = np.sqrt(1 - rho ** 2)[:, None, None]
        # dF/dh at (t_i[u], t_j[v]) and dF/dk
        Gh = _phi(H_) * ndtr((K_ - rho[:, None, None] * H_) / srho)
        Gk = _phi(K_) * ndtr((H_ - rho[:, None, None] * K_) / srho)
        dh = Gh[:, :, 1:] - Gh[:, :, :-1]  # (P, u, b)
        dk = Gk[:, 1:, :] - Gk[:, :-1, :]  # (P, a, v)
        for a, p in enumerate(oo):
            i, j = pairs[p]
            ki, kj = ncat[i], ncat[j]
            S = sc[a, :ki, :kj]
            r[p] = rho[a]
            pair_n[p] = Wp[a]
            u = np.arange(1, ki)
            Dti = -Wp[a] * np.sum((S[u - 1, :] - S[u, :]) * dh[a][u, :kj], axis=1)
            v = np.arange(1, kj)
            Dtj = -Wp[a] * np.sum((S[:, v - 1] - S[:, v]) * dk[a][:ki, v], axis=0)
            Ei = _threshold_effect(Dti, tpad[i], W1[i], ki)
            Ej = _threshold_effect(Dtj, tpad[j], W1[j], kj)
            contrib.append(("oo", i, j, S, Ei, Ej, info[a]))

    # ---- continuous x ordinal (polyserial) and continuous x continuous (Pearson)
    for p, (i, j) in enumerate(pairs):
        if kinds[i] == "ordinal" and kinds[j] == "ordinal":
            continue
        if kinds[i] == "continuous" and kinds[j] == "continuous":
            Wjl = T[mc[i], mc[j]]
            rho_ = T[zc[i], zc[j]] / Wjl
            r[p] = rho_
            pair_n[p] = Wjl
            m_i = T[zc[i], mc[j]] / Wjl  # mean of z_i over the pair's rows
            m_j = T[mc[i], zc[j]] / Wjl
            contrib.append(("cc", i, j, rho_, Wjl, m_i, m_j, W1[i], W1[j]))
            continue
        c, o = (i, j) if kinds[i] == "continuous" else (j, i)
        k = ncat[o]
        Wk = T[offs[o], mc[c]]
        Zk = T[offs[o], zc[c]]
        t = tpad[o]
        Pk = np.maximum(ndtr(t[1:]) - ndtr(t[:-1]), 1e-300)
        g = (_phi(t[:-1]) - _phi(t[1:])) / Pk
        info = np.sum(Wk * g * g)
        rho_ = float(np.sum(g * Zk) / info)
        r[p] = rho_
        pair_n[p] = Wk.sum()
        # d g_k / d t_u for interior u = 1..k-1: lower end of category u, upper end of u-1
        u = np.arange(1, k)
        dg_low = _phi(t[u]) * (g[u] - t[u]) / Pk[u]            # category u
        dg_up = _phi(t[u]) * (t[u] - g[u - 1]) / Pk[u - 1]     # category u-1
        Dt = -rho_ * (Wk[u] * g[u] * dg_low + Wk[u - 1] * g[u - 1] * dg_up)
        Eo = _threshold_effect(Dt, t, W1[o], k)
        a_mu = np.sum(Wk * g) / W1[c]
        a_sd = rho_ * info / (2 * W1[c])
        contrib.append(("co", c, o, g, rho_, Eo, a_mu, a_sd, info))

    R = np.eye(m)
    R[pairs[:, 0], pairs[:, 1]] = r
    R[pairs[:, 1], pairs[:, 0]] = r
    G = np.zeros((s, s))
    n_thr = int(sum(ncat[j] - 1 for j in ordi))
    G_tt = np.zeros((n_thr, n_thr)) if acov == "full" else None
    G_tr = np.zeros((n_thr, s)) if acov == "full" else None
    if acov in ("full", "diagonal") and (s or n_thr):
        codes = np.where(obs, np.nan_to_num(data), 0).astype(int)
        for a0 in range(0, n, chunk):
            sl = slice(a0, min(n, a0 + chunk))
            C = np.empty((sl.stop - sl.start, s))
            wc, oc, cc, zz = w[sl], obs[sl], codes[sl], Z[sl]
            for p, cb in enumerate(contrib):
                C[:, p] = _contribution(cb, wc, oc, cc, zz)
            if acov == "full":
                G += C.T @ C
                # thresholds' contributions (the nuisance term of the module docstring), same rows
                Ct = np.concatenate([_threshold_contribution(tpad[j], W1[j], wc, oc[:, j], cc[:, j])
                                     for j in ordi], axis=1) if ordi else np.zeros((len(wc), 0))
                G_tt += Ct.T @ Ct
                G_tr += Ct.T @ C
            else:
                G[np.diag_indices(s)] += np.sum(C * C, axis=0)
    if acov == "model" and s:
        G = _model_acov(contrib, R, tpad, kinds, w, obs, max(n, 100_000) if model_rows is None else int(model_rows),
                        seed, chunk)
    # the columns of C follow contrib (ordinal pairs first): back to the order of pairs
    order = [_cb_pair(cb, pairs) for cb in contrib]
    inv = np.empty(s, dtype=int)
    inv[np.array(order, dtype=int)] = np.arange(s)
    G = G[np.ix_(inv, inv)]
    if G_tr is not None:
        G_tr = G_tr[:, inv]
    bad = np.flatnonzero(~np.isfinite(r) | ~np.isfinite(np.diag(G)))
    if bad.size:
        raise SurveyError([Problem(f"the correlation of {names[pairs[q][0]]!r} and {names[pairs[q][1]]!r} "
                                   f"(r = {r[q]:.4f}) has no finite asymptotic variance: its table is degenerate "
                                   "(a correlation at +-1, or a category nobody chose); merge categories "
                                   "or drop an item", field=f"{names[pairs[q][0]]},{names[pairs[q][1]]}")
                           for q in bad[:10]])
    return PolychoricResult(
        names=names, kinds=kinds, n_categories=ncat,
        thresholds=tuple(tpad[j][1:-1] if j in tpad else np.zeros(0) for j in range(m)),
        threshold_se=tuple(tse.get(j, np.zeros(0)) for j in range(m)),
        correlation=R, pairs=pairs, r=r, acov=G, pair_n=pair_n, n=n, threshold_acov=G_tt,
        threshold_r_acov=G_tr)


def cholesky_whitener(mean: np.ndarray, cov: np.ndarray, what: str = "correlations"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``L^-1 mean`` and ``L^-1`` for ``cov = L L'`` (Cholesky), the whitening of a Gaussian stage-2 fit.

    Parameters
    ----------
    mean
        Stage-1 estimates.
    cov
        Their asymptotic covariance (positive definite).
    what
        What the estimates are, for the error message.

    Returns
    -------
    (whitened mean, L^-1)

    Raises
    ------
    ModelError
        When ``cov`` is not positive definite.

    Examples
    --------
    >>> w, l_inv = cholesky_whitener(np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
    >>> w.tolist(), l_inv.tolist()
    ([0.5, 2.0], [[0.5, 0.0], [0.0, 1.0]])
    """
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as err:
        raise ModelError(f"the stage-1 asymptotic covariance of the {what} is not positive definite "
                         f"(too few respondents for the number of {what}?)") from err
    l_inv = np.linalg.solve(chol, np.eye(len(chol)))
    return l_inv @ mean, l_inv


def whiten_correlations(stats: PolychoricResult, subset: np.ndarray | Sequence[int] | None = None, *,
                        ridge: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Whitened correlations ``L^-1 r_hat`` and ``L^-1`` for the stage-2 least-squares fit.

    With ``Gamma_hat`` the asymptotic covariance of the chosen correlations plus a relative
    ridge (``ridge * trace(Gamma_hat) / s`` on the diagonal, ``s`` their number) and
    ``Gamma_hat = L L'`` its Cholesky factor, the stage-2 discrepancy
    ``(r_hat - rho)' Gamma_hat^-1 (r_hat - rho)`` equals ``|L^-1 r_hat - L^-1 rho|^2``.

    Parameters
    ----------
    stats : PolychoricResult
        Stage-1 estimates (:func:`polychoric`).
    subset : array of int, optional
        Positions in ``stats.r`` to keep (all when omitted).
    ridge : float
        Relative ridge added to the diagonal before the Cholesky factor.

    Returns
    -------
    r_whitened : ndarray, shape (s,)
        ``L^-1 r_hat``.
    l_inv : ndarray, shape (s, s)
        ``L^-1`` (lower triangular).

    Raises
    ------
    ModelError
        If ``Gamma_hat`` is not positive definite (too few respondents for the number of
        correlations).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(1).integers(0, 3, (200, 3)).astype(float)
    >>> res = polychoric(y, ["ordinal"] * 3, names=["a", "b", "c"])
    >>> r_w, l_inv = whiten_correlations(res, [0, 2])
    >>> r_w.shape, l_inv.shape
    ((2,), (2, 2))
    >>> bool(np.allclose(np.linalg.solve(l_inv, r_w), res.r[[0, 2]]))
    True
    """
    idx = np.arange(len(stats.r)) if subset is None else np.asarray(subset, dtype=int)
    r_hat = stats.r[idx]
    g_hat = stats.acov[np.ix_(idx, idx)]
    g_hat = g_hat + ridge * np.trace(g_hat) / max(len(g_hat), 1) * np.eye(len(g_hat))
    return cholesky_whitener(r_hat, g_hat, "correlations")


def _cb_pair(cb: tuple, pairs: np.ndarray) -> int:
    """Index in ``pairs`` of a contribution record."""
    a, b = sorted((int(cb[1]), int(cb[2])))
    return int(np.flatnonzero((pairs[:, 0] == a) & (pairs[:, 1] == b))[0])


def _model_acov(contrib: list[tuple], R: np.ndarray, tpad: dict[int, np.ndarray], kinds: Sequence[str],
                w: np.ndarray, obs: np.ndarray, rows: int, seed: int, chunk: int) -> np.ndarray:
    """``n E[c c']`` (columns in ``contrib`` order) over ``rows`` rows simulated from the fitted
    latent-normal model, each with the weight and observed-indicators of a random respondent."""
    n, m = obs.shape
    if rows < 1:
        raise SurveyError(Problem(f"model_rows must be a positive number of rows, got {rows}", field="model_rows"))
    rng = np.random.default_rng(seed)
    ev, V = np.linalg.eigh(R)
    Rc = (V * np.maximum(ev, 1e-3)) @ V.T
    d = np.sqrt(np.diag(Rc))
    chol = np.linalg.cholesky(Rc / np.outer(d, d))
    G = np.zeros((len(contrib), len(contrib)))
    for a0 in range(0, rows, chunk):
        k = min(rows, a0 + chunk) - a0
        pick = rng.integers(0, n, k)
        ys = rng.standard_normal((k, m)) @ chol.T
        ob = obs[pick]
        codes = np.zeros((k, m), dtype=int)
        for j in range(m):
            if kinds[j] == "ordinal":
                codes[:, j] = np.searchsorted(tpad[j][1:-1], ys[:, j], side="left")
        codes = np.where(ob, codes, 0)
        Zs = np.where(ob, ys, 0.0)
        C = np.empty((k, len(contrib)))
        for p, cb in enumerate(contrib):
            C[:, p] = _contribution(cb, w[pick], ob, codes, Zs)
        G += C.T @ C
    return G * (n / rows)


def _weighted_tables(data: np.ndarray, obs: np.ndarray, w: np.ndarray, Z: np.ndarray, ordi: list[int],
                     cont: list[int], ncat: np.ndarray, offs: dict[int, slice], pos: int) -> np.ndarray:
    """``X' diag(w) X`` for ``X = [one-hot codes of the ordinal items, z of the continuous items,
    their observed indicators]`` (in that column order; ``offs`` places the one-hot blocks),
    built block by block with weighted ``bincount``s instead of the ``n x (sum K + 2 c)`` matrix
    ``X`` (at n = 1,000,000 with 9 five-category items: 3.7 s and 0.75 GB -> a fraction of both).
    Unobserved entries contribute nothing (``Z`` is 0 there)."""
    nc = len(cont)
    T = np.zeros((pos + 2 * nc, pos + 2 * nc))
    codes = {j: np.where(obs[:, j], np.nan_to_num(data[:, j]), 0).astype(np.int64) for j in ordi}
    wo = {j: np.where(obs[:, j], w, 0.0) for j in ordi}
    zc = [w * Z[:, c] for c in cont]          # w z_c (0 where c is missing)
    mc = [w * obs[:, c] for c in cont]        # w 1[c observed]
    for a, i in enumerate(ordi):
        ki = int(ncat[i])
        T[offs[i], offs[i]] = np.diag(np.bincount(codes[i], weights=wo[i], minlength=ki)[:ki])
        for j in ordi[a + 1:]:
            kj = int(ncat[j])
            both = wo[i] * obs[:, j]
            tab = np.bincount(codes[i] * kj + codes[j], weights=both, minlength=ki * kj)[: ki * kj]
            T[offs[i], offs[j]] = tab.reshape(ki, kj)
            T[offs[j], offs[i]] = tab.reshape(ki, kj).T
        for b, c in enumerate(cont):
            for col, v in ((pos + b, zc[b]), (pos + nc + b, mc[b])):
                T[offs[i], col] = np.bincount(codes[i], weights=v * obs[:, i], minlength=ki)[:ki]
                T[col, offs[i]] = T[offs[i], col]
    V = np.column_stack([Z[:, cont], obs[:, cont].astype(float)]) if nc else np.zeros((len(w), 0))
    T[pos:, pos:] = (V * w[:, None]).T @ V
    return T


def _threshold_effect(D: np.ndarray, t: np.ndarray, Wj: float, k: int) -> np.ndarray:
    """Per category ``a`` of an item: ``sum_u D_u (1[a <= u-1] - Phi(t_u)) / (W_j phi(t_u))``,
    the thresholds' part of a correlation's contribution (times the respondent's weight)."""
    u = np.arange(1, k)
    ind = (np.arange(k)[:, None] <= (u - 1)[None, :]).astype(float)
    return ((ind - ndtr(t[u])[None, :]) / (Wj * _phi(t[u]))[None, :]) @ D


def _threshold_contribution(t: np.ndarray, Wj: float, w: np.ndarray, obs: np.ndarray,
                            codes: np.ndarray) -> np.ndarray:
    """Per-respondent contributions ``(n, K - 1)`` to an item's thresholds ``t`` (padded):
    ``w_i (1[y_i <= u - 1] - Phi(t_u)) / (W_j phi(t_u))`` on observed rows, 0 elsewhere."""
    u = np.arange(1, len(t) - 1)
    ind = (codes[:, None] <= (u - 1)[None, :]).astype(float)
    val = (ind - ndtr(t[u])[None, :]) / (Wj * _phi(t[u]))[None, :]
    return np.where(obs[:, None], w[:, None] * val, 0.0)


def _contribution(cb: tuple, w: np.ndarray, obs: np.ndarray, codes: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Per-respondent contribution ``c_i`` to one correlation (see the module docstring)."""
    kind = cb[0]
    if kind == "oo":
        _, i, j, S, Ei, Ej, info = cb
        oi, oj = obs[:, i], obs[:, j]
        ci, cj = codes[:, i], codes[:, j]
        val = np.where(oi & oj, S[ci, cj], 0.0) + np.where(oi, Ei[ci], 0.0) + np.where(oj, Ej[cj], 0.0)
        return w * val / info
    if kind == "co":
        _, c, o, g, rho, Eo, a_mu, a_sd, info = cb
        oc, oo = obs[:, c], obs[:, o]
        gk = g[codes[:, o]]
        z = Z[:, c]
        val = (np.where(oc & oo, gk * (z - rho * gk), 0.0) + np.where(oo, Eo[codes[:, o]], 0.0)
               - np.where(oc, a_mu * z + a_sd * (z * z - 1.0), 0.0))
        return w * val / info
    _, i, j, rho, Wjl, m_i, m_j, Wi, Wj = cb
    oi, oj = obs[:, i], obs[:, j]
    zi, zj = Z[:, i], Z[:, j]
    val = (np.where(oi & oj, zi * zj - rho, 0.0)
           - np.where(oi, (zi * m_j + 0.5 * (zi * zi - 1) * rho) * Wjl / Wi, 0.0)
           - np.where(oj, (zj * m_i + 0.5 * (zj * zj - 1) * rho) * Wjl / Wj, 0.0))
    return w * val / Wjl
