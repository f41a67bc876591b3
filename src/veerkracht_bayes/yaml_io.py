"""Safe YAML reading with line numbers and protection against alias bombs.

YAML is read with the safe loader only (no Python object tags): :class:`yaml.CSafeLoader`, the
same safe constructor on libyaml's parser (about ten times faster), where PyYAML was built with
it, else :class:`yaml.SafeLoader`. A document libyaml refuses is parsed again by the pure-Python
loader, so error messages (and the line numbers they give) are the same either way. Before
the document is constructed its node graph is composed and the size it would
have with every alias expanded is computed (memoised, linear in the number of
distinct nodes); documents that would expand beyond :data:`MAX_EXPANDED_NODES`
are refused without ever being expanded ("billion laughs").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from veerkracht_bayes.errors import Problem, VeerkrachtError

__all__ = ["MAX_EXPANDED_NODES", "YamlDocument", "read_text_utf8", "load_yaml"]

#: The safe loader on libyaml's parser where available (same constructor and resolver as SafeLoader).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Largest number of YAML nodes a document may expand to (aliases counted in full).
MAX_EXPANDED_NODES = 1_000_000


def read_text_utf8(path: str | Path, error_cls: type[VeerkrachtError] = VeerkrachtError) -> str:
    """Read a text file as strict UTF-8 (a BOM is allowed), with a located error.

    Raises
    ------
    VeerkrachtError
        If the file is missing or is not valid UTF-8 (names the line and byte).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import marvel_path
    >>> "nodes:" in read_text_utf8(marvel_path())
    True
    """
    p = Path(path)
    if not p.exists():
        raise error_cls(Problem("file not found (expected an existing file)", file=str(p)))
    if p.is_dir():
        raise error_cls(Problem("is a directory (expected a file)", file=str(p)))
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error_cls(
            Problem(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                "(expected a UTF-8 encoded text file; re-save it as UTF-8)",
                file=str(p),
                line=line,
            )
        ) from None


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive structures
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, memo, limit)
            if total > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
            if total > limit:
                break
    memo[key] = total
    return total


def _duplicate_key(node: yaml.Node, seen: set[int]) -> tuple[str, int, int] | None:
    """First repeated scalar key of any mapping: ``(key, first line, repeated line)``."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, yaml.MappingNode):
            lines: dict[str, int] = {}
            for k, v in cur.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in lines:
                        return k.value, lines[k.value], k.start_mark.line + 1
                    lines[k.value] = k.start_mark.line + 1
                stack += [k, v]
        elif isinstance(cur, yaml.SequenceNode):
            stack += cur.value
    return None


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document that can map a data path back to a line number.

    Examples
    --------
    >>> doc = load_yaml(text="{a: 1, b: {c: 2}}")
    >>> isinstance(doc, YamlDocument), doc.data
    (True, {'a': 1, 'b': {'c': 2}})
    """

    data: Any
    root: yaml.Node | None
    path: str | None

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Return the 1-based line of the node at ``loc`` (deepest existing prefix)."""
        node = self.root
        line = None if node is None else node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        nxt = v
                        line = k.start_mark.line + 1
                        break
                if nxt is None:
                    return line
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def load_yaml(
    path: str | Path | None = None,
    *,
    text: str | None = None,
    error_cls: type[VeerkrachtError] = VeerkrachtError,
    max_nodes: int = MAX_EXPANDED_NODES,
) -> YamlDocument:
    """Load one YAML document safely.

    Parameters
    ----------
    path
        File to read (strict UTF-8). Either ``path`` or ``text`` must be given.
    text
        YAML text, used instead of reading ``path`` (``path`` still labels errors).
    error_cls
        Exception class raised for problems.
    max_nodes
        Refuse documents whose alias-expanded size exceeds this many nodes.

    Returns
    -------
    YamlDocument
        The data plus a locator from data paths to line numbers.

    Examples
    --------
    >>> doc = load_yaml(text="{name: marvel, edges: [{source: a, target: b}]}")
    >>> doc.data["edges"][0]["target"]
    'b'
    """
    label = None if path is None else str(path)
    if text is None:
        if path is None:
            raise TypeError("load_yaml needs a path or text")
        text = read_text_utf8(path, error_cls)
    loader: type = _SAFE_LOADER
    try:
        try:
            root = yaml.compose(text, Loader=loader)
        except yaml.YAMLError:  # the pure-Python parser's message (and verdict) is the one we give
            loader = yaml.SafeLoader
            root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at column {mark.column + 1}" if mark is not None else ""
        hint = ""
        if "sequence entries are not allowed" in problem:
            hint = "; a bare '-' starts a list item: quote it (\"-\") if you meant a minus sign"
        raise error_cls(
            Problem(f"malformed YAML{where}: {problem} (expected valid YAML syntax{hint})",
                    file=label, line=line)
        ) from None
    if root is None:
        raise error_cls(Problem("empty document (expected a YAML mapping)", file=label, line=1))
    size = _expanded_size(root, {}, max_nodes)
    if size > max_nodes:
        raise error_cls(
            Problem(
                f"refused: YAML aliases would expand to more than {max_nodes:,} nodes "
                "(an alias bomb?); expected a plain document without deeply nested anchors",
                file=label,
                line=root.start_mark.line + 1,
            )
        )
    dup = _duplicate_key(root, set())
    if dup is not None:
        key, first, again = dup
        raise error_cls(
            Problem(f"duplicate key {key!r} in a mapping (first on line {first}); expected each "
                    "key once (YAML would silently keep only the last value)",
                    file=label, line=again, field=key, value=key)
        )
    try:
        data = yaml.load(text, Loader=loader)  # a safe loader: yaml.safe_load (on libyaml where it parsed)
    except yaml.YAMLError as exc:  # parsed, but not constructible: e.g. a Python object tag
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error_cls(
            Problem(f"malformed YAML: {problem} (expected plain YAML values: mappings, lists, strings, "
                    "numbers, booleans, dates; no Python object tags)",
                    file=label, line=mark.line + 1 if mark is not None else None)
        ) from None
    return YamlDocument(data=data, root=root, path=label)
