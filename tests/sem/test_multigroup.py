"""The multi-group model (sem/multigroup.py): data splitting, errors, and its log-likelihood against
a dense SciPy reference with group-specific links, intercepts, disturbance scales and loadings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from veerkracht_bayes.datasets.heterogeneous import simulate_groups
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import CausalGraph
from veerkracht_bayes.graph.spec import GraphSpec
from veerkracht_bayes.sem.multigroup import (
    build_multigroup_model,
    prepare_group_data,
    split_model_data,
)
from veerkracht_bayes.survey.statistics import prepare_model_data

LINKS = {"x1->a": 0.4, "x2->b": 0.3, "a->b": 0.4, "b->c": 0.3, "c->a": -0.25}
COVS = ["x1", "x2"]
LAT = ["a", "b", "c"]


def graph() -> CausalGraph:
    return CausalGraph(GraphSpec.model_validate({
        "spec_version": 1, "name": "mg",
        "nodes": [{"id": n, "label_en": n, "label_nl": n, "resource": "individual",
                   "role": "exogenous" if n in COVS else "construct"} for n in COVS + LAT],
        "edges": [{"source": k.split("->")[0], "target": k.split("->")[1], "sign": "+" if v > 0 else "-",
                   "evidence": "t"} for k, v in LINKS.items()]}))


def _sim(seed=1, n=120):
    g = graph()
    sim = simulate_groups(g, LINKS, {"p": n, "q": n + 30, "r": n - 20},
                          deviations={"q": {"a->b": 0.2}}, intercepts={"r": {"a": 0.5}}, seed=seed)
    return g, sim


def test_split_counts_shares_and_errors():
    g, sim = _sim()
    gd = prepare_group_data(sim.items, sim.item_names, sim.item_construct, sim.groups,
                            covariates=sim.covariates, covariate_names=sim.covariate_names)
    assert gd.labels == ("p", "q", "r") and gd.counts == (120, 150, 100)
    np.testing.assert_allclose(gd.share, np.array([120, 150, 100]) / 370)
    # per-group statistics add up to the pooled ones
    np.testing.assert_allclose(sum(s.Syy.sum(0) for s in gd.stats), gd.pooled.stats.Syy.sum(0), atol=1e-9)
    with pytest.raises(ModelError, match="group labels for"):
        split_model_data(gd.pooled, ["p"] * 3)
    with pytest.raises(ModelError, match="fewer than 200"):
        split_model_data(gd.pooled, list(sim.groups), min_group_size=200)
    with pytest.raises(ModelError, match="at least 2 groups"):
        split_model_data(gd.pooled, ["p"] * gd.pooled.n)
    with pytest.raises(ModelError, match="not an item"):
        build_multigroup_model(g, gd, free_loadings=["zz"])
    with pytest.raises(ModelError, match="not a link"):
        build_multigroup_model(g, gd, pooled_links=["a->c"])


def _replace_eval(model, out, values):
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace

    repl = {model[k]: pt.constant(np.asarray(v, dtype=float)) for k, v in values.items()}
    return float(graph_replace(out, repl).eval())


def test_loglik_matches_dense_reference():
    """Group g: y ~ N(nu_g + lam_g * [A_g (alpha_g + Gamma_g x)], Lam_g A_g diag(psi_g) A_g' Lam_g' + Theta)."""
    g, sim = _sim(seed=4)
    gd = prepare_group_data(sim.items, sim.item_names, sim.item_construct, sim.groups,
                            covariates=sim.covariates, covariate_names=sim.covariate_names)
    model, lay = build_multigroup_model(g, gd, free_loadings=["b1"], free_intercepts=["c2"])
    rng = np.random.default_rng(0)
    G, K, m = 3, len(lay.pooled_edges), len(lay.base.items)
    keys = list(lay.base.edge_keys)
    beta = np.array([LINKS[k] for k in keys])
    vals = {"tau": np.full(K, 0.1), "delta_z": rng.normal(size=(G, K)), "alpha_raw": rng.normal(0, 0.5, (G, 3)),
            "log_scale_raw": rng.normal(0, 0.3, (G, 3)), "loading": rng.uniform(0.5, 0.9, m),
            "residual_var": rng.uniform(0.3, 0.6, m), "nu": rng.normal(0, 0.2, m),
            "loading_group": rng.uniform(0.5, 0.9, (G, 1)), "nu_group_free": rng.normal(0, 0.2, (G, 1))}
    from veerkracht_bayes.sem.preconditioning import edge_groups

    for name, _, idx in edge_groups(lay.base.edge_priors, keys):
        vals[name] = beta[idx]
    pot = next(p for p in model.potentials if p.name == "loglik_and_group_stability")
    got = _replace_eval(model, pot, vals)
    # dense reference
    li = {n: i for i, n in enumerate(LAT)}
    Bp = np.zeros((3, 3)); Gp = np.zeros((3, 2))
    for k, v in LINKS.items():
        s, t = k.split("->")
        (Gp if s in COVS else Bp)[li[t], COVS.index(s) if s in COVS else li[s]] = v
    A0 = np.linalg.inv(np.eye(3) - Bp)
    AG0 = A0 @ Gp
    psi = np.linalg.solve(A0 * A0, 1 - np.einsum("ik,kl,il->i", AG0, gd.pooled.x_cov, AG0))
    share = gd.share
    delta = vals["delta_z"] * vals["tau"]
    alpha = vals["alpha_raw"] - share @ vals["alpha_raw"]
    omega = vals["log_scale_raw"] - share @ vals["log_scale_raw"]
    c_idx = np.array([li[c] for c in lay.base.item_construct])
    items = list(lay.base.items)
    ref = 0.0
    pool = [keys.index(k) for k in lay.pooled_edges]
    for gi in range(G):
        bg = beta.copy(); bg[pool] += delta[gi]
        Bg = np.zeros((3, 3)); Gg = np.zeros((3, 2))
        for e_i, k in enumerate(keys):
            s, t = k.split("->")
            (Gg if s in COVS else Bg)[li[t], COVS.index(s) if s in COVS else li[s]] = bg[e_i]
        Ag = np.linalg.inv(np.eye(3) - Bg)
        lam = vals["loading"].copy(); lam[items.index("b1")] = vals["loading_group"][gi, 0]
        nu = vals["nu"].copy(); nu[items.index("c2")] = vals["nu_group_free"][gi, 0]
        L = np.zeros((m, 3)); L[np.arange(m), c_idx] = lam
        S = L @ Ag @ np.diag(psi * np.exp(omega[gi])) @ Ag.T @ L.T + np.diag(vals["residual_var"])
        sel = gd.group_of_row == gi
        mu = nu + (L @ Ag @ (alpha[gi][:, None] + Gg @ gd.pooled.x[sel].T)).T
        ref += np.sum(gd.pooled.weights[sel] * multivariate_normal(np.zeros(m), S).logpdf(gd.pooled.y[sel] - mu))
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_equal_groups_reduce_to_pooled_single_group_model():
    """No deviations, centred intercepts and scales all zero: the group likelihoods add up to the
    single-group model's likelihood on the pooled data."""
    from veerkracht_bayes.sem.model_builder import build_model

    g, sim = _sim(seed=5)
    md = prepare_model_data(sim.items, sim.item_names, sim.item_construct, covariates=sim.covariates,
                            covariate_names=sim.covariate_names)
    gd = split_model_data(md, list(sim.groups))
    mg, lay = build_multigroup_model(g, gd)
    sg, _ = build_model(g, md, whiten_intercepts=False)
    rng = np.random.default_rng(3)
    m = len(lay.base.items)
    from veerkracht_bayes.sem.preconditioning import edge_groups

    keys = list(lay.base.edge_keys)
    beta = np.array([LINKS[k] for k in keys])
    common = {"loading": rng.uniform(0.5, 0.9, m), "residual_var": rng.uniform(0.3, 0.6, m),
              "nu": rng.normal(0, 0.2, m)}
    for name, _, idx in edge_groups(lay.base.edge_priors, keys):
        common[name] = beta[idx]
    mvals = {**common, "tau": np.full(len(lay.pooled_edges), 0.1), "delta_z": np.zeros((3, len(lay.pooled_edges))),
             "alpha_raw": np.ones((3, 3)) * 0.7, "log_scale_raw": np.ones((3, 3)) * -0.2}
    pot_m = next(p for p in mg.potentials if p.name == "loglik_and_group_stability")
    pot_s = next(p for p in sg.potentials if p.name == "loglik")
    assert _replace_eval(mg, pot_m, mvals) == pytest.approx(_replace_eval(sg, pot_s, common), rel=1e-9)


