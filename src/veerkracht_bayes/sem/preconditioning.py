"""Coordinates and starting points in which NUTS can move through the posterior quickly.

None of this changes the model or its posterior; it changes where the sampler starts and
the coordinates it moves in (each a fixed bijection, applied in :mod:`~veerkracht_bayes.inference.jax_nuts`).

1. **Whitened intercepts.** The intercepts ``nu`` (one per item) have a posterior close to ``N(ybar, Sigma / n)``: they
are correlated as the items are. On MARVEL the common direction of the 57 intercepts is
the longest axis of the whole posterior (correlation-matrix eigenvalue 9 of 195 parameters),
which a diagonal mass matrix cannot shorten, so it sets the length of every NUTS trajectory.

:func:`intercept_whitening` computes, from the sufficient statistics alone, a lower-triangular
``T`` with ``T T' ~ Cov(nu | data)``. The model builder stores it as a data container named
``WHITEN_PREFIX + "nu"``; the JAX sampler (:mod:`~veerkracht_bayes.inference.jax_nuts`) then moves in
``z = T^-1 nu`` and evaluates the model at ``nu = T z``. The map is linear with a constant
Jacobian, so the posterior of ``nu`` (and of everything else) is unchanged: only the
coordinates NUTS moves in differ. Being data, ``T`` is an argument of the compiled program, so
new data of the same shape reuse it. PyMC's own samplers ignore the container.

2. **Reciprocal pairs.** A pair of sign-constrained links ``a -> b`` and ``b -> a`` is weakly
   identified along a ridge (about ``|beta_ab| + |beta_ba|`` is known, not the split), and PyMC
   samples each in ``log|beta|``: the ridge becomes a curved, one-sided funnel in which NUTS
   needed 63 leapfrog steps per draw on MARVEL. :func:`reciprocal_log_pairs` finds such pairs;
   the sampler moves in ``(l_s, l_f)`` with ``|beta_ab| = e^l_s sigmoid(l_f)`` and
   ``|beta_ba| = e^l_s sigmoid(-l_f)``, i.e. ``log|beta_ab| = l_s + log sigmoid(l_f)`` and
   ``log|beta_ba| = l_s + log sigmoid(-l_f)``. The Jacobian determinant of that map is exactly
   ``-1``, so the density needs no correction. On MARVEL: 63 -> about 20 steps per draw.

3. **Starting values for the measurement part** (:func:`measurement_start`): loadings from a
   principal-axis factoring of each construct's items, residual variances ``1 - lambda^2`` and
   intercepts at the item means, each jittered by about two posterior standard deviations. Chains
   started at prior draws of these (their prior is wide, their posterior at large ``n`` is not)
   spent their first hundred iterations drifting, and that drift spoilt the first mass-matrix
   windows. The links keep their dispersed prior-draw starts.

4. **A point to measure scales at** (:func:`link_estimate`): per-equation least squares on the
   disattenuated construct correlations (ignoring simultaneity: a rough point, not an
   estimator we report). The sampler scales each coordinate by the log-density's curvature
   there; measured at the chains' prior-draw starts instead, the scales of the links were off
   by up to 40 times and the first hundred warm-up iterations took about 450 leapfrog steps
   each. With a valid least-squares point, the chains start within about two curvature scales
   (conditional posterior sds) of it, jittered independently per chain; from prior-draw starts
   some seeds spent most of their warm-up travelling out of ``log|beta|`` plateaus.

5. **Guided latent scores on the ordinal path** (used by
   :func:`veerkracht_bayes.sem.ordinal.build_ordinal_model`). The exact ordinal path has one
   latent score vector ``eta_n`` per respondent. Non-centred
   (``eta_n = A (Gamma x_n + sqrt(psi) z_n)``) every move of ``B`` moves all ``eta_n`` away from
   what their items say, so ``B`` mixed slowly (bulk ESS 10-20 of 300 draws at n = 1000). The
   sampler moves instead in ``u_n`` with ``eta_n = m_n + L u_n``, where ``N(m_n, L L')`` is the
   Gaussian update of the structural prior ``N(A Gamma x_n, Sigma)`` by a Gaussian stand-in for the
   items: each item's normal score (:func:`ordinal_normal_scores`) read as a continuous indicator
   whose loading follows the model's (:func:`ordinal_score_guide`). The stand-in only shapes the
   map; the density is the exact one at ``eta(u)`` plus the log-Jacobian ``n log|det L|``, so the
   posterior is unchanged, and ``u_n`` stays close to ``N(0, I)`` whatever ``B`` and the loadings
   are. Starting values of the loadings and thresholds (:func:`ordinal_start`) come from the same
   normal scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from veerkracht_bayes.survey.statistics import PatternStats

__all__ = ["WHITEN_PREFIX", "intercept_whitening", "link_estimate", "measurement_start", "ordinal_normal_scores",
           "ordinal_score_guide", "ordinal_start", "pair_from_value", "pair_to_value", "reciprocal_log_pairs"]

#: Name stem (after the data prefix) of a container holding ``T`` for a value variable.
WHITEN_PREFIX = "whiten__"


def _pooled(stats: PatternStats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise-pooled moments: item second moments ``C`` (m, m), covariate-item ``Sxy`` (q, m),
    covariate ``Sxx`` (q, q) and each item's summed weight (m,)."""
    masks = np.asarray(stats.masks, dtype=float)
    W = np.asarray(stats.W, dtype=float)
    item_w = W @ masks
    C = stats.Syy.sum(axis=0) / np.maximum(np.einsum("p,pi,pj->ij", W, masks, masks), 1e-300)
    Sxy = stats.Suy[:, 1:, :].sum(axis=0) / np.maximum(item_w, 1e-300)[None, :]
    Sxx = stats.Suu[:, 1:, 1:].sum(axis=0) / max(float(W.sum()), 1e-300)
    return C, Sxy, Sxx, item_w


