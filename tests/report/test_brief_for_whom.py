"""The brief's "For whom" sections: where effects differ between groups (heterogeneity.csv) and
threshold outcomes in percentage points (thresholds.csv).

The tables are made by the run's own functions (workflow/for_whom.py) from the prior-only MARVEL
draws of tests/_brief_fixture.py: group "single_parent" gets every link 1.25 times the population
draw, "not single_parent" the draw itself, so effects are larger in single parents.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.report.brief import render_brief

from _brief_fixture import build_run_result


@pytest.fixture(scope="module")
def result():
    from veerkracht_bayes.causal.draws import StructuralDraws
    from veerkracht_bayes.workflow.for_whom import GroupingFit, group_effects, heterogeneity_rows

    base = build_run_result()
    d = StructuralDraws.from_posterior(base.fit.idata, base.graph)
    beta = d.beta()
    strong = StructuralDraws.from_arrays(base.graph, 1.25 * beta, d.alpha, d.psi)
    gf = GroupingFit("single_parent", labels=("not single_parent", "single_parent"), counts=(3000, 400),
                     share=(0.85, 0.15), fit=object(), draws={"not single_parent": d, "single_parent": strong},
                     diagnostics={"passed": True, "rhat_max": 1.004, "ess_bulk_min": 310.0, "ess_tail_min": 280.0,
                                  "divergences": 0, "n_draws": 300, "n_chains": 2, "problems": []})
    gf.to_dict = lambda: {"grouping": gf.by, "fitted": True, "groups": list(gf.labels), "n": [3000, 400],
                          "diagnostics": gf.diagnostics}
    small = GroupingFit("youth", reason="not fitted: groups with fewer than 10 respondents")
    ivs = base.policies.to_interventions()
    res = group_effects([gf], ivs, ["wellbeing", "stress"], seed=0)
    het = pd.concat([heterogeneity_rows([gf], res, ["wellbeing", "stress"], min_cell_size=50),
                     heterogeneity_rows([small], {}, ["wellbeing", "stress"], min_cell_size=50)], ignore_index=True)
    th = pd.DataFrame([
        {"policy": "P01", "threshold": "psychisch_ongezond", "outcome": "mental_problems", "scope": "population",
         "group": "population", "baseline_share": 14.2, "effect_pp": -1.37, "lower": -2.5, "upper": -0.4,
         "p_meaningful": 0.71, "mrc_pp": 1.0, "desirable": "decrease", "grouping": "", "n_group": 19000,
         "suppressed": False, "reason": ""},
        {"policy": "P02", "threshold": "psychisch_ongezond", "outcome": "mental_problems", "scope": "target",
         "group": "youth", "baseline_share": np.nan, "effect_pp": np.nan, "lower": np.nan, "upper": np.nan,
         "p_meaningful": np.nan, "mrc_pp": 1.0, "desirable": "decrease", "grouping": "", "n_group": 23,
         "suppressed": True, "reason": "target group below the minimum cell size 50"},
        {"policy": "P01", "threshold": "psychisch_ongezond", "outcome": "mental_problems", "scope": "group",
         "group": "single_parent", "baseline_share": 21.5, "effect_pp": -2.04, "lower": -3.9, "upper": -0.7,
         "p_meaningful": 0.83, "mrc_pp": 1.0, "desirable": "decrease", "grouping": "single_parent",
         "n_group": 400, "suppressed": False, "reason": ""}])
    return SimpleNamespace(**{**vars(base), "heterogeneity": het, "thresholds": th, "group_fits": [gf, small]})


def test_for_whom_groups_section(result) -> None:
    md, page = render_brief(result)
    sec = md[md.index("## For whom: where effects differ between groups"):]
    sec = sec[:sec.index("\n## ", 5)]
    assert "P(larger)" in sec and "rest on the survey data" in sec and "HalfNormal(0.1)" in sec
    assert "not fitted" in sec and "diagnostics passed" in sec
    het = result.heterogeneity
    w = het[(het.outcome == "wellbeing") & (het.group == "single_parent") & het.reachable.astype(bool)]
    named = w[w.p_larger_than_population > 0.8]
    assert len(named)  # links x 1.25: larger effects in single parents for reachable policies
    sentence = [ln for ln in sec.splitlines() if ln.startswith("Wellbeing:") or "works better" in ln]
    assert sentence, sec
    for pid in named.policy:
        assert f"{pid} for single parents" in sec
    # confident but smaller than the minimal relevant change (0.05 SD): named as such, not as
    # "works better"
    tiny = named[named.difference_mean.abs() < 0.05]
    big = named[named.difference_mean.abs() >= 0.05]
    well = [ln for ln in sec.splitlines() if ln.startswith("Wellbeing:")]
    better = " ".join(ln for ln in well if "works better" in ln)
    below = " ".join(ln for ln in well if "less than the minimal relevant change" in ln)
    for pid in tiny.policy:
        assert f"{pid} for single parents" in below and f"{pid} for single parents" not in better
    for pid in big.policy:
        assert f"{pid} for single parents" in better
    # the table: one row per policy, one column per shown group ("not ..." groups are in the CSV only)
    head = [ln for ln in sec.splitlines() if ln.startswith("| Recommendation")][0]
    assert "single parents" in head and "not single" not in head


def test_thresholds_section(result) -> None:
    md, page = render_brief(result)
    sec = md[md.index("## Threshold outcomes"):]
    sec = sec[:sec.index("\n## ", 5)]
    assert "14.2%" in sec and "−1.37 [−2.50, −0.40]" in sec.replace("-", "−")
    assert "P(relevant decrease)" in sec and "1.0 pp" in sec and "observed in the survey" in sec
    p02 = [ln for ln in sec.splitlines() if ln.startswith("| P02")][0]
    assert "suppressed" in p02 and not re.search(r"\d\.\d", p02.split("|", 3)[3])
    assert "21.5%" in sec  # the group table (details)
    assert 'id="thresholds-psychisch_ongezond"' in page


def test_no_sections_without_groups() -> None:
    base = build_run_result()
    md, _ = render_brief(base)
    assert "## For whom: where effects differ" not in md and "## Threshold outcomes" not in md


def test_threshold_rows_without_a_number_say_why(result) -> None:
    th = result.thresholds.copy()
    extra = th.iloc[[0]].copy()
    extra[["policy", "scope", "group", "baseline_share"]] = ["P07", "target", "mental_health_problems", 100.0]
    extra[["effect_pp", "lower", "upper", "p_meaningful"]] = np.nan
    extra["reason"] = "no number: the target group lies (almost) entirely on one side of the cut-off"
    res = SimpleNamespace(**{**vars(result), "thresholds": pd.concat([th, extra], ignore_index=True)})
    md, _ = render_brief(res)
    sec = md[md.index("## Threshold outcomes"):]
    sec = sec[:sec.index("\n## ", 5)]
    note = [ln for ln in sec.splitlines() if ln.startswith("No number for")]
    assert note and "P07 (target group:" in note[0] and "one side of the cut-off" in note[0]
    assert "P01" not in note[0]  # rows with numbers are not named
