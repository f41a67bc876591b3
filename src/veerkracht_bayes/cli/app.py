"""The typer application ``veerkracht-bayes`` and what every command shares: logging to stderr,
located input errors as exit code 2, common options. Command modules (:mod:`.main`, :mod:`.sem`,
:mod:`.effects`, :mod:`.run`) register themselves on :data:`app`; :mod:`veerkracht_bayes.cli`
imports them all.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from veerkracht_bayes.errors import VeerkrachtError

__all__ = ["app", "graph_app", "handle_errors", "EXIT_INPUT_ERROR", "GraphOption", "JsonOption"]

logger = logging.getLogger("veerkracht_bayes")

def _flags_without_type(option_cls: Any) -> None:
    """Show boolean flags as flags in ``--help``: this typer release prints ``<bool>`` after every
    flag (``--json <bool>``), as if it took a value. Only the help text changes."""
    original = getattr(option_cls, "display_type_rich", None)
    if original is None or getattr(original, "_veerkracht_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._veerkracht_flags = True  # type: ignore[attr-defined]
    option_cls.display_type_rich = display_type_rich


try:  # the CLI layer only: library modules never import this
    from typer.core import TyperOption as _TyperOption

    _flags_without_type(_TyperOption)
except ImportError:  # pragma: no cover - other typer layouts print flags correctly
    pass


#: Exit code for bad input (a :class:`VeerkrachtError`).
EXIT_INPUT_ERROR = 2

app = typer.Typer(
    name="veerkracht-bayes",
    help="Structural Bayesian models on the signed, cyclic MARVEL resilience diagram.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
graph_app = typer.Typer(help="Inspect and draw causal diagrams.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")

F = TypeVar("F", bound=Callable[..., Any])

GraphOption = Annotated[
    str,
    typer.Option("--graph", "-g", help="'marvel' (the shipped diagram) or a path to a YAML graph "
                                       "file or a lavaan model-syntax file (.lav/.lavaan/.txt/.model)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each message."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging(quiet: bool, verbose: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.setLevel(level)
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    logger.addHandler(handler)
    logger.setLevel(level)


def handle_errors(func: F) -> F:
    """Decorator for commands: a VeerkrachtError becomes a stderr message and exit code 2.

    Examples
    --------
    >>> import typer
    >>> from veerkracht_bayes.errors import ConfigError
    >>> @handle_errors
    ... def command():
    ...     raise ConfigError("draws must be at least 100")
    >>> try:
    ...     command()  # the located message goes to stderr
    ... except typer.Exit as e:
    ...     print("exit code", e.exit_code)
    exit code 2
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VeerkrachtError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_INPUT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        from veerkracht_bayes import __version__

        typer.echo(f"veerkracht-bayes {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only show errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    """Structural Bayesian models on the signed, cyclic MARVEL resilience diagram."""
    _configure_logging(quiet, verbose)


@app.command("warmup")
@handle_errors
def warmup_command(
    draws: Annotated[list[int] | None, typer.Option("--draws", help="Draws per chain of a first fit to "
                                                    "compile for (repeatable; default 1000).")] = None,
    tune: Annotated[list[int] | None, typer.Option("--tune", help="Tuning steps per chain, one per "
                                                   "--draws (default: vb.fit's default for the route).")] = None,
    measurement: Annotated[list[str] | None, typer.Option(
        "--measurement", help="vb.fit's measurement to compile for (repeatable): 'auto' (the README's first "
                              "result: the shipped codebook's Likert and binary items take the polychoric "
                              "route) and/or 'continuous' (the demo's); default both.")] = None,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Skip a setting whose programs this "
                                             "install already put in the cache (its stamp is there).")] = False,
) -> None:
    """Fill the persistent compilation cache with the programs of a first MARVEL fit.

    One fit of the shipped synthetic survey per --draws and --measurement (vb.fit's defaults
    otherwise): by default the README's first result as it runs, ``vb.fit(graph, survey,
    priors="marvel")`` (measurement "auto", which the shipped codebook resolves to the
    polychoric route), and the same fit on the continuous path, which the demo pins. A later
    fit of the same model shape (graph, items, number of missingness patterns) with the same
    route, draws and tuning steps, on any data and seed, then reads its programs from the cache
    (veerkracht_bayes.runtime), traced and lowered (veerkracht_bayes.programs) and compiled,
    instead of converting the model to JAX, tracing and compiling them. After each fit a stamp
    (veerkracht_bayes.runtime.warmup_stamp: package sources, library versions, cores, setting)
    is left in the cache; with --if-missing a setting whose stamp is there is skipped, which is
    what scripts/bootstrap.sh runs.
    """
    import time

    import veerkracht_bayes as vb
    from veerkracht_bayes.errors import ConfigError, Problem
    from veerkracht_bayes.resources import shipped_path

    draws = list(draws or [1000])
    tunes: list[int | None] = list(tune) if tune else [None] * len(draws)
    if len(tunes) != len(draws):
        raise ConfigError(Problem(f"{len(draws)} --draws but {len(tunes)} --tune", field="tune"))
    routes = list(dict.fromkeys(measurement or ["auto", "continuous"]))
    for m in routes:
        if m not in ("auto", "continuous"):
            raise ConfigError(Problem(f"--measurement must be 'auto' or 'continuous', got {m!r}",
                                      field="measurement", value=m))
    from veerkracht_bayes.runtime import compilation_cache_dir, warmup_stamp

    if compilation_cache_dir() is None:
        typer.echo("the compilation cache is turned off: nothing to fill")
        return

    def label(n_draws: int, n_tune: int | None, m: str) -> str:
        tuned = "default" if n_tune is None else str(n_tune)
        return f"MARVEL fit, 2 chains x ({tuned} tune + {n_draws} draws), measurement {m}"

    todo = []
    for m in routes:
        for n_draws, n_tune in zip(draws, tunes):
            stamp = warmup_stamp(n_draws, n_tune, m)
            if if_missing and stamp is not None and stamp.is_file():
                typer.echo(f"cached already: {label(n_draws, n_tune, m)} in {stamp.parent}")
            else:
                todo.append((n_draws, n_tune, m, stamp))
    if not todo:
        return
    d = shipped_path("data", "synthetic")
    graph = vb.load_graph("marvel")
    survey = vb.read_survey(d / "veerkracht_synthetic.csv.gz", d / "codebook_synthetic.yaml", graph=graph)
    for n_draws, n_tune, m, stamp in todo:
        t0 = time.perf_counter()
        # the README's call (measurement "auto") or the demo's (continuous), tune as the user's
        # call leaves it: the compiled chains depend on the route, draws and tuning steps
        f = vb.fit(graph, survey, priors="marvel", draws=n_draws, tune=n_tune, progress=False, measurement=m)
        used = getattr(getattr(f.result, "idata", None), "attrs", {}).get("measurement_resolved", m)
        if stamp is not None:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(f"veerkracht-bayes warmup: {label(n_draws, n_tune, m)} (route {used})\n")
        typer.echo(f"compiled: {label(n_draws, n_tune, m)} (route {used}) in {time.perf_counter() - t0:.1f} s")