def intercept_whitening(stats: PatternStats, nu_sd: float, floor: float = 1e-3) -> np.ndarray:
    """Cholesky factor of an approximate posterior covariance of the item intercepts.

    With a reference item covariance ``C`` (pairwise-pooled second moments of the
    standardised items, less the part explained by the covariates), the intercepts' posterior
    precision is about ``H = sum_p W_p E_p C_pp^-1 E_p' + I / nu_sd^2`` (``E_p`` selects the
    observed items of pattern ``p``): exact in form for complete data, a preconditioner
    otherwise. Any fixed ``T`` gives the same posterior; a good one gives NUTS an isotropic
    intercept block.

    Parameters
    ----------
    stats
        Pattern sufficient statistics (items standardised, covariates centred).
    nu_sd
        Prior sd of the intercepts.
    floor
        Eigenvalue floor of ``C`` relative to its largest eigenvalue (pairwise pooling need
        not give a positive-definite matrix).

    Returns
    -------
    numpy.ndarray
        ``(m, m)`` lower-triangular ``T`` with ``T T' = H^-1``.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=300)
    >>> b = 0.5 * a + np.sqrt(0.75) * rng.normal(size=300)
    >>> y = np.column_stack([a, a, b, b]) + 0.5 * rng.normal(size=(300, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> T = intercept_whitening(md.stats, nu_sd=1.0)
    >>> T.shape, bool(np.allclose(T, np.tril(T)))
    ((4, 4), True)
    """
    masks = np.asarray(stats.masks, dtype=float)
    W = np.asarray(stats.W, dtype=float)
    m = masks.shape[1]
    if not np.isfinite(W).all() or W.sum() <= 0:  # no data (e.g. a placeholder): the prior's scale
        return np.eye(m) * nu_sd
    C, Sxy, Sxx, _ = _pooled(stats)
    if Sxx.shape[0]:
        C = C - Sxy.T @ np.linalg.lstsq(Sxx, Sxy, rcond=None)[0]
    C = 0.5 * (C + C.T)
    evals, evecs = np.linalg.eigh(C)
    evals = np.maximum(evals, floor * max(float(evals[-1]), 1e-12))
    C = (evecs * evals) @ evecs.T
    H = np.eye(m) / nu_sd**2
    for p in range(masks.shape[0]):
        obs = np.flatnonzero(masks[p])
        if obs.size:
            H[np.ix_(obs, obs)] += W[p] * np.linalg.inv(C[np.ix_(obs, obs)])
    V = np.linalg.inv(H)
    return np.linalg.cholesky(0.5 * (V + V.T))


