"""Codebook ``transform`` of continuous items (log / log1p / rank_normal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from veerkracht_bayes.errors import SurveyError
from veerkracht_bayes.survey.codebook import ItemSpec, apply_transform, load_codebook

REPO = Path(__file__).resolve().parents[2]


def test_transforms():
    v = np.array([1.0, np.e, np.nan, 10.0])
    assert apply_transform(v, "log")[:2] == pytest.approx([0.0, 1.0])
    assert np.isnan(apply_transform(v, "log")[2])
    assert apply_transform(np.array([0.0, np.e - 1]), "log1p") == pytest.approx([0.0, 1.0])
    rn = apply_transform(np.array([5.0, 1.0, 3.0, np.nan]), "rank_normal")
    assert rn[1] < rn[2] < rn[0] and rn[2] == pytest.approx(0.0) and np.isnan(rn[3])
    assert apply_transform(v, None) is not None


def test_out_of_domain_value_is_located():
    with pytest.raises(SurveyError, match="data row 2") as err:
        apply_transform(np.array([3.0, 0.0, 2.0]), "log", "income", "s.csv")
    p = err.value.problems[0]
    assert (p.file, p.line, p.field) == ("s.csv", 3, "income")


def test_transform_only_for_continuous_items():
    with pytest.raises(ValidationError, match="continuous or count"):
        ItemSpec(column="a", scale="binary", transform="log")
    assert ItemSpec(column="a", scale="continuous", transform="log1p").transform == "log1p"


def test_synthetic_codebook_logs_income():
    cb = load_codebook(REPO / "data" / "synthetic" / "codebook_synthetic.yaml")
    specs = {it.column: it for _, it in cb.item_specs()}
    assert specs["household_income"].transform == "log"
