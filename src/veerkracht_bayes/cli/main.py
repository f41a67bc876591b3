"""Command-line interface ``veerkracht-bayes`` (typer).

Results go to stdout; diagnostics go through :mod:`logging` to stderr (``--quiet``
shows errors only, ``--verbose`` shows debug messages). Input errors
(:class:`~veerkracht_bayes.errors.VeerkrachtError`) print their located message to
stderr and exit with code 2, never with a traceback.

Commands::

    veerkracht-bayes graph info   [--graph marvel|FILE] [--json]
    veerkracht-bayes graph loops  [--graph marvel|FILE] [--named] [--json]
    veerkracht-bayes graph draw   [--graph marvel|FILE] --out FILE [--highlight L1,L3]
    veerkracht-bayes validate     --graph FILE
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from veerkracht_bayes.errors import ConfigError, VeerkrachtError

__all__ = ["app", "graph_app", "EXIT_INPUT_ERROR"]

from veerkracht_bayes.cli.app import (EXIT_INPUT_ERROR, GraphOption, JsonOption, app, graph_app,  # noqa: F401
                                      handle_errors, logger)


def _load(graph: str):  # -> CausalGraph
    from veerkracht_bayes.graph.causal_graph import load_graph

    logger.debug("loading graph %s", graph)
    return load_graph(graph)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _console():
    from rich.console import Console

    return Console(soft_wrap=False)


# ---------------------------------------------------------------------------- graph info
@graph_app.command("info")
@handle_errors
def graph_info(graph: GraphOption = "marvel", as_json: JsonOption = False) -> None:
    """Counts and lists of nodes, edges, named loops, and the number of simple cycles."""
    g = _load(graph)
    info = g.info()
    checks = {c.id: c for c in g.check_loops()}
    for lp in info["loops"]:  # type: ignore[union-attr]
        c = checks[lp["id"]]
        lp["found"] = c.found
    if as_json:
        _echo_json(info)
        return
    from rich.table import Table

    con = _console()
    t = Table(title=f"graph {g.name}", show_header=False)
    for k in ("n_nodes", "n_edges", "n_inferred_edges", "n_named_loops", "n_simple_cycles",
              "n_reinforcing_cycles", "n_balancing_cycles"):
        t.add_row(k.removeprefix("n_").replace("_", " "), str(info[k]))
    con.print(t)
    nt = Table(title="nodes")
    for col in ("id", "label (en)", "label (nl)", "resource", "role"):
        nt.add_column(col)
    for n in info["nodes"]:  # type: ignore[union-attr]
        nt.add_row(n["id"], n["label_en"], n["label_nl"], n["resource"], n["role"])
    con.print(nt)
    et = Table(title="edges")
    for col in ("source", "target", "sign", "delay", "inferred"):
        et.add_column(col)
    for e in info["edges"]:  # type: ignore[union-attr]
        et.add_row(e["source"], e["target"], e["sign"], e["delay"], "yes" if e["inferred"] else "")
    con.print(et)
    _print_named_loops(g, con)


# ---------------------------------------------------------------------------- graph loops
def named_loop_records(g: Any) -> list[dict[str, Any]]:
    """JSON records of the named loops: id, title, nodes, polarity, stated polarity, found."""
    out = []
    for c in g.check_loops():
        out.append({"id": c.id, "title": c.title, "nodes": list(c.nodes),
                    "length": len(c.nodes), "polarity": c.polarity or c.stated_polarity,
                    "stated_polarity": c.stated_polarity, "found": c.found, "ok": c.ok,
                    "message": c.message})
    return out


def cycle_records(g: Any) -> list[dict[str, Any]]:
    """JSON records of all simple cycles (ids C1, C2, ... in length order)."""
    named = {}
    for lp in g.loops:
        i = min(range(len(lp.nodes)), key=lambda k: lp.nodes[k])
        named.setdefault(tuple(lp.nodes[i:]) + tuple(lp.nodes[:i]), []).append(lp.id)
    return [{"id": f"C{i}", "nodes": list(c.nodes), "length": c.length, "polarity": c.polarity,
             "signs": list(c.signs), "found": True, "named": named.get(c.nodes, [])}
            for i, c in enumerate(g.simple_cycles(), start=1)]


def _print_named_loops(g: Any, con: Any) -> None:
    from rich.table import Table

    t = Table(title="named loops")
    for col in ("id", "title", "cycle", "stated", "found", "polarity"):
        t.add_column(col)
    for r in named_loop_records(g):
        t.add_row(r["id"], r["title"], " -> ".join(r["nodes"]), r["stated_polarity"],
                  "yes" if r["found"] else "NO", r["polarity"] if r["found"] else "-")
    con.print(t)


@graph_app.command("loops")
@handle_errors
def graph_loops(
    graph: GraphOption = "marvel",
    named: Annotated[bool, typer.Option("--named", help="Only the named loops of the spec.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Feedback loops: the named loops (--named) or all simple directed cycles."""
    g = _load(graph)
    if named:
        records = named_loop_records(g)
        if as_json:
            _echo_json(records)
        else:
            _print_named_loops(g, _console())
        return
    records = cycle_records(g)
    if as_json:
        _echo_json(records)
        return
    from rich.table import Table

    t = Table(title=f"{len(records)} simple cycles of {g.name}")
    for col in ("id", "length", "polarity", "cycle", "named"):
        t.add_column(col)
    for r in records:
        t.add_row(r["id"], str(r["length"]), r["polarity"], " -> ".join(r["nodes"]),
                  ", ".join(r["named"]))
    _console().print(t)


