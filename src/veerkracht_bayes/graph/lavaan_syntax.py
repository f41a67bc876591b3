"""lavaan model syntax: parser, writer and conversion to and from :class:`CausalGraph`.

The parser reads the lavaan model syntax (Rosseel 2012, ``?model.syntax`` in R) into a
list of :class:`LavaanRow` objects, one per parameter statement, like lavaan's
parameter table before defaults are added:

======  ===============================  ==========================================
op      written as                       meaning
======  ===============================  ==========================================
``=~``  ``f =~ x1 + x2 + x3``            latent ``f`` is measured by ``x1..x3``
``~``   ``y ~ x1 + x2``                  regression of ``y`` on ``x1`` and ``x2``
``~~``  ``x1 ~~ x2``                     (residual) (co)variance
``~1``  ``y ~ 1``                        intercept of ``y`` (``rhs`` is ``""``)
``:=``  ``ab := a*b``                    defined parameter (``rhs`` is the expression)
``<``   ``b1 < 0``                       inequality constraint (``lhs``/``rhs`` are
``>``   ``b1 > 0``                       expressions)
``==``  ``a1 == a2``                     equality constraint
======  ===============================  ==========================================

Modifiers are written in front of a right-hand-side variable and joined with ``*``:
a number fixes the parameter (``1*x``, ``-0.5*x``), ``NA*x`` frees it (overriding
lavaan's marker-loading default), a name labels it (``a*x``), ``start(0.3)*x`` or
``0.3?x`` gives a start value, ``label("a")*x`` labels it explicitly. Modifiers can be
chained (``NA*start(1)*a*x``). Comments start with ``#`` or ``!``; statements are
separated by newlines or ``;`` and continue onto the next line when a line ends in
``+``, ``*`` or an operator, when the next line starts with ``+``, ``*`` or an
operator, or while a parenthesis is open. ``y1 + y2 ~ x`` expands to one row per
left-hand side. Multi-group modifiers (``c(a, b)*x``), ``equal()``, formative
indicators ``<~``, thresholds ``|`` and blocks (``group:``) are not supported and
give a located error.

Graph conversion
----------------
:func:`graph_to_lavaan` writes one ``~`` line per edge target, each edge labelled
``b_<source>__<target>``, followed by one inequality constraint per edge that carries
its sign (``b_stress__wellbeing < 0``), plus ``=~`` lines for the graph's measurement
part. :func:`graph_from_lavaan` reads such syntax (or any lavaan model) back: edges
from ``~`` rows, signs from ``<``/``>`` constraints against a number (or from a
non-zero fixed value); an edge whose sign is not given becomes ``+`` with
``inferred: true`` and evidence saying so.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from veerkracht_bayes.errors import Problem, SpecError, did_you_mean
from veerkracht_bayes.yaml_io import read_text_utf8

if TYPE_CHECKING:  # pragma: no cover
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.graph.spec import GraphSpec

__all__ = [
    "OPERATORS",
    "LavaanRow",
    "LavaanModel",
    "parse_lavaan",
    "read_lavaan",
    "to_lavaan",
    "edge_label",
    "graph_to_lavaan",
    "spec_from_lavaan",
    ]

logger = logging.getLogger(__name__)

#: Operators a row can have.
OPERATORS = ("=~", "~", "~~", "~1", ":=", "<", ">", "==")
_PARAM_OPS = ("=~", "~", "~~")
_CONSTRAINT_OPS = ("<", ">", "==")
_UNSUPPORTED_OPS = {
    "<~": "formative indicators ('<~') are not supported",
    "~*~": "scaling factors ('~*~') are not supported",
    "|": "thresholds ('|') are not supported",
    "<=": "'<=' is not lavaan syntax (lavaan's '<' already means 'at most')",
    ">=": "'>=' is not lavaan syntax (lavaan's '>' already means 'at least')",
    "%": "'%' is not lavaan syntax",
}
_EXPECT_OP = "one of the operators =~, ~, ~~, :=, ==, <, >"
_NAME_RE = re.compile(r"^[A-Za-z.][A-Za-z0-9_.]*$")
_RESERVED = {"NA"}


# ---------------------------------------------------------------------------- rows / model
@dataclass(frozen=True)
class LavaanRow:
    """One parameter statement of a lavaan model.

    Attributes
    ----------
    lhs, op, rhs
        Left side, operator (one of :data:`OPERATORS`) and right side. For ``~1``
        ``rhs`` is ``""``; for ``:=`` and constraints ``rhs`` (and for constraints
        ``lhs``) is an expression in canonical spacing.
    fixed
        Fixed value (``1*x``), or ``None`` when free.
    label
        Parameter label (``a*x`` or ``label("a")*x``), or ``None``.
    start
        Start value (``start(0.3)*x`` or ``0.3?x``), or ``None``.
    line
        1-based line of the statement in the source (not part of equality).
    freed
        True when written ``NA*x``: explicitly free, overriding lavaan's default of
        fixing the first loading of each latent to 1.

    Examples
    --------
    >>> LavaanRow("y", "~", "x")
    LavaanRow(lhs='y', op='~', rhs='x', fixed=None, label=None, start=None, line=0, freed=False)
    """

    lhs: str
    op: str
    rhs: str
    fixed: float | None = None
    label: str | None = None
    start: float | None = None
    line: int = field(default=0, compare=False)
    freed: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """``(lhs, op, rhs)``."""
        return (self.lhs, self.op, self.rhs)

    def term(self) -> str:
        """The right-hand-side term with its modifiers, e.g. ``start(0.3)*a*x``."""
        mods = []
        if self.freed:
            mods.append("NA")
        if self.fixed is not None:
            mods.append(_fmt_num(self.fixed))
        if self.start is not None:
            mods.append(f"start({_fmt_num(self.start)})")
        if self.label is not None:
            plain = _NAME_RE.match(self.label) and self.label not in _RESERVED
            mods.append(self.label if plain else f'label("{self.label}")')
        var = "1" if self.op == "~1" else self.rhs
        return "*".join([*mods, var])


@dataclass(frozen=True)
class LavaanModel:
    """A parsed lavaan model: its rows plus helpers an SEM engine needs.

    Attributes
    ----------
    rows
        Parameter statements in source order.
    path
        Source file, if any (used in messages).

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> m = parse_lavaan("y ~ x")
    >>> isinstance(m, LavaanModel), len(m.rows)
    (True, 1)
    """

    rows: tuple[LavaanRow, ...]
    path: str | None = None

    def __iter__(self) -> Iterator[LavaanRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, op: str) -> list[LavaanRow]:
        """Rows with operator ``op``."""
        return [r for r in self.rows if r.op == op]

    def measurement(self) -> list[LavaanRow]:
        """``=~`` rows."""
        return self.where("=~")

    def regressions(self) -> list[LavaanRow]:
        """``~`` rows."""
        return self.where("~")

    def covariances(self) -> list[LavaanRow]:
        """``~~`` rows (variances have ``lhs == rhs``)."""
        return self.where("~~")

    def intercepts(self) -> list[LavaanRow]:
        """``~1`` rows."""
        return self.where("~1")

    def definitions(self) -> list[LavaanRow]:
        """``:=`` rows."""
        return self.where(":=")

    def constraints(self) -> list[LavaanRow]:
        """``<``, ``>`` and ``==`` rows."""
        return [r for r in self.rows if r.op in _CONSTRAINT_OPS]

    def latent_variables(self) -> list[str]:
        """Latent variables (left-hand sides of ``=~``), in order of appearance."""
        return _unique(r.lhs for r in self.measurement())

    def indicators(self) -> dict[str, list[str]]:
        """Latent variable -> its indicators, in order of appearance."""
        out: dict[str, list[str]] = {}
        for r in self.measurement():
            out.setdefault(r.lhs, []).append(r.rhs)
        return out

    def variables(self) -> list[str]:
        """All variables (latent and observed) named in ``=~ ~ ~~ ~1`` rows, in order."""
        names: list[str] = []
        for r in self.rows:
            if r.op in _PARAM_OPS:
                names += [r.lhs, r.rhs]
            elif r.op == "~1":
                names.append(r.lhs)
        return _unique(names)

    def observed_variables(self) -> list[str]:
        """Variables that are not latent (must be data columns), in order."""
        lat = set(self.latent_variables())
        return [v for v in self.variables() if v not in lat]

    def endogenous(self) -> list[str]:
        """Variables on the left of ``~`` (regressed on something)."""
        return _unique(r.lhs for r in self.regressions())

    def exogenous_observed(self) -> list[str]:
        """Observed variables that are neither regressed nor indicators (lavaan's ``ov.x``)."""
        dep = set(self.endogenous()) | {r.rhs for r in self.measurement()}
        return [v for v in self.observed_variables() if v not in dep]

    def fixed_values(self) -> dict[tuple[str, str, str], float]:
        """``(lhs, op, rhs)`` -> fixed value, for every fixed parameter."""
        return {r.key: r.fixed for r in self.rows if r.fixed is not None}

    def labels(self) -> dict[str, list[LavaanRow]]:
        """Label -> rows carrying it (several rows share a label = equality constraint)."""
        out: dict[str, list[LavaanRow]] = {}
        for r in self.rows:
            if r.label is not None:
                out.setdefault(r.label, []).append(r)
        return out

    def to_lavaan(self) -> str:
        """Render as lavaan syntax (see :func:`to_lavaan`)."""
        return to_lavaan(self)


def _unique(items: Iterator[str] | Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for x in items:
        seen.setdefault(x, None)
    return list(seen)


def _fmt_num(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


# ---------------------------------------------------------------------------- lexer
@dataclass(frozen=True)
class _Tok:
    kind: str  # NAME NUMBER STRING OP PUNCT NL SEMI
    text: str
    line: int
    col: int


_OPS = ["~*~", "=~", "~~", "<~", ":=", "==", "<=", ">=", "~", "<", ">", "|", "%"]
_PUNCT = set("+*()?,-/^")
_NUM_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_CONT_AFTER = {"+", "*", "(", ",", "-", "/", "^", "?"}


class _Parser:
    def __init__(self, text: str, path: str | None) -> None:
        self.text = text
        self.path = path
        self.lines = text.splitlines()
        self.refs: list[tuple[int, list[_Tok]]] = []

    # -- errors
    def error(self, line: int, col: int, message: str) -> SpecError:
        src = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        shown = f" in {src!r}" if src else ""
        return SpecError(Problem(f"lavaan syntax, column {col}: {message}{shown}",
                                 file=self.path, line=line))

    # -- lexing
    def lex(self) -> list[_Tok]:
        toks: list[_Tok] = []
        for ln, raw in enumerate(self.text.splitlines(), start=1):
            i, n = 0, len(raw)
            while i < n:
                ch = raw[i]
                if ch in " \t\r\f\v":
                    i += 1
                    continue
                if ch in "#!":
                    break
                col = i + 1
                if ch == ";":
                    toks.append(_Tok("SEMI", ";", ln, col))
                    i += 1
                    continue
                if ch in "\"'":
                    j = raw.find(ch, i + 1)
                    if j < 0:
                        raise self.error(ln, col, f"unterminated string starting with {ch}; "
                                                  f"expected a closing {ch} on the same line")
                    toks.append(_Tok("STRING", raw[i + 1:j], ln, col))
                    i = j + 1
                    continue
                m = _NUM_RE.match(raw, i)
                if m and not (ch == "." and _IDENT_RE.match(raw, i).end() > m.end()):
                    toks.append(_Tok("NUMBER", m.group(), ln, col))
                    i = m.end()
                    continue
                m = _IDENT_RE.match(raw, i)
                if m:
                    toks.append(_Tok("NAME", m.group(), ln, col))
                    i = m.end()
                    continue
                op = next((o for o in _OPS if raw.startswith(o, i)), None)
                if op is not None:
                    toks.append(_Tok("OP", op, ln, col))
                    i += len(op)
                    continue
                if ch in _PUNCT:
                    toks.append(_Tok("PUNCT", ch, ln, col))
                    i += 1
                    continue
                if ch == ":":
                    raise self.error(ln, col, "blocks ('group:', 'level:') are not supported; "
                                              "expected a single-group, single-level model "
                                              "(or ':=' for a defined parameter)")
                hint = " (did you mean '=~' or '=='?)" if ch == "=" else ""
                raise self.error(ln, col, f"unexpected character {ch!r}{hint}; expected a "
                                          f"variable name, a number, '+', '*' or {_EXPECT_OP}")
            toks.append(_Tok("NL", "\n", ln, len(raw) + 1))
        return toks

    # -- statements
    def statements(self, toks: list[_Tok]) -> list[list[_Tok]]:
        out: list[list[_Tok]] = []
        cur: list[_Tok] = []
        depth = 0
        for k, t in enumerate(toks):
            if t.kind == "SEMI":
                if cur:
                    out.append(cur)
                cur, depth = [], 0
                continue
            if t.kind == "NL":
                if not cur:
                    continue
                last = cur[-1]
                if depth > 0 or last.kind == "OP" or (last.kind == "PUNCT" and last.text in _CONT_AFTER):
                    continue
                nxt = next((u for u in toks[k + 1:] if u.kind != "NL"), None)
                if nxt is not None and (nxt.kind == "OP" or (nxt.kind == "PUNCT" and nxt.text in "+*")):
                    continue
                out.append(cur)
                cur, depth = [], 0
                continue
            if t.kind == "PUNCT" and t.text == "(":
                depth += 1
            elif t.kind == "PUNCT" and t.text == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(t.line, t.col, "unmatched ')'; expected it after a '('")
            cur.append(t)
        if cur:
            out.append(cur)
        return out

    # -- parsing
    def parse(self) -> list[LavaanRow]:
        rows: list[LavaanRow] = []
        for stmt in self.statements(self.lex()):
            rows += self.statement(stmt)
        self.check(rows)
        return rows

    def _end(self, toks: list[_Tok]) -> tuple[int, int]:
        last = toks[-1]
        return last.line, last.col + len(last.text)

    def statement(self, toks: list[_Tok]) -> list[LavaanRow]:
        depth = 0
        op_at = None
        for k, t in enumerate(toks):
            if t.kind == "PUNCT" and t.text in "()":
                depth += 1 if t.text == "(" else -1
            elif t.kind == "OP" and depth == 0:
                op_at = k
                break
        if op_at is None:
            line, col = self._end(toks)
            raise self.error(line, col, f"incomplete statement; expected {_EXPECT_OP} after "
                                        f"{' '.join(t.text for t in toks)!r}")
        opt = toks[op_at]
        op = opt.text
        if op in _UNSUPPORTED_OPS:
            raise self.error(opt.line, opt.col, f"{_UNSUPPORTED_OPS[op]}; expected {_EXPECT_OP}")
        lhs, rhs = toks[:op_at], toks[op_at + 1:]
        if not lhs:
            raise self.error(opt.line, opt.col, f"nothing before {op!r}; expected a variable "
                                                "name or an expression")
        if not rhs:
            raise self.error(opt.line, opt.col + len(op), f"nothing after {op!r}; expected "
                             + ("an expression" if op in (":=",) + _CONSTRAINT_OPS
                                else "one or more terms joined by '+'"))
        for t in rhs:
            if t.kind == "OP":
                raise self.error(t.line, t.col, f"a second operator {t.text!r} in one statement; "
                                                "expected '+' between terms or a new line "
                                                "between statements")
        line = toks[0].line
        if op in (":=",) + _CONSTRAINT_OPS:
            refs = [t for k, t in enumerate(lhs + rhs) if t.kind == "NAME" and
                    ((lhs + rhs)[k + 1].text != "(" if k + 1 < len(lhs + rhs) else True)]
            if op == ":=":
                refs = refs[1:]
            self.refs.append((line, refs))
        if op == ":=":
            if len(lhs) != 1 or lhs[0].kind != "NAME":
                raise self.error(lhs[0].line, lhs[0].col, "expected a single parameter name "
                                                          "before ':='")
            return [LavaanRow(lhs[0].text, ":=", self.expression(rhs), line=line)]
        if op in _CONSTRAINT_OPS:
            return [LavaanRow(self.expression(lhs), op, self.expression(rhs), line=line)]
        # =~, ~, ~~
        lhs_names = self.lhs_names(lhs, op)
        terms = self.split_plus(rhs, op)
        out = []
        for lname in lhs_names:
            for term in terms:
                out.append(self.term(lname, op, term, line))
        return out

    def lhs_names(self, toks: list[_Tok], op: str) -> list[str]:
        names = []
        expect_name = True
        for t in toks:
            if expect_name:
                if t.kind != "NAME":
                    raise self.error(t.line, t.col, f"unexpected {t.text!r} before {op!r}; "
                                                    "expected a variable name")
                names.append(t.text)
            elif not (t.kind == "PUNCT" and t.text == "+"):
                raise self.error(t.line, t.col, f"unexpected {t.text!r} before {op!r}; expected "
                                                "'+' between variable names or an operator")
            expect_name = not expect_name
        if expect_name:
            last = toks[-1]
            raise self.error(last.line, last.col + 1, f"expected a variable name after '+' "
                                                      f"before {op!r}")
        return names

    def split_plus(self, toks: list[_Tok], op: str) -> list[list[_Tok]]:
        terms: list[list[_Tok]] = [[]]
        depth = 0
        for t in toks:
            if t.kind == "PUNCT" and t.text in "()":
                depth += 1 if t.text == "(" else -1
            if depth == 0 and t.kind == "PUNCT" and t.text == "+":
                if not terms[-1]:
                    raise self.error(t.line, t.col, f"unexpected '+'; expected a term after {op!r} "
                                                    "or '+'")
                terms.append([])
                continue
            terms[-1].append(t)
        if not terms[-1]:
            line, col = self._end(toks)
            raise self.error(line, col, "statement ends with '+'; expected another term")
        return terms

    def term(self, lhs: str, op: str, toks: list[_Tok], line: int) -> LavaanRow:
        fixed = start = label = None
        freed = False
        k = 0
        factors: list[tuple[str, object, _Tok, str]] = []  # (kind, value, tok, joiner)
        while k < len(toks):
            t = toks[k]
            if t.kind == "PUNCT" and t.text == "-" and k + 1 < len(toks) and toks[k + 1].kind == "NUMBER":
                factors.append(("num", -float(toks[k + 1].text), t, ""))
                k += 2
            elif t.kind == "NUMBER":
                factors.append(("num", float(t.text), t, ""))
                k += 1
            elif t.kind == "NAME" and k + 1 < len(toks) and toks[k + 1].text == "(":
                close = self._close(toks, k + 1)
                factors.append(("call", (t.text, toks[k + 2:close]), t, ""))
                k = close + 1
            elif t.kind == "NAME":
                factors.append(("name", t.text, t, ""))
                k += 1
            elif t.kind == "STRING":
                raise self.error(t.line, t.col, f'a bare string "{t.text}"; expected '
                                                f'label("{t.text}")*variable')
            else:
                raise self.error(t.line, t.col, f"unexpected {t.text!r} in the term; expected "
                                                "modifiers and a variable joined by '*'")
            if k < len(toks):
                j = toks[k]
                if j.kind == "PUNCT" and j.text in "*?":
                    kind, val, tok, _ = factors[-1]
                    factors[-1] = (kind, val, tok, j.text)
                    k += 1
                    if k == len(toks):
                        raise self.error(j.line, j.col + 1, f"nothing after {j.text!r}; expected a "
                                                            "variable name")
                else:
                    raise self.error(j.line, j.col, f"unexpected {j.text!r}; expected '*' "
                                                    "between a modifier and the variable, or '+' "
                                                    "between terms")
        *mods, last = factors
        kind, val, tok, _ = last
        if kind == "num" and op == "~" and val == 1.0:
            op_out, rhs = "~1", ""
        elif kind == "name":
            rhs = str(val)
            op_out = op
        else:
            what = "an intercept term '1'" if kind == "num" else "a function call"
            raise self.error(tok.line, tok.col, f"the term ends in {what}; expected a variable "
                             "name" + (" (intercepts '1' only go with '~')" if kind == "num" else ""))

        def once(current: object, what: str, t: _Tok) -> None:
            if current is not None:
                raise self.error(t.line, t.col, f"a second {what} for {rhs or '1'!r}; expected at "
                                                f"most one {what} per term")

        for kind, val, tok, joiner in mods:
            if joiner == "?":
                if kind != "num":
                    raise self.error(tok.line, tok.col, "'?' needs a number before it "
                                                        "(a start value, as in 0.5?x)")
                once(start, "start value", tok)
                start = float(val)  # type: ignore[arg-type]
            elif kind == "num":
                once(fixed, "fixed value", tok)
                if freed:
                    raise self.error(tok.line, tok.col, "both NA (free) and a fixed value; "
                                                        "expected one of them")
                fixed = float(val)  # type: ignore[arg-type]
            elif kind == "name" and val == "NA":
                if fixed is not None:
                    raise self.error(tok.line, tok.col, "both a fixed value and NA (free); "
                                                        "expected one of them")
                freed = True
            elif kind == "name":
                once(label, "label", tok)
                label = str(val)
            else:
                fname, args = val  # type: ignore[misc]
                if fname == "start":
                    once(start, "start value", tok)
                    start = self._number_arg(fname, args, tok)
                elif fname in ("label", "lbl"):
                    once(label, "label", tok)
                    label = self._string_arg(fname, args, tok)
                elif fname == "c":
                    raise self.error(tok.line, tok.col, "multi-group modifiers c(...) are not "
                                     "supported; expected a single modifier")
                else:
                    raise self.error(tok.line, tok.col, f"unknown modifier function {fname!r}"
                                     f"{did_you_mean(fname, ['start', 'label'])}; expected "
                                     "start(number) or label(\"name\")")
        return LavaanRow(lhs, op_out, rhs, fixed=fixed, label=label, start=start, line=line,
                         freed=freed)

    def _close(self, toks: list[_Tok], open_at: int) -> int:
        depth = 0
        for k in range(open_at, len(toks)):
            if toks[k].text == "(":
                depth += 1
            elif toks[k].text == ")":
                depth -= 1
                if depth == 0:
                    return k
        t = toks[open_at]
        raise self.error(t.line, t.col, "unclosed '('; expected a matching ')'")

    def _number_arg(self, fname: str, args: list[_Tok], tok: _Tok) -> float:
        text = "".join(a.text for a in args)
        try:
            return float(text)
        except ValueError:
            raise self.error(tok.line, tok.col, f"{fname}({text}) needs one number; expected e.g. "
                                                f"{fname}(0.5)") from None

    def _string_arg(self, fname: str, args: list[_Tok], tok: _Tok) -> str:
        if len(args) == 1 and args[0].kind in ("STRING", "NAME") and args[0].text:
            return args[0].text
        raise self.error(tok.line, tok.col, f"{fname}(...) needs one name; expected e.g. "
                                            f'{fname}("a")')

    def expression(self, toks: list[_Tok]) -> str:
        out: list[str] = []
        prev: _Tok | None = None
        depth = 0
        for t in toks:
            if t.kind == "STRING":
                raise self.error(t.line, t.col, f"unexpected string \"{t.text}\" in an expression; "
                                                "expected names, numbers and + - * / ^ ( )")
            if t.kind == "PUNCT" and t.text == "?":
                raise self.error(t.line, t.col, "unexpected '?' in an expression")
            if t.text == "(":
                depth += 1
                out.append("(")
            elif t.text == ")":
                depth -= 1
                out.append(")")
            elif t.text == ",":
                out.append(", ")
            elif t.kind == "PUNCT":
                unary = t.text == "-" and (prev is None or prev.kind in ("PUNCT", "OP")
                                           and prev.text != ")")
                out.append("-" if unary else f" {t.text} ")
            else:
                if prev is not None and prev.kind in ("NAME", "NUMBER"):
                    raise self.error(t.line, t.col, f"unexpected {t.text!r} after "
                                                    f"{prev.text!r}; expected an operator "
                                                    "(+ - * / ^) between them")
                out.append(t.text)
            prev = t
        if depth != 0:
            raise self.error(toks[0].line, toks[0].col, "unbalanced parentheses in the expression")
        if prev is not None and prev.kind == "PUNCT" and prev.text not in ")":
            raise self.error(prev.line, prev.col, f"the expression ends in {prev.text!r}; "
                                                  "expected a name or number after it")
        return re.sub(r"\s+", " ", "".join(out)).replace("( ", "(").replace(" )", ")").strip()

    # -- whole-model checks
    def check(self, rows: list[LavaanRow]) -> None:
        seen: dict[tuple[str, str, str], LavaanRow] = {}
        for r in rows:
            if r.op in _CONSTRAINT_OPS:
                continue
            key = r.key
            if r.op == "~~":
                key = (min(r.lhs, r.rhs), "~~", max(r.lhs, r.rhs))
            if r.op == ":=":
                key = (r.lhs, ":=", "")
            if key in seen:
                first = seen[key]
                what = f"{r.lhs} {r.op} {r.rhs}".strip() if r.op != ":=" else f"{r.lhs} :="
                raise SpecError(Problem(
                    f"lavaan syntax: duplicate model element {what!r} (first given on line "
                    f"{first.line}); expected each parameter once", file=self.path, line=r.line))
            seen[key] = r
            if r.op in _PARAM_OPS and r.op != "~~" and r.lhs == r.rhs:
                raise SpecError(Problem(
                    f"lavaan syntax: {r.lhs} {r.op} {r.rhs} relates a variable to itself; "
                    "expected two different variables", file=self.path, line=r.line))
        known = {r.label for r in rows if r.label is not None} | {r.lhs for r in rows if r.op == ":="}
        for line, refs in self.refs:
            for t in refs:
                if t.text not in known:
                    raise self.error(t.line, t.col, f"unknown parameter label {t.text!r}"
                                     f"{did_you_mean(t.text, known)}; expected a label given as "
                                     "label*variable or a name defined with ':='")


# ---------------------------------------------------------------------------- public API
def parse_lavaan(text: str, path: str | Path | None = None) -> LavaanModel:
    """Parse lavaan model syntax.

    Parameters
    ----------
    text
        The model syntax.
    path
        File the text came from (named in error messages).

    Returns
    -------
    LavaanModel
        One :class:`LavaanRow` per parameter statement, in source order.

    Raises
    ------
    SpecError
        For a syntax error; the message names the file, line and column, what was
        found and what was expected. Also for duplicate model elements and for
        constraints or definitions that name unknown labels.

    Examples
    --------
    >>> m = parse_lavaan("f =~ x1 + a*x2\\n y ~ f\\n a > 0")
    >>> [r.key for r in m]
    [('f', '=~', 'x1'), ('f', '=~', 'x2'), ('y', '~', 'f'), ('a', '>', '0')]
    """
    label = None if path is None else str(path)
    rows = _Parser(text, label).parse()
    return LavaanModel(tuple(rows), label)


def read_lavaan(path: str | Path) -> LavaanModel:
    """Read and parse a lavaan model-syntax file (strict UTF-8).

    Examples
    --------
    >>> from veerkracht_bayes.resources import shipped_path
    >>> m = read_lavaan(shipped_path("data", "examples", "mediation.lav"))
    >>> len(m.rows) > 0
    True
    """
    return parse_lavaan(read_text_utf8(path, SpecError), path)


def to_lavaan(model: LavaanModel | Sequence[LavaanRow]) -> str:
    """Render rows as lavaan model syntax.

    Consecutive ``=~``, ``~`` or ``~~`` rows with the same left-hand side are joined
    into one statement. ``parse_lavaan(to_lavaan(m)).rows == m.rows`` (line numbers
    aside).

    Examples
    --------
    >>> print(to_lavaan([LavaanRow("y", "~", "x"), LavaanRow("y", "~~", "y")]))
    y ~ x
    y ~~ y
    """
    rows = list(model.rows if isinstance(model, LavaanModel) else model)
    lines: list[str] = []
    k = 0
    while k < len(rows):
        r = rows[k]
        if r.op in _PARAM_OPS:
            terms = [r.term()]
            while k + 1 < len(rows) and rows[k + 1].op == r.op and rows[k + 1].lhs == r.lhs:
                k += 1
                terms.append(rows[k].term())
            lines.append(f"{r.lhs} {r.op} {' + '.join(terms)}")
        elif r.op == "~1":
            lines.append(f"{r.lhs} ~ {r.term()}")
        else:
            lines.append(f"{r.lhs} {r.op} {r.rhs}")
        k += 1
    return "\n".join(lines) + ("\n" if lines else "")


# ---------------------------------------------------------------------------- graphs
def edge_label(source: str, target: str) -> str:
    """Label used for edge ``source -> target`` in lavaan syntax: ``b_<source>__<target>``.

    Examples
    --------
    >>> edge_label("social_network", "wellbeing")
    'b_social_network__wellbeing'
    """
    return f"b_{source}__{target}"


def graph_to_lavaan(graph: "CausalGraph") -> str:
    """Write a causal graph as lavaan model syntax.

    One ``~`` statement per edge target (node order; parents in edge order), each
    coefficient labelled :func:`edge_label`; the measurement part as ``=~``
    statements; isolated nodes as a variance ``x ~~ x`` so they are kept; then one
    inequality constraint per edge carrying its sign (``b < 0`` for ``-``, ``b > 0``
    for ``+``).

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import load_graph
    >>> text = graph_to_lavaan(load_graph("marvel"))
    >>> text.splitlines()[0]
    "# lavaan model syntax written by veerkracht_bayes from graph 'marvel'"
    """
    out = [f"# lavaan model syntax written by veerkracht_bayes from graph {graph.name!r}",
           f"# {len(graph.nodes)} nodes, {len(graph.edges)} signed edges; each edge is labelled "
           "b_<source>__<target> and its sign is an inequality constraint", ""]
    if graph.spec.measurement:
        out.append("# measurement")
        for lat, inds in graph.spec.measurement.items():
            out.append(f"{lat} =~ {' + '.join(inds)}")
        out.append("")
    out.append("# structural part: one line per edge target")
    for node in graph.nodes:
        pars = [e for e in graph.edges if e.target == node]
        if pars:
            terms = [f"{edge_label(e.source, e.target)}*{e.source}" for e in pars]
            line = f"{node} ~ {' + '.join(terms)}"
            if len(line) > 100:  # one term per line; a line ending in '+' continues
                line = f"{node} ~\n    " + " +\n    ".join(terms)
            out.append(line)
    touched = {e.source for e in graph.edges} | {e.target for e in graph.edges} | set(
        graph.spec.measurement)
    isolated = [n for n in graph.nodes if n not in touched]
    if isolated:
        out.append("# isolated nodes (no edges), kept as variances")
        out += [f"{n} ~~ {n}" for n in isolated]
    if graph.edges:
        out += ["", "# edge signs"]
        out += [f"{edge_label(e.source, e.target)} {'<' if e.sign == '-' else '>'} 0"
                for e in graph.edges]
    return "\n".join(out) + "\n"


def _sign_constraints(model: LavaanModel) -> dict[str, tuple[str, LavaanRow]]:
    """Label -> (sign, row) for constraints ``label < number<=0`` / ``label > number>=0``."""
    out: dict[str, tuple[str, LavaanRow]] = {}
    labels = model.labels()
    for r in model.constraints():
        if r.op == "==":
            continue
        lhs, op, rhs = r.lhs, r.op, r.rhs
        if _is_number(lhs) and rhs in labels:  # 0 < b  ==  b > 0
            lhs, rhs, op = rhs, lhs, {"<": ">", ">": "<"}[op]
        if lhs not in labels or not _is_number(rhs):
            continue
        bound = float(rhs)
        sign = "-" if (op == "<" and bound <= 0) else "+" if (op == ">" and bound >= 0) else None
        if sign is None:
            continue
        if lhs in out and out[lhs][0] != sign:
            first = out[lhs][1]
            raise SpecError(Problem(
                f"lavaan syntax: contradictory sign constraints on {lhs!r}: "
                f"'{first.lhs} {first.op} {first.rhs}' (line {first.line}) and "
                f"'{r.lhs} {r.op} {r.rhs}'; expected one sign per edge",
                file=model.path, line=r.line))
        out[lhs] = (sign, r)
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def spec_from_lavaan(
    source: "str | LavaanModel",
    *,
    name: str | None = None,
    resource: str = "individual",
    path: str | Path | None = None,
) -> "tuple[GraphSpec, str | None]":
    """Build a validated graph spec (and the file it came from) from lavaan model syntax.

    :func:`veerkracht_bayes.graph.causal_graph.graph_from_lavaan` wraps it in a
    :class:`~veerkracht_bayes.graph.causal_graph.CausalGraph`.

    Parameters
    ----------
    source
        lavaan syntax text or a parsed :class:`LavaanModel`.
    name
        Graph name (default: the file stem, or ``"lavaan"``).
    resource
        Resource type given to every node (lavaan has no such notion).
    path
        File the text came from (for messages), when ``source`` is text.

    Returns
    -------
    CausalGraph
        Nodes: latent variables and every variable of a ``~`` statement (plus
        non-indicator variables of ``~~``/``~1`` rows), in order of appearance; role
        ``exogenous`` when never on the left of ``~``, else ``construct``. Edges: one
        per ``~`` row; the sign comes from an inequality constraint on the row's
        label against a number (``b < 0``, ``b > 0``) or from a non-zero fixed value;
        otherwise ``+`` with ``inferred: true``. The ``=~`` part becomes the graph's
        measurement. Definitions, equality and other constraints, intercepts and
        covariances among indicators are not part of a diagram and are left out
        (logged at INFO level).

    Raises
    ------
    SpecError
        Located at the lavaan line: syntax errors, self-loops, edges fixed at 0,
        contradictory signs, names that are not valid node ids.

    Examples
    --------
    >>> spec, _ = spec_from_lavaan("m ~ x; y ~ m + x", name="mediation")
    >>> [(e.source, e.target) for e in spec.edges]
    [('x', 'm'), ('m', 'y'), ('x', 'y')]
    """
    from veerkracht_bayes.graph.spec import ID_PATTERN, GraphSpec, check_spec
    from pydantic import ValidationError

    model = source if isinstance(source, LavaanModel) else parse_lavaan(source, path)
    file = model.path
    if name is None:
        name = Path(file).stem if file else "lavaan"
    latents = model.latent_variables()
    indicator_set = {r.rhs for r in model.measurement()}
    first_line: dict[str, int] = {}
    order: list[str] = []

    def add(v: str, line: int) -> None:
        if v not in first_line:
            first_line[v] = line
            order.append(v)

    for r in model.rows:
        if r.op == "=~":
            add(r.lhs, r.line)
        elif r.op == "~":
            add(r.lhs, r.line)
            add(r.rhs, r.line)
        elif r.op in ("~~", "~1"):
            for v in (r.lhs, r.rhs) if r.op == "~~" else (r.lhs,):
                if v not in indicator_set or v in latents:
                    add(v, r.line)
    if not order:
        raise SpecError(Problem("lavaan syntax has no structural part: expected at least one "
                                "'~' regression or '=~' latent variable", file=file, line=1))
    for v in order:
        if not re.match(ID_PATTERN, v):
            raise SpecError(Problem(
                f"lavaan variable {v!r} is not a valid node id (expected a letter followed by "
                "letters, digits, '_' or '.')", file=file, line=first_line[v], field="id", value=v))
    signs = _sign_constraints(model)
    lhs_of_reg = {r.lhs for r in model.regressions()}
    nodes = [dict(id=v, label_en=v.replace("_", " "), label_nl=v.replace("_", " "),
                  resource=resource, role="construct" if v in lhs_of_reg else "exogenous",
                  description="", source=f"lavaan syntax line {first_line[v]}") for v in order]
    where = f"{file}:" if file else "line "
    edges, edge_lines = [], []
    for r in model.regressions():
        if r.fixed is not None and r.fixed == 0:
            raise SpecError(Problem(
                f"lavaan syntax: edge {r.rhs}->{r.lhs} is fixed at 0 (no effect); expected a "
                "free or non-zero coefficient, or remove the term", file=file, line=r.line,
                field="fixed", value=0.0))
        con = signs.get(r.label) if r.label is not None else None
        fixed_sign = None if r.fixed is None else ("-" if r.fixed < 0 else "+")
        if con is not None and fixed_sign is not None and con[0] != fixed_sign:
            raise SpecError(Problem(
                f"lavaan syntax: edge {r.rhs}->{r.lhs} is fixed at {_fmt_num(r.fixed)} but "
                f"constrained '{con[1].lhs} {con[1].op} {con[1].rhs}' (line {con[1].line}); "
                "expected consistent signs", file=file, line=r.line))
        if con is not None:
            sign, inferred = con[0], False
            evidence = (f"lavaan syntax {where}{r.line}; sign from constraint "
                        f"'{con[1].lhs} {con[1].op} {con[1].rhs}' (line {con[1].line})")
        elif fixed_sign is not None:
            sign, inferred = fixed_sign, False
            evidence = f"lavaan syntax {where}{r.line}; sign from fixed value {_fmt_num(r.fixed)}"
        else:
            sign, inferred = "+", True
            evidence = (f"lavaan syntax {where}{r.line}; sign not given in the syntax (no '<'/'>' "
                        "constraint on a label), '+' assumed")
        edges.append(dict(source=r.rhs, target=r.lhs, sign=sign, evidence=evidence,
                          inferred=inferred))
        edge_lines.append(r.line)
    measurement = model.indicators()
    edge_labels = {r.label for r in model.regressions() if r.label is not None}
    used = {id(row) for lab, (_, row) in signs.items() if lab in edge_labels}
    left_out = [r for r in model.rows
                if r.op in (":=", "~1", "==")
                or (r.op == "~~" and not (r.lhs == r.rhs and r.lhs in order))
                or (r.op in ("<", ">") and id(r) not in used)]
    if left_out:
        logger.info("%d lavaan row(s) are not part of the causal diagram and were left out: %s",
                    len(left_out), "; ".join(f"line {r.line}: {r.lhs} {r.op} {r.rhs}".strip()
                                             for r in left_out[:10])
                    + (" ..." if len(left_out) > 10 else ""))
    data = dict(spec_version=1, name=name, description=f"Read from lavaan model syntax"
                f"{' ' + file if file else ''}.", source=file or "", nodes=nodes, edges=edges,
                loops=[], measurement=measurement)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:  # pragma: no cover - inputs are constructed above
        raise SpecError(Problem(f"lavaan syntax does not give a valid graph: {exc}",
                                file=file)) from None

    def line_of(loc: tuple) -> int | None:
        if loc and loc[0] == "edges" and len(loc) > 1:
            return edge_lines[loc[1]]
        if loc and loc[0] == "nodes" and len(loc) > 1:
            return first_line[order[loc[1]]]
        if loc and loc[0] == "measurement" and len(loc) > 1:
            return first_line.get(str(loc[1]))
        return None

    problems = [Problem(f"lavaan syntax: {msg}", file=file, line=line_of(loc), field=fld,
                        value=val) for loc, fld, msg, val in check_spec(spec)]
    if problems:
        raise SpecError(problems)
    return spec, file
