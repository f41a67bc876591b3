"""A small BibTeX reader and APA-like reference formatting for the priors' citations.

The reader handles what ``priors/references.bib`` needs and a little more: ``@type{key,
field = {value}, field = "value", field = 123, field = a # "b"}`` with nested braces,
``@string`` macros, ``@comment`` and ``@preamble`` blocks, and ``%`` comment lines
between entries (an ``@`` on a ``%`` line starts no entry; elsewhere outside entries, as in
BibTeX, text is ignored and every ``@`` starts one). It never evaluates anything. Malformed input raises
:class:`~veerkracht_bayes.errors.PriorError` naming the file, line, entry and what was
expected; duplicate keys are errors (BibTeX keys are case-insensitive, and so are ours).

Why not bibtexparser: we checked bibtexparser 2.0 against the malformed inputs in the tests. It
silently accepts or drops what this reader reports with file and line (a missing comma between
fields, ``@article key`` without a brace, an undefined ``@string`` macro, keys that differ only
in case), so replacing the reader would have meant keeping a validator of the same size.

Formatting is APA-like: ``Author, Author, & Author (Year). Title. *Journal*, *volume*,
pages. https://doi.org/...``. Names are printed as written in the .bib (our entries give
surnames only, as the research note does); ``"Last, First"`` names become ``Last, F.``, and
a trailing ``and others`` becomes "et al.". LaTeX accents of the common kinds (``{\\"u}``,
``{\\'o}``, ``{\\.Z}``...) are turned into Unicode.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from veerkracht_bayes.errors import Problem, PriorError, did_you_mean
from veerkracht_bayes.yaml_io import read_text_utf8

if TYPE_CHECKING:  # pragma: no cover
    from veerkracht_bayes.priors.spec import PriorSet

__all__ = [
    "BibEntry",
    "Bibliography",
    "parse_bibtex",
    "load_bib",
    "latex_to_unicode",
    "format_authors",
    "format_reference",
    "bibliography",
    "references_markdown",
    "references_html",
    "reference_sort_key",
]

_MONTHS = {m: m.capitalize() for m in
           ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")}


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry.

    Attributes
    ----------
    type
        Entry type in lower case (``article``, ``misc``...).
    key
        Citation key as written.
    fields
        Field name (lower case) -> raw value (braces of the value's delimiters removed,
        inner braces and LaTeX kept).
    line
        1-based line of the ``@`` that opens the entry.

    Examples
    --------
    >>> bib = parse_bibtex("@article{smith2020, title={Resilience}, author={Smith, A.}, year={2020}}")
    >>> e = bib.entries["smith2020"]
    >>> isinstance(e, BibEntry), e.type, e.fields["year"]
    (True, 'article', '2020')
    """

    type: str
    key: str
    fields: Mapping[str, str]
    line: int = 0

    def get(self, name: str, default: str | None = None) -> str | None:
        """The field ``name`` converted to plain Unicode text, or ``default``."""
        raw = self.fields.get(name.lower())
        return default if raw is None else latex_to_unicode(raw)


@dataclass
class Bibliography:
    """The entries of a .bib file, by key (case-insensitive look-up).

    Examples
    --------
    >>> bib = parse_bibtex("@book{doe2019, title={Networks}, author={Doe, J.}, year={2019}, publisher={X}}")
    >>> isinstance(bib, Bibliography), "doe2019" in bib.entries
    (True, True)
    """

    entries: dict[str, BibEntry] = field(default_factory=dict)
    path: str | None = None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lower

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    @property
    def _lower(self) -> dict[str, str]:
        return {k.lower(): k for k in self.entries}

    @property
    def keys(self) -> list[str]:
        """Citation keys in file order."""
        return list(self.entries)

    def __getitem__(self, key: str) -> BibEntry:
        real = self._lower.get(key.lower())
        if real is None:
            raise PriorError(Problem(f"citation key {key!r} is not in the bibliography"
                                     f"{did_you_mean(key, self.entries)}", file=self.path,
                                     field="citations", value=key))
        return self.entries[real]


