"""CLI commands ``run`` and ``demo`` (registered on :data:`veerkracht_bayes.cli.main.app`).

::

    veerkracht-bayes run CONFIG.toml [--out DIR] [--overwrite] [--force] [--fast]
    veerkracht-bayes demo [--out DIR] [--fast] [--overwrite] [--force]

Exit codes: 0 success; 2 bad input (before any sampling); 3 the diagnostics failed and
``--force`` was not given (the numbers are written, the brief is not).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from veerkracht_bayes.resources import package_data_path, shipped_path
from veerkracht_bayes.cli.app import app, handle_errors
from veerkracht_bayes.errors import ConfigError, Problem

__all__ = ["demo_config_path", "synthetic_data_dir", "EXIT_DIAGNOSTICS_FAILED"]

log = logging.getLogger(__name__)

#: Exit code when the diagnostics fail without ``--force``.
EXIT_DIAGNOSTICS_FAILED = 3

OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing, non-empty "
                                                                "output folder.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write the brief even if the diagnostics "
                                                        "fail (page one then says so).")]
FastOpt = Annotated[bool, typer.Option("--fast", help="Short chains (400 tuning + 400 draws, 500 "
                                                      "prior draws) and scaled diagnostics "
                                                      "thresholds: about a minute, for CI and "
                                                      "notebooks.")]


def demo_config_path() -> Path:
    """The shipped demo config (``veerkracht_bayes/data/demo.toml``).

    Examples
    --------
    >>> demo_config_path().name
    'demo.toml'
    """
    return package_data_path("demo.toml")


def synthetic_data_dir() -> Path:
    """``data/synthetic`` of the source checkout the package runs from.

    Raises
    ------
    ConfigError
        When the package does not sit in a source checkout (e.g. installed from a wheel).

    Examples
    --------
    >>> (synthetic_data_dir() / "codebook_synthetic.yaml").is_file()
    True
    """
    d = shipped_path("data", "synthetic")
    if not (d / "veerkracht_synthetic.csv.gz").is_file():
        raise ConfigError(Problem(
            f"the shipped synthetic data were not found at {str(d)!r}; the demo needs a source "
            "checkout or editable install (pip install -e .) of veerkracht-bayes, or run "
            "'veerkracht-bayes simulate --out DIR' and 'veerkracht-bayes run CONFIG.toml' with a "
            "config that points at DIR", file=str(demo_config_path()), field="survey",
            value=str(d)))
    return d


def _finish(result: object, force: bool) -> None:
    out = getattr(result, "out_dir", None)
    typer.echo(f"wrote {out}")
    if not getattr(result, "diagnostics_passed", True):
        if force:
            log.warning("diagnostics failed; the brief was written because of --force and says so")
            return
        typer.echo("error: diagnostics failed; the numbers were written but no brief (see "
                   "diagnostics.json; rerun with --force to write a brief marked as such)", err=True)
        raise typer.Exit(EXIT_DIAGNOSTICS_FAILED)


@app.command("run")
@handle_errors
def run_command(
    config: Annotated[Path, typer.Argument(help="Run config (TOML); see docs/pipeline.md.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (overrides the "
                                             "config's output dir).")] = None,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = False,
    fast: FastOpt = False,
) -> None:
    """Validate every input, fit, diagnose, query the policies and write the outputs.

    The config's tables: inputs, sampler, model, query, diagnostics, output, and the optional
    structure, voi and neighbourhoods. A neighbourhoods table (cluster = "wijk_code") adds a
    two-level model of the collective constructs, the neighbourhood-level policies and the design
    effects of the weights and the clustering (neighbourhoods.json, neighbourhood_effects.csv,
    neighbourhood_links.csv). Format: docs/pipeline.md and docs/twolevel.md.
    """
    from veerkracht_bayes.workflow.pipeline import run

    result = run(config, overwrite=overwrite, force=force, fast=fast,
                 progress=log.getEffectiveLevel() <= logging.WARNING, out_dir=out)
    _finish(result, force)


@app.command("demo")
@handle_errors
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "veerkracht_demo"),
    fast: FastOpt = False,
    overwrite: OverwriteOpt = False,
    force: ForceOpt = False,
) -> None:
    """Run on the shipped SYNTHETIC survey with the shipped demo config."""
    from veerkracht_bayes.workflow.pipeline import run

    synthetic_data_dir()  # clear error when not in a source checkout
    result = run(demo_config_path(), overwrite=overwrite, force=force, fast=fast,
                 progress=log.getEffectiveLevel() <= logging.WARNING, out_dir=out)
    _finish(result, force)


# ---------------------------------------------------------------------------- effects --run DIR
def run_effects(run_dir: str | Path, interventions: list, outcome: str, *, seed: int = 0,
                units: str = "sd", prob: float = 0.9) -> dict:
    """Answer ``veerkracht-bayes effects --run DIR``: a do-query on a finished run's posterior.

    Parameters
    ----------
    run_dir
        Output folder of ``run``/``demo`` (holds ``posterior.nc`` and ``config.toml``).
    interventions
        :class:`~veerkracht_bayes.causal.interventions.Intervention` objects (SD units).
    outcome
        Graph node.

    Returns
    -------
    dict
        The JSON record: ``mean``, ``median``, ``lower``, ``upper`` (central ``prob`` interval),
        ``p_positive``, ``p_stable``, ``n_draws`` and the query.
    """
    import tomllib

    import numpy as np
    import xarray as xr

    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.errors import InterventionError, did_you_mean
    from veerkracht_bayes.causal.draws import StructuralDraws

    rd = Path(run_dir)
    post = rd / "posterior.nc"
    cfg_path = rd / "config.toml"
    for p in (post, cfg_path):
        if not p.is_file():
            raise ConfigError(Problem(f"{p.name} not found in the run folder (expected the output "
                                      "folder of 'veerkracht-bayes run' or 'demo')", file=str(p)))
    if units != "sd":
        raise InterventionError(Problem(f"units {units!r} are not available for MARVEL runs (expected "
                                        "'sd': effects are in standard deviations of the nodes)",
                                        field="units", value=units))
    with open(cfg_path, "rb") as fh:
        graph_src = tomllib.load(fh).get("inputs", {}).get("graph", "marvel")
    if graph_src != "marvel" and not Path(graph_src).is_absolute():
        cand = rd / graph_src
        graph_src = str(cand if cand.exists() else Path(graph_src))
    graph = load_graph(graph_src)
    probs = []
    if not graph.has_node(outcome):
        probs.append(Problem(f"--outcome {outcome!r} is not a node of the graph"
                             f"{did_you_mean(outcome, graph.nodes)}", field="outcome", value=outcome))
    for iv in interventions:  # every --shift/--set node, before the posterior is read
        for part in getattr(iv, "parts", [iv]):
            node = getattr(part, "node", None)
            if node is not None and not graph.has_node(node):
                opt = "--set" if type(part).__name__ == "Set" else "--shift"
                probs.append(Problem(f"{opt} node {node!r} is not a node of the graph"
                                     f"{did_you_mean(node, graph.nodes)}", field=opt.lstrip("-"),
                                     value=node))
    if probs:
        raise InterventionError(probs)
    tree = xr.open_datatree(post)
    draws = StructuralDraws.from_posterior(tree, graph)
    res = do_query(draws, list(interventions), [outcome], seed=seed)
    eff = np.asarray(res.outcome_effect(outcome)[0], dtype=float)
    finite = eff[np.isfinite(eff)]
    if finite.size == 0:
        raise InterventionError("the intervened system is not solvable in any posterior draw")
    a = (1 - prob) / 2
    stable = np.asarray(res.solvable[0] & res.stable[0])
    return {
        "outcome": outcome,
        "interventions": [_describe_part(p) for iv in interventions for p in getattr(iv, "parts", [iv])],
        "units": "sd",
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "lower": float(np.quantile(finite, a)),
        "upper": float(np.quantile(finite, 1 - a)),
        "prob": prob,
        "p_positive": float(np.mean(finite > 0)),
        "p_stable": float(stable.mean()),
        "n_draws": int(eff.size),
        "run": str(rd),
    }


def _describe_part(part: object) -> dict:
    """``{"type", "node", "value"}`` of a Shift/Set (the generic effects record's format)."""
    from veerkracht_bayes.causal.interventions import Set, Shift

    if isinstance(part, Shift):
        val = part.delta if isinstance(part.delta, (int, float)) else float("nan")
        return {"type": "shift", "node": part.node, "value": float(val)}
    if isinstance(part, Set):
        return {"type": "set", "node": part.node, "value": float(part.value)}
    return {"type": type(part).__name__.lower(), "node": str(getattr(part, "target", "")),
            "value": float("nan")}


def _register() -> None:
    from veerkracht_bayes.cli.effects import register_run_handler

    register_run_handler(run_effects)


_register()
