"""Out-of-core sufficient statistics equal the in-memory ones (floating-point precision).

The reference is the in-memory path: ``read_survey`` on the same Parquet file, then
``model_data_from_survey``. Statistics are sums of ~10^3 products of O(1) numbers, so
independent summation orders differ by ~1e-13 relative; we allow rtol 1e-9 (far below
any statistical scale, far above rounding). The two-stage EM is the same code in memory
and out of core (missing_data.em_pattern_blocks, same start, same stopping rule); its inputs
differ by rounding only and each EM step is a contraction, so the same rtol 1e-9 applies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.survey.codebook import load_codebook
from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.out_of_core import StatsOnlyModelData, em_pattern_stats, stats_from_frames, stats_from_parquet
from veerkracht_bayes.survey.statistics import model_data_from_survey
from veerkracht_bayes.survey.reading import read_survey

SYN = "data/synthetic"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    g = load_graph("marvel")
    cb = load_codebook(f"{SYN}/codebook_synthetic.yaml", graph=g)
    df = pd.read_csv(f"{SYN}/veerkracht_synthetic.csv.gz", nrows=1500)
    rng = np.random.default_rng(7)
    # a few rows with a missing covariate and one with every item missing (both excluded, counted)
    cov_col = cb.constructs["adverse_life_events"].items[0].column
    df[cov_col] = df[cov_col].astype(float)
    df.loc[rng.choice(len(df), 6, replace=False), cov_col] = np.nan
    spc = cb.constructs["single_parent_household"].items[0].column
    for c in cb.item_columns():
        if c not in (cov_col, spc):
            df.loc[11, c] = -9 if -9 in (cb.item(c).missing_codes or []) else np.nan
    path = tmp_path_factory.mktemp("ooc") / "survey.parquet"
    df.to_parquet(path, index=False, row_group_size=400)
    sd = read_survey(path, cb, graph=g)
    return g, cb, df, path, sd


def _close(a, b, rtol=1e-9, atol=1e-9):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("chunk", [97, 500, 100_000])
def test_fiml_stats_equal_in_memory(setup, chunk):
    g, cb, df, path, sd = setup
    ref = model_data_from_survey(sd, g, missing="fiml")
    got = stats_from_parquet(path, cb, g, chunk_rows=chunk, missing="fiml")
    assert isinstance(got, StatsOnlyModelData)
    assert got.n == ref.n and got.n_excluded == ref.n_excluded
    assert got.exclusion_reasons == ref.exclusion_reasons
    assert got.item_names == ref.item_names and got.x_names == ref.x_names
    assert got.missing_method == ref.missing_method == "fiml"
    assert got.n_patterns == ref.n_patterns
    np.testing.assert_array_equal(got.stats.masks, ref.stats.masks)
    _close(got.item_center, ref.item_center)
    _close(got.item_scale, ref.item_scale)
    _close(got.x_mean, ref.x_mean)
    _close(got.x_cov, ref.x_cov)
    for name in ("W", "Syy", "Suy", "Suu"):
        _close(getattr(got.stats, name), getattr(ref.stats, name))
    assert got.data_hash == sd.sha256


def test_unweighted_and_frames_merge(setup):
    g, cb, df, path, sd = setup
    # equal weights: the in-memory reference gets a frame without the weight column's effect
    df1 = df.copy()
    df1[cb.weight_column] = 1.0
    ref = model_data_from_survey(read_survey(df1, cb, graph=g), g, missing="fiml")
    got = stats_from_parquet(path, cb, g, chunk_rows=300, weights=False, missing="fiml")
    for name in ("W", "Syy", "Suy", "Suu"):
        _close(getattr(got.stats, name), getattr(ref.stats, name))
    # merging accumulators with different shifts (the Dask reduction) is exact too
    from veerkracht_bayes.survey.out_of_core import accumulate_frames, column_layout, finalise_stats

    lay = column_layout(cb, g, None)
    parts = [accumulate_frames([df.iloc[a:a + 500]], lay, label="x", weights=True, out_of_range="error")
             for a in range(0, len(df), 500)]
    acc = parts[0].merge(parts[1]).merge(parts[2])
    merged = finalise_stats(acc, lay, label="x", data_hash=None, missing="fiml", max_fiml_patterns=200)
    ref2 = model_data_from_survey(sd, g, missing="fiml")
    for name in ("W", "Syy", "Suy", "Suu"):
        _close(getattr(merged.stats, name), getattr(ref2.stats, name))


def test_two_stage_matches_row_em(setup):
    g, cb, df, path, sd = setup
    ref = model_data_from_survey(sd, g, missing="two_stage")
    got = stats_from_parquet(path, cb, g, chunk_rows=700, missing="two_stage")
    assert got.missing_method == "two_stage"
    _close(got.missing_information, ref.missing_information)
    for name in ("W", "Syy", "Suy", "Suu"):
        _close(getattr(got.stats, name), getattr(ref.stats, name))


@pytest.mark.parametrize("missing", ["fiml", "two_stage"])
def test_many_storage_blocks(setup, monkeypatch, missing):
    """Pattern storage split into many small blocks (and a Dask-style merge) changes nothing."""
    import veerkracht_bayes.survey.out_of_core as ooc

    g, cb, df, path, sd = setup
    monkeypatch.setattr(ooc, "BLOCK_PATTERNS", 16)
    ref = model_data_from_survey(sd, g, missing=missing)
    got = stats_from_parquet(path, cb, g, chunk_rows=251, missing=missing)
    assert got.n_patterns == ref.n_patterns > 5 * 16
    lay = ooc.column_layout(cb, g, None)
    parts = [ooc.accumulate_frames([df.iloc[a:a + 400]], lay, label="x", weights=True, out_of_range="error")
             for a in range(0, len(df), 400)]
    acc = parts[0]
    for p in parts[1:]:
        acc = acc.merge(p)
    merged = ooc.finalise_stats(acc, lay, label="x", data_hash=None, missing=missing, max_fiml_patterns=200)
    for md in (got, merged):
        assert md.missing_method == ref.missing_method == missing
        _close(md.missing_information, ref.missing_information)
        for name in ("W", "Syy", "Suy", "Suu"):
            _close(getattr(md.stats, name), getattr(ref.stats, name))


def test_em_pattern_stats_recovers_complete_data():
    # no missing values: EM is the closed-form regression and returns the input statistics
    rng = np.random.default_rng(1)
    from veerkracht_bayes.survey.statistics import pattern_stats

    y = rng.normal(size=(200, 3))
    u = np.column_stack([np.ones(200), rng.normal(size=200)])
    st = pattern_stats(y, u, np.ones(200))
    em = em_pattern_stats(st)
    _close(em["Syy"], st.Syy[0])
    assert em["converged"]


def test_errors_name_file_and_row(setup, tmp_path):
    g, cb, df, path, sd = setup
    bad = df.copy()
    bad.loc[5, cb.weight_column] = -1.0
    p = tmp_path / "bad.parquet"
    bad.to_parquet(p, index=False)
    with pytest.raises(SurveyError, match=r"\brow 6\b"):
        stats_from_parquet(p, cb, g, chunk_rows=4)
    dup = df.copy()
    dup.loc[1000, cb.id_column] = dup.loc[3, cb.id_column]
    dup.to_parquet(p, index=False)
    with pytest.raises(SurveyError, match="duplicate respondent ids"):
        stats_from_parquet(p, cb, g, chunk_rows=300)
    with pytest.raises(SurveyError, match="missing from the data"):
        stats_from_frames([df.drop(columns=[cb.weight_column])], cb, g)


def test_dask_optional(setup):
    g, cb, df, path, sd = setup
    dd = pytest.importorskip("dask.dataframe")
    from veerkracht_bayes.survey.out_of_core import stats_from_dask

    ddf = dd.from_pandas(df, npartitions=4)
    ref = model_data_from_survey(sd, g, missing="fiml")
    got = stats_from_dask(ddf, cb, g, missing="fiml")
    for name in ("W", "Syy", "Suy", "Suu"):
        _close(getattr(got.stats, name), getattr(ref.stats, name))


def test_accumulator_keeps_no_rows(setup):
    """Three times the rows (same patterns, new ids): the same pattern store, 8 bytes a row more.

    The accumulator's size may grow with the rows only through the 64-bit id hashes; the
    moments are per pattern. The statistics triple exactly (sums of identical terms, up to
    rounding: rtol 1e-12 on sums of ~10^3 products).
    """
    from veerkracht_bayes.survey.out_of_core import accumulate_frames, column_layout

    g, cb, df, path, sd = setup
    lay = column_layout(cb, g, None)
    one = accumulate_frames([df], lay, label="x", weights=True, out_of_range="error")
    copies = []
    for k in range(3):
        d = df.copy()
        d[cb.id_column] = np.arange(len(df)) + k * 10 ** 6
        copies.append(d)
    three = accumulate_frames(copies, lay, label="x", weights=True, out_of_range="error")
    assert three.n_patterns == one.n_patterns and len(three.blocks) == len(one.blocks)
    np.testing.assert_array_equal(three.counts, 3 * one.counts)

    def row_bytes(acc):
        return sum(h.nbytes for h in acc.id_hashes)

    assert row_bytes(three) == 3 * row_bytes(one) == 3 * 8 * (len(df) - one.n_missing_id)
    for (_, a), (_, b) in zip(one.pattern_moments(), three.pattern_moments()):
        np.testing.assert_allclose(b, 3 * a, rtol=1e-12, atol=1e-9)