# ---------------------------------------------------------------------------- graph draw
@graph_app.command("draw")
@handle_errors
def graph_draw(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.svg, .png or .pdf).")],
    graph: GraphOption = "marvel",
    highlight: Annotated[str, typer.Option(
        "--highlight", help="Comma-separated named-loop ids to highlight (e.g. L1,L3), or 'all'.")
    ] = "",
    engine: Annotated[str, typer.Option(help="Graphviz layout engine.")] = "dot",
) -> None:
    """Draw the diagram (graphviz; matplotlib when the dot program is missing)."""
    from veerkracht_bayes.graph.drawing import draw_graph
    from veerkracht_bayes.errors import Problem

    g = _load(graph)
    loops = [s.strip() for s in highlight.split(",") if s.strip()]
    if loops == ["all"]:
        loops = [lp.id for lp in g.loops]
    try:
        draw_graph(g, highlight_loops=loops, out=out, engine=engine)
    except OSError as exc:
        raise ConfigError(Problem(f"cannot write the drawing: {exc.strerror or exc} "
                                  "(expected a writable path)", file=str(out), field="out")) from None
    typer.echo(f"wrote {out}")


# ---------------------------------------------------------------------------- validate
def _validate_graph(graph: str, as_json: bool = False) -> list[str]:
    """Validate a graph file; return summary lines (raises VeerkrachtError when invalid).

    With ``as_json`` the one line is a JSON object (``valid``, ``graph``, the counts and the
    named loops found with their stated polarity).
    """
    g = _load(graph)
    info = g.info()
    checks = g.check_loops()
    if as_json:
        keys = ("n_nodes", "n_edges", "n_inferred_edges", "n_simple_cycles")
        return [json.dumps({"valid": True, "graph": graph, **{k: info[k] for k in keys},
                            "named_loops": [{"id": c.id, "polarity": c.polarity, "found": c.ok}
                                            for c in checks]}, ensure_ascii=False)]
    lines = [f"graph {graph}: valid ({info['n_nodes']} nodes, {info['n_edges']} edges "
             f"({info['n_inferred_edges']} inferred), {info['n_simple_cycles']} simple cycles)"]
    if checks:
        ok = sum(c.ok for c in checks)
        lines.append(f"  named loops: {ok} of {len(checks)} found with their stated polarity "
                     f"({', '.join(f'{c.id} {c.polarity}' for c in checks)})")
    return lines


@app.command("validate")
@handle_errors
def validate(
    graph: Annotated[str | None, typer.Option(
        "--graph", "-g", help="Graph to validate: 'marvel', a YAML graph file or lavaan syntax.")
    ] = None,
    survey: Annotated[str | None, typer.Option(
        "--survey", help="Survey file (CSV, CSV.gz, Parquet, SPSS .sav, Stata .dta).")] = None,
    codebook: Annotated[str | None, typer.Option(
        "--codebook", help="Codebook YAML mapping the survey's columns onto graph nodes.")] = None,
    out_of_range: Annotated[str, typer.Option(
        "--out-of-range", help="'error' (default) or 'missing': out-of-range values become missing "
        "and are counted.")] = "error",
    as_json: JsonOption = False,
) -> None:
    """Validate input files; exit 0 with a summary when valid, 2 with located errors if not."""
    # Each input adds one check; checks run independently and all errors are reported.
    checks: list[tuple[str, Callable[[], list[str]]]] = []
    if graph is not None and survey is None:
        checks.append(("graph", functools.partial(_validate_graph, graph, as_json)))
    if (survey is None) != (codebook is None):
        raise VeerkrachtError("--survey and --codebook must be given together "
                              "(expected both a survey file and its codebook)")
    if survey is not None and codebook is not None:
        checks.append(("survey", functools.partial(
            _validate_survey, survey, codebook, graph or "marvel", out_of_range, as_json)))
    if not checks:
        raise VeerkrachtError("nothing to validate: give --graph FILE (or 'marvel'), or "
                              "--survey FILE --codebook FILE")
    _run_checks(checks)


