"""The polychoric route in joint mode (``unmeasured="joint"``): the divergences of links on their priors.

Cause (docs/performance.md §4b): a link that touches a construct without items sits on its
prior. In PyMC's ``log|beta|`` coordinates it has an exponential left tail; trajectories that
start deep in it gain kinetic energy on the way back and overshoot the standardisation barrier of
the construct it points into, into the region where a disturbance variance is negative (log-density
``-inf``). The fix samples those links in prior-standardised coordinates ``z ~ N(0, 1)``
(``PolychoricSettings(prior_links="standardised")``, the default); ``prior_links="native"`` is
the old parameterisation, kept for the comparison.

The fast model reproduces the MARVEL pattern on a small diagram: a loop ``a -> s -> p -> a``
through the item-less ``s`` (as mental_problems -> signalling -> professional_help), an item-less
exogenous ``h -> p`` (as help_navigation) and ``u -> a`` (as performance_pressure -> stress), a
single binary item on ``p``. Measured (n = 20,000, 2 chains x (300 + 300)): 2 and 3 divergences
with ``"native"`` (sampler seeds 1 and 2), 0 with ``"standardised"`` (seed 2, the fast test's);
at 2 x (1000 + 1000), seed 2: 6 against 0, step size 0.10-0.13 against 0.19-0.25, posterior
means of all 7 links within 1.1 Monte Carlo SE of each other.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.inference.polychoric_fit import fit_polychoric
from veerkracht_bayes.inference.sampling import SamplerSettings
from veerkracht_bayes.sem.model_builder import EdgePriorValues, edge_prior_values
from veerkracht_bayes.sem.polychoric_likelihood import (
    STANDARDISED_LINKS,
    PolychoricSettings,
    build_polychoric_model,
    link_from_standard,
    link_to_standard,
    polychoric_data,
    standardised_link_keys,
)
from veerkracht_bayes.survey.polychoric import polychoric

#: edge -> (true value, sign, prior (mean, sd) of |beta|)
EDGES = {"x->a": (0.3, "+", (0.2, 0.1)), "a->s": (0.3, "+", (0.0, 0.2)), "s->p": (0.25, "+", (0.0, 0.2)),
         "p->a": (-0.12, "-", (-0.1, 0.1)), "h->p": (0.35, "+", (0.4, 0.15)), "u->a": (0.2, "+", (0.0, 0.2)),
         "a->c": (0.4, "+", (0.3, 0.15))}
LATENT = ["a", "s", "p", "h", "u", "c"]


class LoopPriors:
    """Truncated-normal priors of :data:`EDGES` (sign-constrained)."""

    class _P:
        distribution, nu = "truncated_normal", None

        def __init__(self, mean: float, sd: float) -> None:
            self.mean, self.sd = mean, sd

    def for_edge(self, key: str):
        return self._P(*EDGES[key][2])


def loop_graph() -> CausalGraph:
    nodes = ["x", *LATENT]
    spec = GraphSpec.model_validate({
        "spec_version": 1, "name": "loop-through-itemless",
        "nodes": [{"id": k, "label_en": k, "label_nl": k, "resource": "individual",
                   "role": "exogenous" if k == "x" else "construct"} for k in nodes],
        "edges": [{"source": k.split("->")[0], "target": k.split("->")[1], "sign": v[1], "evidence": "test"}
                  for k, v in EDGES.items()]})
    return CausalGraph(spec)


def loop_data(n: int, seed: int):
    """Standardised latents from :data:`EDGES`; 3 five-category items on ``a`` and ``c`` (loading
    0.75), one binary item on ``p`` (loading 0.65, 16 % yes), ``x`` observed; ``s``, ``h``, ``u``
    have no items."""
    idx = {k: i for i, k in enumerate(LATENT)}
    B, G = np.zeros((6, 6)), np.zeros((6, 1))
    for k, (v, _, _) in EDGES.items():
        s, t = k.split("->")
        if s == "x":
            G[idx[t], 0] = v
        else:
            B[idx[t], idx[s]] = v
    A = np.linalg.inv(np.eye(6) - B)
    AG = A @ G
    psi = np.linalg.solve(A * A, 1 - (AG ** 2).sum(1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    eta = (x @ G.T + rng.normal(size=(n, 6)) * np.sqrt(psi)) @ A.T
    cols, item_construct = [], {}
    for c in ("a", "c"):
        for i in range(3):
            ys = 0.75 * eta[:, idx[c]] + np.sqrt(1 - 0.75 ** 2) * rng.normal(size=n)
            cols.append(np.digitize(ys, [-1.0, -0.3, 0.4, 1.1]).astype(float))
            item_construct[f"{c}{i}"] = c
    ys = 0.65 * eta[:, idx["p"]] + np.sqrt(1 - 0.65 ** 2) * rng.normal(size=n)
    cols.append((ys > 1.0).astype(float))
    item_construct["p0"] = "p"
    cols.append(x[:, 0])
    st = polychoric(np.column_stack(cols), ["ordinal"] * 7 + ["continuous"], names=[*item_construct, "x0"])
    return polychoric_data(st, item_construct, covariates={"x": "x0"})


def _settings(prior_links: str = "standardised") -> PolychoricSettings:
    return PolychoricSettings(unmeasured="joint", item_reliability={"p0": 0.4225}, prior_links=prior_links)


def fit_loop(prior_links: str, draws: int, seed: int, n: int = 20_000):
    return fit_polychoric(loop_graph(), loop_data(n, 1), LoopPriors(), polychoric=_settings(prior_links),
                          settings=SamplerSettings(chains=2, draws=draws, tune=draws, progressbar=False,
                                                   prior_draws=200, random_seed=seed))


def test_links_on_their_priors_are_the_ones_touching_constructs_without_items():
    _, layout = build_polychoric_model(loop_graph(), loop_data(2000, 1), LoopPriors(), settings=_settings())
    assert set(layout.unobserved_latent) == {"s", "h", "u"}
    assert standardised_link_keys(layout) == ("a->s", "s->p", "h->p", "u->a")
    assert standardised_link_keys(layout, "native") == ()
    from veerkracht_bayes.errors import ModelError

    with pytest.raises(ModelError, match="prior_links"):
        standardised_link_keys(layout, "log")


def test_joint_mode_gets_the_wider_standardisation_barrier_by_default():
    """Joint mode without explicit settings: ``JOINT_MODE_BARRIER`` (psi from 0.1); cut mode the
    continuous path's barrier; explicit ``StabilitySettings`` win. The prior draws use the
    layout's barrier (``draw_prior``), so prior and posterior share one prior."""
    from veerkracht_bayes.sem.algebra import PSI_FLOOR, PSI_WIDTH
    from veerkracht_bayes.sem.model_builder import StabilitySettings
    from veerkracht_bayes.sem.polychoric_likelihood import JOINT_MODE_BARRIER

    data = loop_data(2000, 1)
    _, joint = build_polychoric_model(loop_graph(), data, LoopPriors(), settings=_settings(), pilot=False)
    assert (joint.stability.psi_floor, joint.stability.psi_width) == (JOINT_MODE_BARRIER["psi_floor"],
                                                                       JOINT_MODE_BARRIER["psi_width"])
    _, cut = build_polychoric_model(loop_graph(), data, LoopPriors(),
                                    settings=replace(_settings(), unmeasured="cut"), pilot=False)
    assert (cut.stability.psi_floor, cut.stability.psi_width) == (PSI_FLOOR, PSI_WIDTH)
    mine = StabilitySettings(psi_floor=0.05, psi_width=0.02)
    _, given = build_polychoric_model(loop_graph(), data, LoopPriors(), settings=_settings(), stability=mine,
                                      pilot=False)
    assert given.stability is mine


