"""A run with ``[model] groups`` and ``[[query.thresholds]]`` on a small synthetic survey (short chains:
this checks the wiring and the identities between the outputs, not convergence).

* ``thresholds.csv``: the population baseline share equals the weighted share computed here from the
  raw survey file (MHI-5 <= 60); a targeted policy's population change is its subgroup's weighted
  prevalence (``subgroups.csv``) times the change in the target group;
* ``heterogeneity.csv``: each grouping's population row is the share-weighted mean of its groups;
* the files every run writes are still there, with their columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _fast_run import SAMPLER_TOML, fast_run

from veerkracht_bayes.workflow.for_whom import HETEROGENEITY_COLUMNS, THRESHOLD_COLUMNS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    d = tmp_path_factory.mktemp("for_whom_run")
    files = write_synthetic(d, n=1500, seed=2)
    (d / "run.toml").write_text(f"""\
[inputs]
survey = "{files['data'].name}"
codebook = "{files['codebook'].name}"
{SAMPLER_TOML}[model]
measurement = "continuous"          # threshold outcomes need the continuous measurement model
groups = ["single_parent"]
[query]
policies = ["P01", "P03", "P06"]
outcomes = ["wellbeing", "mental_problems"]
horizon = 3
[[query.thresholds]]
name = "psychisch_ongezond"
outcome = "mental_problems"
items = ["mhi1", "mhi2", "mhi3", "mhi4", "mhi5"]
weights = [-4.0, -4.0, -4.0, -4.0, -4.0]
offset = 120.0
cutoff = 60.0
[diagnostics]
ppp_draws = 20
[output]
dir = "out"
formats = ["csv"]
""", encoding="utf-8")
    fast_run(d / "run.toml", draws=25, prior_draws=60, group_draws=25)
    return d


def test_outputs_and_columns(run_dir: Path) -> None:
    out = run_dir / "out"
    for f in ("effects.csv", "pairwise.csv", "trajectories.csv", "subgroups.csv", "heterogeneity.csv",
              "group_links.csv", "group_fits.json", "thresholds.csv"):
        assert (out / f).is_file(), f
    het = pd.read_csv(out / "heterogeneity.csv")
    assert list(het.columns) == list(HETEROGENEITY_COLUMNS)
    assert set(het.group) == {"population", "single_parent", "not single_parent"}
    assert set(het.policy) == {"P01", "P03", "P06"} and set(het.outcome) == {"wellbeing", "mental_problems"}
    fits = json.loads((out / "group_fits.json").read_text())
    assert fits[0]["grouping"] == "single_parent" and fits[0]["fitted"]
    assert {"rhat_max", "ess_bulk_min", "divergences", "passed"} <= set(fits[0]["diagnostics"])
    prov = json.loads((out / "provenance.json").read_text())
    assert {"heterogeneity.csv", "thresholds.csv"} <= set(prov["outputs"])


def test_population_row_is_share_weighted(run_dir: Path) -> None:
    out = run_dir / "out"
    het = pd.read_csv(out / "heterogeneity.csv")
    share = dict(zip(*[json.loads((out / "group_fits.json").read_text())[0][k] for k in ("groups", "share")]))
    assert sum(share.values()) == pytest.approx(1.0)
    for (pid, o), t in het.groupby(["policy", "outcome"]):
        t = t.set_index("group")
        if t["suppressed"].any():
            continue
        mix = sum(share[g] * t.loc[g, "mean"] for g in share)
        assert t.loc["population", "mean"] == pytest.approx(mix, rel=1e-9, abs=1e-12), (pid, o)


def _observed_share(run_dir: Path, mask_col: str | None = None) -> float:
    import yaml

    cb = yaml.safe_load(next(run_dir.glob("codebook*.yaml")).read_text())
    df = pd.read_csv(next(p for p in run_dir.iterdir() if p.name.startswith("veerkracht") and ".csv" in p.name))
    items = {it["column"]: it for it in cb["constructs"]["mental_problems"]["items"]}
    cols = []
    for c in ["mhi1", "mhi2", "mhi3", "mhi4", "mhi5"]:
        v = df[c].astype(float).where(~df[c].isin(items[c].get("missing_codes", [])))
        if items[c].get("reverse"):
            v = items[c]["valid_min"] + items[c]["valid_max"] - v
        cols.append(v)
    x = np.column_stack(cols)
    w = df[cb["weight_column"]].to_numpy(float)
    ok = ~np.isnan(x).any(axis=1)
    score = 120 - 4 * x[ok].sum(axis=1)
    return float(np.sum(w[ok] * (score <= 60)) / np.sum(w[ok]))


def test_thresholds(run_dir: Path) -> None:
    out = run_dir / "out"
    th = pd.read_csv(out / "thresholds.csv")
    assert list(th.columns) == list(THRESHOLD_COLUMNS)
    pop = th[th.scope == "population"]
    assert np.allclose(pop["baseline_share"], 100 * _observed_share(run_dir))
    assert (th["desirable"] == "decrease").all()  # fewer psychologically unhealthy people is better
    assert set(th[th.scope == "group"]["group"]) == {"single_parent", "not single_parent"}
    # a targeted policy: population change = weighted prevalence x change in its target group
    sizes = pd.read_csv(out / "subgroups.csv").set_index("subgroup")
    tgt = th[th.scope == "target"]
    assert len(tgt)
    for _, r in tgt.iterrows():
        if r["suppressed"]:
            continue
        p = th[(th.scope == "population") & (th.policy == r["policy"])].iloc[0]
        prev = float(sizes.loc[r["group"], "prevalence"])
        assert p["effect_pp"] == pytest.approx(prev * r["effect_pp"], rel=1e-9)
        assert p["lower"] == pytest.approx(prev * r["lower"], rel=1e-9)
    live = th[~th["suppressed"].astype(bool)]
    assert live["effect_pp"].notna().all() and live["p_meaningful"].between(0, 1).all()
