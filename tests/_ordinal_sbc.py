"""Simulation-based calibration (Talts et al. 2018) of the exact ordinal path.

Model: the recovery model of ``tests/sem/test_ordinal_model.py`` — three standardised latents in
a feedback loop a -> b -> c -> a (signs +, +, -), one covariate x -> a, three 5-category
probit items per construct, 5% of answers missing completely at random — with the weakly
informative sign-constrained edge prior ``|beta| ~ N(0, 1)`` and the default measurement
priors (``lambda ~ N+(1, 1)``, thresholds ordered ``N(0, 2.5)``). The covariate design x is
fixed (the model is conditional on x, and its sample covariance enters the standardisation).

Per replication r:

1. the true parameters are drawn from the model's own prior: beta from ``ordinal_prior_draws``
   (the forward draws ``fit_ordinal`` stores as its prior, stability and standardisation
   barriers applied by rejection), loadings from ``N+(1, 1)``, each item's thresholds as the
   sorted values of four ``N(0, 2.5)`` draws (the ordered-normal prior of the model);
2. answers are simulated from exactly that model: ``eta = A (G x + zeta)``,
   ``zeta ~ N(0, diag psi)`` with psi standardising every latent to variance 1 given the
   sample covariance of x, ``y* = lambda eta + N(0, 1)``, code = number of thresholds below y*;
3. ``fit_ordinal`` (the package's default: guided coordinates, numpyro NUTS through
   ``jax_nuts``; compiled once, reused for every replication) samples the posterior;
4. the chains' draws are thinned to L and the true value's rank among them is kept (0..L).

If the path is correct every rank is uniform on 0..L, whatever the truth's place in the prior.
Unlike the recovery test at one fixed truth, this needs no appeal to asymptotics.

Run as a script for the full study (results as JSON)::

    OMP_NUM_THREADS=1 .venv/bin/python tests/_ordinal_sbc.py --reps 100 --out sbc.json
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from scipy.stats import truncnorm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "sem"))
from test_ordinal_model import EDGES, WidePriors, make_graph  # noqa: E402

from veerkracht_bayes.inference.ordinal_fit import ordinal_prior_draws, fit_ordinal  # noqa: E402
from veerkracht_bayes.sem.ordinal import OrdinalData, OrdinalSettings, build_ordinal_model  # noqa: E402
from veerkracht_bayes.inference.sampling import SamplerSettings  # noqa: E402

LATENT = ["a", "b", "c"]
ITEMS_PER = 3
K = 5  # categories per item
N = 300


@dataclass
class OrdinalSBCResult:
    """Ranks (0..L) of the true values among L thinned posterior draws, per replication.

    ``ranks[name]`` is ``(reps, size)``; ``names[name]`` labels the columns; ``ess`` the bulk
    ESS of the kept draws (reps, size); ``rhat`` the max R-hat per replication;
    ``divergences`` per replication; ``seconds`` the wall time of the study.
    """

    L: int
    ranks: dict[str, np.ndarray]
    names: dict[str, list[str]]
    ess: dict[str, np.ndarray]
    rhat: np.ndarray
    divergences: np.ndarray
    seconds: float
    truth: dict[str, np.ndarray] = field(default_factory=dict)


def design(seed: int = 0) -> np.ndarray:
    """The fixed, centred covariate design x (n, 1)."""
    x = np.random.default_rng(seed).normal(size=(N, 1))
    return x - x.mean(axis=0)


def ordinal_data(codes: np.ndarray, x: np.ndarray) -> OrdinalData:
    """OrdinalData for the SBC model (unit weights, 5 categories per item)."""
    return OrdinalData(item_names=tuple(f"{c}{i}" for c in LATENT for i in range(ITEMS_PER)),
                       item_construct=tuple(np.repeat(LATENT, ITEMS_PER)),
                       n_categories=np.full(len(LATENT) * ITEMS_PER, K), codes=codes,
                       x_names=("x",), x=x, weights=np.ones(len(codes)))


def draw_truths(reps: int, x: np.ndarray, seed: int) -> list[dict[str, np.ndarray]]:
    """``reps`` parameter sets from the model's prior (see the module docstring)."""
    graph = make_graph()
    m = len(LATENT) * ITEMS_PER
    st = OrdinalSettings()
    dummy = ordinal_data(np.zeros((N, m), dtype=int), x)
    _, layout = build_ordinal_model(graph, dummy, WidePriors())
    beta = ordinal_prior_draws(layout, graph, reps, seed, dummy.x_cov)["beta"].isel(chain=0).values  # (reps, edge)
    keys = list(layout.edge_keys)
    order = [keys.index(f"{s}->{t}") for s, t, _ in EDGES]
    rng = np.random.default_rng(seed + 1)
    a = (0.0 - st.loading_mu) / st.loading_sd
    lam = truncnorm.rvs(a, np.inf, loc=st.loading_mu, scale=st.loading_sd, size=(reps, m), random_state=rng)
    tau = np.sort(rng.normal(0.0, st.threshold_sd, size=(reps, m, K - 1)), axis=-1)
    return [{"beta": beta[r][order], "lambda": lam[r], "thresholds": tau[r]} for r in range(reps)]


