"""Shared set-up of the workflow tests that run the whole pipeline with short chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: The ``[sampler]`` table of those runs (``--fast`` shortens the chains further, :func:`fast_run`).
SAMPLER_TOML = """[sampler]
chains = 2
draws = 400
tune = 400
prior_draws = 100
seed = 5
"""


def fast_run(config: Path, *, draws: int, prior_draws: int, group_draws: int | None = None,
             **kwargs: Any) -> Any:
    """``workflow.pipeline.run(config, fast=True, progress=False, **kwargs)`` with ``--fast`` shortened
    to ``draws`` draws (and tuning steps), ``prior_draws`` prior draws and, when given,
    ``group_draws`` draws of the multi-group fits."""
    from veerkracht_bayes.workflow import config as run_config
    from veerkracht_bayes.workflow.pipeline import run

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_config, "FAST_DRAWS", draws)
        mp.setattr(run_config, "FAST_PRIOR_DRAWS", prior_draws)
        if group_draws is not None:
            mp.setattr(run_config, "FAST_GROUP_DRAWS", group_draws)
        return run(config, fast=True, progress=False, **kwargs)
