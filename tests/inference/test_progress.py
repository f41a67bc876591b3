"""Progress of the JAX NUTS driver: one bar over all chains' iterations, from a reused program.

The chains run in chunks of iterations (``inference.jax_nuts``), and the bar advances between
chunks, so the compiled programs hold no host callback (they can be serialised) and a second run
of the same compiled sampler reports too.
"""

from __future__ import annotations

import os
import warnings
from typing import ClassVar

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from _small_fit import small_data, small_graph


class _Recorder:
    """Stands in for ``tqdm.auto.tqdm``: records totals and updates."""

    made: ClassVar[list[_Recorder]] = []

    def __init__(self, total=None, **kwargs) -> None:
        self.total, self.n, self.closed, self.desc = total, 0, False, kwargs.get("desc", "")
        _Recorder.made.append(self)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description_str(self, s: str) -> None:
        self.desc = s

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recorder(monkeypatch):
    import tqdm.auto

    _Recorder.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", _Recorder)
    return _Recorder


def test_sampler_bar_counts_every_iteration_twice_from_one_program(recorder):
    from veerkracht_bayes.inference.sampling import fit

    g, d = small_graph(), small_data(n=200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in (1, 2):  # the second run reuses the compiled sampler
            fit(g, d, draws=60, tune=60, chains=2, random_seed=seed, prior_draws=200, progressbar=True,
                pointwise=False)
    assert not [w for w in caught if "progress bar" in str(w.message)]
    bars = [b for b in recorder.made if "NUTS" in b.desc]
    assert len(bars) == 2
    for b in bars:
        assert b.total == 2 * (60 + 60) and b.n == b.total and b.closed


def test_no_bar_when_progress_is_off(recorder):
    from veerkracht_bayes.inference.sampling import fit

    fit(small_graph(), small_data(n=200), draws=40, tune=40, chains=2, random_seed=3, prior_draws=200,
        progressbar=False, pointwise=False)
    assert recorder.made == []


def test_pipeline_steps_bar_in_jupyter_and_quiet(recorder, monkeypatch):
    from veerkracht_bayes.workflow import pipeline

    monkeypatch.setattr(pipeline, "is_interactive", lambda: True)  # a terminal or a Jupyter kernel
    with pipeline.StepProgress(2, True) as steps:
        steps.step("one")
        steps.done()
        steps.step("two")
        steps.done()
    (bar,) = recorder.made
    assert bar.n == 2 and bar.desc == "two" and bar.closed
    with pipeline.StepProgress(2, False) as steps:  # progress=False / --quiet
        steps.step("one")
    assert len(recorder.made) == 1


def test_jupyter_kernel_counts_as_interactive(monkeypatch):
    """Bars show in a Jupyter kernel (stderr is no TTY there), not in a plain pipe."""
    import sys
    import types

    from veerkracht_bayes.workflow import pipeline

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not pipeline.is_interactive()
    ZMQInteractiveShell = type("ZMQInteractiveShell", (), {})
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert pipeline.is_interactive()