# ---------------------------------------------------------------------------------- parsing
class _Parser:
    def __init__(self, text: str, path: str | None) -> None:
        self.s = text
        self.i = 0
        self.path = path
        self.strings: dict[str, str] = {}

    def line(self, pos: int | None = None) -> int:
        return self.s.count("\n", 0, self.i if pos is None else pos) + 1

    def fail(self, msg: str, pos: int | None = None, entry: str | None = None) -> PriorError:
        return PriorError(Problem(msg, file=self.path, line=self.line(pos), location=entry))

    def skip_ws(self) -> None:
        s = self.s
        while self.i < len(s) and s[self.i].isspace():
            self.i += 1

    def read_ident(self, what: str, entry: str | None) -> str:
        self.skip_ws()
        m = re.compile(r"[^\s,={}()\"#%'~]+").match(self.s, self.i)
        if not m:
            got = self.s[self.i:self.i + 10] or "end of file"
            raise self.fail(f"expected {what}, found {got!r}", entry=entry)
        self.i = m.end()
        return m.group(0)

    def read_delimited(self, entry: str | None) -> str:
        """The text of a braced ``{...}`` or quoted ``"..."`` value at the cursor, delimiters off.

        Braces nest in both forms and a backslash escapes the next character; a quoted value ends
        at a ``"`` outside braces.
        """
        start = self.i
        s = self.s
        quoted = s[start] == '"'
        depth = 0 if quoted else 1
        self.i += 1
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                self.i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if quoted and depth < 0:
                    raise self.fail("unbalanced '}' inside a quoted value", entry=entry)
                if not quoted and depth == 0:
                    self.i += 1
                    return s[start + 1:self.i - 1]
            elif quoted and c == '"' and depth == 0:
                self.i += 1
                return s[start + 1:self.i - 1]
            self.i += 1
        if quoted:
            raise self.fail('unterminated quoted value (expected a closing \'"\')', pos=start, entry=entry)
        raise self.fail("unbalanced braces: '{' is never closed (expected a matching '}')",
                        pos=start, entry=entry)

    def read_value(self, entry: str | None) -> str:
        parts = []
        while True:
            self.skip_ws()
            if self.i >= len(self.s):
                raise self.fail("unexpected end of file inside a field value", entry=entry)
            c = self.s[self.i]
            if c in ("{", '"'):
                parts.append(self.read_delimited(entry))
            else:
                m = re.compile(r"[A-Za-z0-9_:.+\-/]+").match(self.s, self.i)
                if not m:
                    raise self.fail(f"expected a field value ({{...}}, \"...\", a number or a "
                                    f"@string name), found {c!r}", entry=entry)
                self.i = m.end()
                word = m.group(0)
                if word.isdigit():
                    parts.append(word)
                elif word.lower() in self.strings:
                    parts.append(self.strings[word.lower()])
                elif word.lower() in _MONTHS:
                    parts.append(_MONTHS[word.lower()])
                else:
                    raise self.fail(f"undefined @string macro {word!r} (expected a braced or quoted "
                                    f"value, a number, or a name defined by @string)"
                                    f"{did_you_mean(word.lower(), self.strings)}", entry=entry)
            self.skip_ws()
            if self.i < len(self.s) and self.s[self.i] == "#":
                self.i += 1
                continue
            return "".join(parts)

    def parse(self) -> dict[str, BibEntry]:
        entries: dict[str, BibEntry] = {}
        lower: dict[str, str] = {}
        s = self.s
        while True:
            at = s.find("@", self.i)
            while at >= 0 and s[s.rfind("\n", 0, at) + 1:at].lstrip().startswith("%"):
                at = s.find("@", at + 1)  # an '@' on a '%' comment line starts no entry
            if at < 0:
                return entries
            self.i = at + 1
            start_line = self.line(at)
            etype = self.read_ident("an entry type after '@'", None).lower()
            self.skip_ws()
            if self.i >= len(s) or s[self.i] not in "{(":
                raise self.fail(f"expected '{{' after @{etype}", entry=f"@{etype}")
            close = "}" if s[self.i] == "{" else ")"
            if etype == "comment":
                if close == "}":
                    self.read_delimited(f"@{etype}")
                else:
                    end = s.find(")", self.i)
                    self.i = len(s) if end < 0 else end + 1
                continue
            self.i += 1
            if etype == "preamble":
                self.read_value("@preamble")
                self._expect_close(close, "@preamble")
                continue
            if etype == "string":
                name = self.read_ident("a @string name", "@string").lower()
                self._expect("=", "@string")
                self.strings[name] = self.read_value(f"@string {name}")
                self._expect_close(close, f"@string {name}")
                continue
            key = self.read_ident("a citation key", f"@{etype}")
            loc = f"@{etype}{{{key}}}"
            if key.lower() in lower:
                first = entries[lower[key.lower()]].line
                raise PriorError(Problem(f"duplicate citation key {key!r} (first defined on line "
                                         f"{first}; expected unique keys)", file=self.path,
                                         line=start_line, location=loc, field="key", value=key))
            fields: dict[str, str] = {}
            while True:
                self.skip_ws()
                if self.i >= len(s):
                    raise self.fail(f"entry {key!r} is never closed (expected {close!r})",
                                    pos=at, entry=loc)
                c = s[self.i]
                if c == close:
                    self.i += 1
                    break
                if c != ",":
                    raise self.fail(f"expected ',' or {close!r} after a field, found {c!r}", entry=loc)
                self.i += 1
                self.skip_ws()
                if self.i < len(s) and s[self.i] == close:
                    self.i += 1
                    break
                fname = self.read_ident("a field name", loc).lower()
                self._expect("=", loc)
                if fname in fields:
                    raise self.fail(f"field {fname!r} given twice in entry {key!r}", entry=loc)
                fields[fname] = _squash(self.read_value(loc))
            entries[key] = BibEntry(type=etype, key=key, fields=fields, line=start_line)
            lower[key.lower()] = key

    def _expect(self, ch: str, entry: str) -> None:
        self.skip_ws()
        if self.i >= len(self.s) or self.s[self.i] != ch:
            got = self.s[self.i] if self.i < len(self.s) else "end of file"
            raise self.fail(f"expected {ch!r}, found {got!r}", entry=entry)
        self.i += 1

    def _expect_close(self, close: str, entry: str) -> None:
        self._expect(close, entry)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_bibtex(text: str, path: str | Path | None = None) -> Bibliography:
    """Parse BibTeX text.

    Parameters
    ----------
    text
        The .bib contents.
    path
        File name used in error messages.

    Raises
    ------
    PriorError
        For malformed entries (unbalanced braces, missing ``=``, duplicate keys...), naming
        the file, line and entry.

    Examples
    --------
    >>> bib = parse_bibtex("@article{smith2020, title={Resilience}, author={Smith, A.}, year={2020}}")
    >>> list(bib.entries)
    ['smith2020']
    """
    label = None if path is None else str(path)
    return Bibliography(_Parser(text, label).parse(), label)


