"""``veerkracht-bayes warmup``: fills the persistent compilation cache an install leaves behind."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veerkracht_bayes.cli.main import EXIT_INPUT_ERROR, app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """The CLI configures the 'veerkracht_bayes' logger; undo it so other tests are unaffected."""
    log = logging.getLogger("veerkracht_bayes")
    saved = (log.level, list(log.handlers), log.propagate)
    yield
    log.setLevel(saved[0])
    log.handlers[:] = saved[1]
    log.propagate = saved[2]


def test_warmup_is_a_command_and_checks_its_options_before_fitting():
    assert "warmup" in runner.invoke(app, ["--help"]).output
    res = runner.invoke(app, ["warmup", "--draws", "100", "--draws", "200", "--tune", "100"])
    assert res.exit_code == EXIT_INPUT_ERROR
    assert "2 --draws but 1 --tune" in res.output


@pytest.mark.slow
def test_warmup_fills_an_empty_compilation_cache(tmp_path: Path):
    # a fresh interpreter: JAX's cache folder is fixed once a process has compiled anything
    env = {**os.environ, "VEERKRACHT_JAX_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "veerkracht_bayes.cli", "warmup", "--draws", "20", "--tune", "20"],
                       env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    # both routes of a first result: the README's call (auto -> polychoric) and the continuous one
    assert "compiled: MARVEL fit, 2 chains x (20 tune + 20 draws), measurement auto (route polychoric)" in r.stdout
    assert "compiled: MARVEL fit, 2 chains x (20 tune + 20 draws), measurement continuous" in r.stdout
    # every program of the fit is kept (not only those over JAX's default compile-time floor)
    assert len(list((tmp_path / "cache").iterdir())) >= 10
    # and a stamp per setting, so that the install's `warmup --if-missing` does not fit again
    assert len(list((tmp_path / "cache").glob("veerkracht-warmup-*.stamp"))) == 2
    r2 = subprocess.run([sys.executable, "-m", "veerkracht_bayes.cli", "warmup", "--draws", "20", "--tune", "20",
                         "--if-missing"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r2.returncode == 0 and "cached already" in r2.stdout and "compiled:" not in r2.stdout


def test_warmup_if_missing_skips_a_setting_whose_stamp_is_in_the_cache(tmp_path: Path, monkeypatch):
    from veerkracht_bayes.runtime import warmup_stamp

    monkeypatch.setenv("VEERKRACHT_JAX_CACHE", str(tmp_path))
    for m in ("auto", "continuous"):
        stamp = warmup_stamp(20, 20, m)
        assert stamp is not None and stamp.parent == tmp_path
        stamp.write_text("filled\n")
    res = runner.invoke(app, ["warmup", "--draws", "20", "--tune", "20", "--if-missing"])
    assert res.exit_code == 0, res.output
    assert "cached already: MARVEL fit, 2 chains x (20 tune + 20 draws), measurement auto" in res.output
    assert "cached already: MARVEL fit, 2 chains x (20 tune + 20 draws), measurement continuous" in res.output
    assert "compiled:" not in res.output  # nothing fitted


class _FitRecorder:
    """Stands in for ``vb.fit``: records the calls, fits nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, graph, survey, **kw):
        from types import SimpleNamespace

        self.calls.append(kw)
        used = "polychoric" if kw["measurement"] == "auto" else kw["measurement"]
        return SimpleNamespace(result=SimpleNamespace(idata=SimpleNamespace(attrs={"measurement_resolved": used})))


def test_warmup_keys_each_route_and_fits_only_the_missing_one(tmp_path: Path, monkeypatch):
    import veerkracht_bayes as vb
    from veerkracht_bayes.runtime import warmup_stamp

    monkeypatch.setenv("VEERKRACHT_JAX_CACHE", str(tmp_path))
    auto, cont = warmup_stamp(1000, None, "auto"), warmup_stamp(1000, None, "continuous")
    assert auto is not None and cont is not None and auto != cont
    assert warmup_stamp(1000, 1000, "auto") != auto  # vb.fit's default tuning is a setting of its own
    auto.write_text("filled\n")  # the README's route is in the cache, the continuous one is not
    rec = _FitRecorder()
    monkeypatch.setattr(vb, "fit", rec)
    res = runner.invoke(app, ["warmup", "--if-missing"])  # what scripts/bootstrap.sh runs
    assert res.exit_code == 0, res.output
    assert "cached already: MARVEL fit, 2 chains x (default tune + 1000 draws), measurement auto" in res.output
    # the continuous fit as the user's call makes it: vb.fit's default tuning (tune not passed on)
    assert rec.calls == [{"priors": "marvel", "draws": 1000, "tune": None, "progress": False,
                          "measurement": "continuous"}]
    assert "compiled: MARVEL fit, 2 chains x (default tune + 1000 draws), measurement continuous" in res.output
    assert cont.is_file()
    # a rerun finds both stamps and fits nothing
    res = runner.invoke(app, ["warmup", "--if-missing"])
    assert res.exit_code == 0 and "compiled:" not in res.output and len(rec.calls) == 1
    # without --if-missing every route is fitted again, the README's (auto) first
    res = runner.invoke(app, ["warmup"])
    assert res.exit_code == 0, res.output
    assert [c["measurement"] for c in rec.calls[1:]] == ["auto", "continuous"]
    assert "measurement auto (route polychoric)" in res.output


def test_warmup_rejects_an_unknown_measurement():
    res = runner.invoke(app, ["warmup", "--measurement", "ordinal"])
    assert res.exit_code == EXIT_INPUT_ERROR
    assert "--measurement must be 'auto' or 'continuous'" in res.output


def test_warmup_with_the_cache_turned_off_fits_nothing():
    import veerkracht_bayes as vb

    vb.configure(compilation_cache=False)
    try:
        res = runner.invoke(app, ["warmup", "--draws", "20"])
    finally:
        vb.configure(compilation_cache=True)
    assert res.exit_code == 0, res.output
    assert "turned off" in res.output and "compiled:" not in res.output


def test_bootstrap_runs_the_warmup_only_when_needed_and_never_fails_on_it():
    text = (Path(__file__).resolve().parents[2] / "scripts" / "bootstrap.sh").read_text()
    lines = [ln.strip() for ln in text.splitlines() if "veerkracht-bayes" in ln and "warmup" in ln
             and not ln.lstrip().startswith(("#", "echo", '"'))]
    assert len(lines) == 1
    # --if-missing: a rerun (the test command's bootstrap) does not fit again; `if !`: a failed
    # warmup is a warning, not the end of the bootstrap (set -e)
    assert "--if-missing" in lines[0] and lines[0].startswith("if ! ")
    assert 'VEERKRACHT_WARMUP:-1}" != "0"' in text
