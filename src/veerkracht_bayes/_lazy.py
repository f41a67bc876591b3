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
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach"]


def _public_names(folder: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):  # pragma: no cover - a broken module fails when imported
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                    for t in node.targets):
                try:
                    names = ast.literal_eval(node.value)
                except ValueError:
                    continue
                for name in names:
                    table.setdefault(str(name), path.stem)
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
