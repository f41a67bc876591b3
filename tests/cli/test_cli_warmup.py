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
    assert "compiled: MARVEL fit, 2 chains x (20 tune + 20 draws)" in r.stdout
    # every program of the fit is kept (not only those over JAX's default compile-time floor)
    assert len(list((tmp_path / "cache").iterdir())) >= 10