def load_bib(path: str | Path) -> Bibliography:
    """Read and parse a .bib file (strict UTF-8).

    Examples
    --------
    >>> from veerkracht_bayes.priors.spec import priors_dir
    >>> bib = load_bib(priors_dir() / "references.bib")
    >>> len(bib.entries) > 0
    True
    """
    return parse_bibtex(read_text_utf8(path, PriorError), path)


# ------------------------------------------------------------------------------ formatting
_ACCENTS = {"\"": "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303",
            "=": "\u0304", ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b",
            "c": "\u0327", "k": "\u0328", "r": "\u030a"}
_SYMBOLS = {"ss": "ß", "o": "ø", "O": "Ø", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
            "aa": "å", "AA": "Å", "l": "ł", "L": "Ł", "i": "ı"}


def latex_to_unicode(text: str) -> str:
    """Turn common LaTeX accents, escapes and protective braces into plain Unicode text.

    Examples
    --------
    >>> latex_to_unicode(r"Kivim{\\"a}ki and {\\.Z}urek")
    'Kivimäki and Żurek'
    """
    out = text

    def accent(m: re.Match[str]) -> str:
        mark, letter = m.group(1), m.group(2)
        return unicodedata.normalize("NFC", letter + _ACCENTS[mark])

    acc = "|".join(re.escape(k) for k in _ACCENTS)
    # {\"u}, \"{u}, \"u, \c{c}, \v{s}
    out = re.sub(r"\{\\(" + acc + r")\s*\{?([A-Za-z])\}?\}", accent, out)
    out = re.sub(r"\\(" + acc + r")\s*\{([A-Za-z])\}", accent, out)
    out = re.sub(r"\\([\"'`^~=.])([A-Za-z])", accent, out)
    syms = "|".join(sorted(_SYMBOLS, key=len, reverse=True))
    out = re.sub(r"\{\\(" + syms + r")\}", lambda m: _SYMBOLS[m.group(1)], out)
    out = re.sub(r"\\(" + syms + r")(?![A-Za-z])\s?", lambda m: _SYMBOLS[m.group(1)], out)
    out = out.replace("--", "–").replace(r"\&", "&").replace(r"\%", "%").replace(r"\_", "_")
    out = out.replace("~", " ")
    out = out.replace("{", "").replace("}", "")
    return _squash(out)