def reciprocal_log_pairs(layout: object) -> tuple[tuple[str, int, int], ...]:
    """Reciprocal link pairs that both live in one ``log|beta|`` value variable.

    A pair qualifies when both links are sampled, share one truncated-normal group and are
    bounded at 0 on one side only (PyMC then samples ``log|beta|``).

    Parameters
    ----------
    layout
        The model's :class:`~veerkracht_bayes.sem.model_builder.ModelLayout`.

    Returns
    -------
    tuple of (value variable name, index of ``a -> b``, index of ``b -> a``)
        Indices within the group's vector; each link is in at most one pair.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> _, layout = build_model(graph_from_lavaan("b ~ a\\na ~ b"), None)  # a -> b and b -> a
    >>> reciprocal_log_pairs(layout)
    (('beta_truncated_normal_pos_interval__', 0, 1),)
    """

    sampled = list(layout.sampled_edges or layout.edge_keys)  # type: ignore[attr-defined]
    priors = layout.edge_priors  # type: ignore[attr-defined]
    out: list[tuple[str, int, int]] = []
    for name, dist, idx in edge_groups(priors, sampled):
        if dist != "truncated_normal":
            continue
        pos = {}
        for j, i in enumerate(idx):
            p = priors[sampled[i]]
            if (p.lower == 0.0 and p.upper is None) or (p.upper == 0.0 and p.lower is None):
                src, dst = sampled[i].split("->")
                pos[(src, dst)] = j
        used: set[int] = set()
        for (src, dst), j in pos.items():
            k = pos.get((dst, src))
            if k is not None and j < k and j not in used and k not in used:
                out.append((f"{name}_interval__", j, k))
                used.update((j, k))
    return tuple(out)


def pair_to_value(x: object, pairs: list[tuple[int, int]]) -> object:
    """Sampler coordinates ``(l_s, l_f)`` at each pair's positions -> ``(log|b_ab|, log|b_ba|)`` (JAX).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> v = np.log([0.2, 0.3])  # (log|b_ab|, log|b_ba|)
    >>> bool(np.allclose(pair_to_value(jnp.asarray(pair_from_value(v, [(0, 1)])), [(0, 1)]), v))
    True
    """
    import jax

    for a, b in pairs:
        ls, lf = x[..., a], x[..., b]  # type: ignore[index]
        x = x.at[..., a].set(ls + jax.nn.log_sigmoid(lf)).at[..., b].set(ls + jax.nn.log_sigmoid(-lf))  # type: ignore[attr-defined]
    return x


def pair_from_value(x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Inverse of :func:`pair_to_value` (NumPy): ``l_s = logaddexp``, ``l_f`` = the difference.

    Examples
    --------
    >>> import numpy as np
    >>> z = pair_from_value(np.log([0.2, 0.3]), [(0, 1)])  # (l_s, l_f) of the pair
    >>> z.shape
    (2,)
    """
    x = np.array(x, dtype=float, copy=True)
    for a, b in pairs:
        xa, xb = x[..., a].copy(), x[..., b].copy()
        x[..., a] = np.logaddexp(xa, xb)
        x[..., b] = xa - xb
    return x


def _loadings(R: np.ndarray, item_construct: tuple[str, ...], reliability: float | np.ndarray) -> np.ndarray:
    """Principal-axis loadings of each construct's items on standardised items (single items: ``sqrt(rel)``,
    ``reliability`` one value or one per item)."""
    ci = np.array(item_construct)
    lam = np.sqrt(np.broadcast_to(np.asarray(reliability, dtype=float), (len(ci),))).copy()
    for c in dict.fromkeys(item_construct):
        idx = np.flatnonzero(ci == c)
        if idx.size < 2:
            continue
        Rc = R[np.ix_(idx, idx)].copy()
        h = np.max(np.abs(Rc - np.eye(idx.size)), axis=1)  # initial communalities
        for _ in range(50):  # principal-axis iterations
            np.fill_diagonal(Rc, h)
            w, V = np.linalg.eigh(Rc)
            h = np.clip(np.abs(V[:, -1]) ** 2 * max(float(w[-1]), 1e-6), 0.04, 0.96)
        lam[idx] = np.sqrt(h)
    return lam


def _item_correlations(stats: PatternStats) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise-pooled item correlation matrix and each item's summed weight."""
    C, _, _, item_w = _pooled(stats)
    sd = np.sqrt(np.maximum(np.diag(C), 1e-12))
    return C / np.outer(sd, sd), item_w


