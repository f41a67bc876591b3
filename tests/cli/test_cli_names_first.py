"""Every name-typed CLI argument is checked against the model before any sampling, and every
``--json`` prints only JSON on stdout."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli import app
from veerkracht_bayes.cli.effects import check_effect_names
from veerkracht_bayes.errors import InterventionError

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    m = 0.5 * x + rng.normal(size=50)
    f1, f2 = 0.7 * m + rng.normal(size=50), 0.7 * m + rng.normal(size=50)
    data = tmp_path / "d.csv"
    pd.DataFrame({"x": x, "f1": f1, "f2": f2, "f3": m + rng.normal(size=50)}).to_csv(data, index=False)
    model = tmp_path / "m.lav"
    model.write_text("F =~ f1 + f2 + f3\nF ~ x\n", encoding="utf-8")
    return model, data


@pytest.fixture
def no_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("sampling started before the names were checked")

    import veerkracht_bayes.cli.sem as sem_cli

    monkeypatch.setattr(sem_cli, "fit_from_files", boom)


@pytest.mark.parametrize("args, needle", [
    (["--outcome", "FF", "--shift", "x=1"], "--outcome 'FF' is not a variable of the model (did you mean 'F'?)"),
    (["--outcome", "F", "--shift", "xx=1"], "--shift 'xx' is not a variable of the model (did you mean 'x'?)"),
    (["--outcome", "F", "--set", "f1=1"], "--set 'f1' is a measurement indicator"),
])
def test_misspelt_names_exit_2_before_sampling(files: tuple[Path, Path], no_sampling: None,
                                               args: list[str], needle: str) -> None:
    model, data = files
    t0 = time.perf_counter()
    res = runner.invoke(app, ["effects", "--model", str(model), "--data", str(data), *args])
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and str(model) in res.stderr
    assert "Traceback" not in res.output and time.perf_counter() - t0 < 30


def test_all_bad_names_reported_together(files: tuple[Path, Path]) -> None:
    model, data = files
    with pytest.raises(InterventionError) as ei:
        check_effect_names(str(model), str(data), [("xx", 1.0)], [("f9", 1.0)], "G")
    assert [p.field for p in ei.value.problems] == ["outcome", "shift", "set"]
    assert check_effect_names(str(model), str(data), [("x", 1.0)], [], "F") == ["F", "x"]


def test_run_effects_checks_shift_nodes_before_reading_the_posterior(tmp_path: Path) -> None:
    from veerkracht_bayes.cli.run import run_effects
    from veerkracht_bayes.cli.effects import build_intervention

    (tmp_path / "posterior.nc").write_bytes(b"not a netcdf file")  # never read
    (tmp_path / "config.toml").write_text("[inputs]\nprior_only = true\n", encoding="utf-8")
    iv = build_intervention([("welbeing", 1.0)], [("strss", 0.5)])
    with pytest.raises(InterventionError) as ei:
        run_effects(tmp_path, [iv], "wellbeing")
    msg = str(ei.value)
    assert "--shift node 'welbeing'" in msg and "did you mean 'wellbeing'" in msg
    assert "--set node 'strss'" in msg


@pytest.mark.parametrize("args", [
    ["graph", "info", "--json"],
    ["graph", "loops", "--named", "--json"],
    ["validate", "--graph", "marvel", "--json"],
    ["policies", "--json"],
])
def test_json_commands_print_only_json(args: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)


def test_sem_data_reader_refuses_ragged_rows_and_repeated_names(files: tuple[Path, Path],
                                                               no_sampling: None) -> None:
    model, data = files
    lines = data.read_text(encoding="utf-8").splitlines()
    lines[3] += ",9"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = runner.invoke(app, ["effects", "--model", str(model), "--data", str(data),
                              "--outcome", "F", "--shift", "x=1"])
    assert res.exit_code == 2 and f"{data}:4" in res.stderr and "more than the header's 4" in res.stderr
    data.write_text("x,f1,f2,f1\n1,2,3,4\n", encoding="utf-8")
    from veerkracht_bayes.cli.sem import read_csv_data
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="duplicate column name 'f1'") as ei:
        read_csv_data(data)
    assert ei.value.problems[0].line == 1 and ei.value.problems[0].file == str(data)
