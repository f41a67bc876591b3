"""Multi-group lavaan models (sem/lavaan_multigroup.py, ``sem --group``).

Against maximum likelihood: the Holzinger-Swineford CFA (``semopy.examples.holzinger39``, 301
pupils of two schools), configural like lavaan's ``group = "school"``: every free parameter's
posterior median (vague priors) lies within 1 ML standard error of the per-school ML estimate
(semopy's fit of the same model on the school's rows).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
from veerkracht_bayes.sem.lavaan_multigroup import fit_sem_multigroup, parse_group_types

os.environ.setdefault("OMP_NUM_THREADS", "1")

HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"


def _data() -> pd.DataFrame:
    semopy = pytest.importorskip("semopy")
    d = semopy.examples.holzinger39.get_data()
    return d[["school"] + [f"x{i}" for i in range(1, 10)]].reset_index(drop=True)


def _ml(df: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float]]:
    import semopy

    m = semopy.Model(HS)
    m.fit(df)
    out = {}
    for r in m.inspect().itertuples():
        if r._5 == "-":  # fixed
            continue
        if r.op == "~":  # semopy writes loadings as "indicator ~ factor"
            key = (r.rval, "=~", r.lval)
        else:
            key = tuple(sorted((r.lval, r.rval))) if r.lval != r.rval else (r.lval, r.lval)
            key = (key[0], "~~", key[1])
        out[key] = (float(r.Estimate), float(r._5))
    return out


@pytest.fixture(scope="module")
def hs_fit():
    df = _data()
    return df, fit_sem_multigroup(parse_lavaan(HS), df, "school", draws=400, tune=400, chains=2, seed=3)


# measured: about 2 min on the shared 2-core machine (two fits)
def test_configural_matches_ml_per_school(hs_fit):
    df, mg = hs_fit
    tab = mg.table()
    assert list(tab.columns[:4]) == ["group", "lhs", "op", "rhs"]
    assert mg.labels == tuple(dict.fromkeys(df["school"]))  # as in the data, first-appearance order
    far = []
    n_checked = 0
    for lab in mg.labels:
        ml = _ml(df[df.school == lab][[f"x{i}" for i in range(1, 10)]])
        sub = tab[(tab.group == lab) & (tab.free > 0)]
        for r in sub.itertuples():
            key = (r.lhs, r.op, r.rhs) if r.op == "=~" else (min(r.lhs, r.rhs), "~~", max(r.lhs, r.rhs))
            est, se = ml[key]
            n_checked += 1
            if abs(r.median - est) > se:
                far.append(f"{lab} {key}: posterior median {r.median:.3f}, ML {est:.3f} (SE {se:.3f})")
    assert n_checked == 2 * 21
    assert not far, far


def test_group_options_checked():
    df = pd.DataFrame({"g": ["a", "b"] * 10, "x1": np.arange(20.0), "x2": np.arange(20.0) ** 0.5})
    lav = parse_lavaan("x2 ~ x1")
    with pytest.raises(ModelError, match="did you mean 'g'"):
        fit_sem_multigroup(lav, df, "gg")
    with pytest.raises(ModelError, match="unknown parameter type 'loading'"):
        parse_group_types("loading", "--group-equal")
    with pytest.raises(ModelError, match="both"):
        fit_sem_multigroup(lav, df, "g", group_equal="loadings", group_pool="loadings")
    with pytest.raises(ModelError, match="but not pooled"):
        fit_sem_multigroup(lav, df, "g", group_pool="residuals")
    with pytest.raises(ModelError, match="expected at least 2"):
        fit_sem_multigroup(lav, df.assign(g="a"), "g")
