"""Simulation-based calibration (Talts et al. 2018) of the multi-group model's tau and delta.

Model: three latents in a feedback loop a -> b -> c -> a (signs +, +, -), covariates x1 -> a and
x2 -> b, two continuous items per construct, two groups of 150, every link pooled (tau prior
HalfNormal(0.1)), the engine's default sign-constrained link priors and measurement priors.

Each replication draws every parameter from the model's prior -- the link priors, tau, delta, the
groups' centred intercepts and log disturbance scales, loadings, residual variances, intercepts --
with the model's soft barriers (population and group stability, positive disturbance variances)
applied by rejection, so the draw follows exactly the prior density the sampler uses. Data are
simulated from it (items on their raw scale: the model data are built without re-standardising,
which SBC could not accommodate), the model is fitted with ``fit_multigroup`` and the rank of the
true value among the thinned posterior draws is recorded. The covariates are fixed (the model is
conditional on x); the compiled sampler is reused across replications (same shapes).

Negative control: the same, with tau drawn from HalfNormal(0.3) while the model keeps
HalfNormal(0.1): tau's ranks must pile up at the top.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.inference.multigroup_fit import fit_multigroup
from veerkracht_bayes.sem.model_builder import perron_upper_bound
from veerkracht_bayes.sem.multigroup import split_model_data
from veerkracht_bayes.survey.statistics import ModelData, pattern_stats

EDGES = [("x1", "a", "+"), ("x2", "b", "+"), ("a", "b", "+"), ("b", "c", "+"), ("c", "a", "-")]
LAT = ["a", "b", "c"]
COVS = ["x1", "x2"]
ITEMS = ["a", "a", "b", "b", "c", "c"]
N_GROUP = 150
TAU_SD = 0.1


def make_graph() -> CausalGraph:
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "mgsbc",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in COVS else "construct"} for n in COVS + LAT],
        "edges": [{"source": s, "target": t, "sign": g, "evidence": "t"} for s, t, g in EDGES]}))


def _mats(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    li = {n: i for i, n in enumerate(LAT)}
    B, G = np.zeros((3, 3)), np.zeros((3, 2))
    for (s, t, _), b in zip(EDGES, beta):
        if s in COVS:
            G[li[t], COVS.index(s)] = b
        else:
            B[li[t], li[s]] = b
    return B, G


def _soft(v: float) -> float:
    return -float(np.logaddexp(0.0, -v))


def draw_truth(rng: np.random.Generator, x_cov: np.ndarray, share: np.ndarray, tau_sd: float) -> dict:
    """One prior draw with the model's barriers applied by rejection."""
    sign = np.array([1.0 if g == "+" else -1.0 for *_, g in EDGES])
    for _ in range(10000):
        mag = stats.truncnorm.rvs(-1.0, np.inf, loc=0.15, scale=0.15, size=5, random_state=rng)
        beta = sign * mag
        tau = np.abs(rng.normal(0, tau_sd, 5))
        delta = rng.normal(size=(2, 5)) * tau
        B, G = _mats(beta)
        A = np.linalg.inv(np.eye(3) - B)
        AG = A @ G
        psi = np.linalg.solve(A * A, 1 - np.einsum("ik,kl,il->i", AG, x_cov, AG))
        if not (psi > 1e-4).all():
            continue
        logacc = _soft((0.99 - perron_upper_bound(np.abs(B))) / 0.005)
        logacc += sum(_soft((p - 0.02) / 0.01) for p in psi)
        for g in range(2):
            Bg, _ = _mats(beta + delta[g])
            logacc += _soft((0.99 - perron_upper_bound(np.abs(Bg))) / 0.005)
        if np.log(rng.random()) < logacc:
            break
    a_raw = rng.normal(0, 1.0, (2, 3))
    w_raw = rng.normal(0, 0.5, (2, 3))
    lam = stats.truncnorm.rvs(-0.7 / 0.3, np.inf, loc=0.7, scale=0.3, size=6, random_state=rng)
    theta = np.exp(rng.normal(np.log(0.5), 0.75, 6))
    nu = rng.normal(0, 0.5, 6)
    return {"beta": beta, "tau": tau, "delta": delta, "alpha": a_raw - share @ a_raw,
            "omega": w_raw - share @ w_raw, "psi": psi, "lambda": lam, "theta": theta, "nu": nu}