def test_group_data_from_survey_subgroup_and_column():
    """On the shipped synthetic survey: a codebook subgroup gives members / non-members, a column
    gives its values; pooled statistics equal the single-group model data's."""
    from pathlib import Path

    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.sem.multigroup import group_data_from_survey
    from veerkracht_bayes.survey.reading import read_survey
    from veerkracht_bayes.survey.statistics import model_data_from_survey

    syn = Path(__file__).resolve().parents[2] / "data" / "synthetic"
    g = load_graph("marvel")
    survey = read_survey(syn / "veerkracht_synthetic.csv.gz", syn / "codebook_synthetic.yaml", graph=g)
    gd = group_data_from_survey(survey, g, "single_parent")
    assert set(gd.labels) == {"single_parent", "not single_parent"}
    md = model_data_from_survey(survey, g)
    assert gd.pooled.n == md.n and gd.pooled.item_names == md.item_names
    np.testing.assert_allclose(gd.pooled.item_center, md.item_center)
    # the grouping's own covariate is constant within both groups: left out, and said so
    assert gd.dropped_covariates == ("single_parent_household",)
    assert "single_parent_household" not in gd.pooled.x_names
    mask = survey.subgroup_mask("single_parent")
    assert gd.counts[gd.labels.index("single_parent")] <= int(mask.sum())
    gd2 = group_data_from_survey(survey, g, "gemeente_code", min_group_size=1)
    assert len(gd2.labels) >= 2 and sum(gd2.counts) == gd2.pooled.n
    assert gd2.dropped_covariates == ()
    with pytest.raises(ModelError, match="neither a codebook subgroup"):
        group_data_from_survey(survey, g, "gemeente_cod")