def _split_names(raw: str) -> list[str]:
    depth = 0
    names, cur = [], []
    tokens = re.split(r"(\{|\}|\s+and\s+)", raw)
    for tok in tokens:
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        if re.fullmatch(r"\s+and\s+", tok or "") and depth == 0:
            names.append("".join(cur))
            cur = []
        else:
            cur.append(tok)
    names.append("".join(cur))
    return [n.strip() for n in names if n.strip()]


def _format_name(name: str) -> str:
    plain = latex_to_unicode(name)
    if "," in plain:
        last, first = (p.strip() for p in plain.split(",", 1))
        initials = " ".join(f"{w[0]}." for w in re.split(r"[\s]+", first) if w)
        return f"{last}, {initials}" if initials else last
    return plain


def format_authors(raw: str | None) -> str:
    """APA-like author list: ``A``, ``A & B``, ``A, B, & C``; ``and others`` -> ``et al.``.

    Examples
    --------
    >>> format_authors("Judge and Erez and Bono and Thoresen")
    'Judge, Erez, Bono, & Thoresen'
    >>> format_authors("Groh and others")
    'Groh et al.'
    """
    if not raw:
        return ""
    names = _split_names(raw)
    etal = bool(names) and names[-1].lower() == "others"
    names = [_format_name(n) for n in (names[:-1] if etal else names)]
    if etal:
        return ", ".join(names) + " et al."
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} & {names[1]}"
    return ", ".join(names[:-1]) + ", & " + names[-1]


def _parts(entry: BibEntry) -> dict[str, str | None]:
    doi = (entry.get("doi") or "").strip()
    url = f"https://doi.org/{doi}" if doi else (entry.get("url") or "").strip() or None
    if url:
        url = url.replace(" ", "%20")
    return {
        "authors": format_authors(entry.fields.get("author")),
        "year": entry.get("year") or "n.d.",
        "title": entry.get("title"),
        "journal": entry.get("journal") or entry.get("booktitle") or entry.get("publisher"),
        "volume": entry.get("volume"),
        "pages": entry.get("pages"),
        "url": url,
        "note": entry.get("note"),
    }


def format_reference(entry: BibEntry, style: str = "text") -> str:
    """Format one entry APA-like.

    Parameters
    ----------
    entry
        The BibTeX entry.
    style
        ``"text"`` (plain), ``"markdown"`` (journal and volume in italics, link) or ``"html"``
        (escaped, ``<i>`` and ``<a>``).

    Examples
    --------
    >>> e = BibEntry("article", "x", {"author": "Bekkers", "year": "2012",
    ...              "journal": "Polit Behav", "volume": "34", "pages": "225--247"})
    >>> format_reference(e)
    'Bekkers (2012). Polit Behav, 34, 225–247.'
    """
    if style not in {"text", "markdown", "html"}:
        raise PriorError(Problem(f"unknown reference style {style!r} (expected text, markdown or html)"
                                 f"{did_you_mean(style, ['text', 'markdown', 'html'])}",
                                 field="style", value=style))
    p = _parts(entry)
    esc = html.escape if style == "html" else (lambda x: x)

    def ital(x: str) -> str:
        if style == "markdown":
            return f"*{x}*"
        if style == "html":
            return f"<i>{x}</i>"
        return x

    # no placeholder text: an entry without authors starts with its title, else its source
    lead = p["authors"] or p["title"] or p["journal"] or entry.key
    out = f"{esc(lead)} ({esc(p['year'])})."
    if p["authors"] and p["title"]:
        out += f" {esc(p['title'].rstrip('.'))}."
    src = []
    if p["journal"] and lead != p["journal"]:
        src.append(ital(esc(p["journal"])))
    if p["volume"]:
        src.append(ital(esc(p["volume"])))
    if p["pages"]:
        src.append(esc(p["pages"]))
    if src:
        out += " " + ", ".join(src) + "."
    if p["url"]:
        u = p["url"]
        if style == "markdown":
            out += f" <{u}>"
        elif style == "html":
            out += f' <a href="{html.escape(u, quote=True)}">{html.escape(u)}</a>'
        else:
            out += f" {u}"
    if p["note"]:
        out += f" [{esc(p['note'].rstrip('.'))}.]"
    return out


