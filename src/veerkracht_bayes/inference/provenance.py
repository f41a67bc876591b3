"""Provenance: versions, seeds, input hashes and the command line of a run."""

from __future__ import annotations

import hashlib
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

__all__ = ["file_sha256", "package_versions", "collect_provenance"]

_PACKAGES = ("veerkracht-bayes", "pymc", "pytensor", "arviz", "arviz-base", "arviz-stats", "numpy",
             "scipy", "pandas", "jax", "jaxlib", "numpyro", "networkx", "pydantic", "xarray",
             "nutpie", "blackjax")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes.

    Examples
    --------
    >>> from veerkracht_bayes.graph.causal_graph import marvel_path
    >>> len(file_sha256(marvel_path()))
    64
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the package and its main dependencies.

    Examples
    --------
    >>> v = package_versions()
    >>> "numpy" in v
    True
    """
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect_provenance(*, seed: int | None, files: dict[str, str | Path | None] | None = None,
                       hashes: dict[str, str | None] | None = None, settings: dict | None = None,
                       include_time: bool = False) -> dict[str, object]:
    """A JSON-ready provenance record.

    Parameters
    ----------
    seed
        Random seed used.
    files
        Named input files; each is hashed (SHA-256).
    hashes
        Already computed hashes (e.g. of an in-memory DataFrame).
    settings
        Sampler and model settings.
    include_time
        Add a UTC timestamp (off by default so identical runs give identical records).

    Examples
    --------
    >>> p = collect_provenance(seed=1, settings={"draws": 500})
    >>> p["seed"]
    1
    """
    rec: dict[str, object] = {
        "seed": seed,
        "versions": package_versions(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        "inputs": {},
        "settings": settings or {},
    }
    inputs: dict[str, object] = {}
    for name, path in (files or {}).items():
        if path is None:
            continue
        p = Path(path)
        inputs[name] = {"path": str(p), "sha256": file_sha256(p) if p.is_file() else None}
    for name, h in (hashes or {}).items():
        inputs.setdefault(name, {})
        if isinstance(inputs[name], dict):
            inputs[name]["sha256"] = h  # type: ignore[index]
    rec["inputs"] = inputs
    if include_time:
        rec["created_utc"] = datetime.now(UTC).isoformat()
    return rec