def simulate_codes(truth: dict[str, np.ndarray], x: np.ndarray, seed: int, noise_sd: float = 1.0) -> np.ndarray:
    """Answers (n, 9) from the model at ``truth`` (beta in ``EDGES`` order), 5% MCAR missing.

    ``noise_sd`` other than 1 misstates the probit scale (the negative control).
    """
    rng = np.random.default_rng(seed)
    b = truth["beta"]
    B = np.zeros((3, 3))
    B[1, 0], B[2, 1], B[0, 2] = b[1], b[2], b[3]
    G = np.array([[b[0]], [0.0], [0.0]])
    A = np.linalg.inv(np.eye(3) - B)
    AG = A @ G
    x_cov = ordinal_data(np.zeros((N, 9), dtype=int), x).x_cov
    psi = np.linalg.solve(A * A, 1.0 - np.sum((AG @ x_cov) * AG, axis=1))
    if np.any(psi <= 0):
        raise ValueError(f"prior draw with psi {psi} (the prior's barrier should exclude it)")
    zeta = rng.normal(size=(N, 3)) * np.sqrt(psi)
    eta = (x @ G.T + zeta) @ A.T
    c_idx = np.repeat(np.arange(3), ITEMS_PER)
    ystar = eta[:, c_idx] * truth["lambda"] + noise_sd * rng.normal(size=(N, len(c_idx)))
    codes = (ystar[:, :, None] > truth["thresholds"][None]).sum(-1)
    codes[rng.random(codes.shape) < 0.05] = -1
    return codes


def _rank(draws: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Rank of each true value among the draws (draws: (L, size)); ties split at random."""
    below = (draws < true).sum(axis=0)
    ties = (draws == true).sum(axis=0)
    return below + np.random.default_rng(0).integers(0, ties + 1)


def run_ordinal_sbc(reps: int, *, L: int = 39, draws: int = 200, tune: int = 300, seed: int = 2024,
                    latent_noise_sd: float = 1.0, progress: bool = False) -> OrdinalSBCResult:
    """Run the study (see the module docstring); 2 chains, ``2 * draws`` draws thinned to L.

    ``latent_noise_sd`` other than 1 simulates from a misspecified model (negative control).
    """
    from arviz_stats import ess, rhat

    x = design(seed)
    truths = draw_truths(reps, x, seed)
    graph = make_graph()
    names = {"beta": [f"{s}->{t}" for s, t, _ in EDGES],
             "lambda": [f"{c}{i}" for c in LATENT for i in range(ITEMS_PER)],
             "thresholds": [f"{c}{i}|{k}" for c in LATENT for i in range(ITEMS_PER) for k in range(1, K)]}
    ranks = {k: np.zeros((reps, len(v)), int) for k, v in names.items()}
    esses = {k: np.zeros((reps, len(v))) for k, v in names.items()}
    rh = np.zeros(reps)
    div = np.zeros(reps, int)
    thin = (2 * draws) // L
    t0 = time.perf_counter()
    for r, truth in enumerate(truths):
        codes = simulate_codes(truth, x, seed + 1000 + r, latent_noise_sd)
        fit = fit_ordinal(graph, ordinal_data(codes, x), WidePriors(), chain_method="parallel",
                          settings=SamplerSettings(chains=2, draws=draws, tune=tune, progressbar=False,
                                                   prior_draws=200, random_seed=seed + r))
        post = fit.idata["posterior"].to_dataset()
        keys = list(post["edge"].values)
        order = [keys.index(k) for k in names["beta"]]
        vals = {"beta": post["beta"].values[..., order],
                "lambda": post["lambda"].values,
                "thresholds": post["thresholds"].values.reshape(2, draws, -1)}
        for k, v in vals.items():
            flat = v.reshape(2 * draws, -1)
            kept = flat[::thin][:L]
            ranks[k][r] = _rank(kept, truth[k].reshape(-1))
            esses[k][r] = ess(xr.DataArray(kept[None], dims=("chain", "draw", "p")), method="bulk").values
        rh[r] = max(float(np.nanmax(rhat(post[[v]])[v].values)) for v in ("beta", "lambda", "thresholds"))
        div[r] = int(fit.idata["sample_stats"]["diverging"].sum())
        if progress:
            print(f"rep {r}: {time.perf_counter() - t0:.0f} s, max R-hat {rh[r]:.3f}, div {div[r]}, "
                  f"beta ranks {ranks['beta'][r]}", flush=True)
    return OrdinalSBCResult(L=L, ranks=ranks, names=names, ess=esses, rhat=rh, divergences=div,
                            seconds=time.perf_counter() - t0,
                            truth={k: np.array([t[k] for t in truths]) for k in names})


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Ordinal-path SBC study")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--noise-sd", type=float, default=1.0, help="!= 1: the negative control")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    res = run_ordinal_sbc(a.reps, seed=a.seed, latent_noise_sd=a.noise_sd, progress=True)
    a.out.write_text(json.dumps({"L": res.L, "seconds": res.seconds, "seed": a.seed,
                                 "ranks": {k: v.tolist() for k, v in res.ranks.items()},
                                 "names": res.names, "rhat": res.rhat.tolist(),
                                 "divergences": res.divergences.tolist(),
                                 "ess_median": {k: np.median(v, axis=0).tolist() for k, v in res.ess.items()},
                                 "truth": {k: v.tolist() for k, v in res.truth.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
