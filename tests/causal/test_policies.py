"""Tests for veerkracht_bayes.causal.policies (schema v2: exposure levers, coverage, target groups)
and the shipped policy file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from veerkracht_bayes.causal.do import SubgroupInfo, do_query, draw_doses
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import (
    Beta,
    Fixed,
    Intervention,
    Normal,
    Shift,
    compile_interventions,
)
from veerkracht_bayes.causal.policies import (
    KNOWN_SUBGROUPS,
    format_policies,
    lever_effect_priors,
    load_policies,
)
from veerkracht_bayes.cli.main import policies_main
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.priors.bibliography import load_bib
from veerkracht_bayes.survey.codebook import load_codebook
from veerkracht_bayes.survey.subgroups import parse_condition

ROOT = Path(__file__).resolve().parents[2]
SYNTH = ROOT / "data" / "synthetic"
BIB = ROOT / "priors" / "references.bib"

GOOD = """spec_version: 2
policies:
  - id: X1
    advice: 6a
    title_en: Test
    title_nl: Toets
    subgroup: youth
    target_group: {quote: "jongeren", section: "advies 6"}
    levers:
      - node: peer_support
        coverage: {dist: beta, a: 3, b: 7}
        coverage_source: "assumption: a third"
"""


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return f


# ----------------------------------------------------------------------------- shipped file
def test_shipped_file_has_the_ten_recommendations_as_exposure_levers(marvel):
    ps = load_policies()
    assert ps.ids() == [f"P{i:02d}" for i in range(1, 11)]
    assert [p.advice for p in ps.policies] == ["1", "2", "3", "4", "5", "6a", "7", "8", "9", "10"]
    levers = set(marvel.nodes_where(role="policy_lever"))
    for p in ps.policies:
        assert p.title_en and p.title_nl and p.target_group.quote and p.target_group.section
        for lv in p.levers:
            assert lv.node in levers, (p.id, lv.node)       # no policy shifts a construct directly
            assert marvel.children(lv.node)
            assert 0.0 < lv.coverage_mean() < 1.0
            assert lv.coverage_source.startswith("assumption:") or lv.citation, (p.id, lv.node)
    c = compile_interventions(ps.to_interventions(), marvel.nodes, marvel.edge_keys,
                              subgroups=KNOWN_SUBGROUPS)
    assert c.names == tuple(ps.ids())
    assert (c.dose_code[c.dose_factor != 0] == 4).all()      # every dose is a Beta coverage


def test_target_groups_follow_the_report():
    ps = load_policies()
    sub = {p.id: p.subgroup for p in ps.policies}
    assert sub["P09"] == "refugee"                 # asylum seekers / status holders, not migration background
    assert sub["P03"] is None                      # "een zo groot mogelijke groep"
    assert sub["P10"] == "bottom_labour_market"    # "bijstand en onderkant arbeidsmarkt"
    assert sub["P02"] == "pupils_and_parents"      # "PO- en VO-scholen ... ouders"
    assert "zo groot mogelijke groep" in ps.get("P03").target_group.quote
    assert "onderkant arbeidsmarkt" in ps.get("P10").target_group.quote
    assert "asielzoekers" in ps.get("P09").target_group.quote


def test_every_policy_subgroup_exists_in_the_synthetic_codebook_and_is_populated():
    cb = load_codebook(SYNTH / "codebook_synthetic.yaml")
    df = pd.read_csv(SYNTH / "veerkracht_synthetic.csv.gz")
    w = df["weight"].to_numpy()
    for p in load_policies().policies:
        if p.subgroup is None:
            continue
        assert p.subgroup in cb.subgroups, p.subgroup
        m = parse_condition(cb.subgroups[p.subgroup].where, p.subgroup).evaluate(df).mask
        share = float(np.sum(w * m) / np.sum(w))
        assert 0.01 < share < 0.5, (p.subgroup, share)
    assert set(KNOWN_SUBGROUPS) == set(cb.subgroups)


def test_every_citation_key_in_policies_exists_in_the_bibliography():
    keys = {k.lower() for k in load_bib(BIB).keys}
    ps = load_policies()
    cited = [lv.citation for p in ps.policies for lv in p.levers if lv.citation]
    cited += [c for rows in lever_effect_priors(ps.lever_nodes()).values() for r in rows
              for c in r.get("citations", [])]
    missing = sorted({c for c in cited if c.lower() not in keys})
    assert not missing, f"citation keys missing from {BIB.name}: {missing}"
    assert any(c.lower() == "pfeiffer2011" for c in cited)


def test_effect_priors_are_read_from_the_lever_out_links():
    eff = lever_effect_priors(["peer_support", "parenting_support"])
    peer = {r["edge"]: r for r in eff["peer_support"]}
    assert set(peer) == {"peer_support->social_network", "peer_support->mental_problems"}
    mp = peer["peer_support->mental_problems"]
    assert mp["source"] == "literature" and mp["mean"] < 0 and "Pfeiffer2011" in mp["citations"]
    assert peer["peer_support->social_network"]["source"] == "default"
    pq = {r["edge"]: r for r in eff["parenting_support"]}["parenting_support->parenting_quality"]
    assert pq["mean"] == pytest.approx(0.37, abs=0.02)      # Triple P SMD 0.46 x SD ratio 0.8


# ----------------------------------------------------------------------------- schema errors
def test_a_lever_on_a_construct_is_rejected_with_its_location(tmp_path):
    f = _write(tmp_path, GOOD.replace("node: peer_support", "node: stress"))
    with pytest.raises(ConfigError) as exc:
        load_policies(f)
    msg = str(exc.value)
    assert f"{f}:10" in msg and "'X1'" in msg and "'stress'" in msg and "not a policy lever" in msg
    f = _write(tmp_path, GOOD.replace("node: peer_support", "node: peer_suport"))
    with pytest.raises(ConfigError, match="did you mean 'peer_support'"):
        load_policies(f)


@pytest.mark.parametrize("cov, field", [
    ("{dist: fixed, value: 1.5}", "value"),
    ("{dist: fixed, value: -0.1}", "value"),
    ("{dist: fixed, value: .nan}", "value"),
    ("{dist: fixed, value: .inf}", "value"),
    ("{dist: uniform, lo: 0.1, hi: 1.5}", "hi"),
    ("{dist: beta, a: -1, b: 2}", "a"),
    ("{dist: beta, a: .nan, b: 2}", "a"),
    ("{dist: normal, mean: 0.3, sd: 0.1}", "normal"),
])
def test_bad_coverage_is_rejected_naming_file_policy_lever_and_field(tmp_path, cov, field):
    f = _write(tmp_path, GOOD.replace("{dist: beta, a: 3, b: 7}", cov))
    with pytest.raises(ConfigError) as exc:
        load_policies(f)
    msg = str(exc.value)
    assert str(f) in msg and "policy 'X1'" in msg and "lever 'peer_support'" in msg, msg
    assert field in msg and "coverage" in msg, msg


def test_good_file_loads_and_other_errors(tmp_path):
    f = _write(tmp_path, GOOD)
    ps = load_policies(f)
    assert ps.policies[0].advice == "6a" and ps.policies[0].levers[0].coverage == Beta(a=3, b=7)
    iv = ps.policies[0].to_intervention()
    assert iv.parts[0].unit == "exposure" and iv.parts[0].node == "peer_support"
    f = _write(tmp_path, GOOD.replace("subgroup: youth", "subgroup: yuoth"))
    with pytest.raises(ConfigError, match=r":7 .*did you mean 'youth'"):
        load_policies(f)
    f = _write(tmp_path, GOOD.replace("spec_version: 2", "spec_version: 1"))
    with pytest.raises(ConfigError, match="spec_version 1.*version 2 exposes policy_lever"):
        load_policies(f)
    f = _write(tmp_path, GOOD.replace('    coverage_source: "assumption: a third"\n', ""))
    with pytest.raises(ConfigError, match="coverage_source"):
        load_policies(f)
    f = _write(tmp_path, GOOD.replace('    target_group: {quote: "jongeren", section: "advies 6"}\n', ""))
    with pytest.raises(ConfigError, match="target_group"):
        load_policies(f)
    f = _write(tmp_path, GOOD + GOOD.split("policies:\n")[1])
    with pytest.raises(ConfigError, match="duplicate policy id 'X1'"):
        load_policies(f)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_dose_validation_rejects_non_finite_numbers(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite"):
        Fixed(value=bad)
    with pytest.raises(ValidationError, match="finite"):
        Normal(mean=bad, sd=0.1)
    with pytest.raises(ValidationError, match="finite"):
        Shift(node="x", delta=bad)


def test_beta_doses_are_drawn_on_zero_one_with_the_right_mean():
    iv = Intervention(name="a", parts=[Shift(node="x", delta=Beta(a=3, b=7), unit="exposure")])
    c = compile_interventions([iv], ["x", "y"], [])
    d = draw_doses(c, 40000, 2, key=3)[0, :, 0]
    assert d.min() >= 0 and d.max() <= 1
    assert d.mean() == pytest.approx(0.3, abs=0.005)
    assert d.var() == pytest.approx(0.3 * 0.7 / 11, rel=0.05)
    assert np.array_equal(d, draw_doses(c, 40000, 2, key=3)[0, :, 0])


# ----------------------------------------------------------------------------- semantics
TOY_GRAPH = """spec_version: 1
name: toy
nodes:
  - {id: lever, label_en: L, label_nl: L, resource: organisational, role: policy_lever, inferred: true}
  - {id: a, label_en: A, label_nl: A, resource: individual, role: construct}
  - {id: y, label_en: Y, label_nl: Y, resource: individual, role: construct}
