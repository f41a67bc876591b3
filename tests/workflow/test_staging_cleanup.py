"""An interrupted run leaves nothing behind: signals during write_outputs remove the staging
folder (and the process still ends by the signal), and staging folders of dead processes are
swept at the start of the next write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from veerkracht_bayes.workflow.pipeline import sweep_stale_staging

# A child process: _write_all is replaced by one that half-writes a file and then is signalled.
CHILD = textwrap.dedent("""
    import os, signal, sys, time, types
    from pathlib import Path
    import veerkracht_bayes.workflow.pipeline as pl

    out = Path(sys.argv[1]); sig = int(sys.argv[2]); mode = sys.argv[3]
    # Python's own SIGINT handler, also when this process was started with SIGINT ignored (a
    # background job of a non-interactive shell inherits SIG_IGN, and Python then keeps it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # and the default actions of SIGTERM and SIGHUP (a run under nohup inherits SIGHUP ignored,
    # which write_outputs rightly keeps: then there is nothing to clean up on that signal)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def half_write(result, tmp):
        (tmp / "effects.csv").write_text("policy,outcome\\nP01,")
        if mode == "self":
            os.kill(os.getpid(), sig)
            time.sleep(5)
        else:
            print("STAGING", tmp, flush=True)
            time.sleep(30)

    pl._write_all = half_write
    pl.write_outputs(types.SimpleNamespace(out_dir=None), out, overwrite=len(sys.argv) > 4)
    print("finished", flush=True)
""")


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_while_writing_removes_the_staging_folder(tmp_path: Path, signame: str) -> None:
    sig = getattr(signal, signame)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-c", CHILD, str(out), str(int(sig)), "self"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert "finished" not in res.stdout
    assert _leftovers(tmp_path) == [] and not out.exists()
    if signame == "SIGINT":  # Python's own handler: KeyboardInterrupt, exit status 1 (or -2)
        assert res.returncode != 0 and "KeyboardInterrupt" in res.stderr
    else:  # the default action still ends the process by the signal
        assert res.returncode == -int(sig), res.stderr


def test_sigterm_from_outside_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), "15", "wait", "overwrite"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("STAGING"), proc.stderr.read()  # type: ignore[union-attr]
    assert Path(line.split(maxsplit=1)[1].strip()).is_dir()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert _leftovers(tmp_path) == []
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "old"


def test_sweep_removes_only_folders_of_dead_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f".out.tmp-{dead}-abc").mkdir()
    (tmp_path / f".out.tmp-{dead}-abc" / "effects.csv").write_text("half")
    alive = tmp_path / f".out.tmp-{os.getppid()}-def"  # a live process: a run in progress
    alive.mkdir()
    legacy = tmp_path / ".out.tmp-q1w2e3"  # no pid (older versions): judged by age
    legacy.mkdir()
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / ".other.tmp-1-x"  # another output folder's staging: not ours to judge
    other.mkdir()
    swept = sweep_stale_staging(out)
    assert sorted(p.name for p in swept) == sorted([f".out.tmp-{dead}-abc", ".out.tmp-q1w2e3"])
    assert alive.is_dir() and other.is_dir() and not legacy.exists()


def test_sweep_restores_an_output_interrupted_mid_swap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = tmp_path / ".out.old-999999999-zz"
    (old / "out").mkdir(parents=True)
    (old / "out" / "effects.csv").write_text("previous")
    sweep_stale_staging(out)
    assert (out / "effects.csv").read_text() == "previous" and not old.exists()
