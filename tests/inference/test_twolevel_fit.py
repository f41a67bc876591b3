"""The two-level fit's options that need no sampling: literature priors on the within links,
the between parameterisation, located errors."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.datasets.clustered import simulate_clustered
from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.inference.twolevel_fit import fit_twolevel
from veerkracht_bayes.priors.spec import default_priors
from veerkracht_bayes.sem.model_builder import edge_prior_values
from veerkracht_bayes.sem.twolevel import build_twolevel_model, twolevel_layout
from veerkracht_bayes.survey.clusters import cluster_statistics


@pytest.fixture(scope="module")
def small():
    df, truth = simulate_clustered(n_clusters=30, min_size=3, max_size=8, seed=2)
    items = list(truth.item_construct)
    cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items)
    return cs, truth


def test_within_links_take_the_literature_prior_with_its_sign(small):
    cs, truth = small
    g = load_graph("marvel")
    eps = edge_prior_values(default_priors(g), g)
    links = twolevel_layout(g, truth.item_construct).within_links
    lay = twolevel_layout(g, truth.item_construct, within_prior={k: eps[k] for k in links})
    pri = lay.within_priors()
    signs = {e.key: e.sign for e in g.edges}
    assert set(pri) == set(lay.within_links) and lay.within_links
    for k, p in pri.items():
        assert p == eps[k]
        assert (p.lower == 0.0) if signs[k] == "+" else (p.upper == 0.0)
    model = build_twolevel_model(cs, lay)
    names = {rv.name for rv in model.free_RVs}
    assert "beta_within" not in names and any(n.startswith("beta_truncated_normal") for n in names)
    assert "beta_within" in {v.name for v in model.deterministics}
    point = model.initial_point()
    point["between_sd_log__"] = np.full(3, np.log(0.2))  # shares below 1
    rv = next(r for r in model.free_RVs if r.name.startswith("beta_truncated_normal_pos"))
    value = model.rvs_to_values[rv]
    point[value.name] = model.rvs_to_transforms[rv].forward(np.full(1, 0.2), *rv.owner.inputs).eval()
    assert np.isfinite(model.compile_logp()(point))
    # without priors: the generic Normal(0, link_sd)
    lay0 = twolevel_layout(g, truth.item_construct)
    assert all(p.distribution == "normal" and p.sd == lay0.link_sd for p in lay0.within_priors().values())


def test_between_parameterisations_and_errors(small):
    cs, truth = small
    kw = {"between": list(truth.between), "between_links": list(truth.between_links),
          "within_links": list(truth.within_links)}
    raw = build_twolevel_model(cs, twolevel_layout(None, truth.item_construct, **kw))
    assert {"between_sd", "beta_between_raw"} <= {rv.name for rv in raw.free_RVs}
    assert {"share", "beta_between", "psi_between"} <= {v.name for v in raw.deterministics}
    std = build_twolevel_model(cs, twolevel_layout(None, truth.item_construct, between_scale="standardised", **kw))
    assert {"share", "beta_between"} <= {rv.name for rv in std.free_RVs}
    with pytest.raises(ModelError, match="between_scale"):
        twolevel_layout(None, truth.item_construct, between_scale="total", **kw)
    with pytest.raises(ModelError, match="between_sd"):
        twolevel_layout(None, truth.item_construct, between_sd=0.0, **kw)
    with pytest.raises(ModelError, match="not a within link"):
        twolevel_layout(None, truth.item_construct, within_prior={"social_network->collective_agency": (0, 1)}, **kw)
    with pytest.raises(ModelError, match="graph"):
        fit_twolevel(cs, truth.item_construct, priors=default_priors(load_graph("marvel")), draws=10, tune=10,
                     chains=1, progressbar=False, **kw)