edges:
  - {source: lever, target: a, sign: "+", evidence: toy}
  - {source: a, target: y, sign: "+", evidence: toy}
  - {source: y, target: a, sign: "-", evidence: toy}
"""

TOY_POLICY = """spec_version: 2
policies:
  - id: T1
    advice: "1"
    title_en: Toy
    title_nl: Toy
    subgroup: grp
    target_group: {quote: "q", section: "s"}
    outcomes: [a, y]
    levers:
      - node: lever
        coverage: COV
        coverage_source: "assumption: toy"
"""


@pytest.mark.parametrize("cov, mean", [("{dist: fixed, value: 0.4}", 0.4),
                                       ("{dist: beta, a: 2, b: 3}", 0.4),
                                       ("{dist: uniform, lo: 0.2, hi: 0.6}", 0.4)])
def test_within_group_effect_is_coverage_times_closed_form_total_effect(tmp_path, cov, mean):
    gpath = tmp_path / "toy.yaml"
    gpath.write_text(TOY_GRAPH)
    g = load_graph(gpath)
    ppath = tmp_path / "pol.yaml"
    ppath.write_text(TOY_POLICY.replace("COV", cov))
    ps = load_policies(ppath, graph=g, subgroups=["grp"])
    rng = np.random.default_rng(1)
    S = 4000
    beta = np.column_stack([rng.uniform(0.2, 0.6, S), rng.uniform(0.2, 0.5, S), -rng.uniform(0.1, 0.5, S)])
    draws = StructuralDraws.from_arrays(g, beta, np.zeros(len(g.nodes)))
    r = do_query(draws, ps.to_interventions(), ["a", "y"], subgroups={"grp": SubgroupInfo(0.2, n=500)},
                 seed=7)
    iy, ia, il = (list(r.nodes).index(n) for n in ("y", "a", "lever"))
    # closed form per draw: column `lever` of (I - B)^-1
    idx = {n: i for i, n in enumerate(g.nodes)}
    total = np.empty((S, len(g.nodes)))
    for s in range(S):
        B = np.zeros((3, 3))
        for k, e in enumerate(g.edges):
            B[idx[e.target], idx[e.source]] = beta[s, k]
        total[s] = np.linalg.inv(np.eye(3) - B)[:, idx["lever"]]
    dose = r.doses[0, :, il]
    assert np.all((dose >= 0) & (dose <= 1))
    # per draw: effect = drawn coverage x total effect (exact)
    np.testing.assert_allclose(r.effect[0, :, iy], dose * total[:, idx["y"]], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.effect[0, :, ia], dose * total[:, idx["a"]], rtol=1e-9, atol=1e-12)
    # in expectation: coverage mean x mean total effect (coverage independent of the coefficients)
    se = r.effect[0, :, iy].std() / math.sqrt(S)
    assert abs(r.effect[0, :, iy].mean() - mean * total[:, idx["y"]].mean()) < 4 * se + 1e-12


# ----------------------------------------------------------------------------- output
def test_policies_json_is_only_json_with_levers_coverage_and_effect_priors(capsys):
    assert policies_main(as_json=True) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data) == 10
    for p in data:
        assert {"id", "advice", "subgroup", "target_group", "levers"} <= set(p)
        assert set(p["target_group"]) == {"quote", "section"}
        for lv in p["levers"]:
            assert {"node", "coverage", "effect_prior", "source"} <= set(lv)
            assert 0 < lv["coverage"]["mean"] < 1
            assert lv["effect_prior"] and all("prior" in e and "source" in e for e in lv["effect_prior"])
    assert policies_main(as_json=False) == 0
    out = capsys.readouterr().out
    assert "P10" in out and "Pfeiffer2011" in out and "coverage Beta(" in out


def test_format_policies_text_names_target_groups():
    txt = format_policies(load_policies())
    assert "zo groot mogelijke groep" in txt and "whole population" in txt