def reference_sort_key(entry: BibEntry) -> tuple[str, str, str]:
    """Order of a reference list: first author (or title, or key) case-folded, year, key.

    Examples
    --------
    >>> bib = parse_bibtex("@article{b, title={T}, author={Smith, A.}, year={2020}}\\n"
    ...                    "@article{a, title={U}, author={de Vries, B.}, year={2019}}")
    >>> [e.key for e in sorted(bib.entries.values(), key=reference_sort_key)]
    ['a', 'b']
    """
    p = _parts(entry)
    return ((p["authors"] or p["title"] or entry.key).casefold(), p["year"] or "", entry.key)


def _resolve_bib(prior_set: "PriorSet", bib: Bibliography | str | Path | None) -> Bibliography:
    if isinstance(bib, Bibliography):
        return bib
    if bib is None:
        bib = getattr(prior_set, "bib_path", None)
        if bib is None:
            raise PriorError(Problem("no bibliography given and the prior set has none "
                                     "(expected a .bib path or a Bibliography)", field="bib"))
    return load_bib(bib)


def bibliography(prior_set: "PriorSet", bib: Bibliography | str | Path | None = None,
                 style: str = "text") -> list[str]:
    """Formatted references for the citations the prior set actually uses.

    Parameters
    ----------
    prior_set
        A :class:`~veerkracht_bayes.priors.spec.PriorSet`.
    bib
        A :class:`Bibliography`, a .bib path, or ``None`` for the set's own ``bib_path``.
    style
        ``"text"``, ``"markdown"`` or ``"html"`` (see :func:`format_reference`).

    Returns
    -------
    list of str
        One formatted reference per cited key, sorted by first author and year.

    Raises
    ------
    PriorError
        If a cited key is not in the bibliography (with a did-you-mean hint).

    Examples
    --------
    >>> from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path
    >>> refs = bibliography(load_priors(marvel_priors_path(), graph="marvel"))
    >>> len(refs) > 0 and all(isinstance(r, str) for r in refs)
    True
    """
    b = _resolve_bib(prior_set, bib)
    used = prior_set.citations_used()
    entries = [b[k] for k in used]
    return [format_reference(e, style) for e in sorted(entries, key=reference_sort_key)]


def references_markdown(prior_set: "PriorSet", bib: Bibliography | str | Path | None = None,
                        heading: str | None = "References") -> str:
    """A Markdown reference list (``## heading`` then one bullet per reference).

    Examples
    --------
    >>> from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path
    >>> references_markdown(load_priors(marvel_priors_path(), graph="marvel")).splitlines()[0]
    '## References'
    """
    lines = [f"## {heading}", ""] if heading else []
    lines += [f"- {r}" for r in bibliography(prior_set, bib, style="markdown")]
    return "\n".join(lines) + "\n"


def references_html(prior_set: "PriorSet", bib: Bibliography | str | Path | None = None,
                    heading: str | None = "References") -> str:
    """An HTML fragment: an optional ``<h2>`` and an ``<ol class="references">``.

    Examples
    --------
    >>> from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path
    >>> references_html(load_priors(marvel_priors_path(), graph="marvel")).startswith("<")
    True
    """
    items = "\n".join(f"  <li>{r}</li>" for r in bibliography(prior_set, bib, style="html"))
    head = f"<h2>{html.escape(heading)}</h2>\n" if heading else ""
    return f'{head}<ol class="references">\n{items}\n</ol>\n'


def cited_entries(keys: Iterable[str], bib: Bibliography) -> list[BibEntry]:
    """The entries for ``keys`` (in the given order); unknown keys raise :class:`PriorError`."""
    return [bib[k] for k in keys]
