"""The clustered synthetic survey generator (datasets/clustered.py)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from veerkracht_bayes.datasets.clustered import (
    boundary_twolevel_truth,
    default_twolevel_truth,
    simulate_clustered,
)
from veerkracht_bayes.sem.twolevel import implied_twolevel_covariances, twolevel_layout
from veerkracht_bayes.survey.clusters import cluster_statistics


@pytest.mark.parametrize("make_truth", [default_twolevel_truth, boundary_twolevel_truth], ids=["default", "boundary"])
def test_large_sample_moments_match_the_truth(make_truth):
    # J = 3000 clusters (N ~ 45000): MC SE of S_PW entries ~0.005 and of the ANOVA Sigma_B entries
    # ~0.006; tolerance 0.035 on the max over all entries. The boundary truth (a between
    # disturbance of 0) is generated too.
    df, truth = simulate_clustered(make_truth(), n_clusters=3000, min_size=5, max_size=25, seed=21)
    items = list(truth.item_construct)
    cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items, standardise=False)
    lay = twolevel_layout(None, truth.item_construct, between=list(truth.between),
                          between_links=list(truth.between_links), within_links=list(truth.within_links))
    out = implied_twolevel_covariances(
        lay, np.array([truth.loading[i] for i in items]), np.array([truth.theta_within[i] for i in items]),
        np.array([truth.theta_between[i] for i in items]), np.array(list(truth.within_links.values())),
        np.array(list(truth.between_links.values())), np.array([truth.between[c] for c in lay.between]))
    assert np.abs(cs.S_PW - out["Sigma_W"]).max() < 0.035
    assert np.abs(cs.sigma_b_hat - out["Sigma_B"]).max() < 0.035
    t_icc = np.array([truth.item_icc()[i] for i in items])
    assert np.abs(cs.icc - t_icc).max() < 0.03


def test_layout_of_the_table_and_truth_file(tmp_path):
    df, truth = simulate_clustered(n_clusters=12, min_size=2, max_size=5, n_municipalities=3, weights=True, seed=4)
    assert df["wijk_code"].nunique() == 12 and df["gemeente_code"].nunique() == 3
    sizes = df.groupby("wijk_code").size()
    assert sizes.min() >= 2 and sizes.max() <= 5
    assert abs(df["weight"].mean() - 1.0) < 1e-12 and df["weight"].std() > 0
    # each neighbourhood lies in one municipality
    assert (df.groupby("wijk_code")["gemeente_code"].nunique() == 1).all()
    path = truth.write(tmp_path / "truth.yaml")
    back = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert back["between"] == truth.between and back["between_links"] == truth.between_links
    assert back["item_icc"] == truth.item_icc()


def test_seed_reproducible_and_default_truth():
    a, _ = simulate_clustered(n_clusters=5, min_size=2, max_size=3, seed=9)
    b, _ = simulate_clustered(n_clusters=5, min_size=2, max_size=3, seed=9)
    assert a.equals(b)
    t = default_twolevel_truth()
    assert set(t.between) == {"neighbourhood_trust", "community_support", "collective_agency"}
