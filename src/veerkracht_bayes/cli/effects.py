"""``veerkracht-bayes effects``: do-operator effects on a generic lavaan model (or a MARVEL run).

::

    veerkracht-bayes effects --model FILE --data FILE.csv (--shift NODE=VALUE | --set NODE=VALUE)...
                             --outcome NODE [--json] [--seed N] [--draws N] [--chains N] [--tune N]
                             [--posterior FILE.nc] [--units sd|native] [--priors FILE]
    veerkracht-bayes effects --run DIR ...        (handled by the module that registers a run handler)

The generic path fits the model (or loads a posterior saved by ``sem --save-posterior``), turns
every draw into the structural form over the model's latent and observed structural variables
(:func:`~veerkracht_bayes.sem.lavaan_model.structural_view`) and runs
:func:`~veerkracht_bayes.causal.do.do_query`.

Units (``--units sd``, the default): doses and set levels are in standard deviations of the node,
namely the **model-implied total SD of the node** in the baseline population, per posterior draw;
effects are in SDs of the outcome. Set levels are relative to the population mean (``--set X=1``
holds X one SD above its mean). ``--units native``: doses, levels and effects in the variables'
own units (a latent's units are those of its marker indicator); set levels are native values
(centred at the sample mean of an observed node, at 0 for a latent).

With ``--json`` stdout holds only one JSON object (the human summary goes to stderr), with at
least ``outcome``, ``interventions``, ``mean``, ``median``, ``lower``, ``upper`` (central 90% interval),
``p_positive``, ``p_stable`` and ``n_draws``.

Hook for MARVEL runs: a module (``cli_run``) calls :func:`register_run_handler` with a function
``handler(run_dir, interventions, outcome, *, seed, units, prob) -> dict`` returning the JSON
record; ``effects --run DIR`` then dispatches to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import typer

from veerkracht_bayes.cli.app import app, handle_errors
from veerkracht_bayes.errors import ConfigError, InterventionError, Problem, did_you_mean

__all__ = ["parse_assignments", "build_intervention", "check_effect_names", "PROB"]

logger = logging.getLogger(__name__)

#: Central interval probability used in every summary.
PROB = 0.9

_RUN_HANDLER: Callable[..., dict[str, Any]] | None = None


def register_run_handler(handler: Callable[..., dict[str, Any]]) -> None:
    """Register the function that answers ``effects --run DIR`` (MARVEL pipeline runs).

    ``handler(run_dir: str, interventions: list[Intervention], outcome: str, *, seed: int,
    units: str, prob: float) -> dict`` must return the JSON record (same fields as the generic
    path) and raise a :class:`~veerkracht_bayes.errors.VeerkrachtError` on bad input.
    """
    global _RUN_HANDLER
    _RUN_HANDLER = handler


def parse_assignments(items: Sequence[str], option: str) -> list[tuple[str, float]]:
    """Parse ``NODE=VALUE`` strings; raise :class:`InterventionError` naming the bad item.

    Examples
    --------
    >>> parse_assignments(["social_network=0.5", "stress=-0.2"], "--shift")
    [('social_network', 0.5), ('stress', -0.2)]
    """
    out = []
    probs = []
    for it in items:
        node, eq, val = it.partition("=")
        node = node.strip()
        try:
            x = float(val)
            ok = bool(eq) and bool(node) and np.isfinite(x)
        except ValueError:
            ok = False
        if not ok:
            probs.append(Problem(f"{option} {it!r}: expected NODE=VALUE with a finite number "
                                 "(e.g. {option} stress=-0.5)".replace("{option}", option),
                                 field=option, value=it))
            continue
        out.append((node, x))
    if probs:
        raise InterventionError(probs)
    return out


def build_intervention(shifts: Sequence[tuple[str, float]], sets: Sequence[tuple[str, float]],
                       unit: str = "sd"):
    """One :class:`~veerkracht_bayes.causal.interventions.Intervention` combining all shifts and sets.

    Examples
    --------
    >>> iv = build_intervention([("social_network", 0.5)], [])
    >>> [type(p).__name__ for p in iv.parts]
    ['Shift']
    """
    from veerkracht_bayes.causal.interventions import Intervention, Set, Shift

    if not shifts and not sets:
        raise InterventionError("no intervention given: expected at least one --shift NODE=VALUE or "
                                "--set NODE=VALUE")
    parts = [Shift(node=n, delta=v, unit=unit) for n, v in shifts]
    parts += [Set(node=n, value=v, unit=unit) for n, v in sets]
    return Intervention(name="cli", parts=parts)


def _describe(shifts, sets) -> list[dict[str, Any]]:
    return ([{"type": "shift", "node": n, "value": v} for n, v in shifts]
            + [{"type": "set", "node": n, "value": v} for n, v in sets])


def generic_effect(fit, shifts: Sequence[tuple[str, float]], sets: Sequence[tuple[str, float]],
                   outcome: str, *, units: str = "sd", seed: int = 0, prob: float = PROB
                   ) -> dict[str, Any]:
    """Effect of shifts/sets on ``outcome`` for a fitted generic model (:class:`SemFit`).

    Returns
    -------
    dict
        The JSON record (see the module docstring).
    """
    from veerkracht_bayes.causal.do import do_query
    from veerkracht_bayes.causal.interventions import NativeScale
    from veerkracht_bayes.sem.lavaan_model import structural_view
    from veerkracht_bayes.causal.draws import StructuralDraws

    if units not in ("sd", "native"):
        raise InterventionError(Problem(f"unknown units {units!r}{did_you_mean(units, ['sd', 'native'])} "
                                        "(expected 'sd' or 'native')", field="units", value=units))
    view = structural_view(fit)
    nodes = list(view.nodes)
    for n, _ in list(shifts) + list(sets):
        if n not in nodes and n in fit.spec.observed:
            raise InterventionError(Problem(
                f"{n!r} is a measurement indicator, not a variable of the structural part; expected "
                f"one of {nodes}", field="node", value=n))
    if outcome not in nodes and outcome in fit.spec.observed:
        raise InterventionError(Problem(
            f"outcome {outcome!r} is a measurement indicator, not a variable of the structural part; "
            f"expected one of {nodes}", field="outcome", value=outcome))
    S, P = view.B.shape[0], len(nodes)
    alpha = np.zeros((S, P))  # set levels are relative to the population mean; shifts ignore alpha
    if units == "sd":
        sd = view.total_sd
        if np.any(~np.isfinite(sd)) or np.any(sd <= 0):
            bad = int(np.sum(~(np.isfinite(sd) & (sd > 0)).all(axis=1)))
            logger.warning("%d draw(s) have a non-positive or non-finite implied variance and are "
                           "unusable in SD units", bad)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.nan)
        B = view.B * sd[:, None, :] / sd[:, :, None]
        psi = np.diagonal(view.Psi, axis1=1, axis2=2) / sd**2
        ok = np.isfinite(B).all(axis=(1, 2))
        B = np.where(ok[:, None, None], B, 0.0)
        psi = np.where(ok[:, None], psi, 1.0)
        native = None
    else:
        B = view.B
        psi = np.diagonal(view.Psi, axis1=1, axis2=2)
        ok = np.ones(S, bool)
        native = {n: NativeScale(1.0, center=float(view.mean[i])) for i, n in enumerate(nodes)}
    draws = StructuralDraws(tuple(nodes), view.edge_keys, B, alpha, np.abs(psi))
    iv = build_intervention(shifts, sets, unit=units)
    res = do_query(draws, [iv], [outcome], native_scale=native, seed=seed)
    eff = res.outcome_effect(outcome)[0]
    eff = np.where(ok, eff, np.nan)
    finite = eff[np.isfinite(eff)]
    a = (1 - prob) / 2
    if finite.size == 0:
        raise InterventionError("the intervened system is not solvable in any posterior draw")
    stable = (res.solvable & res.stable)[0] & ok
    return {
        "outcome": outcome,
        "interventions": _describe(shifts, sets),
        "units": units,
        "effect_units": ("SD of the outcome (model-implied total SD)" if units == "sd"
                         else "native units of the outcome"),
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        "lower": float(np.quantile(finite, a)),
        "upper": float(np.quantile(finite, 1 - a)),
        "prob": prob,
        "p_positive": float(np.mean(finite > 0)),
        "p_stable": float(stable.mean()),
        "baseline_p_stable": float(np.mean(res.baseline_stable)),
        "n_draws": int(S),
        "n_solvable": int(finite.size),
        "sd_definition": "model-implied total SD of the node in the baseline population, per draw",
        "intercepts": ("model intercepts not used: shift effects do not depend on them; set levels "
                       "are relative to the population mean" if units == "sd" else
                       "set levels are native values centred at the sample mean (0 for latents)"),
        "nodes": nodes,
    }


def check_effect_names(model: str, data: str, shifts: Sequence[tuple[str, float]],
                       sets: Sequence[tuple[str, float]], outcome: str) -> list[str]:
    """Check every node name of an effects query against the model, before any sampling.

    Reads the lavaan model and the data header (cheap), resolves the model and checks that the
    outcome and every ``--shift``/``--set`` node is a variable of its structural part.

    Parameters
    ----------
    model, data
        The lavaan model file and the CSV data file.
    shifts, sets
        ``(node, value)`` pairs from :func:`parse_assignments`.
    outcome
        The outcome node.

    Returns
    -------
    list of str
        The structural nodes (valid names).

    Raises
    ------
    InterventionError
        Naming every bad option, its value and the valid names (did-you-mean).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, pandas as pd
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.lav").write_text("y ~ x\\n")
    >>> pd.DataFrame({"x": np.arange(5.0), "y": np.arange(5.0) ** 2}).to_csv(d / "d.csv", index=False)
    >>> check_effect_names(str(d / "m.lav"), str(d / "d.csv"), [("x", 1.0)], [], "y")
    ['y', 'x']
    """
    from veerkracht_bayes.cli.sem import read_csv_data
    from veerkracht_bayes.graph.lavaan_syntax import read_lavaan
    from veerkracht_bayes.sem.lavaan_model import specify

    lav = read_lavaan(model)
    df = read_csv_data(data)
    spec = specify(lav, list(map(str, df.columns)))
    nodes = [v for v in spec.structural if v not in spec.covariates] + list(spec.covariates)
    probs = []
    named = [("--outcome", outcome)] + [("--shift", n) for n, _ in shifts] + [("--set", n) for n, _ in sets]
    for opt, name in named:
        if name in nodes:
            continue
        if name in spec.observed:
            why = "is a measurement indicator, not a variable of the structural part"
        else:
            why = f"is not a variable of the model{did_you_mean(name, nodes)}"
        probs.append(Problem(f"{opt} {name!r} {why}; expected one of {nodes}", file=str(model),
                             field=opt.lstrip("-"), value=name))
    if probs:
        raise InterventionError(probs)
    return nodes


def _load_posterior_fit(model: str, data: str, posterior: str):
    import xarray as xr

    from veerkracht_bayes.cli.sem import read_csv_data
    from veerkracht_bayes.sem.lavaan_model import SemFit, check_identification, prepare_sem_data, specify
    from veerkracht_bayes.graph.lavaan_syntax import read_lavaan

    lav = read_lavaan(model)
    df = read_csv_data(data)
    spec = specify(lav, list(map(str, df.columns)))
    sd = prepare_sem_data(spec, df, str(data))
    check_identification(spec)
    try:
        idata = xr.open_datatree(posterior)
    except (OSError, ValueError) as exc:
        raise ConfigError(Problem(f"cannot read the posterior: {exc} (expected a NetCDF file written "
                                  "by `sem --save-posterior`)", file=str(posterior),
                                  field="posterior")) from None
    post = idata["posterior"]
    if "param_value" not in post or post["param_value"].sizes.get("param") != len(spec.rows):
        raise ConfigError(Problem("the posterior does not belong to this model and data (its "
                                  "parameter table differs); expected the file `sem --save-posterior` "
                                  "wrote for the same --model and --data", file=str(posterior),
                                  field="posterior"))
    keys = [str(k) for k in post["param_value"]["param"].values]
    if keys != [r.key for r in spec.rows]:
        raise ConfigError(Problem("the posterior's parameters differ from this model's; expected the "
                                  "file written for the same --model", file=str(posterior)))
    return SemFit(spec=spec, data=sd, idata=idata)


@app.command("effects")
@handle_errors
def effects(
    outcome: Annotated[str, typer.Option("--outcome", help="Outcome node.")],
    shift: Annotated[list[str] | None, typer.Option(
        "--shift", help="NODE=VALUE: shift NODE by VALUE (SDs by default). Repeatable.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="NODE=VALUE: hold NODE at VALUE, cutting its causes. Repeatable.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="lavaan model-syntax file.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="CSV data file.")] = None,
    posterior: Annotated[str | None, typer.Option(
        "--posterior", help="Posterior saved by `sem --save-posterior` (skips fitting).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="A fitted MARVEL run folder.")] = None,
    units: Annotated[str, typer.Option("--units", help="'sd' (default) or 'native'.")] = "sd",
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 2023,
    draws: Annotated[int, typer.Option("--draws", help="Posterior draws per chain.")] = 1000,
    chains: Annotated[int, typer.Option("--chains", help="Number of chains.")] = 2,
    tune: Annotated[int, typer.Option("--tune", help="Tuning draws per chain.")] = 1000,
    priors: Annotated[str | None, typer.Option("--priors", help="Priors YAML (generic models).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="numpyro, pymc, nutpie or blackjax.")
                       ] = "numpyro",
) -> None:
    """Equilibrium effect of shifts / sets on an outcome, per posterior draw, summarised."""
    shifts = parse_assignments(shift or [], "--shift")
    sets = parse_assignments(set_ or [], "--set")
    if units not in ("sd", "native"):
        raise InterventionError(Problem(f"unknown units {units!r}{did_you_mean(units, ['sd', 'native'])} "
                                        "(expected 'sd' or 'native')", field="units", value=units))
    if run is not None:
        if model is not None or data is not None or posterior is not None:
            raise ConfigError("--run cannot be combined with --model/--data/--posterior")
        if _RUN_HANDLER is None:
            raise ConfigError("effects --run is not available in this installation (no run handler "
                              "registered); expected --model FILE --data FILE.csv")
        iv = build_intervention(shifts, sets, unit=units)
        rec = _RUN_HANDLER(run, [iv], outcome, seed=seed, units=units, prob=PROB)
    else:
        if model is None or data is None:
            raise ConfigError("effects needs --model FILE and --data FILE.csv (or --run DIR)")
        if not shifts and not sets:
            build_intervention(shifts, sets)  # raises the 'no intervention' error before fitting
        check_effect_names(model, data, shifts, sets, outcome)  # every name, before any sampling
        if posterior is not None:
            fit = _load_posterior_fit(model, data, posterior)
        else:
            from veerkracht_bayes.cli.sem import fit_from_files

            fit = fit_from_files(model, data, priors=priors, seed=seed, draws=draws, chains=chains,
                                 tune=tune, sampler=sampler)
        rec = generic_effect(fit, shifts, sets, outcome, units=units, seed=seed, prob=PROB)
    what = ", ".join(f"{d['type']} {d['node']} {'+=' if d['type'] == 'shift' else '='} {d['value']:g}"
                     for d in rec["interventions"])
    # with --json stdout holds the JSON object only; the human summary goes to stderr
    typer.echo(f"effect of [{what}] on {rec['outcome']} ({rec.get('effect_units', units)}):",
               err=as_json)
    typer.echo(f"  mean {rec['mean']:.4g}, median {rec['median']:.4g}, "
               f"{int(PROB * 100)}% interval [{rec['lower']:.4g}, {rec['upper']:.4g}]", err=as_json)
    typer.echo(f"  P(effect > 0) = {rec['p_positive']:.3f}; P(stable) = {rec['p_stable']:.3f}; "
               f"{rec['n_draws']} draws", err=as_json)
    if as_json:
        typer.echo(json.dumps(_finite(rec), ensure_ascii=False, allow_nan=False))


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON line is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
