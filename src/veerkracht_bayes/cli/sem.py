"""``veerkracht-bayes sem``: fit a generic lavaan model with vague priors (see ``docs/lavaan_models.md``).

::

    veerkracht-bayes sem --model FILE --data FILE.csv --out params.csv [--seed N] [--draws N]
                         [--chains N] [--tune N] [--priors FILE] [--sampler numpyro|pymc|nutpie|blackjax]
                         [--save-posterior FILE.nc] [--group COLUMN [--group-equal TYPES]
                         [--group-pool TYPES] [--pool-tau-sd S]] [--ordered x1,x2,...]

Writes the parameter table (lavaan conventions: ``lhs, op, rhs, label, free, mean, sd, median,
lower, upper, r_hat, ess_bulk, ess_tail``; central 90% interval; with ``--group`` a leading
``group`` column and a trailing ``across_groups`` column, see ``docs/lavaan_models.md``) and prints it. Bad input
exits with code 2 and a located message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from veerkracht_bayes.cli.app import app, handle_errors
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean

__all__ = ["SAMPLERS"]

logger = logging.getLogger(__name__)

#: Samplers the CLI accepts.
SAMPLERS = ("numpyro", "pymc", "nutpie", "blackjax")


def read_csv_data(path: str | Path):
    """Read a CSV data file (``pandas.read_csv``); a missing, unreadable or ragged file (a row with
    more or fewer fields than the header, a repeated column name) is a located ConfigError."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ConfigError(Problem("data file not found (expected an existing CSV file)", file=str(p),
                                  field="data", value=str(p)))
    from veerkracht_bayes.survey.reading import check_csv_structure
    from veerkracht_bayes.yaml_io import read_text_utf8

    # ragged rows and repeated column names are refused with their line (pandas would pad,
    # rename or drop them silently)
    check_csv_structure(read_text_utf8(p, ConfigError), ",", str(p), ConfigError)
    try:
        return pd.read_csv(p)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read the data as CSV: {exc}", file=str(p),
                                  field="data")) from None


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(Problem(f"unknown sampler {sampler!r}{did_you_mean(sampler, SAMPLERS)} "
                                  f"(expected one of {', '.join(SAMPLERS)})", field="sampler",
                                  value=sampler))


def fit_from_files(model: str | Path, data: str | Path, *, priors: str | Path | None = None,
                   seed: int = 2023, draws: int = 1000, chains: int = 2, tune: int = 1000,
                   sampler: str = "numpyro", progressbar: bool = False, ordered: str | None = None):
    """Read a lavaan model file, a CSV and an optional priors file, and fit (``fit_sem``; with
    ``ordered`` names, ``"x1,x2"``, the two-stage ordinal route ``fit_sem_ordinal``).

    Returns
    -------
    SemFit
    """
    from veerkracht_bayes.sem.lavaan_model import fit_sem, load_sem_priors, specify
    from veerkracht_bayes.graph.lavaan_syntax import read_lavaan

    _check_sampler(sampler)
    lav = read_lavaan(model)
    df = read_csv_data(data)
    pri = None
    if priors is not None:
        pri = load_sem_priors(priors, specify(lav, list(map(str, df.columns))))
    if ordered:
        from veerkracht_bayes.sem.lavaan_ordinal import fit_sem_ordinal

        return fit_sem_ordinal(lav, df, ordered, priors=pri, draws=draws, tune=tune, chains=chains,
                               seed=seed, sampler=sampler, progressbar=progressbar, source=str(data))
    return fit_sem(lav, df, priors=pri, draws=draws, tune=tune, chains=chains, seed=seed,
                   sampler=sampler, progressbar=progressbar, source=str(data))  # type: ignore[arg-type]


