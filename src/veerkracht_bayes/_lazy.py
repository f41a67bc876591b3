"""Lazy public namespaces for the subpackages.

Each subpackage (``veerkracht_bayes.graph``, ``.causal``, ...) exposes the public names of its
modules, as listed in their ``__all__``, without importing those modules until a name is used
(so ``import veerkracht_bayes.causal`` stays cheap and imports no PyMC or JAX by itself). The
table is read from the modules' source with :mod:`ast`, so a new module's names appear without
editing the subpackage's ``__init__``.

Examples
--------
>>> import veerkracht_bayes.graph as g
>>> "load_graph" in dir(g)
True
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach"]


#: A module-level ``__all__`` assignment (at the start of a line, so not one inside a function).
_ALL = re.compile(r"^__all__\s*(?::[^=\n]*)?=", re.MULTILINE)


def _all_assignments(source: str) -> list[list[str]]:
    """The values of the module-level ``__all__ = [...]`` assignments of ``source``.

    Only each assignment's own lines are parsed (a line at a time until the statement is
    complete), not the module: parsing every module of a subpackage took 0.13 s for ``sem``.
    """
    out: list[list[str]] = []
    for match in _ALL.finditer(source):
        lines = source[match.start():].splitlines(keepends=True)
        for end in range(1, len(lines) + 1):
            try:
                tree = ast.parse("".join(lines[:end]))
            except SyntaxError:
                continue
            node = tree.body[0]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                try:
                    out.append([str(n) for n in ast.literal_eval(node.value)])
                except ValueError:
                    pass
            break
    return out


def _public_names(folder: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:  # pragma: no cover - an unreadable module fails when imported
            continue
        for names in _all_assignments(source):
            for name in names:
                table.setdefault(name, path.stem)
    return table


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for a subpackage's ``__init__``.

    Parameters
    ----------
    package
        The subpackage's ``__name__``.
    init_file
        Its ``__file__``.

    Returns
    -------
    tuple
        Module-level ``__getattr__`` and ``__dir__`` functions and the ``__all__`` list.

    Examples
    --------
    >>> getattr_, dir_, all_ = attach("veerkracht_bayes.graph", __import__("veerkracht_bayes.graph").graph.__file__)
    >>> getattr_("load_graph").__name__
    'load_graph'
    """
    table = _public_names(Path(init_file).parent)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__, sorted(table)
