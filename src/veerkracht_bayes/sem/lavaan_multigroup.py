"""Multi-group generic lavaan models, like lavaan's ``sem(..., group = "COLUMN")``.

Configural (the default, as lavaan): every group has its own parameters. The groups' likelihoods
and priors are independent, so the joint posterior is the product of the per-group posteriors.
The fit is therefore one :func:`~veerkracht_bayes.sem.lavaan_model.fit_sem` per group on that
group's rows. The parameter table is lavaan's, with a leading ``group`` column holding the group
labels as they appear in the data (in order of first appearance, like lavaan's group order).

``group_equal`` (lavaan's ``group.equal``: ``loadings``, ``intercepts``, ``regressions``) and
``group_pool`` (our extension: partial pooling of the named types) need one joint model across
groups. They are validated here but not yet available, and are refused with a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from veerkracht_bayes.errors import ModelError, Problem, did_you_mean
from veerkracht_bayes.graph.lavaan_syntax import LavaanModel
from veerkracht_bayes.sem.lavaan_model import SemFit, fit_sem

__all__ = ["GROUP_TYPES", "MultiGroupSemFit", "fit_sem_multigroup", "parse_group_types"]

log = logging.getLogger(__name__)

#: Parameter types that ``group_equal`` / ``group_pool`` may name.
GROUP_TYPES = ("loadings", "intercepts", "regressions")


def parse_group_types(value: str | Sequence[str] | None, option: str) -> tuple[str, ...]:
    """``"loadings,intercepts"`` -> ``("loadings", "intercepts")``, every entry checked.

    Examples
    --------
    >>> parse_group_types("loadings, regressions", "--group-equal")
    ('loadings', 'regressions')
    """
    if value is None:
        return ()
    parts = [p.strip() for p in (value.split(",") if isinstance(value, str) else value)]
    out = []
    for p in parts:
        if not p:
            continue
        if p not in GROUP_TYPES:
            raise ModelError(Problem(f"{option}: unknown parameter type {p!r}{did_you_mean(p, GROUP_TYPES)} "
                                     f"(expected a comma-separated list of {', '.join(GROUP_TYPES)})",
                                     field=option, value=p))
        out.append(p)
    return tuple(dict.fromkeys(out))


class MultiGroupSemFit:
    """Per-group fits of a configural multi-group model."""

    def __init__(self, group: str, fits: dict[str, SemFit]) -> None:
        self.group = group
        self.fits = fits

    @property
    def labels(self) -> tuple[str, ...]:
        """Group labels, in order of first appearance in the data."""
        return tuple(self.fits)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """lavaan's parameter table with a leading ``group`` column."""
        parts = []
        for lab, fit in self.fits.items():
            t = fit.table(prob)
            t.insert(0, "group", lab)
            parts.append(t)
        return pd.concat(parts, ignore_index=True)

    @property
    def n(self) -> dict[str, int]:
        """Complete cases per group."""
        return {lab: f.data.n for lab, f in self.fits.items()}


def _label(v: object) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def fit_sem_multigroup(model: LavaanModel, df: pd.DataFrame, group: str, *,
                       group_equal: str | Sequence[str] | None = None,
                       group_pool: str | Sequence[str] | None = None,
                       seed: int = 2023, source: str | None = None, **kwargs: object) -> MultiGroupSemFit:
    """Fit a multi-group lavaan model (module docstring).

    Parameters
    ----------
    model
        Parsed lavaan model.
    df
        Data with the group column.
    group
        Name of the group column; rows with a missing group are excluded (logged).
    group_equal, group_pool
        Parameter types constrained equal / partially pooled across groups (not yet available:
        refused).
    seed
        Seed; group ``k`` (0-based) uses ``seed + k``.
    kwargs
        Passed on to :func:`~veerkracht_bayes.sem.lavaan_model.fit_sem` (draws, tune, chains, sampler...).

    Raises
    ------
    ModelError
        Unknown group column, fewer than two groups, an unknown parameter type, or a requested
        equality / pooling.
    """
    cols = list(map(str, df.columns))
    if group not in cols:
        raise ModelError(Problem(f"group column {group!r} is not in the data{did_you_mean(group, cols)}",
                                 file=source, field="group", value=group))
    eq = parse_group_types(group_equal, "--group-equal")
    pool = parse_group_types(group_pool, "--group-pool")
    both = sorted(set(eq) & set(pool))
    if both:
        raise ModelError(Problem(f"{both} named in both --group-equal and --group-pool (expected one of them)",
                                 field="group-pool", value=both))
    if eq or pool:
        raise ModelError(Problem("--group-equal / --group-pool need a joint multi-group model, which is not "
                                 "available yet; fit the configural model (no --group-equal), or use the "
                                 "MARVEL multi-group model (veerkracht_bayes.sem.multigroup) for pooled links",
                                 field="group-equal" if eq else "group-pool"))
    g = df[group]
    missing = g.isna()
    if missing.any():
        log.warning("%d row(s) have no value in group column %r and are excluded", int(missing.sum()), group)
    labels = list(dict.fromkeys(_label(v) for v in g[~missing]))
    if len(labels) < 2:
        raise ModelError(Problem(f"group column {group!r} has {len(labels)} group(s) {labels}; expected at least 2",
                                 file=source, field="group"))
    lab_col = g.map(lambda v: None if pd.isna(v) else _label(v))
    rest = df.drop(columns=[group])
    fits = {}
    for k, lab in enumerate(labels):
        sub = rest[(lab_col == lab).to_numpy()].reset_index(drop=True)
        log.info("group %r: %d row(s)", lab, len(sub))
        fits[lab] = fit_sem(model, sub, seed=seed + k, source=source, **kwargs)  # type: ignore[arg-type]
    return MultiGroupSemFit(group, fits)