@app.command("sem")
@handle_errors
def sem(
    model: Annotated[str, typer.Option("--model", "-m", help="lavaan model-syntax file.")],
    data: Annotated[str, typer.Option("--data", "-d", help="CSV data file (header row = names).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Parameter table to write (CSV).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 2023,
    draws: Annotated[int, typer.Option("--draws", help="Posterior draws per chain.")] = 1000,
    chains: Annotated[int, typer.Option("--chains", help="Number of chains.")] = 2,
    tune: Annotated[int, typer.Option("--tune", help="Tuning (warm-up) draws per chain.")] = 1000,
    priors: Annotated[str | None, typer.Option(
        "--priors", help="YAML of normal priors keyed by 'lhs op rhs' or label (default: vague).")
    ] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="numpyro (default), pymc, nutpie or blackjax.")
                       ] = "numpyro",
    save_posterior: Annotated[str | None, typer.Option(
        "--save-posterior", help="Also write the posterior (NetCDF) for `effects --posterior`.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")] = False,
    ordered: Annotated[str | None, typer.Option(
        "--ordered", help="Comma-separated ordinal/binary items (lavaan's ordered=): thresholds + polychoric "
        "correlations, the Bayesian analogue of WLSMV; the table gains '|' threshold rows.")] = None,
    group: Annotated[str | None, typer.Option(
        "--group", help="Group column: a multi-group model like lavaan's group= (configural: every group "
        "its own parameters); the table gets a 'group' column.")] = None,
    group_equal: Annotated[str | None, typer.Option(
        "--group-equal", help="Parameter types equal across groups, like lavaan's group.equal: a comma-"
        "separated list of loadings, intercepts, regressions, residuals, residual.covariances, "
        "lv.variances, lv.covariances, means, thresholds (with --ordered).")] = None,
    group_pool: Annotated[str | None, typer.Option(
        "--group-pool", help="Parameter types partially pooled across groups (loadings, intercepts, "
        "regressions): theta_g = theta + delta_g, delta_g ~ Normal(0, tau).")] = None,
    pool_tau_sd: Annotated[float, typer.Option(
        "--pool-tau-sd", help="Scale of the HalfNormal prior of each pooled parameter's between-group sd "
        "tau, in standardised units.")] = 0.1,
) -> None:
    """Fit a lavaan model (lavaan's defaults, vague priors) and write its parameter table."""
    if group is None and (group_equal or group_pool):
        raise ConfigError(Problem("--group-equal / --group-pool need --group COLUMN", field="group"))
    if not (pool_tau_sd > 0 and pool_tau_sd < float("inf")):
        raise ConfigError(Problem(f"--pool-tau-sd must be a positive number, got {pool_tau_sd}",
                                  field="pool-tau-sd", value=pool_tau_sd))
    if group is not None:
        from veerkracht_bayes.graph.lavaan_syntax import read_lavaan
        from veerkracht_bayes.sem.lavaan_model import load_sem_priors, specify
        from veerkracht_bayes.sem.lavaan_multigroup import fit_sem_multigroup

        _check_sampler(sampler)
        if save_posterior:
            raise ConfigError(Problem("--save-posterior is not available with --group (one posterior per "
                                      "group)", field="save-posterior"))
        lav = read_lavaan(model)
        df = read_csv_data(data)
        pri = None
        if priors is not None:
            pri = load_sem_priors(priors, specify(lav, [c for c in map(str, df.columns) if c != group]))
        mfit = fit_sem_multigroup(lav, df, group, group_equal=group_equal, group_pool=group_pool, priors=pri,
                                  tau_sd=pool_tau_sd, draws=draws, tune=tune, chains=chains, seed=seed,
                                  sampler=sampler, progressbar=progress, source=str(data), ordered=ordered)
        fit = None
        table = mfit.table()
        n_used = sum(mfit.n.values())
        n_dropped = mfit.n_dropped
    else:
        fit = fit_from_files(model, data, priors=priors, seed=seed, draws=draws, chains=chains,
                             tune=tune, sampler=sampler, progressbar=progress, ordered=ordered)
        table = fit.table()
        n_used, n_dropped = fit.data.n, fit.data.n_dropped
    try:
        table.to_csv(out, index=False)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write the parameter table: {exc.strerror or exc} "
                                  "(expected a writable path)", file=str(out), field="out")) from None
    if save_posterior and fit is not None:
        try:
            fit.idata.to_netcdf(save_posterior)
        except (OSError, ValueError) as exc:
            raise ConfigError(Problem(f"cannot write the posterior: {exc}", file=str(save_posterior),
                                      field="save-posterior")) from None
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_rows", 500):
        typer.echo(table.round(3).to_string(index=False))
    bad = table[(table["r_hat"] > 1.01) & table["r_hat"].notna()]
    if len(bad):
        logger.warning("%d parameter(s) have r_hat > 1.01: %s (run more draws or chains)", len(bad),
                       ", ".join(f"{r.lhs} {r.op} {r.rhs}".strip() for r in bad.itertuples()))
    typer.echo(f"wrote {out} ({len(table)} rows; n = {n_used} complete cases"
               f"{f', {n_dropped} excluded' if n_dropped else ''})")