def test_standardised_coordinates_map_a_normal_onto_the_prior():
    """``link_from_standard`` of N(0, 1) draws is the truncated-normal prior (KS test at 1 %, the
    mean within 4 Monte Carlo SE), and ``link_to_standard`` inverts it."""
    from scipy.stats import kstest, truncnorm

    pri = {"pos": EdgePriorValues("truncated_normal", 0.4, 0.15, 0.0, None),
           "neg": EdgePriorValues("truncated_normal", -0.1, 0.1, None, 0.0),
           "half": EdgePriorValues("truncated_normal", 0.0, 0.2, 0.0, None)}
    keys = list(pri)
    z = np.random.default_rng(5).normal(size=(4000, 3))
    b = link_from_standard(z, pri, keys)
    for j, k in enumerate(keys):
        p = pri[k]
        lo = -np.inf if p.lower is None else (p.lower - p.mean) / p.sd
        hi = np.inf if p.upper is None else (p.upper - p.mean) / p.sd
        ref = truncnorm(lo, hi, loc=p.mean, scale=p.sd)
        assert kstest(b[:, j], ref.cdf).pvalue > 0.01, k
        assert abs(b[:, j].mean() - ref.mean()) < 4 * ref.std() / np.sqrt(len(b)), k
    assert np.allclose(link_from_standard(link_to_standard(b, pri, keys), pri, keys), b, atol=1e-9)