def _validate_survey(survey: str, codebook: str, graph: str, out_of_range: str,
                     as_json: bool) -> list[str]:
    """Validate a survey against its codebook and graph; the report goes to stdout."""
    from veerkracht_bayes.survey.reading import read_survey

    if out_of_range not in ("error", "missing"):
        raise VeerkrachtError(f"--out-of-range must be 'error' or 'missing', got {out_of_range!r}")
    s = read_survey(survey, codebook, graph=_load(graph), out_of_range=out_of_range)  # type: ignore[arg-type]
    if as_json:
        _echo_json(s.report.to_dict())
        return []
    return [s.report.to_text()]


def simulate_main(n: int, seed: int, out: str, overwrite: bool = True, heterogeneity: str | None = None) -> int:
    """``veerkracht-bayes simulate``: write a
    synthetic survey and list the files; returns the exit code (2 on a bad setting, or a
    non-empty output folder without ``overwrite``). ``heterogeneity``: a YAML file
    ``{group: COVARIATE, links: {source->target: deviation}}`` (links that differ for the group's
    members; :func:`veerkracht_bayes.datasets.synthetic.heterogeneity_truth`)."""
    from veerkracht_bayes.datasets.synthetic import write_synthetic

    target = Path(out)
    if not overwrite and target.is_dir() and any(target.iterdir()):
        print(f"error: output folder {str(target)!r} is not empty; add --overwrite to replace its files",
              file=sys.stderr)
        return 2
    try:
        het = None
        if heterogeneity is not None:
            from veerkracht_bayes.yaml_io import load_yaml

            het = load_yaml(heterogeneity, error_cls=ConfigError).data
        files = write_synthetic(out, n=n, seed=seed, heterogeneity=het)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


@app.command("simulate")
@handle_errors
def simulate(
    n: Annotated[int, typer.Option("--n", help="Number of respondents.")] = 20000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 2023,
    out: Annotated[str, typer.Option("--out", help="Output folder.")] = "synthetic_out",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files in a non-empty output folder.")] = False,
    heterogeneity: Annotated[str | None, typer.Option(
        "--heterogeneity", help="YAML file {group: COVARIATE, links: {source->target: deviation}}: links that "
        "differ for the group's members; the truth is written to heterogeneity_truth.yaml.")] = None,
) -> None:
    """Draw a SYNTHETIC survey (data, codebook, true parameters) from the MARVEL model."""
    code = simulate_main(n=n, seed=seed, out=out, overwrite=overwrite, heterogeneity=heterogeneity)
    if code:
        raise typer.Exit(code)


@app.command("policies")
@handle_errors
def policies(
    as_json: JsonOption = False,
    path: Annotated[str | None, typer.Option("--policies", help="Policy YAML (default: shipped).")] = None,
) -> None:
    """List the policy recommendations: target groups, exposure levers, coverage, effect priors."""
    code = policies_main(as_json=as_json, path=path)
    if code:
        raise typer.Exit(code)


def _run_checks(checks: list[tuple[str, Callable[[], list[str]]]]) -> None:
    errors: list[VeerkrachtError] = []
    for name, check in checks:
        try:
            for line in check():
                typer.echo(line)
        except VeerkrachtError as exc:
            logger.debug("%s check failed", name)
            errors.append(exc)
    if errors:
        for exc in errors:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INPUT_ERROR)


def policies_main(as_json: bool = False, path: str | Path | None = None) -> int:
    """Print the policies (``veerkracht-bayes policies [--json]``); returns the exit code."""
    from veerkracht_bayes.causal.policies import format_policies, load_policies

    typer.echo(format_policies(load_policies(path), as_json=as_json))
    return 0


def validate_survey_main(survey: str, codebook: str, graph: str = "marvel", out_of_range: str = "error",
                         as_json: bool = False) -> int:
    """Validate a survey against its codebook and print the report; 0 when valid.

    Raises
    ------
    SurveyError
        When it is not (the message lists every problem).
    """
    for line in _validate_survey(survey, codebook, graph, out_of_range, as_json):
        typer.echo(line)
    return 0


def main() -> None:
    """Entry point: run the CLI app."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
