"""Safe subgroup conditions: a tiny expression language parsed without ``eval``.

Grammar (keywords are case-insensitive)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" condition ")" | comparison
    comparison := COLUMN OP value
                | COLUMN ["not"] "in" "[" value ("," value)* [","] "]"
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := NUMBER | STRING            (STRING in single or double quotes)
    COLUMN     := identifier [A-Za-z_][A-Za-z0-9_.]*  or a `back-quoted name`

Evaluation uses three-valued (Kleene) logic: a comparison on a missing value is
*unknown*; ``False and unknown`` is ``False``, ``True or unknown`` is ``True``;
whatever is still unknown at the end counts as *not in the subgroup* and is
reported (:attr:`SubgroupMask.n_undetermined`), never dropped silently.

Examples
--------
>>> import pandas as pd
>>> cond = parse_condition("age >= 12 and age <= 25", name="youth")
>>> sorted(cond.columns)
['age']
>>> cond.evaluate(pd.DataFrame({"age": [10, 15, None]})).mask.tolist()
[False, True, False]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from veerkracht_bayes.errors import Problem, SurveyError, did_you_mean

__all__ = [
    "Token",
    "Condition",
    "Compare",
    "InList",
    "BoolOp",
    "Not",
    "SubgroupMask",
    "tokenize",
    "parse_condition",
]

_OPS = ("==", "!=", "<=", ">=", "<", ">")
_KEYWORDS = {"and", "or", "not", "in"}


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` in {name, number, string, op, lbrack, rbrack, comma,
    lparen, rparen, and, or, not, in, end} and its 1-based character position."""

    kind: str
    text: str
    pos: int
    value: object = None


def _err(text: str, name: str | None, pos: int, msg: str, location: str | None = None) -> SurveyError:
    who = f"subgroup {name!r}" if name else "condition"
    caret = " " * (pos - 1) + "^"
    return SurveyError(
        Problem(
            f"{who}: {msg} at position {pos} of the condition\n      {text}\n      {caret}",
            location=location or (f"subgroups.{name}.where" if name else None),
            field="where",
            value=text,
        )
    )


_NUM_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def tokenize(text: str, name: str | None = None) -> list[Token]:
    """Split a condition into tokens.

    Raises
    ------
    SurveyError
        On an unexpected character or an unterminated string (names the position).
    """
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        pos = i + 1
        two = text[i : i + 2]
        if two in ("==", "!=", "<=", ">="):
            toks.append(Token("op", two, pos))
            i += 2
            continue
        if c in "<>":
            toks.append(Token("op", c, pos))
            i += 1
            continue
        if c == "=":
            raise _err(text, name, pos, "found a single '=' (expected '==' for equality)")
        simple = {"[": "lbrack", "]": "rbrack", ",": "comma", "(": "lparen", ")": "rparen"}
        if c in simple:
            toks.append(Token(simple[c], c, pos))
            i += 1
            continue
        if c in "'\"":
            j = text.find(c, i + 1)
            if j < 0:
                raise _err(text, name, pos, f"unterminated string starting with {c} (expected a closing {c})")
            toks.append(Token("string", text[i : j + 1], pos, text[i + 1 : j]))
            i = j + 1
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise _err(text, name, pos, "unterminated `quoted column name` (expected a closing `)")
            toks.append(Token("name", text[i : j + 1], pos, text[i + 1 : j]))
            i = j + 1
            continue
        m = _NUM_RE.match(text, i)
        if m and (c.isdigit() or c == "." or (c in "+-" and m.end() > i + 1)):
            s = m.group(0)
            v: float | int = float(s) if any(ch in s for ch in ".eE") else int(s)
            toks.append(Token("number", s, pos, v))
            i = m.end()
            continue
        m = _NAME_RE.match(text, i)
        if m:
            word = m.group(0)
            low = word.lower()
            if low in _KEYWORDS:
                toks.append(Token(low, word, pos))
            elif low in ("true", "false"):
                toks.append(Token("number", word, pos, int(low == "true")))
            else:
                toks.append(Token("name", word, pos, word))
            i = m.end()
            continue
        raise _err(text, name, pos, f"unexpected character {c!r} (expected a column name, number, "
                   "quoted string, comparison operator, 'and', 'or', 'not', 'in', brackets or parentheses)")
    toks.append(Token("end", "", n + 1))
    return toks


@dataclass(frozen=True)
class SubgroupMask:
    """Result of evaluating a condition: the boolean mask and what was undetermined."""

    mask: np.ndarray
    n_undetermined: int

    @property
    def n(self) -> int:
        """Number of rows in the subgroup."""
        return int(self.mask.sum())


