"""The synthetic generators' heterogeneity options: MARVEL ``simulate_population(heterogeneity=...)``
(and ``simulate --heterogeneity``) and the small multi-group generator ``simulate_groups``."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from veerkracht_bayes.datasets.heterogeneous import simulate_groups
from veerkracht_bayes.datasets.synthetic import (
    default_truth,
    heterogeneity_truth,
    simulate_population,
)
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan


def _link(truth):
    return next(k for k, v in truth.coefficients.items() if abs(v) > 0.1)


def test_marvel_heterogeneity_changes_only_members():
    truth = default_truth()
    key = _link(truth)
    spec = {"group": "refugee", "links": {key: 0.3}}
    base = simulate_population(3000, 5, truth=truth)
    het = simulate_population(3000, 5, truth=truth, heterogeneity=spec)
    member = het.covariates["refugee"].to_numpy() == 1
    assert 0 < member.sum() < len(member)
    s, t = key.split("->")
    # same disturbances and covariates: non-members' latents are identical, members' target differs by
    # exactly the deviation times the source's equilibrium value, propagated through (I - B_g)^-1
    np.testing.assert_array_equal(het.latent[~member].to_numpy(), base.latent[~member].to_numpy())
    assert not np.allclose(het.latent.loc[member, t], base.latent.loc[member, t])
    b, *_ = truth.matrices()
    idx = truth.index
    b_g = b.copy()
    b_g[idx[t], idx[s]] += 0.3
    eta_b = base.latent[member].to_numpy()
    rhs = eta_b @ (np.eye(len(idx)) - b).T  # recover alpha + Gamma x + zeta
    np.testing.assert_allclose(het.latent[member].to_numpy(), np.linalg.solve(np.eye(len(idx)) - b_g, rhs.T).T,
                               atol=1e-9)
    assert het.heterogeneity["links"][key]["members"] == pytest.approx(truth.coefficients[key] + 0.3)
    assert base.heterogeneity is None


def test_heterogeneity_spec_errors_are_located():
    truth = default_truth()
    with pytest.raises(ConfigError, match="heterogeneity.group"):
        heterogeneity_truth(truth, {"group": "nope", "links": {_link(truth): 0.1}})
    with pytest.raises(ConfigError, match="not a link"):
        heterogeneity_truth(truth, {"group": "refugee", "links": {"a->zz": 0.1}})
    with pytest.raises(ConfigError, match="finite number"):
        heterogeneity_truth(truth, {"group": "refugee", "links": {_link(truth): "big"}})
    with pytest.raises(ConfigError, match="unknown field"):
        heterogeneity_truth(truth, {"group": "refugee", "links": {}, "extra": 1})


def test_cli_simulate_heterogeneity_writes_truth(tmp_path):
    from veerkracht_bayes.cli.main import simulate_main

    truth = default_truth()
    key = _link(truth)
    spec = tmp_path / "het.yaml"
    spec.write_text(yaml.safe_dump({"group": "refugee", "links": {key: -0.1}}))
    assert simulate_main(n=300, seed=1, out=str(tmp_path / "out"), heterogeneity=str(spec)) == 0
    written = yaml.safe_load((tmp_path / "out" / "heterogeneity_truth.yaml").read_text())
    assert written["group"] == "refugee" and written["links"][key]["deviation"] == -0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"group": "refugee", "links": {"x->y": 0.1}}))
    assert simulate_main(n=300, seed=1, out=str(tmp_path / "out2"), heterogeneity=str(bad)) == 2


def test_simulate_groups_moments():
    """Population standardisation: with no deviation the latent b has variance 1; the group's link
    shows up in the within-group regression of b on a."""
    g = graph_from_lavaan("b ~ a")
    sim = simulate_groups(g, {"a->b": 0.4}, {"u": 40000, "v": 40000}, deviations={"v": {"a->b": 0.3}}, seed=2)
    u, v = sim.groups == "u", sim.groups == "v"
    assert np.var(sim.latent[u, 0]) == pytest.approx(1.0, abs=0.03)
    slope_v = np.polyfit(sim.covariates[v, 0], sim.latent[v, 0], 1)[0]
    assert slope_v == pytest.approx(0.7, abs=0.03)
    with pytest.raises(ConfigError, match="not in n_per_group"):
        simulate_groups(g, {"a->b": 0.4}, {"u": 10}, deviations={"w": {"a->b": 0.1}})
    with pytest.raises(ConfigError, match="every link"):
        simulate_groups(g, {}, {"u": 10})