def simulate(truth: dict, x: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = np.array([LAT.index(k) for k in ITEMS])
    y = np.zeros((len(x), 6))
    for g in range(2):
        sel = groups == g
        Bg, Gg = _mats(truth["beta"] + truth["delta"][g])
        Ag = np.linalg.inv(np.eye(3) - Bg)
        zeta = rng.normal(size=(sel.sum(), 3)) * np.sqrt(truth["psi"] * np.exp(truth["omega"][g]))
        eta = (Ag @ (truth["alpha"][g][:, None] + Gg @ x[sel].T + zeta.T)).T
        y[sel] = truth["nu"] + eta[:, c] * truth["lambda"] + rng.normal(size=(sel.sum(), 6)) * np.sqrt(truth["theta"])
    return y


def raw_data(y: np.ndarray, x: np.ndarray, groups: np.ndarray):
    n = len(y)
    u = np.column_stack([np.ones(n), x])
    md = ModelData(item_names=tuple(f"i{j}" for j in range(6)), item_construct=tuple(ITEMS), y=y,
                   item_center=np.zeros(6), item_scale=np.ones(6), x_names=tuple(COVS), x=x, x_mean=np.zeros(2),
                   weights=np.ones(n), stats=pattern_stats(y, u, np.ones(n)))
    return split_model_data(md, [f"g{g}" for g in groups])


def run_sbc(reps: int, seed: int, *, true_tau_sd: float = TAU_SD, draws: int = 200, thin: int = 2) -> dict:
    """Ranks (0..draws*chains/thin) of tau (reps, 5) and delta (reps, 10), plus divergences (reps,)."""
    g = make_graph()
    rng0 = np.random.default_rng(12345)
    x = rng0.normal(size=(2 * N_GROUP, 2))
    x -= x.mean(axis=0)
    groups = np.repeat([0, 1], N_GROUP)
    x_cov = x.T @ x / len(x)
    share = np.array([0.5, 0.5])
    out: dict[str, list] = {"tau": [], "delta": [], "div": []}
    for r in range(reps):
        rng = np.random.default_rng([seed, r])
        truth = draw_truth(rng, x_cov, share, true_tau_sd)
        gd = raw_data(simulate(truth, x, groups, rng), x, groups)
        res = fit_multigroup(g, gd, draws=draws, tune=draws, chains=2, random_seed=seed * 1000 + r,
                             progressbar=False, tau_sd=TAU_SD)
        post = res.posterior
        tau = post["tau"].transpose("chain", "draw", "pooled_edge").values.reshape(-1, 5)[::thin]
        dl = post["delta"].transpose("chain", "draw", "group", "pooled_edge").values.reshape(-1, 10)[::thin]
        out["tau"].append((tau < truth["tau"]).sum(axis=0))
        out["delta"].append((dl < truth["delta"].reshape(-1)).sum(axis=0))
        out["div"].append(int(post.sizes["draw"] and res.idata["sample_stats"]["diverging"].values.sum()))
    L = 2 * draws // thin
    return {"tau": np.array(out["tau"]), "delta": np.array(out["delta"]), "div": np.array(out["div"]), "L": L}


def uniform_pvalue(ranks: np.ndarray, L: int, bins: int = 5) -> float:
    """Chi-square test of uniformity of ranks in 0..L, pooled over columns (bins of equal width)."""
    u = (ranks.ravel() + 0.5) / (L + 1)
    counts = np.bincount(np.minimum((u * bins).astype(int), bins - 1), minlength=bins)
    return float(stats.chisquare(counts).pvalue)
