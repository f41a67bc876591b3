"""Tests for veerkracht_bayes.causal.policies and the shipped policy file."""

from __future__ import annotations

import json

import pytest

from veerkracht_bayes.causal.do import SubgroupInfo, do_query
from veerkracht_bayes.errors import ConfigError
from veerkracht_bayes.causal.interventions import compile_interventions
from veerkracht_bayes.cli.main import policies_main
from veerkracht_bayes.causal.policies import KNOWN_SUBGROUPS, load_policies
from veerkracht_bayes.causal.draws import StructuralDraws

GOOD = """spec_version: 1
policies:
  - id: X1
    advice: 6a
    title_en: Test
    title_nl: Toets
    subgroup: youth
    levers:
      - node: stress
        type: shift
        dose: {dist: normal, mean: -0.2, sd: 0.1}
        dose_source: "documented default -0.2 SD"
"""


def test_shipped_file_has_the_ten_recommendations(marvel):
    ps = load_policies()
    assert ps.ids() == [f"P{i:02d}" for i in range(1, 11)]
    assert [p.advice for p in ps.policies] == ["1", "2", "3", "4", "5", "6a", "7", "8", "9", "10"]
    for p in ps.policies:
        assert p.title_en and p.title_nl
        assert p.subgroup is None or p.subgroup in KNOWN_SUBGROUPS
        for lv in p.levers:
            assert marvel.has_node(lv.node)
            assert lv.dose is not None and lv.dose_source
            # every dose either cites a source or says it is the documented default
            assert lv.citation or "documented default" in lv.dose_source
    cited = {lv.citation for p in ps.policies for lv in p.levers if lv.citation}
    assert cited == {"Li2021", "Pfeiffer2011", "Fasani2021", "DeMooij2020"}
    ivs = ps.to_interventions()
    c = compile_interventions(ivs, marvel.nodes, marvel.edge_keys, subgroups=KNOWN_SUBGROUPS)
    assert c.names == tuple(ps.ids())


def test_policies_run_as_do_queries(marvel):
    import numpy as np

    rng = np.random.default_rng(0)
    sign = np.array([1.0 if e.sign == "+" else -1.0 for e in marvel.edges])
    d = StructuralDraws.from_arrays(marvel, sign * np.abs(rng.normal(0.15, 0.05, (8, len(marvel.edges)))),
                                    np.zeros(len(marvel.nodes)))
    sg = {g: SubgroupInfo(0.1, n=100) for g in KNOWN_SUBGROUPS}
    r = do_query(d, load_policies().to_interventions(), subgroups=sg)
    assert r.effect.shape[:2] == (10, 8) and np.isfinite(r.effect).all()


def test_policies_main_json_and_text(capsys):
    assert policies_main(as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 10
    for p in data:
        assert {"id", "title", "levers", "subgroup"} <= set(p)
        assert p["levers"] and "node" in p["levers"][0] and "dose" in p["levers"][0]
    assert policies_main(as_json=False) == 0
    out = capsys.readouterr().out
    assert "P10" in out and "Pfeiffer2011" in out


def test_user_file_and_errors_with_line_numbers(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    ps = load_policies(f)
    assert ps.policies[0].advice == "6a"
    bad = GOOD.replace("node: stress", "node: strss").replace("subgroup: youth", "subgroup: yuoth")
    f.write_text(bad)
    with pytest.raises(ConfigError) as exc:
        load_policies(f)
    msg = str(exc.value)
    assert f"{f}:7" in msg and "did you mean 'youth'" in msg
    assert f"{f}:9" in msg and "did you mean 'stress'" in msg
    f.write_text(GOOD.replace("sd: 0.1", "sd: -0.1"))
    with pytest.raises(ConfigError, match=r":11 .*greater than 0"):
        load_policies(f)
    f.write_text(GOOD.replace("advice: 6a", "advice: 12"))
    with pytest.raises(ConfigError, match=r":4 .*advice"):
        load_policies(f)
    f.write_text(GOOD + GOOD.split("policies:\n")[1])
    with pytest.raises(ConfigError, match="duplicate policy id 'X1'"):
        load_policies(f)
    f.write_text(GOOD.replace("dist: normal, mean: -0.2, sd: 0.1", "dist: normal, mean: -0.2, sd: 0.1")
                 .replace('dose_source: "documented default -0.2 SD"',
                          'dose_source: "x"\n        unit: furlong'))
    with pytest.raises(ConfigError, match="unknown unit 'furlong'"):
        load_policies(f)
