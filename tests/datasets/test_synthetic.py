"""Tests of the synthetic population generator (veerkracht_bayes.datasets.synthetic).

Statistical tolerances are derived from Monte Carlo error and stated next to each check; the
seeds are fixed. "4 SE" bounds have a two-sided false-alarm rate of 6e-5 per comparison; where
many comparisons are made at once the bound is widened (Bonferroni) as stated.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.survey.codebook import Codebook, load_codebook
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.datasets.synthetic import (
    CODEBOOK_FILE,
    DATA_FILE,
    TRUTH_FILE,
    SyntheticTruth,
    default_truth,
    implied_moments,
    implied_shares,
    simulate_population,
    write_synthetic,
)
from veerkracht_bayes.cli.main import simulate_main
from veerkracht_bayes.yaml_io import load_yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "synthetic"
N = 20_000


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def truth() -> SyntheticTruth:
    return default_truth()


@pytest.fixture(scope="module")
def pop_truth(truth: SyntheticTruth) -> SyntheticTruth:
    """The default truth without over-sampling: the sample is a simple random sample."""
    return truth.model_copy(update={"covariates": [c.model_copy(update={"sample_share": c.population_share})
                                                   for c in truth.covariates]})


@pytest.fixture(scope="module")
def pop_survey(pop_truth: SyntheticTruth):
    return simulate_population(N, 11, truth=pop_truth)


@pytest.fixture(scope="module")
def survey(truth: SyntheticTruth):
    return simulate_population(N, 2023, truth=truth)


def valid(series: pd.Series, codes: list) -> pd.Series:
    return ~series.isin(codes)


# ----------------------------------------------------------------------------- reproducibility
def test_bit_identical_for_a_seed_and_different_for_another(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", n=1000, seed=5)
    b = write_synthetic(tmp_path / "b", n=1000, seed=5)
    c = write_synthetic(tmp_path / "c", n=1000, seed=6)
    for k in ("data", "codebook", "truth", "readme"):
        assert sha(a[k]) == sha(b[k]), k
    assert sha(a["data"]) != sha(c["data"])
    assert sha(a["truth"]) == sha(c["truth"])  # the truth does not depend on the data seed
    # gzip header carries no timestamp or file name
    raw = a["data"].read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00" and raw[3] & 0x08 == 0


def test_shipped_files_are_what_the_command_regenerates(tmp_path: Path) -> None:
    files = write_synthetic(tmp_path, n=N, seed=2023)
    for k in ("data", "codebook", "truth", "readme"):
        assert sha(files[k]) == sha(SHIPPED / files[k].name), f"{files[k].name} differs from data/synthetic"
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert "veerkracht-bayes simulate --n 20000 --seed 2023 --out data/synthetic" in readme
    assert "SYNTHETIC" in readme
    assert (SHIPPED / DATA_FILE).stat().st_size < 10 * 2**20


def test_truth_roundtrip_regenerates_the_same_data(tmp_path: Path, truth: SyntheticTruth) -> None:
    p = truth.to_yaml(tmp_path / "t.yaml")
    back = SyntheticTruth.from_yaml(p)
    assert back == truth
    d1 = simulate_population(500, 3, truth=truth).data
    d2 = simulate_population(500, 3, truth=back).data
    pd.testing.assert_frame_equal(d1, d2)


def test_cli_entry_points(tmp_path: Path) -> None:
    assert simulate_main(400, 1, str(tmp_path / "x")) == 0
    assert (tmp_path / "x" / DATA_FILE).exists()
    r = subprocess.run([sys.executable, "-m", "veerkracht_bayes.datasets.synthetic", "--n", "400", "--seed", "1",
                        "--out", str(tmp_path / "y")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha(tmp_path / "x" / DATA_FILE) == sha(tmp_path / "y" / DATA_FILE)
    assert simulate_main(0, 1, str(tmp_path / "z")) == 2


# ----------------------------------------------------------------------------- structural model
def test_equilibrium_solved(survey, truth: SyntheticTruth) -> None:
    b, alpha, gamma, _ = truth.matrices()
    assert np.max(np.abs(np.linalg.eigvals(b))) < 1
    eta = survey.latent[truth.nodes].to_numpy()
    x = survey.covariates[[c.name for c in truth.covariates]].to_numpy()
    zeta = survey.disturbance[truth.nodes].to_numpy()
    resid = eta - eta @ b.T - alpha[None, :] - x @ gamma.T - zeta
    assert np.max(np.abs(resid)) < 1e-10
    lev = [truth.index[n] for n in truth.policy_levers]
    assert np.all(eta[:, lev] == 0)  # policy levers are 0 in the survey
    exo = [truth.index[n] for n in truth.exogenous_nodes]
    assert np.all(b[exo, :] == 0) and np.all(b[lev, :] == 0)


def test_truth_matches_graph_signs_and_magnitudes(truth: SyntheticTruth) -> None:
    g = load_graph("marvel")
    assert truth.nodes == g.nodes and set(truth.coefficients) == set(g.edge_keys)
    for e in g.edges:
        v = truth.coefficients[e.key]
        assert (v > 0) == (e.sign == "+"), e.key
        assert 0.05 <= abs(v) <= 0.40, e.key


def test_implied_population_variance_is_one_exactly(truth: SyntheticTruth) -> None:
    mean, cov = implied_moments(truth, "population")
    keep = [i for i, n in enumerate(truth.nodes) if n not in truth.policy_levers]
    np.testing.assert_allclose(np.diag(cov)[keep], 1.0, atol=1e-10)
    np.testing.assert_allclose(mean, 0.0, atol=1e-10)
    assert all(truth.psi[n] > 0 for n in truth.nodes if n not in truth.policy_levers)


def test_population_variance_of_each_construct_is_one(pop_survey, pop_truth: SyntheticTruth) -> None:
    # sd of a sample variance = sqrt((m4 - m2^2) / n) (any distribution; m4 estimated). The 200
    # neighbourhood effects add the error of their realised variance: sd ~ v_nb * sqrt(2 / W_eff),
    # with W_eff = 100 (conservative for 200 wijken of Gamma(4)-distributed sizes, Kish ~160).
    # 28 nodes checked: bound 4.5 sd, two-sided 6.8e-6 each, 2e-4 for all.
    b, *_ = pop_truth.matrices()
    a = np.linalg.inv(np.eye(len(pop_truth.nodes)) - b)
    nbv = np.zeros(len(pop_truth.nodes))
    for k, v in pop_truth.neighbourhood_variance.items():
        nbv[pop_truth.index[k]] = v
    v_nb = np.diag((a * nbv) @ a.T)
    for i, n in enumerate(pop_truth.nodes):
        if n in pop_truth.policy_levers:
            continue
        e = pop_survey.latent[n].to_numpy()
        d = e - e.mean()
        m2, m4 = np.mean(d**2), np.mean(d**4)
        sd = math.sqrt((m4 - m2**2) / len(e) + 2 * v_nb[i] ** 2 / 100)
        assert abs(m2 - 1) < 4.5 * sd, (n, m2, sd)


def test_item_covariance_matches_implied(pop_survey, pop_truth: SyntheticTruth) -> None:
    # Implied Cov(y*) = Lambda Cov(eta) Lambda' + Theta. Normal-theory sd of a sample covariance:
    # sqrt((s_ii s_jj + s_ij^2) / n), plus the realised neighbourhood-effect term
    # 2 (lambda_i lambda_j Vnb_kl)^2 / W_eff (W_eff = 100, see above). ~1900 pairs: bound 5 sd
    # (two-sided 5.7e-7 each, ~1e-3 for all).
    _, cov = implied_moments(pop_truth, "population")
    b, *_ = pop_truth.matrices()
    a = np.linalg.inv(np.eye(len(pop_truth.nodes)) - b)
    nbv = np.zeros(len(pop_truth.nodes))
    for k, v in pop_truth.neighbourhood_variance.items():
        nbv[pop_truth.index[k]] = v
    vnb = (a * nbv) @ a.T
    its = [it for it in pop_truth.items if it.column in pop_survey.item_latent]
    assert len(its) >= 50
    lam = np.zeros((len(its), len(pop_truth.nodes)))
    for r, it in enumerate(its):
        lam[r, pop_truth.index[it.node]] = it.loading
    theta = np.diag([it.residual_variance for it in its])
    sigma = lam @ cov @ lam.T + theta
    nb = lam @ vnb @ lam.T
    y = pop_survey.item_latent[[it.column for it in its]].to_numpy()
    n = len(y)
    s = np.cov(y, rowvar=False, ddof=1)
    sd = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n + 2 * nb**2 / 100)
    z = (s - sigma) / sd
    assert np.max(np.abs(z)) < 5, np.unravel_index(np.argmax(np.abs(z)), z.shape)
    np.testing.assert_allclose(np.diag(sigma), 1.0, atol=1e-10)  # y* has unit variance


# ----------------------------------------------------------------------------- calibration
def _shares(df: pd.DataFrame, truth: SyntheticTruth) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    every = np.ones(len(df), bool)
    inc, mhi = df["household_income"].to_numpy(), df["mhi5_score"].to_numpy()
    return {
        "single_parent": (df["single_parent"].to_numpy() == 1, every),
        "migration_background": (df["migration_background"].to_numpy() == 1, every),
        "youth": ((df["age"] >= 12).to_numpy() & (df["age"] <= 25).to_numpy(), every),
        "welfare_recipient": (df["welfare_benefit"].to_numpy() == 1, every),
        "low_income": ((inc >= 0) & (inc < truth.low_income_threshold_eur), inc >= 0),
        "mental_health_problems": ((mhi >= 0) & (mhi < truth.mhi5_cutoff), mhi >= 0),
    }


def test_implied_shares_hit_the_report_figures(truth: SyntheticTruth) -> None:
    # Design check, not sampling: the thresholds are root-found on the exact implied shares.
    # The low-income threshold is rounded to a whole euro, hence the 1e-4 tolerance.
    cal = truth.calibration
    assert cal["single_parent"].implied_population_share == pytest.approx(0.16)
    assert cal["mental_health_problems"].implied_population_share == pytest.approx(0.15, abs=1e-6)
    assert cal["low_income"].implied_population_share == pytest.approx(0.11, abs=1e-4)
    assert cal["low_income"].implied_population_share > 0.10  # "more than 10% in poverty"
    assert cal["welfare_recipient"].implied_population_share == pytest.approx(0.05, abs=1e-6)
    # the refugee and migration shifts make low income more common there (22% / ~40% in the report)
    pop = implied_shares(truth, "population")
    assert set(cal) <= set(pop)


def test_sample_hits_calibration_targets(survey, truth: SyntheticTruth) -> None:
    # Unweighted shares vs the share implied under the sampling design (migration over-sampled):
    # tolerance 4 binomial SE, sqrt(p (1 - p) / n_valid). Weighted shares vs the population share:
    # 4 SE with Kish's effective n of the weights in the valid rows. Neighbourhood clustering is
    # ignored (it enters these variables only through paths of size < 0.01).
    df = survey.data
    w = df["weight"].to_numpy()
    for name, (mask, ok) in _shares(df, truth).items():
        c = truth.calibration[name]
        nv = ok.sum()
        p_unw = mask[ok].mean()
        se = math.sqrt(c.implied_sample_share * (1 - c.implied_sample_share) / nv)
        assert abs(p_unw - c.implied_sample_share) < 4 * se, (name, p_unw, c.implied_sample_share)
        wv = w[ok]
        p_w = (wv * mask[ok]).sum() / wv.sum()
        neff = wv.sum() ** 2 / (wv**2).sum()
        se_w = math.sqrt(c.implied_population_share * (1 - c.implied_population_share) / neff)
        assert abs(p_w - c.implied_population_share) < 4 * se_w + 1e-12, (name, p_w)


def test_subgroups_are_coherent_with_latents(survey, truth: SyntheticTruth) -> None:
    df, lat = survey.data, survey.latent
    sh = _shares(df, truth)
    # low income sits at the bottom of financial_means, unhealthy at the top of mental problems,
    # welfare with low livelihood security, single parents with more stress (edge +0.10 / sd 0.37).
    # Each mean difference is > 0.2 SD in the truth; its SE at n=20,000 is < 0.05.
    low, ok = sh["low_income"]
    assert lat["financial_means"][low].mean() < lat["financial_means"][ok & ~low].mean() - 0.5
    unh, ok = sh["mental_health_problems"]
    assert lat["mental_problems"][unh].mean() > lat["mental_problems"][ok & ~unh].mean() + 0.5
    wf = sh["welfare_recipient"][0]
    assert lat["livelihood_security"][wf].mean() < lat["livelihood_security"][~wf].mean() - 0.5
    sp = sh["single_parent"][0]
    assert lat["stress"][sp].mean() > lat["stress"][~sp].mean() + 0.1
    # migration background: lower income (Gamma -0.35 on financial_means)
    mig = df["migration_background"].to_numpy() == 1
    assert lat["financial_means"][mig].mean() < lat["financial_means"][~mig].mean() - 0.2
    ref = df["refugee"].to_numpy() == 1
    assert np.all(mig[ref])


def test_weights_post_stratify_the_oversampled_group(survey, truth: SyntheticTruth) -> None:
    df = survey.data
    w = df["weight"].to_numpy()
    assert np.all(w > 0) and abs(w.mean() - 1) < 1e-5
    mig = df["migration_background"].to_numpy() == 1
    # post-stratification reproduces the population share exactly (up to the 6-decimal rounding)
    assert (w * mig).sum() / w.sum() == pytest.approx(0.25, abs=1e-5)
    # unweighted: the sample share 0.35, 4 binomial SE
    assert abs(mig.mean() - 0.35) < 4 * math.sqrt(0.35 * 0.65 / len(df))


def test_missingness_rates(survey, truth: SyntheticTruth) -> None:
    # Observed -9 (and don't-know code) shares vs the MCAR rates: 4 binomial SE each; ~60 items,
    # so bound 4.5 SE (6.8e-6 each).
    df = survey.data
    for it in truth.items:
        if it.column not in df or it.missing_rate == 0:
            continue
        n = len(df)
        p = (df[it.column] == -9).mean()
        assert abs(p - it.missing_rate) < 4.5 * math.sqrt(it.missing_rate * (1 - it.missing_rate) / n), it.column
        if it.dont_know_code is not None:
            q = (df[it.column] == it.dont_know_code).mean()
            assert abs(q - it.dont_know_rate) < 4.5 * math.sqrt(it.dont_know_rate * (1 - it.dont_know_rate) / n)


# ----------------------------------------------------------------------------- codebook and files
def test_codebook_validates_against_the_graph(survey) -> None:
    g = load_graph("marvel")
    doc = load_yaml(SHIPPED / CODEBOOK_FILE)
    cb = Codebook.model_validate(doc.data)
    assert cb.synthetic and "synthetic" in cb.name and "SYNTHETIC" in cb.description
    assert set(cb.constructs) <= set(g.nodes)
    assert not set(cb.constructs) & set(g.nodes_where(role="policy_lever"))
    assert load_codebook(SHIPPED / CODEBOOK_FILE, graph=g) == cb  # the package's own cross-checks
    assert cb == survey.codebook
    df = pd.read_csv(SHIPPED / DATA_FILE)
    assert set(cb.known_columns()) == set(df.columns)
    assert cb.id_column == "respondent_id" and df["respondent_id"].is_unique
    assert cb.weight_column == "weight" and df["wijk_code"].nunique() == 200
    # instruments asked for in issue 3
    c = cb.constructs
    assert len(c["wellbeing"].items) == 5 and c["wellbeing"].items[0].categories == 6
    assert len(c["stress"].items) == 10 and sum(i.reverse for i in c["stress"].items) == 4
    assert len(c["social_network"].items) == 6
    assert len(c["individual_agency"].items) == 7 and c["individual_agency"].items[0].categories == 4
    assert len(c["neighbourhood_trust"].items) + len(c["community_support"].items) == 5
    assert len(c["livelihood_security"].items) == 3
    assert [i.scale for i in c["financial_means"].items] == ["continuous"]
    unobserved = {k for k, v in c.items() if not v.items}
    assert {"parenting_quality", "shame", "success_experiences", "help_system_complexity", "signalling"} <= unobserved
    assert set(cb.subgroups) >= {"single_parent", "low_income", "refugee", "migration_background",
                                 "mental_health_problems", "welfare_recipient", "youth"}
    # every data value is in range or a declared missing code
    for _, it in cb.item_specs():
        lo, hi = it.range
        v = df[it.column]
        v = v[~v.isin(it.missing_codes)]
        assert (lo is None or v.min() >= lo) and (hi is None or v.max() <= hi), it.column


def test_reverse_coded_items_correlate_negatively_before_reversal(survey) -> None:
    # Correlation of each recorded (unreversed) item with the sum of its construct's forward items;
    # the true correlations are |r| > 0.2, the SE at n = 20,000 is < 0.01.
    df, cb = survey.data, survey.codebook
    n_rev = 0
    for node, cs in cb.constructs.items():
        fwd = [i for i in cs.items if not i.reverse]
        rev = [i for i in cs.items if i.reverse]
        if not rev or not fwd:
            continue
        ok = np.ones(len(df), bool)
        for i in cs.items:
            ok &= ~df[i.column].isin(i.missing_codes).to_numpy()
        score = sum(df[i.column].to_numpy()[ok].astype(float) for i in fwd)
        for i in rev:
            r = np.corrcoef(df[i.column].to_numpy()[ok], score)[0, 1]
            assert r < -0.1, (node, i.column, r)
            n_rev += 1
        for i in fwd:
            others = [j for j in fwd if j is not i]
            if others:
                r = np.corrcoef(df[i.column].to_numpy()[ok], sum(df[j.column].to_numpy()[ok] for j in others))[0, 1]
                assert r > 0.1, (node, i.column, r)
    assert n_rev >= 15


def test_no_latent_scores_in_written_files(tmp_path: Path, truth: SyntheticTruth) -> None:
    files = write_synthetic(tmp_path, n=1500, seed=9)
    df = pd.read_csv(files["data"])
    cb = Codebook.model_validate(load_yaml(files["codebook"]).data)
    assert set(df.columns) == set(cb.known_columns())
    assert not set(df.columns) & set(truth.nodes)
    assert not any("latent" in c or "eta" in c or "star" in c for c in df.columns)

    def longest_list(o: object) -> int:
        if isinstance(o, dict):
            return max([longest_list(v) for v in o.values()] + [0])
        if isinstance(o, list):
            return max([len(o)] + [longest_list(v) for v in o])
        return 0

    for k in ("codebook", "truth"):
        assert longest_list(yaml.safe_load(files[k].read_text(encoding="utf-8"))) < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DATA_FILE, CODEBOOK_FILE, TRUTH_FILE, "README.md"])


def test_shipped_data_passes_the_survey_reader() -> None:
    read_survey = pytest.importorskip("veerkracht_bayes.survey.reading").read_survey
    cb = load_codebook(SHIPPED / CODEBOOK_FILE, graph="marvel")
    s = read_survey(SHIPPED / DATA_FILE, cb)
    assert s.report.rows_read == s.report.rows_kept == N


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path: Path, truth: SyntheticTruth) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        simulate_population(0, 1)
    with pytest.raises(ConfigError, match="non-negative"):
        simulate_population(10, -1)
    sub = load_graph("marvel").subgraph([n for n in truth.nodes if n != "shame"])
    with pytest.raises(ConfigError, match="nodes differ"):
        simulate_population(10, 1, truth=truth, graph=sub)
    p = tmp_path / "bad.yaml"
    text = truth.to_yaml(tmp_path / "t.yaml").read_text(encoding="utf-8").replace("truth_seed:", "truth_sed:")
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        SyntheticTruth.from_yaml(p)
    assert "bad.yaml" in str(ei.value) and "truth_sed" in str(ei.value)


def test_other_graph_gets_a_consistent_truth() -> None:
    g = load_graph("marvel").subgraph([n for n in load_graph("marvel").nodes if n != "shame"], name="noshame")
    t = default_truth(g, seed=1)
    _, cov = implied_moments(t)
    keep = [i for i, n in enumerate(t.nodes) if n not in t.policy_levers]
    np.testing.assert_allclose(np.diag(cov)[keep], 1.0, atol=1e-10)
    s = simulate_population(300, 2, truth=t, graph=g)
    assert "shame" not in s.latent.columns and len(s.data) == 300
