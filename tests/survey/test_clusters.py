"""Per-cluster sufficient statistics, ICCs and design effects (survey/clusters.py)."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.clusters import (
    cluster_statistics,
    cluster_statistics_from_survey,
    clustering_design_effect,
    kish_design_effect,
    weighted_mean_cluster_size,
)


def _hand(y, cl):
    """Textbook one-way ANOVA quantities, written with explicit loops."""
    labels = sorted(set(cl))
    N, p = y.shape
    J = len(labels)
    grand = y.mean(axis=0)
    SW = np.zeros((p, p))
    SB = np.zeros((p, p))
    n2 = 0.0
    for g in labels:
        rows = y[[i for i in range(N) if cl[i] == g]]
        m = rows.mean(axis=0)
        for r in rows:
            SW += np.outer(r - m, r - m)
        SB += len(rows) * np.outer(m - grand, m - grand)
        n2 += len(rows) ** 2
    S_PW = SW / (N - J)
    S_B = SB / (J - 1)
    c = (N - n2 / N) / (J - 1)
    sig_b = (S_B - S_PW) / c
    icc = np.diag(sig_b) / (np.diag(sig_b) + np.diag(S_PW))
    return S_PW, S_B, c, icc, n2 / N


def test_anova_statistics_match_hand_computation():
    rng = np.random.default_rng(4)
    sizes = [1, 2, 3, 3, 5, 8]
    cl = [f"w{j}" for j, n in enumerate(sizes) for _ in range(n)]
    y = rng.normal(size=(len(cl), 3)) + np.repeat(rng.normal(size=(len(sizes), 3)), sizes, axis=0)
    cs = cluster_statistics(y, cl, standardise=False, min_cluster_size=1)
    S_PW, S_B, c, icc, mbar = _hand(y, cl)
    np.testing.assert_allclose(cs.S_PW, S_PW, atol=1e-12)
    np.testing.assert_allclose(cs.S_B, S_B, atol=1e-12)
    assert cs.anova_c == pytest.approx(c)
    np.testing.assert_allclose(cs.icc, icc, atol=1e-12)
    # equal weights: the weighted mean cluster size is sum n_j^2 / N
    assert cs.weighted_mean_cluster_size == pytest.approx(mbar)
    assert cs.mean_cluster_size == pytest.approx(len(cl) / len(sizes))
    np.testing.assert_allclose(cs.deff_cluster, 1 + (mbar - 1) * icc)
    assert cs.deff_weights == pytest.approx(1.0)
    # size classes: counts and scatter of the cluster means
    assert cs.sizes.tolist() == [1, 2, 3, 5, 8] and cs.counts.tolist() == [1, 1, 2, 1, 1]
    m3 = [y[[i for i in range(len(cl)) if cl[i] == g]].mean(axis=0) for g in ("w2", "w3")]
    np.testing.assert_allclose(cs.class_means[2], (m3[0] + m3[1]) / 2)
    np.testing.assert_allclose(cs.class_scatter[2], 2 * np.outer((m3[0] - m3[1]) / 2, (m3[0] - m3[1]) / 2))


def test_weight_design_effects_by_hand():
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
    cl = np.array([0, 0, 1, 1, 1])
    assert kish_design_effect(w) == pytest.approx(5 * (1 + 4 + 1 + 9 + 1) / 8 ** 2)
    # Gabler-Haeder-Lahiri: sum_j (sum_i w_ij)^2 / sum w^2 = (3^2 + 5^2) / 16
    assert weighted_mean_cluster_size(w, cl) == pytest.approx(34 / 16)
    assert clustering_design_effect(0.1, 34 / 16) == pytest.approx(1 + (34 / 16 - 1) * 0.1)
    y = np.random.default_rng(0).normal(size=(5, 1))
    cs = cluster_statistics(y, cl, w, standardise=False)
    assert cs.deff_weights == pytest.approx(kish_design_effect(w))
    assert cs.weighted_mean_cluster_size == pytest.approx(34 / 16)
    np.testing.assert_allclose(cs.deff, cs.deff_weights * cs.deff_cluster)


def test_weights_constant_within_clusters_leave_within_statistics_unchanged():
    # level-1 weights are scaled to the cluster size: a weight that is constant within each cluster
    # changes neither the cluster means nor S_PW
    rng = np.random.default_rng(2)
    cl = np.repeat(np.arange(8), 4)
    y = rng.normal(size=(32, 2))
    w = np.repeat(rng.uniform(0.5, 2.0, 8), 4)
    a = cluster_statistics(y, cl, standardise=False)
    b = cluster_statistics(y, cl, w, standardise=False)
    np.testing.assert_allclose(a.S_PW, b.S_PW)
    np.testing.assert_allclose(a.class_means, b.class_means)


def test_icc_recovers_known_share():
    # y = u_j + e_ij with Var(u) = 0.1, Var(e) = 0.9: ICC = 0.1. MC SE of the ANOVA ICC with
    # J = 400 clusters of 10 is about 0.011; 4 SE tolerance.
    rng = np.random.default_rng(11)
    J, m = 400, 10
    cl = np.repeat(np.arange(J), m)
    y = rng.normal(0, np.sqrt(0.1), J)[cl] + rng.normal(0, np.sqrt(0.9), J * m)
    cs = cluster_statistics(y, cl)
    assert abs(cs.icc[0] - 0.1) < 0.045
    assert cs.deff_cluster[0] == pytest.approx(1 + (m - 1) * cs.icc[0])


def test_blank_cluster_label_is_a_located_error():
    y = np.zeros((5, 1))
    with pytest.raises(SurveyError) as e:
        cluster_statistics(y, ["a", "a", " ", None, "b"], cluster_column="wijk_code", source="s.csv",
                           rows=[2, 3, 4, 5, 6])
    msg = str(e.value)
    assert "s.csv:4" in msg and "wijk_code" in msg and "rows 4, 5" in msg
    assert e.value.problems[0].field == "wijk_code"


def test_small_clusters_reported_not_dropped_unless_asked():
    rng = np.random.default_rng(3)
    cl = ["a"] * 5 + ["b"] * 5 + ["c"]
    y = rng.normal(size=(11, 2))
    cs = cluster_statistics(y, cl, min_cluster_size=2)
    assert cs.n == 11 and cs.n_clusters == 3
    assert cs.small_clusters == (("c", 1),)
    s = cs.summary()
    assert s["small_clusters"] == [{"cluster": "c", "size": 1}] and not s["small_clusters_dropped"]
    cd = cluster_statistics(y, cl, min_cluster_size=2, drop_small=True)
    assert cd.n == 10 and cd.n_clusters == 2 and cd.n_excluded == 1
    assert cd.exclusion_reasons == {"cluster below min_cluster_size": 1}


def test_missing_items_excluded_and_counted():
    y = np.arange(12, dtype=float).reshape(6, 2)
    y[1, 0] = np.nan
    cs = cluster_statistics(y, [1, 1, 1, 2, 2, 2])
    assert cs.n == 5 and cs.exclusion_reasons == {"missing item": 1}
    assert cs.cluster_sizes == {"1": 2, "2": 3}


def test_summary_carries_no_microdata():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(30, 2))
    cs = cluster_statistics(y, np.repeat(np.arange(10), 3), item_names=["q1", "q2"])
    s = cs.summary()
    flat = repr(s)
    for v in y.ravel()[:10]:
        assert repr(float(v)) not in flat
    assert "class_means" not in s and "S_PW" not in s and "grand_mean" not in s
    assert [r["item"] for r in s["items"]] == ["q1", "q2"]


def test_fewer_than_two_clusters_refused():
    with pytest.raises(SurveyError, match="at least 2"):
        cluster_statistics(np.zeros((4, 1)), ["a"] * 4)


@pytest.fixture(scope="module")
def synthetic_survey():
    import veerkracht_bayes as vb
    from veerkracht_bayes.resources import shipped_path

    d = shipped_path("data", "synthetic")
    return vb.read_survey(d / "veerkracht_synthetic.csv.gz", d / "codebook_synthetic.yaml")


def test_from_survey_and_missing_column(synthetic_survey):
    cs, ic = cluster_statistics_from_survey(synthetic_survey, "wijk_code",
                                            constructs=["neighbourhood_trust", "community_support"])
    assert cs.n_clusters == 200 and set(ic.values()) == {"neighbourhood_trust", "community_support"}
    assert cs.n + cs.n_excluded == synthetic_survey.n
    with pytest.raises(SurveyError) as e:
        cluster_statistics_from_survey(synthetic_survey, "wijk_cod")
    assert "wijk_code" in str(e.value) and e.value.problems[0].field == "wijk_cod"