def test_standardised_model_has_the_native_models_likelihood():
    """Same posterior up to parameterisation: at the same links, the two models' likelihood and
    barrier terms agree to 1e-9, and the standardised links' prior term is N(0, 1)."""
    from veerkracht_bayes.sem.model_builder import edge_groups

    g, data = loop_graph(), loop_data(2000, 1)
    eps = edge_prior_values(LoopPriors(), g)
    rng = np.random.default_rng(3)
    # the full weight: the sandwich's whitener depends on its pilot, found in each model's own coordinates
    models = {pl: build_polychoric_model(g, data, LoopPriors(), settings=replace(_settings(pl), weight="full"))
              for pl in ("standardised", "native")}
    keys = list(models["native"][1].edge_keys)
    std = list(standardised_link_keys(models["standardised"][1]))
    fns = {}
    for pl, (model, _) in models.items():
        outs = model.replace_rvs_by_values([*model.potentials, model["beta"]])
        fns[pl] = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    for _ in range(3):
        beta = np.array([np.sign(EDGES[k][0]) * rng.uniform(0.05, 0.3) for k in keys])
        loading = rng.uniform(0.5, 2.0, size=6)
        pots = {}
        for pl, (model, _) in models.items():
            sampled = [k for k in keys if k not in (std if pl == "standardised" else [])]
            # PyMC's value of a one-sided truncated normal bounded at 0: log|x|
            point = {f"{name}_interval__": np.log(np.abs([beta[keys.index(sampled[i])] for i in idx]))
                     for name, _, idx in edge_groups(eps, sampled)}
            if pl == "standardised":
                point[STANDARDISED_LINKS] = link_to_standard(beta[[keys.index(k) for k in std]], eps, std)
            point["loading_interval__"] = np.log(loading)
            assert set(point) == {v.name for v in model.value_vars}
            vals = fns[pl](point)
            assert np.allclose(vals[-1], beta, atol=1e-9)
            pots[pl] = np.array([float(v) for v in vals[:-1]])
        assert np.allclose(pots["standardised"], pots["native"], atol=1e-9, rtol=1e-9), pots
        free = {rv.name for rv in models["standardised"][0].free_RVs}
        assert STANDARDISED_LINKS in free and "beta_truncated_normal_pos" in free


def test_joint_loop_through_an_itemless_construct_samples_without_divergences():
    """The fast twin of the shipped-survey check: at most 2 divergences in 2 x (300 + 300), R-hat
    <= 1.05, bulk ESS >= 100 for every
    link, and the links on their priors keep them (``h -> p`` enters only ``psi_p + beta^2``: its
    posterior mean within 4 Monte Carlo SE of the prior mean 0.407 after the standardisation
    barrier, which removes little mass here).

    Divergences measured on this loop (2 x (300 + 300), seeds 2-5, n = 20,000), sandwich weight:
    standardised coordinates 0, 0, 0 (seeds 2-4; jax 0.12.0.1) and 2, 0, 0, 0 (jax 0.12.1, the
    version a fresh install got on 2026-12-06); native coordinates 1, 3, 2 and 3, 1, 2, 6. The
    chains' floating-point paths differ between jax versions, so a single fit's count is noisy:
    the bound of 2 catches a return of the native geometry's worse runs, not every one; the
    separation itself is measured by the slow shipped-survey test (3 vs 14 of 1,000)."""
    import arviz as az
    from scipy.stats import truncnorm

    f = fit_loop("standardised", 300, 2)
    div = int(f.idata["sample_stats"]["diverging"].sum())
    post = f.idata["posterior"].to_dataset()
    rhat = float(az.rhat(post[["beta"]])["beta"].max())
    ess = az.ess(post[["beta"]])["beta"].values
    assert div <= 2, div
    # R-hat of 2 chains x 300 draws over 7 links: the largest exceeds 1.01 in a sizeable share of
    # runs even with independent draws (with the same seed this test gave <= 1.01 in the working
    # tree and 1.026 on a fresh clone with an empty compilation cache: the chains' floating-point
    # paths differ between environments), so 1.05 bounds mixing failures here; the divergence
    # count is what separates the two parameterisations
    assert rhat <= 1.05, rhat
    # bulk ESS of the weakest link varies between environments too (>= 200 run alone, 187 in an xdist
    # worker after other fits, same seed); 100 of the 600 draws still flags a chain that sticks
    assert ess.min() >= 100, ess
    hp = post["beta"].sel(edge="h->p").values.ravel()
    prior = truncnorm(-0.4 / 0.15, np.inf, loc=0.4, scale=0.15)
    se = float(az.mcse(post[["beta"]].sel(edge=["h->p"]), method="mean")["beta"].values[0])
    assert abs(hp.mean() - prior.mean()) < 4 * se + 0.01, (hp.mean(), prior.mean(), se)