def link_estimate(stats: PatternStats, layout: object, x_names: tuple[str, ...], floor: float = 0.02,
                  item_reliability: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Rough values of the sampled links: least squares per equation on disattenuated correlations.

    Parameters
    ----------
    stats
        Pattern sufficient statistics (standardised items, centred covariates in ``x_names`` order).
    layout
        The model's :class:`~veerkracht_bayes.sem.model_builder.ModelLayout`.
    x_names
        Covariate order of ``stats``.
    floor
        Smallest ``|beta|`` for sign-constrained links (estimates of the wrong sign or smaller
        are set to it).
    item_reliability
        Per item of ``layout.items``, the reliability that fixes a single item's loading
        (:func:`~veerkracht_bayes.sem.model_builder.fixed_item_reliability`); None: the layout's
        one ``reliability``.

    Returns
    -------
    dict
        One array per edge group (the free variables' names), in the group's order.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=300)
    >>> b = 0.5 * a + np.sqrt(0.75) * rng.normal(size=300)
    >>> y = np.column_stack([a, a, b, b]) + 0.5 * rng.normal(size=(300, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> _, layout = build_model(graph_from_lavaan("b ~ a"), md)
    >>> est = link_estimate(md.stats, layout, md.x_names)  # the true latent link is 0.5
    >>> {k: v.round(2).tolist() for k, v in est.items()}
    {'beta_truncated_normal_pos': [0.56]}
    """

    R, _ = _item_correlations(stats)
    items_c = tuple(layout.item_construct)  # type: ignore[attr-defined]
    rel = float(layout.reliability) if item_reliability is None else item_reliability  # type: ignore[attr-defined]
    lam = _loadings(R, items_c, rel)
    ci = np.array(items_c)
    lat = list(dict.fromkeys(items_c))
    q = stats.Suu.shape[1] - 1
    names = lat + list(x_names)
    V = np.eye(len(names))
    off = R / np.outer(lam, lam)
    for a, ca in enumerate(lat):
        ia = np.flatnonzero(ci == ca)
        for b in range(a + 1, len(lat)):
            ib = np.flatnonzero(ci == lat[b])
            V[a, b] = V[b, a] = float(np.clip(off[np.ix_(ia, ib)].mean(), -0.95, 0.95))
    if q:
        _, Sxy, Sxx, _ = _pooled(stats)
        sx = np.sqrt(np.maximum(np.diag(Sxx), 1e-12))
        n_l = len(lat)
        V[n_l:, n_l:] = Sxx / np.outer(sx, sx)
        rxy = Sxy / sx[:, None] / lam[None, :]
        for a, ca in enumerate(lat):
            cor = np.clip(rxy[:, ci == ca].mean(axis=1), -0.95, 0.95)
            V[a, n_l:] = V[n_l:, a] = cor
    pos = {n: i for i, n in enumerate(names)}
    sampled = list(layout.sampled_edges or layout.edge_keys)  # type: ignore[attr-defined]
    priors = layout.edge_priors  # type: ignore[attr-defined]
    est = {}
    by_target: dict[str, list[str]] = {}
    for k in sampled:
        src, dst = k.split("->")
        if src in pos and dst in pos:
            by_target.setdefault(dst, []).append(src)
    for dst, srcs in by_target.items():
        P = [pos[s_] for s_ in srcs]
        coef = np.linalg.lstsq(V[np.ix_(P, P)], V[P, pos[dst]], rcond=None)[0]
        est.update({f"{s_}->{dst}": float(c) for s_, c in zip(srcs, coef)})
    out = {}
    for name, _, idx in edge_groups(priors, sampled):
        vals = []
        for i in idx:
            k = sampled[i]
            p = priors[k]
            v = est.get(k, p.mean)
            if p.lower is not None and p.upper is None:
                v = max(v, p.lower + floor)
            elif p.upper is not None and p.lower is None:
                v = min(v, p.upper - floor)
            elif p.lower is not None and p.upper is not None:
                v = float(np.clip(v, p.lower + floor, p.upper - floor))
            vals.append(v)
        out[name] = np.array(vals)
    return out


def measurement_start(stats: PatternStats, item_construct: tuple[str, ...], free_items: tuple[bool, ...],
                      chains: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Data-based starting values of ``loading``, ``residual_var`` and ``nu``, one dict per chain.

    Parameters
    ----------
    stats
        Pattern sufficient statistics of the standardised items.
    item_construct
        Construct of each item.
    free_items
        Whether each item's loading is free (constructs with two or more items).
    chains, seed
        Number of chains and seed of the jitter.

    Returns
    -------
    list of dict
        Constrained values; the jitter is about two posterior standard deviations
        (``2 / sqrt(n)`` on the log scale for loadings and residual variances, on the
        scale of the items for intercepts).

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=300)
    >>> b = 0.5 * a + np.sqrt(0.75) * rng.normal(size=300)
    >>> y = np.column_stack([a, a, b, b]) + 0.5 * rng.normal(size=(300, 4))
    >>> md = prepare_model_data(y, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"])
    >>> starts = measurement_start(md.stats, ("a", "a", "b", "b"), (True,) * 4, chains=2, seed=1)
    >>> len(starts), sorted(starts[0]), bool((starts[0]["residual_var"] > 0).all())
    (2, ['loading', 'nu', 'residual_var'], True)
    """
    R, item_w = _item_correlations(stats)
    free = np.array(free_items, dtype=bool)
    lam = _loadings(R, item_construct, 0.5)
    theta = 1.0 - lam**2
    nu = stats.Suy[:, 0, :].sum(axis=0) / np.maximum(item_w, 1e-300)
    jit = 2.0 / np.sqrt(max(float(np.sum(stats.W)), 1.0))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(chains):
        out.append({
            "loading": lam[free] * np.exp(rng.normal(0.0, jit, int(free.sum()))),
            "residual_var": theta[free] * np.exp(rng.normal(0.0, jit, int(free.sum()))),
            "nu": nu + rng.normal(0.0, jit, nu.size),
        })
    return out


# ----------------------------------------------------------------------------- ordinal path
def _wstandardise(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted standardisation of the non-NaN entries of a column (NaN kept)."""
    ok = ~np.isnan(v)
    out = np.full(v.shape, np.nan)
    if ok.sum() < 2:
        return out
    mu = float(np.average(v[ok], weights=w[ok]))
    sd = float(np.sqrt(np.average((v[ok] - mu) ** 2, weights=w[ok])))
    out[ok] = (v[ok] - mu) / max(sd, 1e-12)
    return out


def _category_shares(codes: np.ndarray, k: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Weighted category proportions of one item's codes and the mid-interval normal scores
    (unstandardised); None if nobody answered."""
    from scipy.special import ndtri

    obs = codes >= 0
    cnt = np.bincount(codes[obs], weights=w[obs], minlength=k)[:k]
    tot = float(cnt.sum())
    if tot <= 0:
        return None
    P = cnt / tot
    return P, ndtri(np.clip(np.cumsum(P) - P / 2.0, 1e-6, 1 - 1e-6))


def ordinal_normal_scores(codes: np.ndarray, n_categories: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Normal scores of ordinal codes: each category at the normal quantile of the middle of its
    (weighted) cumulative-proportion interval, then standardised; NaN where missing.

    Parameters
    ----------
    codes
        ``(n, m)`` codes ``0..k-1``, ``-1`` missing.
    n_categories
        ``(m,)`` number of categories per item.
    w
        ``(n,)`` weights.

    Examples
    --------
    >>> import numpy as np
    >>> s = ordinal_normal_scores(np.array([[0], [1], [1], [2]]), np.array([3]), np.ones(4))
    >>> bool(s[0, 0] < s[1, 0] < s[3, 0])
    True
    """
    n, m = codes.shape
    out = np.full((n, m), np.nan)
    for j in range(m):
        shares = _category_shares(codes[:, j], int(n_categories[j]), w)
        if shares is None:
            continue
        obs = codes[:, j] >= 0
        v = np.full(n, np.nan)
        v[obs] = shares[1][codes[obs, j]]
        out[:, j] = _wstandardise(v, w)
    return out


def ordinal_score_guide(codes: np.ndarray, n_categories: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Correlation of each ordinal item's normal score with its continuous response ``y*``.

    With ``y*`` standard normal and cut at the quantiles ``t_k`` of the cumulative category
    proportions, the normal score ``s_k`` of category ``k`` (standardised) has correlation
    ``c = Σ_k s_k (phi(t_{k-1}) - phi(t_k))`` with ``y*`` (0.80 for a balanced binary item, about
    0.95 for five categories). The guided coordinates of the ordinal path read the normal score
    as ``a eta + N(0, 1 - a^2)`` with ``a = c lambda / sqrt(1 + lambda^2)``.

    Parameters
    ----------
    codes
        ``(n, m)`` codes ``0..k-1``, ``-1`` missing.
    n_categories
        ``(m,)`` number of categories per item.
    w
        ``(n,)`` weights.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` correlations in ``[0, 1)`` (0 for an item nobody answered).

    Examples
    --------
    >>> import numpy as np
    >>> ordinal_score_guide(np.array([[0], [1], [1], [2], [2], [0]]), np.array([3]), np.ones(6)).round(3)
    array([0.891])
    """
    from scipy.special import ndtri

    m = codes.shape[1]
    out = np.zeros(m)
    for j in range(m):
        shares = _category_shares(codes[:, j], int(n_categories[j]), w)
        if shares is None:
            continue
        P, s = shares
        mu = float(P @ s)
        sd = float(np.sqrt(P @ (s - mu) ** 2))
        if sd <= 0:
            continue
        t = ndtri(np.clip(np.concatenate([[0.0], np.cumsum(P)[:-1], [1.0]]), 0.0, 1.0))
        ph = np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)  # 0 at ±inf
        out[j] = float(np.clip(((s - mu) / sd) @ (ph[:-1] - ph[1:]), 0.0, 0.999))
    return out


def ordinal_start(y: np.ndarray, codes: np.ndarray, n_categories: np.ndarray, w: np.ndarray,
                  item_construct: tuple[str, ...], reliability: float | np.ndarray) -> dict[str, np.ndarray]:
    """Data-based values of the ordinal path's measurement parameters (constrained).

    Parameters
    ----------
    y
        ``(n, m + mc)`` standardised item scores, the ``m`` ordinal items first
        (:func:`ordinal_normal_scores`), then the Gaussian indicators; NaN missing.
    codes, n_categories
        The ordinal codes ``(n, m)`` and category counts ``(m,)``.
    w
        ``(n,)`` weights.
    item_construct
        Construct of every column of ``y``.
    reliability
        Reliability of single-item constructs (their loadings are fixed by it): one value or one
        per column of ``y``.

    Returns
    -------
    dict
        ``lambda_all`` (theta-parameterisation loadings of the ordinal items, from principal-axis
        factoring of the normal-score correlations divided by ``c_i c_j``
        (:func:`ordinal_score_guide`: the first-order attenuation by the coarse categories), then
        standardised loadings of the Gaussian ones), ``thresholds`` ``(m, kmax - 1)`` strictly increasing
        (``sqrt(1 + lambda^2)`` times the normal quantiles of the cumulative proportions; unused
        ones above the last used), the same over ``sqrt(1 + lambda^2)`` (``threshold_std``) and
        ``residual_var`` ``1 - l^2`` of the Gaussian indicators.

    Examples
    --------
    Two three-point items of one construct, no Gaussian indicators:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=400)
    >>> codes = np.column_stack([np.digitize(z + 0.6 * rng.normal(size=400), [-0.5, 0.5]) for _ in range(2)])
    >>> n_cat, w = np.array([3, 3]), np.ones(400)
    >>> start = ordinal_start(ordinal_normal_scores(codes, n_cat, w), codes, n_cat, w, ("a", "a"), 0.8)
    >>> sorted(start), start["thresholds"].shape, bool((np.diff(start["thresholds"], axis=1) > 0).all())
    (['lambda_all', 'residual_var', 'threshold_std', 'thresholds'], (2, 2), True)
    """
    from scipy.special import ndtri

    from veerkracht_bayes.survey.statistics import pattern_stats

    m = codes.shape[1]
    stats = pattern_stats(y, np.ones((y.shape[0], 1)), w)
    R, _ = _item_correlations(stats)
    R = np.where(np.isfinite(R), R, 0.0)
    c = np.concatenate([ordinal_score_guide(codes, n_categories, w), np.ones(y.shape[1] - m)])
    R = np.clip(R / np.outer(np.maximum(c, 0.3), np.maximum(c, 0.3)), -0.99, 0.99)  # undo the coarsening
    np.fill_diagonal(R, 1.0)
    ci = np.array(item_construct)
    l_std = _loadings(R, item_construct, reliability)
    single = np.array([(ci == c).sum() == 1 for c in ci])
    l_std[single] = np.sqrt(np.broadcast_to(np.asarray(reliability, dtype=float), l_std.shape))[single]
    lam_ord = l_std[:m] / np.sqrt(1.0 - l_std[:m] ** 2)
    kmax = int(np.max(n_categories)) if m else 2
    tau = np.zeros((m, max(kmax - 1, 1)))
    for j in range(m):
        k = int(n_categories[j])
        shares = _category_shares(codes[:, j], k, w)
        P = shares[0] if shares is not None else np.full(k, 1.0 / k)
        half = 0.5 / max(int((codes[:, j] >= 0).sum()), 1)
        F = np.clip(np.cumsum(P)[:-1], half, 1 - half)
        sj = np.sqrt(1.0 + lam_ord[j] ** 2)
        t = sj * ndtri(F)
        for i in range(1, t.size):  # strictly increasing (empty categories)
            t[i] = max(t[i], t[i - 1] + 0.05 * sj)
        tau[j, : k - 1] = t
        last = t[-1] if t.size else 0.0
        tau[j, k - 1:] = last + 1.0 + np.arange(kmax - k)
    return {"lambda_all": np.concatenate([lam_ord, l_std[m:]]), "thresholds": tau,
            "threshold_std": tau / np.sqrt(1.0 + lam_ord[:, None] ** 2), "residual_var": 1.0 - l_std[m:] ** 2}


def edge_groups(priors: Mapping[str, Any], keys: list[str]) -> list[tuple[str, str, list[int]]]:
    """Group edges by prior family and bounds: ``(rv_name, distribution, edge indices)``.

    One PyMC random variable is created per group; the order of groups and of indices within
    a group defines how the free variables map onto ``beta``.
    """
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        p = priors[k]
        groups.setdefault((p.distribution, p.lower is not None, p.upper is not None), []).append(i)
    out = []
    for (dist, has_lo, has_hi), idx in groups.items():
        out.append((f"beta_{dist}{'_pos' if has_lo else ''}{'_neg' if has_hi else ''}", dist, idx))
    return out