# ---------------------------------------------------------------------------- AST
class Condition:
    """Base class of condition AST nodes."""

    text: str = ""
    name: str | None = None

    @property
    def columns(self) -> set[str]:
        """Columns the condition refers to."""
        raise NotImplementedError

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return (value, known) boolean arrays."""
        raise NotImplementedError

    def check_columns(self, known: Iterable[str], *, location: str | None = None,
                      file: str | None = None, line: int | None = None) -> None:
        """Raise a located :class:`SurveyError` if the condition names an unknown column."""
        known = list(known)
        probs = []
        for node in self._leaves():
            if node.column not in known:
                who = f"subgroup {self.name!r}" if self.name else "condition"
                probs.append(Problem(
                    f"{who}: unknown column {node.column!r} at position {node.pos} of {self.text!r} "
                    f"(expected one of the codebook's columns: item columns, id, weight, group "
                    f"columns or extra_columns){did_you_mean(node.column, known)}",
                    file=file, line=line,
                    location=location or (f"subgroups.{self.name}.where" if self.name else None),
                    field="where", value=node.column))
        if probs:
            raise SurveyError(probs)

    def _leaves(self) -> list["Compare | InList"]:
        raise NotImplementedError

    def evaluate(self, df: pd.DataFrame) -> SubgroupMask:
        """Evaluate on a data frame.

        Parameters
        ----------
        df
            Data holding every column the condition names.

        Returns
        -------
        SubgroupMask
            ``mask`` is True where the condition is known to hold; rows where it is
            undetermined because of missing values are False and counted.

        Raises
        ------
        SurveyError
            If a column is missing (did-you-mean) or a value has the wrong type for
            the column (e.g. a number compared with a text column).
        """
        self.check_columns(df.columns)
        value, known = self._eval(df)
        return SubgroupMask(mask=value & known, n_undetermined=int((~known).sum()))


def _is_numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s))


@dataclass(frozen=True, eq=False)
class Compare(Condition):
    """``column OP value``."""

    column: str
    op: str
    value: object
    pos: int
    text: str = ""
    name: str | None = None

    @property
    def columns(self) -> set[str]:
        return {self.column}

    def _leaves(self) -> list["Compare | InList"]:
        return [self]

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        s = df[self.column]
        known = s.notna().to_numpy()
        numeric = _is_numeric(s)
        if numeric and isinstance(self.value, str):
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} is numeric but is compared with the text "
                       f"{self.value!r} (expected a number)")
        if not numeric and not isinstance(self.value, str):
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} holds text but is compared with the number "
                       f"{self.value!r} (expected a quoted string)")
        if not numeric and self.op not in ("==", "!="):
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} holds text; operator {self.op!r} needs a number "
                       "(expected '==', '!=' or 'in' for text)")
        if numeric:
            x = s.to_numpy(dtype=float, na_value=np.nan)
            v = float(self.value)  # type: ignore[arg-type]
            with np.errstate(invalid="ignore"):
                res = {"==": x == v, "!=": x != v, "<": x < v, "<=": x <= v, ">": x > v,
                       ">=": x >= v}[self.op]
        else:
            x = s.astype(object).to_numpy()
            eq = np.array([known[i] and str(x[i]).strip() == self.value for i in range(len(x))],
                          dtype=bool)
            res = eq if self.op == "==" else ~eq
        return np.asarray(res, dtype=bool) & known, known


@dataclass(frozen=True, eq=False)
class InList(Condition):
    """``column [not] in [v1, v2, ...]``."""

    column: str
    values: tuple[object, ...]
    negate: bool
    pos: int
    text: str = ""
    name: str | None = None

    @property
    def columns(self) -> set[str]:
        return {self.column}

    def _leaves(self) -> list["Compare | InList"]:
        return [self]

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        s = df[self.column]
        known = s.notna().to_numpy()
        numeric = _is_numeric(s)
        kinds = {isinstance(v, str) for v in self.values}
        if numeric and True in kinds:
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} is numeric but the list holds text (expected numbers)")
        if not numeric and False in kinds:
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} holds text but the list holds numbers "
                       "(expected quoted strings)")
        if numeric:
            x = s.to_numpy(dtype=float, na_value=np.nan)
            res = np.isin(x, np.array([float(v) for v in self.values]))  # type: ignore[arg-type]
        else:
            vals = set(self.values)
            x = s.astype(object).to_numpy()
            res = np.array([known[i] and str(x[i]).strip() in vals for i in range(len(x))], dtype=bool)
        if self.negate:
            res = ~res
        return res & known, known


@dataclass(frozen=True, eq=False)
class BoolOp(Condition):
    """``left and right`` / ``left or right``."""

    op: str
    left: Condition
    right: Condition
    text: str = ""
    name: str | None = None

    @property
    def columns(self) -> set[str]:
        return self.left.columns | self.right.columns

    def _leaves(self) -> list["Compare | InList"]:
        return self.left._leaves() + self.right._leaves()

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        a, ka = self.left._eval(df)
        b, kb = self.right._eval(df)
        if self.op == "and":
            known = (ka & kb) | (ka & ~a) | (kb & ~b)
            return a & b & known, known
        known = (ka & kb) | (ka & a) | (kb & b)
        return (a | b) & known, known


@dataclass(frozen=True, eq=False)
class Not(Condition):
    """``not operand``."""

    operand: Condition
    text: str = ""
    name: str | None = None

    @property
    def columns(self) -> set[str]:
        return self.operand.columns

    def _leaves(self) -> list["Compare | InList"]:
        return self.operand._leaves()

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        a, ka = self.operand._eval(df)
        return ~a & ka, ka


# ---------------------------------------------------------------------------- parser
@dataclass
class _Parser:
    text: str
    name: str | None
    toks: list[Token]
    i: int = 0
    depth: int = field(default=0)

    @property
    def cur(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def fail(self, expected: str) -> SurveyError:
        t = self.cur
        got = "end of condition" if t.kind == "end" else repr(t.text)
        return _err(self.text, self.name, t.pos, f"expected {expected}, got {got}")

    def parse(self) -> Condition:
        if self.cur.kind == "end":
            raise self.fail("a condition such as \"age >= 12\"")
        node = self.or_expr()
        if self.cur.kind != "end":
            raise self.fail("'and', 'or' or the end of the condition")
        return node

    def or_expr(self) -> Condition:
        node = self.and_expr()
        while self.cur.kind == "or":
            self.advance()
            node = BoolOp("or", node, self.and_expr(), self.text, self.name)
        return node

    def and_expr(self) -> Condition:
        node = self.not_expr()
        while self.cur.kind == "and":
            self.advance()
            node = BoolOp("and", node, self.not_expr(), self.text, self.name)
        return node

    def not_expr(self) -> Condition:
        if self.cur.kind == "not":
            self.advance()
            return Not(self.not_expr(), self.text, self.name)
        return self.atom()

    def atom(self) -> Condition:
        if self.cur.kind == "lparen":
            self.depth += 1
            if self.depth > 100:
                raise self.fail("at most 100 nested parentheses")
            self.advance()
            node = self.or_expr()
            if self.cur.kind != "rparen":
                raise self.fail("')' to close the parenthesis")
            self.advance()
            self.depth -= 1
            return node
        if self.cur.kind != "name":
            raise self.fail("a column name, 'not' or '('")
        col_tok = self.advance()
        column = str(col_tok.value)
        if self.cur.kind == "op":
            op = self.advance().text
            val = self.value()
            return Compare(column, op, val, col_tok.pos, self.text, self.name)
        negate = False
        if self.cur.kind == "not":
            self.advance()
            negate = True
            if self.cur.kind != "in":
                raise self.fail("'in' after 'not'")
        if self.cur.kind == "in":
            self.advance()
            if self.cur.kind != "lbrack":
                raise self.fail("'[' to start the list of values")
            self.advance()
            values = [self.value()]
            while self.cur.kind == "comma":
                self.advance()
                if self.cur.kind == "rbrack":
                    break
                values.append(self.value())
            if self.cur.kind != "rbrack":
                raise self.fail("',' or ']' in the list of values")
            self.advance()
            return InList(column, tuple(values), negate, col_tok.pos, self.text, self.name)
        raise self.fail(f"a comparison operator ({', '.join(_OPS)}) or 'in' after column {column!r}")

    def value(self) -> object:
        t = self.cur
        if t.kind in ("number", "string"):
            self.advance()
            return t.value
        raise self.fail("a number or a quoted string")


def parse_condition(text: str, name: str | None = None) -> Condition:
    """Parse a subgroup condition (no ``eval``).

    Parameters
    ----------
    text
        The condition, e.g. ``"income_adequacy <= 2 or welfare == 1"``.
    name
        Subgroup name, used in error messages.

    Returns
    -------
    Condition
        The AST; call :meth:`Condition.evaluate` on a data frame.

    Raises
    ------
    SurveyError
        Naming the subgroup, the 1-based position in the string and what was expected.
    """
    if not isinstance(text, str):
        raise SurveyError(Problem(f"subgroup {name!r}: condition must be a string, got {text!r}",
                                  field="where", value=text))
    node = _Parser(text, name, tokenize(text, name)).parse()
    return node
