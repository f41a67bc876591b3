"""Files that ship with the package: the MARVEL graph, priors, references, policies, demo inputs.

Two roots hold them, and both are read through :mod:`importlib.resources`:

- ``veerkracht_bayes/data/`` inside the package: the MARVEL graph (``marvel.yaml``), the ten
  policies (``policies.yaml``) and the demo run config (``demo.toml``);
- the repository's root folders ``priors/`` (literature priors, ``references.bib``,
  ``evidence.csv``) and ``data/`` (the synthetic survey with its codebook and truth, the real-data
  codebook, example models). A wheel carries them as ``veerkracht_bayes/_shipped/priors`` and
  ``veerkracht_bayes/_shipped/data`` (hatch ``force-include`` in ``pyproject.toml``); a source
  checkout or editable install reads them where they are.

Examples
--------
>>> from veerkracht_bayes.resources import shipped_path
>>> shipped_path("priors", "marvel.yaml").name
'marvel.yaml'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["package_data_path", "shipped_path", "shipped_root"]


def package_data_path(*parts: str) -> Path:
    """A file of ``veerkracht_bayes/data/`` (graph, policies, demo config).

    Parameters
    ----------
    *parts
        Path components below ``data/``, e.g. ``"marvel.yaml"``.

    Returns
    -------
    pathlib.Path
        The file's location (it may not exist; the caller reports that).

    Examples
    --------
    >>> package_data_path("policies.yaml").name
    'policies.yaml'
    """
    return Path(str(resources.files("veerkracht_bayes").joinpath("data", *parts)))


def shipped_root(top: str) -> Path:
    """The folder that holds the shipped root folder ``top`` (``"priors"`` or ``"data"``).

    Parameters
    ----------
    top
        ``"priors"`` or ``"data"``.

    Returns
    -------
    pathlib.Path
        ``veerkracht_bayes/_shipped/<top>`` in an installed wheel, else ``<checkout>/<top>``.

    Raises
    ------
    ValueError
        For a name other than ``"priors"`` or ``"data"``.

    Examples
    --------
    >>> shipped_root("priors").name
    'priors'
    """
    if top not in ("priors", "data"):
        raise ValueError(f"shipped folders are 'priors' and 'data', not {top!r}")
    inside = Path(str(resources.files("veerkracht_bayes").joinpath("_shipped", top)))
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parents[2] / top


def shipped_path(top: str, *parts: str) -> Path:
    """A file below a shipped root folder, e.g. ``shipped_path("priors", "references.bib")``.

    Parameters
    ----------
    top
        ``"priors"`` or ``"data"``.
    *parts
        Path components below it.

    Returns
    -------
    pathlib.Path
        The file's location (it may not exist; the caller reports that).

    Examples
    --------
    >>> shipped_path("data", "synthetic", "codebook_synthetic.yaml").parent.name
    'synthetic'
    """
    return shipped_root(top).joinpath(*parts)
