"""Tests for veerkracht_bayes.causal.do: closed form, brute force, pm.do, flags, subgroups."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.causal.do import DEFAULT_OUTCOMES, Outcome, SubgroupInfo, do_query
from veerkracht_bayes.errors import InterventionError
from veerkracht_bayes.causal.interventions import (Fixed, Intervention, LogNormal, MechanismChange, Normal,
                                            Set, Shift, Uniform)
from veerkracht_bayes.causal.draws import StructuralDraws

from _structural_fixtures import random_draws, small_graph


def closed_form(B, alpha, sets=(), shifts=(), mech=()):
    """Independent numpy reference: equilibrium under the intervention minus baseline."""
    P = B.shape[0]
    eye = np.eye(P)
    base = np.linalg.inv(eye - B) @ alpha
    Bd = B.copy()
    for k, j, kind, v in mech:
        Bd[k, j] = Bd[k, j] * v if kind == "scale" else v
    c = alpha.copy()
    for j, d in shifts:
        c[j] += d
    for j, x in sets:
        Bd[j, :] = 0.0
        c[j] = x
    return np.linalg.inv(eye - Bd) @ c - base


@pytest.mark.parametrize("graph_name", ["small", "marvel"])
def test_closed_form_shift_set_mechanism_and_combination(graph_name, marvel):
    g = small_graph() if graph_name == "small" else marvel
    d = random_draws(g, 25, seed=1)
    ix = g.node_index
    n0, n1, n2 = (("a", "b", "c") if graph_name == "small"
                  else ("stress", "social_network", "wellbeing"))
    e0 = g.edges[1]
    ivs = [
        Intervention(name="shift", parts=[Shift(node=n0, delta=0.3)]),
        Intervention(name="set", parts=[Set(node=n1, value=1.2)]),
        Intervention(name="mech_scale", parts=[MechanismChange(source=e0.source, target=e0.target,
                                                               scale=0.4)]),
        Intervention(name="mech_value", parts=[MechanismChange(source=e0.source, target=e0.target,
                                                               value=0.05)]),
        Intervention(name="combo", parts=[Shift(node=n0, delta=-0.2), Set(node=n1, value=-0.5),
                                          MechanismChange(source=e0.source, target=e0.target,
                                                          scale=2.0), Shift(node=n2, delta=0.1)]),
    ]
    r = do_query(d, ivs, outcomes=list(g.nodes[:3]))
    k, j = ix[e0.target], ix[e0.source]
    specs = [
        dict(shifts=[(ix[n0], 0.3)]),
        dict(sets=[(ix[n1], 1.2)]),
        dict(mech=[(k, j, "scale", 0.4)]),
        dict(mech=[(k, j, "value", 0.05)]),
        dict(shifts=[(ix[n0], -0.2), (ix[n2], 0.1)], sets=[(ix[n1], -0.5)], mech=[(k, j, "scale", 2.0)]),
    ]
    for i, sp in enumerate(specs):
        ref = np.stack([closed_form(d.B[s], d.alpha[s], **sp) for s in range(d.n_draws)])
        np.testing.assert_allclose(r.effect[i], ref, atol=1e-8, rtol=0)
    assert r.solvable.all() and r.stable.all()


def test_brute_force_population_simulation():
    """Simulate two independent populations from the structural equations (baseline and
    intervened) and compare mean differences with the computed effect.

    Tolerance: 4 x the standard error of the difference of two independent sample means,
    SE = sqrt(var0/N + var1/N) from the simulated samples themselves.
    """
    g = small_graph()
    d = random_draws(g, 1, seed=7, scale=0.35)
    B, alpha, psi = d.B[0], d.alpha[0], d.psi[0]
    P, N = len(g.nodes), 200_000
    rng = np.random.default_rng(11)
    ix = g.node_index
    ivs = [Intervention(name="shift", parts=[Shift(node="b", delta=0.5)]),
           Intervention(name="set", parts=[Set(node="a", value=1.5)]),
           Intervention(name="mech", parts=[MechanismChange(source="b", target="c", scale=0.2),
                                            Shift(node="e", delta=-0.3)])]
    r = do_query(d, ivs, outcomes=["a", "b", "c", "d"])

    def simulate(Bx, c, keep_noise):
        zeta = rng.normal(0.0, np.sqrt(psi), (N, P)) * keep_noise
        return np.linalg.solve(np.eye(P) - Bx, (c + zeta).T).T

    base = simulate(B, alpha, np.ones(P))
    # shift b: intercept moves
    c1 = alpha.copy(); c1[ix["b"]] += 0.5
    sims = [simulate(B, c1, np.ones(P))]
    # set a = 1.5: a's equation replaced (incoming links cut, no disturbance)
    B2 = B.copy(); B2[ix["a"], :] = 0; c2 = alpha.copy(); c2[ix["a"]] = 1.5
    keep = np.ones(P); keep[ix["a"]] = 0
    sims.append(simulate(B2, c2, keep))
    B3 = B.copy(); B3[ix["c"], ix["b"]] *= 0.2; c3 = alpha.copy(); c3[ix["e"]] -= 0.3
    sims.append(simulate(B3, c3, np.ones(P)))
    for i, sim in enumerate(sims):
        diff = sim.mean(0) - base.mean(0)
        se = np.sqrt(sim.var(0) / N + base.var(0) / N)
        for node in ("b", "c", "d"):
            j = ix[node]
            assert abs(diff[j] - r.effect[i, 0, j]) < 4 * se[j], (i, node)


def test_matches_pymc_do_on_acyclic_submodel(marvel):
    """On an acyclic sub-model, effects equal PyMC's pm.do on the same parameter draws.

    The PyMC model writes each node as a Deterministic of its parents plus an explicit
    disturbance; intervening with the disturbances at 0 gives the conditional means exactly
    (the model is linear), so the comparison is to floating-point precision.
    """
    import pymc as pm
    import xarray as xr

    sub = marvel.subgraph(["parenting_support", "parenting_quality", "parent_child_relationship",
                           "life_skills", "social_network"])
    nodes, P, E = sub.nodes, len(sub.nodes), len(sub.edges)
    d = random_draws(sub, 12, seed=3)
    ivs = [Intervention(name="set", parts=[Set(node="parenting_quality", value=0.8)]),
           Intervention(name="shift", parts=[Shift(node="parenting_support", delta=0.5)])]
    r = do_query(d, ivs, outcomes=["life_skills"])
    order = ["parenting_support", "social_network", "parenting_quality",
             "parent_child_relationship", "life_skills"]  # a topological order
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 1, shape=E)
        alpha = pm.Normal("alpha", 0, 1, shape=P)
        zeta = pm.Normal("zeta", 0, 1, shape=P)
        eta = {}
        for n in order:
            k = sub.node_index[n]
            mu = alpha[k] + zeta[k]
            for e_i, e in enumerate(sub.edges):
                if e.target == n:
                    mu = mu + beta[e_i] * eta[e.source]
            eta[n] = pm.Deterministic(n, mu)
    post = xr.Dataset({"beta": (("chain", "draw", "beta_dim_0"), d.beta()[None]),
                       "alpha": (("chain", "draw", "alpha_dim_0"), d.alpha[None])})

    def run(extra):
        m = pm.do(model, {"zeta": np.zeros(P), **extra})
        with m:
            pp = pm.sample_posterior_predictive(post, var_names=["life_skills"], progressbar=False,
                                                random_seed=1)
        return np.asarray(pp["posterior_predictive"]["life_skills"].values).reshape(-1)

    base = run({})
    set_eff = run({"parenting_quality": 0.8}) - base
    np.testing.assert_allclose(r.outcome_effect("life_skills")[0], set_eff, atol=1e-10)
    # a shift of a parentless node equals pm.do setting it to its intercept + delta (per draw)
    k_ps = sub.node_index["parenting_support"]
    eff = []
    for s in range(3):
        post_s = post.isel(draw=[s])
        m = pm.do(model, {"zeta": np.zeros(P), "parenting_support": d.alpha[s, k_ps] + 0.5})
        with m:
            pp = pm.sample_posterior_predictive(post_s, var_names=["life_skills"], progressbar=False)
        eff.append(float(pp["posterior_predictive"]["life_skills"].values.reshape(-1)[0]) - base[s])
    np.testing.assert_allclose(r.outcome_effect("life_skills")[1, :3], eff, atol=1e-10)


def test_unstable_and_singular_draws_flagged():
    g = small_graph()
    d = random_draws(g, 3, seed=2)
    beta = d.beta().copy()
    keys = list(g.edge_keys)
    # draw 1: loop a->b->c->a gain 1.5 (unstable), draw 2: a<->b makes I-B singular
    beta[1, keys.index("a->b")], beta[1, keys.index("b->c")], beta[1, keys.index("c->a")] = 1.5, 1.0, 1.0
    beta[1, keys.index("b->a")] = 0.0
    beta[2, keys.index("a->b")], beta[2, keys.index("b->a")] = 1.0, 1.0
    beta[2, keys.index("b->c")] = 0.0
    d2 = StructuralDraws.from_arrays(g, beta, np.zeros((3, 5)))
    r = do_query(d2, [Intervention(name="s", parts=[Shift(node="e", delta=1.0)])], outcomes=["d"])
    assert r.stable.tolist() == [[True, False, False]]
    assert r.solvable.tolist() == [[True, True, False]]
    assert np.isfinite(r.effect[0, 0]).all() and np.isfinite(r.effect[0, 1]).all()
    assert np.isnan(r.effect[0, 2]).all()
    assert r.p_stable()[0] == pytest.approx(1 / 3)
    # cutting the loop by a set restores stability in draw 1
    r2 = do_query(d2, [Intervention(name="cut", parts=[Set(node="a", value=0.0)])], outcomes=["d"])
    assert r2.stable[0, 1]


def test_subgroup_dilution_suppression_and_baseline_dependence():
    g = small_graph()
    d = random_draws(g, 10, seed=4)
    sg = {"single_parent": SubgroupInfo(0.16, n=400, mean=np.array([0.5, -0.2, 0.3, 0.0, 1.0])),
          "tiny": SubgroupInfo(0.01, n=12)}
    ivs = [Intervention(name="all", parts=[Shift(node="a", delta=0.3)]),
           Intervention(name="sp", parts=[Shift(node="a", delta=0.3)], subgroup="single_parent"),
           Intervention(name="sp_set", parts=[Set(node="a", value=1.0)], subgroup="single_parent"),
           Intervention(name="pop_set", parts=[Set(node="a", value=1.0)]),
           Intervention(name="tiny", parts=[Shift(node="a", delta=0.3)], subgroup="tiny")]
    r = do_query(d, ivs, outcomes=["c"], subgroups=sg, min_cell_size=50)
    within = r.outcome_effect("c", "within")
    pop = r.outcome_effect("c", "population")
    np.testing.assert_allclose(within[1], within[0], atol=1e-12)  # shift: same in every subgroup
    np.testing.assert_allclose(pop[1], 0.16 * within[0], atol=1e-12)
    np.testing.assert_allclose(pop[0], within[0])
    # a set's effect depends on the subgroup's baseline level of a: (x - m_a) times A_do[:, a]
    assert not np.allclose(within[2], within[3])
    base_a_pop = d.baseline_mean()[:, 0]
    ratio = within[2] / within[3]
    np.testing.assert_allclose(ratio, (1.0 - 0.5) / (1.0 - base_a_pop), rtol=1e-8)
    assert np.isnan(within[4]).all()
    assert "minimum cell size" in r.suppressed[4] and "n=12" in r.suppressed[4]


def test_dose_uncertainty_seeded_and_moments():
    g = small_graph()
    d = random_draws(g, 4000, seed=5)
    ivs = [Intervention(name="n", parts=[Shift(node="a", delta=Normal(mean=-0.2, sd=0.1))]),
           Intervention(name="u", parts=[Shift(node="a", delta=Uniform(lo=0.0, hi=1.0))]),
           Intervention(name="f", parts=[Shift(node="a", delta=Fixed(value=0.7))])]
    r1 = do_query(d, ivs, outcomes=["d"], seed=3)
    r2 = do_query(d, ivs, outcomes=["d"], seed=3)
    r3 = do_query(d, ivs, outcomes=["d"], seed=4)
    np.testing.assert_array_equal(r1.doses, r2.doses)
    assert not np.allclose(r1.doses[0], r3.doses[0])
    j = g.node_index["a"]
    dn = r1.doses[0, :, j]
    # sample mean of 4000 normal doses: SE = 0.1/sqrt(4000) = 0.0016; allow 4 SE
    assert abs(dn.mean() + 0.2) < 4 * 0.1 / np.sqrt(4000)
    du = r1.doses[1, :, j]
    assert du.min() >= 0 and du.max() <= 1 and abs(du.mean() - 0.5) < 4 * np.sqrt(1 / 12 / 4000)
    assert np.all(r1.doses[2, :, j] == 0.7)
    # linear in the dose: effect / dose is the same total effect for every intervention
    te = r1.effect[2, :, :] / 0.7
    np.testing.assert_allclose(r1.effect[0], te * dn[:, None], atol=1e-10)


def test_outcomes_default_composite_and_resilience_hint(marvel):
    d = random_draws(marvel, 5, seed=6)
    iv = [Intervention(name="x", parts=[Shift(node="social_network", delta=0.2)])]
    r = do_query(d, iv)
    assert [o.name for o in r.outcomes] == list(DEFAULT_OUTCOMES)
    comp = Outcome(name="resilience_index", weights={"wellbeing": 0.5, "stress": -0.5})
    r = do_query(d, iv, outcomes=["wellbeing", comp])
    ix = marvel.node_index
    np.testing.assert_allclose(r.outcome_effect("resilience_index")[0],
                               0.5 * r.effect[0, :, ix["wellbeing"]] - 0.5 * r.effect[0, :, ix["stress"]])
    with pytest.raises(InterventionError, match="composite"):
        do_query(d, iv, outcomes=["resilience"])
    with pytest.raises(InterventionError, match="did you mean 'wellbeing'"):
        do_query(d, iv, outcomes=["welbeing"])


def test_bad_inputs_give_clear_errors(marvel):
    d = random_draws(marvel, 3, seed=8)
    with pytest.raises(InterventionError, match="did you mean 'stress'"):
        do_query(d, [Intervention(name="x", parts=[Shift(node="stres", delta=0.2)])])
    with pytest.raises(InterventionError, match="unknown unit 'furlong'"):
        do_query(d, [Intervention(name="x", parts=[Shift(node="stress", delta=0.2, unit="furlong")])])
    with pytest.raises(InterventionError, match="did you mean 'single_parent'"):
        do_query(d, [Intervention(name="x", parts=[Shift(node="stress", delta=0.2)],
                                  subgroup="single_parnt")],
                 subgroups={"single_parent": SubgroupInfo(0.1)})


def _reference_per_draw(B, alpha, D, set_mask, set_value, shift, mscale, mmask, mval, mean=None):
    """Independent numpy reference for one draw and one intervention (the definition in the
    module docstring, one dense solve per system): effect, |det|, cond, rho."""
    P = B.shape[0]
    eye = np.eye(P)
    c = alpha if mean is None else (eye - B) @ mean
    m = np.linalg.solve(eye - B, c)
    Bdo = np.where(mmask, mval, B * mscale) * (1.0 - set_mask)[:, None]
    c_do = np.where(set_mask, set_value, c + shift)
    M = eye - Bdo
    u = c_do - M @ m
    sv = np.linalg.svd(M, compute_uv=False)
    return (np.linalg.solve(M, u), np.prod(sv), sv[0] / sv[-1],
            np.max(np.abs(np.linalg.eigvals(Bdo))))


@pytest.mark.parametrize("graph_name", ["small", "marvel"])
def test_grouped_kernel_matches_per_draw_reference(graph_name, marvel):
    """Interventions sharing an intervened structure are solved together, on the strongly
    connected blocks (spectral radius) and with sparse injections; every number must equal the
    dense per-draw, per-intervention reference (data-only effects with an edge classification,
    subgroup baselines, sets, mechanism changes, random doses, shared and distinct structures);
    the structural reachability equals "some draw has a non-zero effect" (generic draws)."""
    g = small_graph() if graph_name == "small" else marvel
    S = 30
    d0 = random_draws(g, S, seed=21)
    rng = np.random.default_rng(0)
    edge_class = {e.key: ("data-informed" if rng.uniform() < 0.5 else "prior-dominated")
                  for e in g.edges}
    d = StructuralDraws.from_arrays(g, d0.beta(), d0.alpha, d0.psi, edge_class=edge_class)
    ix = g.node_index
    n0, n1, n2 = (("a", "b", "c") if graph_name == "small"
                  else ("stress", "social_network", "wellbeing"))
    e0 = g.edges[1]
    P = len(g.nodes)
    mean = rng.normal(0, 0.5, P)
    sg = {"grp": SubgroupInfo(0.2, n=100, mean=mean), "other": SubgroupInfo(0.3, n=100)}
    mech = MechanismChange(source=e0.source, target=e0.target, scale=0.5)
    ivs = [Intervention(name="shift", parts=[Shift(node=n0, delta=Normal(mean=0.3, sd=0.1))]),
           Intervention(name="shift_grp", parts=[Shift(node=n2, delta=0.2)], subgroup="grp"),
           Intervention(name="set", parts=[Set(node=n1, value=0.7)]),
           Intervention(name="set_grp", parts=[Set(node=n1, value=0.7), Shift(node=n0, delta=0.1)],
                        subgroup="grp"),
           Intervention(name="mech", parts=[mech]),
           Intervention(name="mech_grp", parts=[mech, Shift(node=e0.target, delta=-0.2)],
                        subgroup="grp"),
           Intervention(name="combo", parts=[mech, Set(node=n1, value=-0.4),
                                             Shift(node=n2, delta=Uniform(lo=0.0, hi=0.5))],
                        subgroup="other")]
    r = do_query(d, ivs, outcomes=[n0, n2], subgroups=sg, seed=5)
    D = np.zeros((P, P))
    for e in g.edges:
        if edge_class[e.key] == "data-informed":
            D[ix[e.target], ix[e.source]] = 1.0
    for i, iv in enumerate(ivs):
        set_mask, set_value = np.zeros(P, bool), np.zeros(P)
        mscale, mmask, mval = np.ones((P, P)), np.zeros((P, P), bool), np.zeros((P, P))
        for p in iv.parts:
            if isinstance(p, Set):
                set_mask[ix[p.node]], set_value[ix[p.node]] = True, p.value
            elif isinstance(p, MechanismChange):
                mscale[ix[p.target], ix[p.source]] = p.scale
        for s in range(S):
            ref = _reference_per_draw(d.B[s], d.alpha[s], D, set_mask, set_value, r.doses[i, s],
                                      mscale, mmask, mval, mean if iv.subgroup == "grp" else None)
            np.testing.assert_allclose(r.effect[i, s], ref[0], atol=1e-10, rtol=0)
            np.testing.assert_allclose([r.abs_det[i, s], r.cond[i, s], r.rho[i, s]], ref[1:],
                                       rtol=1e-10)
    np.testing.assert_array_equal(r.reachable, (np.abs(r.effect) > 0).any(axis=1))
    assert r.baseline_solvable.all() and r.usable().shape == (len(ivs), S)
    np.testing.assert_allclose(r.rho[0], d.spectral_radius(), rtol=1e-10)
    np.testing.assert_array_equal(r.baseline_stable, d.spectral_radius() < 1.0)


def test_draw_doses_match_jax_random_reference():
    """Doses are the documented transforms of jax.random normals/uniforms from split keys."""
    import jax

    g = small_graph()
    ivs = [Intervention(name="n", parts=[Shift(node="a", delta=Normal(mean=-0.2, sd=0.1)),
                                         Shift(node="b", delta=Uniform(lo=0.0, hi=2.0))]),
           Intervention(name="l", parts=[Shift(node="c", delta=LogNormal(median=-0.5, sigma=0.3))]),
           Intervention(name="f", parts=[Shift(node="a", delta=0.4)])]
    from veerkracht_bayes.causal.do import draw_doses
    from veerkracht_bayes.causal.interventions import compile_interventions

    comp = compile_interventions(ivs, g.nodes, [e.key for e in g.edges])
    S, P = 50, len(g.nodes)
    doses = draw_doses(comp, S, P, 7)
    with jax.enable_x64(True):  # draw_doses runs in 64-bit mode (veerkracht_bayes.runtime.x64)
        kz, ku = jax.random.split(jax.random.PRNGKey(7))
        z = np.asarray(jax.random.normal(kz, (3, 2, S)))
        uu = np.asarray(jax.random.uniform(ku, (3, 2, S)))
    ix = g.node_index
    np.testing.assert_allclose(doses[0, :, ix["a"]], -0.2 + 0.1 * z[0, 0], rtol=1e-14)
    np.testing.assert_allclose(doses[0, :, ix["b"]], 2.0 * uu[0, 1], rtol=1e-14)
    np.testing.assert_allclose(doses[1, :, ix["c"]], -np.exp(np.log(0.5) + 0.3 * z[1, 0]), rtol=1e-14)
    np.testing.assert_array_equal(doses[2, :, ix["a"]], 0.4)
    assert np.count_nonzero(doses[2]) == S  # only the shifted node
    # fixed doses only: no random numbers needed, same values
    fixed = compile_interventions([ivs[2]], g.nodes, [e.key for e in g.edges])
    np.testing.assert_array_equal(draw_doses(fixed, S, P, 7)[0], doses[2])