@pytest.mark.slow
def test_standardised_and_native_coordinates_give_the_same_posterior():
    """Posterior means of the measured links (x -> a, p -> a, a -> c) and of the links on their
    priors agree between the two parameterisations within 4 Monte Carlo SE of the difference
    (2 x (1000 + 1000) each); the native run's divergences (6 measured) are printed, the
    standardised run has at most 1 (rate < 0.05 %)."""
    import arviz as az

    res = {}
    for pl in ("standardised", "native"):
        f = fit_loop(pl, 1000, 2)
        post = f.idata["posterior"].to_dataset()[["beta"]]
        res[pl] = (post["beta"].mean(("chain", "draw")).values, az.mcse(post, method="mean")["beta"].values,
                   int(f.idata["sample_stats"]["diverging"].sum()))
    (ms, es, ds), (mn, en, dn) = res["standardised"], res["native"]
    print("standardised", ms.round(4), "divergences", ds, "\nnative      ", mn.round(4), "divergences", dn)
    assert np.all(np.abs(ms - mn) < 4 * np.sqrt(es ** 2 + en ** 2)), ((ms - mn) / np.sqrt(es ** 2 + en ** 2))
    assert ds <= 1, ds


@pytest.mark.slow
def test_shipped_survey_joint_fit_samples_cleanly():
    """``vb.fit("marvel", survey, measurement="polychoric", unmeasured="joint")`` on the shipped
    synthetic survey at vb.fit's settings for this route (2 chains x (500 tuning steps + 1,000
    draws), sandwich stage-2 weight, the joint mode's standardisation barrier
    ``JOINT_MODE_BARRIER``): bulk ESS >= 400 and R-hat <= 1.02 for every link, and at most 3
    divergent transitions of 2,000 (0.15 %). Measured (docs/performance.md §4b), 2 x (500 + 1,000):
    1 at this seed (1, 0, 0, 2, 0 over seeds 2023-2027, 3 of 10,000); with the continuous path's
    narrower barrier 4, 7, 10 (seeds 2023-2025), and at 500 + 500 with the native coordinates of
    the links on their priors 14 of 1,000, so the bound fails if either fix is undone (the old
    barrier's mean of about 7 per fit gives 3 or fewer in under 10 % of runs). Zero, the target,
    is not met in every seed: the rare remaining divergences could not be traced (replayed
    trajectories from the draws before them did not blow up).

    Why 1,000 draws and 1.02: the largest split R-hat over the ~127 parameters is noisy. For
    independent stationary AR(1) chains with bulk ESS 0.35 per draw (the weakest link's), a
    simulation of the null (300 replications) put it above 1.02 in 67 % of replications at 2 x 500
    draws (median 1.022), but at 2 x 1,000 its 99th percentile is 1.0175 (median 1.011). So at
    500 + 500 an R-hat of 1.021 (measured with the sandwich weight, seed 2023) says nothing, and a
    bound of 1.02 at 1,000 draws fails a healthy fit in fewer than 1 % of seeds. Fast twin:
    ``test_joint_loop_through_an_itemless_construct_samples_without_divergences``."""
    from pathlib import Path

    import arviz as az

    import veerkracht_bayes as vb

    repo = Path(__file__).resolve().parents[2]
    g = vb.load_graph("marvel")
    sv = vb.read_survey(repo / "data/synthetic/veerkracht_synthetic.csv.gz",
                        repo / "data/synthetic/codebook_synthetic.yaml", graph=g)
    f = vb.fit(g, sv, measurement="polychoric", unmeasured="joint", draws=1000, tune=500, chains=2, seed=2023,
               progress=False)
    idata = f.result.idata
    div = int(idata["sample_stats"]["diverging"].sum())
    post = idata["posterior"].to_dataset()[["beta"]]
    rhat = az.rhat(post)["beta"].values
    ess = az.ess(post)["beta"].values
    keys = list(post["edge"].values)
    print("divergences", div, "max R-hat", rhat.max(), "min bulk ESS", ess.min(), keys[int(ess.argmin())])
    assert div <= 3, div
    assert rhat.max() <= 1.02, (rhat.max(), keys[int(rhat.argmax())])
    assert ess.min() >= 400, (ess.min(), keys[int(ess.argmin())])
