"""Exception types and message helpers shared by every stage.

Every error raised for bad user input names *where* (file, line or row, YAML path
or column), *what* (the field and the offending value) and *what was expected*,
and suggests a close match for misspelt names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Problem",
    "VeerkrachtError",
    "SpecError",
    "SurveyError",
    "PriorError",
    "ConfigError",
    "ModelError",
    "IdentificationError",
    "InterventionError",
    "did_you_mean",
    "format_path",
]


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix for a misspelt name, or ``""``.

    Parameters
    ----------
    value
        The name the user wrote.
    choices
        Valid names.
    n
        Maximum number of suggestions.

    Examples
    --------
    >>> did_you_mean("wellbeeing", ["wellbeing", "stress"])
    " (did you mean 'wellbeing'?)"
    """
    matches = difflib.get_close_matches(str(value), list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    if len(matches) == 1:
        return f" (did you mean '{matches[0]}'?)"
    return " (did you mean " + " or ".join(f"'{m}'" for m in matches) + "?)"


def format_path(loc: Sequence[str | int]) -> str:
    """Format a YAML/JSON location tuple as ``edges[3].sign``.

    Examples
    --------
    >>> format_path(("edges", 3, "sign"))
    'edges[3].sign'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


@dataclass(frozen=True)
class Problem:
    """One validation problem, located precisely.

    Attributes
    ----------
    message
        What is wrong, in words, including what was expected.
    file
        The file the problem was found in, if any.
    line
        1-based line (text files) or row number (tables), if known.
    location
        YAML path (``edges[3].sign``) or column name.
    field
        The offending field or column.
    value
        The offending value (repr-formatted in messages).

    Examples
    --------
    >>> p = Problem("expected a number", file="survey.csv", line=12, field="age", value="twelve")
    >>> str(p)
    'survey.csv:12: expected a number'
    """

    message: str
    file: str | None = None
    line: int | None = None
    location: str | None = None
    field: str | None = None
    value: object = None

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file) + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.location:
            where.append(self.location)
        prefix = " ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class VeerkrachtError(ValueError):
    """Base class of all input errors raised by veerkracht_bayes.

    Parameters
    ----------
    problems
        One or more located problems; a plain string is accepted for a single one.

    Examples
    --------
    >>> err = VeerkrachtError([Problem("first", field="a"), Problem("second", field="b")])
    >>> len(err.problems)
    2
    >>> isinstance(SurveyError("bad row"), VeerkrachtError)
    True
    """

    def __init__(self, problems: str | Problem | Sequence[Problem]) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems found:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class SpecError(VeerkrachtError):
    """A graph specification (YAML or lavaan syntax) is invalid.

    Examples
    --------
    >>> try:
    ...     raise SpecError(Problem("unknown sign '?'", file="graph.yaml", location="edges[3].sign"))
    ... except VeerkrachtError as e:
    ...     print(e)
    graph.yaml edges[3].sign: unknown sign '?'
    """


class SurveyError(VeerkrachtError):
    """A survey file or its codebook is invalid.

    Examples
    --------
    >>> print(SurveyError(Problem("weight is negative", file="survey.csv", line=6, field="weight", value=-1.0)))
    survey.csv:6: weight is negative
    """


class PriorError(VeerkrachtError):
    """A priors file is invalid or inconsistent with the graph.

    Examples
    --------
    >>> print(PriorError(Problem("sd must be positive", field="edges.L1.sd", value=0)))
    sd must be positive
    """


class ConfigError(VeerkrachtError):
    """A run configuration or policy file is invalid.

    Examples
    --------
    >>> print(ConfigError("draws must be at least 100"))
    draws must be at least 100
    """


class ModelError(VeerkrachtError):
    """A model cannot be built from the given inputs.

    Examples
    --------
    >>> print(ModelError("the priors put most mass on unstable cycles"))
    the priors put most mass on unstable cycles
    """


class IdentificationError(ModelError):
    """A model is not identified from the data and the priors given.

    Examples
    --------
    >>> issubclass(IdentificationError, ModelError)
    True
    """


class InterventionError(VeerkrachtError):
    """An intervention or query is invalid.

    Examples
    --------
    >>> print(InterventionError(Problem("unknown node 'social_netwrok'", field="node")))
    unknown node 'social_netwrok'
    """


def path_str(path: str | Path | None) -> str | None:
    """Return ``str(path)`` or ``None``."""
    return None if path is None else str(path)
