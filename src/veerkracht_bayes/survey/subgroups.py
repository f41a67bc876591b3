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
    lparen, rparen, and, or, not, in, end} and its 1-based character position.

    Examples
    --------
    >>> tokenize("age >= 65")[1]
    Token(kind='op', text='>=', pos=5, value=None)
    """

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

    Examples
    --------
    >>> [t.text for t in tokenize("age >= 65 and sex == 'f'")]
    ['age', '>=', '65', 'and', 'sex', '==', "'f'", '']
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
    """Result of evaluating a condition: the boolean mask and what was undetermined.

    Examples
    --------
    >>> import pandas as pd
    >>> m = parse_condition("age >= 65").evaluate(pd.DataFrame({"age": [70.0, None, 40.0]}))
    >>> m.mask, m.n, m.n_undetermined
    (array([ True, False, False]), 1, 1)
    """

    mask: np.ndarray
    n_undetermined: int

    @property
    def n(self) -> int:
        """Number of rows in the subgroup."""
        return int(self.mask.sum())


# ---------------------------------------------------------------------------- AST
class Condition:
    """Base class of condition AST nodes.

    Examples
    --------
    >>> cond = parse_condition("not (region in ['north', 'east'])")
    >>> isinstance(cond, Condition), sorted(cond.columns)
    (True, ['region'])
    """

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


#: Numeric comparisons of a :class:`Compare` leaf (``!=`` is the negation of ``==``).
_NUMERIC_OPS = {"==": np.equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
                ">=": np.greater_equal}


class _Leaf(Condition):
    """A condition on one column: :class:`Compare` (``column OP value``) or :class:`InList`
    (``column [not] in [...]``), evaluated by one evaluator (:meth:`_eval`)."""

    column: str
    pos: int

    @property
    def columns(self) -> set[str]:
        return {self.column}

    def _leaves(self) -> list["Compare | InList"]:
        return [self]  # type: ignore[list-item]

    def _test(self) -> tuple[str, tuple[object, ...], bool]:
        """``(op, values, negate)``: ``op`` one of ``==, <, <=, >, >=, in``."""
        raise NotImplementedError

    #: What is wrong when the leaf's values are text for a numeric column, and numbers for a
    #: text column (``{value!r}``: a :class:`Compare`'s value).
    _TEXT_FOR_NUMBER = ""
    _NUMBER_FOR_TEXT = ""

    def _type_error(self, numeric: bool) -> str:
        """The message when the values' type does not fit the column (numeric or text)."""
        what = self._TEXT_FOR_NUMBER if numeric else self._NUMBER_FOR_TEXT
        return f"column {self.column!r} " + what.format(value=getattr(self, "value", None))

    def _eval(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        op, values, negate = self._test()
        s = df[self.column]
        known = s.notna().to_numpy()
        numeric = _is_numeric(s)
        kinds = {isinstance(v, str) for v in values}
        if (numeric and True in kinds) or (not numeric and False in kinds):
            raise _err(self.text, self.name, self.pos, self._type_error(numeric))
        if not numeric and op not in ("==", "in"):
            raise _err(self.text, self.name, self.pos,
                       f"column {self.column!r} holds text; operator {op!r} needs a number "
                       "(expected '==', '!=' or 'in' for text)")
        if numeric:
            x = s.to_numpy(dtype=float, na_value=np.nan)
            if op == "in":
                res = np.isin(x, np.array([float(v) for v in values]))  # type: ignore[arg-type]
            else:
                with np.errstate(invalid="ignore"):
                    res = _NUMERIC_OPS[op](x, float(values[0]))  # type: ignore[arg-type]
        else:
            vals = set(values)
            x = s.astype(object).to_numpy()
            res = np.array([known[i] and str(x[i]).strip() in vals for i in range(len(x))], dtype=bool)
        if negate:
            res = ~res
        return np.asarray(res, dtype=bool) & known, known


@dataclass(frozen=True, eq=False)
class Compare(_Leaf):
    """``column OP value``.

    Examples
    --------
    >>> cond = parse_condition("income < 1500")
    >>> isinstance(cond, Compare), cond.column, cond.op, cond.value
    (True, 'income', '<', 1500)
    """

    column: str
    op: str
    value: object
    pos: int
    text: str = ""
    name: str | None = None

    _TEXT_FOR_NUMBER = "is numeric but is compared with the text {value!r} (expected a number)"
    _NUMBER_FOR_TEXT = "holds text but is compared with the number {value!r} (expected a quoted string)"

    def _test(self) -> tuple[str, tuple[object, ...], bool]:
        return ("==" if self.op == "!=" else self.op), (self.value,), self.op == "!="


@dataclass(frozen=True, eq=False)
class InList(_Leaf):
    """``column [not] in [v1, v2, ...]``.

    Examples
    --------
    >>> cond = parse_condition("region in ['north', 'east']")
    >>> isinstance(cond, InList), cond.values
    (True, ('north', 'east'))
    """

    column: str
    values: tuple[object, ...]
    negate: bool
    pos: int
    text: str = ""
    name: str | None = None

    _TEXT_FOR_NUMBER = "is numeric but the list holds text (expected numbers)"
    _NUMBER_FOR_TEXT = "holds text but the list holds numbers (expected quoted strings)"

    def _test(self) -> tuple[str, tuple[object, ...], bool]:
        return "in", tuple(self.values), self.negate


@dataclass(frozen=True, eq=False)
class BoolOp(Condition):
    """``left and right`` / ``left or right``.

    Examples
    --------
    >>> cond = parse_condition("age >= 65 or income < 1500")
    >>> isinstance(cond, BoolOp), cond.op
    (True, 'or')
    """

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
    """``not operand``.

    Examples
    --------
    >>> isinstance(parse_condition("not age >= 65"), Not)
    True
    """

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

    Examples
    --------
    >>> import pandas as pd
    >>> cond = parse_condition("age >= 65 and sex == 'f'")
    >>> sorted(cond.columns)
    ['age', 'sex']
    >>> cond.evaluate(pd.DataFrame({"age": [70, 40, 80], "sex": ["f", "f", "m"]})).mask
    array([ True, False, False])
    """
    if not isinstance(text, str):
        raise SurveyError(Problem(f"subgroup {name!r}: condition must be a string, got {text!r}",
                                  field="where", value=text))
    node = _Parser(text, name, tokenize(text, name)).parse()
    return node
