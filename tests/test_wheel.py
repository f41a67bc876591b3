"""A built wheel runs outside the checkout: package data, priors, references and the synthetic
survey travel inside it (``veerkracht_bayes/_shipped``), read through ``importlib.resources``.

The wheel is built from this checkout (hatchling, no build isolation, so no network) and unpacked
into a fresh virtual environment in a temporary folder. Its dependencies are borrowed from the test
environment through a ``.pth`` line (that folder's own ``.pth`` files, among them the editable
install, are not processed), so the package that runs is the wheel's copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("hatchling", reason="hatchling builds the wheel (test extra)")


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp / "dist"), "-q"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    whl = next((tmp / "dist").glob("veerkracht_bayes-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "elsewhere"
    work.mkdir()
    return py, work


def _run(py: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([str(py), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_wheel_holds_the_shipped_files(wheel_env: tuple[Path, Path]) -> None:
    py, work = wheel_env
    code = ("import veerkracht_bayes as vb, veerkracht_bayes.resources as r\n"
            "assert 'site-packages' in vb.__file__, vb.__file__\n"
            "p = vb.load_priors('marvel')\n"
            "assert r.shipped_path('priors', 'references.bib').is_file()\n"
            "assert r.shipped_path('data', 'synthetic', 'veerkracht_synthetic.csv.gz').is_file()\n"
            "assert '_shipped' in str(r.shipped_root('priors'))\n"
            "print(len(p.edges) if hasattr(p, 'edges') else 'ok')\n")
    res = _run(py, work, "-c", code)
    assert res.returncode == 0, res.stderr[-3000:]


def test_wheel_cli(wheel_env: tuple[Path, Path]) -> None:
    py, work = wheel_env
    res = _run(py, work, "-m", "veerkracht_bayes.cli", "--version")
    assert res.returncode == 0 and res.stdout.startswith("veerkracht-bayes"), res.stderr[-2000:]
    res = _run(py, work, "-m", "veerkracht_bayes.cli", "graph", "info")
    assert res.returncode == 0, res.stderr[-2000:]
    paths = _run(py, work, "-c", "from veerkracht_bayes.resources import shipped_path as s; "
                                 "print(s('data','synthetic','veerkracht_synthetic.csv.gz')); "
                                 "print(s('data','synthetic','codebook_synthetic.yaml'))").stdout.split()
    res = _run(py, work, "-m", "veerkracht_bayes.cli", "validate", "--graph", "marvel", "--survey", paths[0],
               "--codebook", paths[1])
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
