"""Bayesian SEM for generic lavaan models, following lavaan's defaults (``docs/lavaan_models.md``).

Representation (RAM / LISREL "all-y")
-------------------------------------
Every latent variable and every modelled observed variable is a *node* ``v``::

    v = B v + Gamma x + alpha + zeta,     Cov(zeta) = Psi,     A = (I - B)^-1

* ``f =~ y`` puts the loading in ``B[y, f]``; ``y ~ z`` puts the regression in ``B[y, z]``
  (cycles allowed); observed variables of the structural part are nodes like latents, so
  they are "single-indicator latents with zero residual", as in lavaan.
* ``x`` are the observed exogenous covariates of regressions (lavaan's ``fixed.x``): the
  likelihood is conditional on them, their moments are not modelled.
* ``Psi`` holds residual variances of indicators, (residual) variances of latents and the
  covariances: written ``~~`` rows, covariances among exogenous latents (``auto.cov.lv.x``)
  and among pure dependent variables (``auto.cov.y``, as lavaan's ``sem()``).

The observed variables ``y`` (a selection ``F`` of the nodes) then satisfy::

    y | x ~ N(F A (alpha + Gamma x),  F A Psi A^T F^T)

evaluated on the complete cases through sufficient statistics (``Syy``, ``Suy``, ``Suu`` with
``u = [1, x]``) - the ML discrepancy of lavaan (divisor ``n``). Without ``~ 1`` rows the mean
structure is saturated: ``y`` and ``x`` are centred at their sample means and intercepts are
zero, which is the profile likelihood of free intercepts (identical ML estimates to lavaan's).

Parameters and default priors (blavaan's defaults, ``priors/marvel.yaml`` ``defaults.vague``)
--------------------------------------------------------------------------------------------
* loadings and regressions ~ Normal(0, 10); intercepts ~ Normal(0, 32) (latent ones Normal(0, 10));
* every standard deviation (residual or latent) ~ Gamma(1, rate 0.5 / s) i.e. exponential with
  mean ``2 s``, where ``s`` is the sample sd of the variable (of the marker indicator for a
  latent); with ``s = 1`` this is blavaan's ``gamma(1, .5)[sd]``;
* every covariance is ``r * sd_i * sd_j`` with ``r ~ Uniform(-1, 1)`` (blavaan's
  ``beta(1, 1)`` on ``(r + 1) / 2``); a draw whose covariance matrix of disturbances is not
  positive definite gets zero density.

A priors file (YAML, see :func:`load_sem_priors`) replaces the Normal prior of any loading,
regression or intercept, keyed by ``"lhs op rhs"`` or by label.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from veerkracht_bayes.errors import IdentificationError, ModelError, PriorError, Problem, did_you_mean
from veerkracht_bayes.graph.lavaan_syntax import LavaanModel
from veerkracht_bayes.sem import algebra

__all__ = [
    "SemPrior",
    "ParamRow",
    "SemSpec",
    "SemData",
    "SemFit",
    "specify",
    "prepare_sem_data",
    "check_identification",
    "load_sem_priors",
    "build_sem_model",
    "sem_logp_reference",
    "fit_sem",
    "map_estimate",
    "StructuralView",
    "parameter_table",
    "implied_matrices",
    "structural_view",
    "TABLE_COLUMNS",
    "table_row_values",
    "model_location",
    "prior_for",
    "coef_prior",
    "reference_scales",
    "coef_start",
    "row_values_pt",
    "matrices_pt",
    "sem_loglik_pt",
    "ml_start",
    "sample_sem_model",
    "coef_rv",
    "count_divergences",
]

log = logging.getLogger(__name__)

LOG_2PI = float(np.log(2 * np.pi))

#: Columns of the parameter table, in order.
TABLE_COLUMNS = ("lhs", "op", "rhs", "label", "free", "mean", "sd", "median", "lower", "upper",
                 "r_hat", "ess_bulk", "ess_tail")

#: Default Normal sd of loadings / regressions, observed intercepts, latent intercepts (blavaan).
VAGUE_COEF_SD = 10.0
VAGUE_INTERCEPT_SD = 32.0
VAGUE_LATENT_INTERCEPT_SD = 10.0
#: Gamma(1, rate) on each sd with rate = VAGUE_SD_RATE / (sample sd of the variable).
VAGUE_SD_RATE = 0.5
#: A prior with sd below this is "informative" for the order-condition check.
INFORMATIVE_SD = 1.0


# --------------------------------------------------------------------------- specification
@dataclass(frozen=True)
class SemPrior:
    """Normal prior of one coefficient (from a priors file).

    Examples
    --------
    >>> SemPrior(mean=0.3, sd=0.1)
    SemPrior(mean=0.3, sd=0.1)
    """

    mean: float
    sd: float


@dataclass(frozen=True)
class ParamRow:
    """One row of the parameter table.

    Attributes
    ----------
    lhs, op, rhs
        As lavaan (``op`` one of ``=~ ~ ~~ ~1``; ``rhs`` is ``""`` for intercepts).
    label
        Label (``""`` when none).
    kind
        ``coef`` (loading / regression / intercept), ``var`` or ``cov``.
    fixed
        Fixed value, or None when free.
    pid
        Index of the free parameter (rows sharing a label share it), or -1.
    user
        True when written in the model, False when added by lavaan's defaults.
    line
        Source line (0 for defaults).

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> row = specify(parse_lavaan("y ~ x"), ["y", "x"]).rows[0]
    >>> isinstance(row, ParamRow), row.kind, row.lhs, row.rhs
    (True, 'coef', 'y', 'x')
    """

    lhs: str
    op: str
    rhs: str
    label: str
    kind: str
    fixed: float | None
    pid: int
    user: bool
    line: int = 0

    @property
    def free(self) -> bool:
        """True for a free parameter."""
        return self.fixed is None

    @property
    def key(self) -> str:
        """``"lhs op rhs"``."""
        return f"{self.lhs} {self.op} {self.rhs}".strip()


@dataclass(frozen=True)
class SemSpec:
    """A lavaan model resolved with lavaan's defaults against the data's columns.

    Attributes
    ----------
    model
        The parsed model.
    nodes
        Latent variables, then modelled observed variables (the ``v`` vector).
    latents, observed, covariates
        Latent variables; modelled observed variables (data columns, order of ``nodes``);
        fixed.x covariates (data columns the likelihood conditions on).
    rows
        The parameter table rows (user rows in source order, then defaults).
    n_free
        Number of free parameters (after equality by label).
    free_kind
        Per free parameter: ``coef``, ``sd`` or ``corr``.
    bounds
        Per free ``coef`` parameter: ``None``, ``"pos"`` or ``"neg"`` (from ``label > 0``).
    meanstructure
        True when the model has ``~ 1`` rows (intercepts modelled).
    structural
        Nodes of the structural part (latents and observed variables in ``~`` rows) plus
        covariates, in that order: the variables do-queries act on.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("m ~ x; y ~ m"), ["x", "m", "y"])
    >>> isinstance(spec, SemSpec), spec.nodes
    (True, ('m', 'y'))
    """

    model: LavaanModel
    nodes: tuple[str, ...]
    latents: tuple[str, ...]
    observed: tuple[str, ...]
    covariates: tuple[str, ...]
    rows: tuple[ParamRow, ...]
    n_free: int
    free_kind: tuple[str, ...]
    bounds: tuple[str | None, ...]
    meanstructure: bool
    structural: tuple[str, ...]

    @property
    def node_index(self) -> dict[str, int]:
        """Position of each node in ``nodes``."""
        return {n: i for i, n in enumerate(self.nodes)}

    def free_rows(self) -> dict[int, list[ParamRow]]:
        """Free parameter index -> its rows."""
        out: dict[int, list[ParamRow]] = {}
        for r in self.rows:
            if r.pid >= 0:
                out.setdefault(r.pid, []).append(r)
        return out

    def n_moments(self) -> int:
        """Number of sample moments the model is fitted to (t-rule)."""
        p, q = len(self.observed), len(self.covariates)
        return p * (p + 1) // 2 + p * q + (p if self.meanstructure else 0)


def model_location(model: LavaanModel, line: int | None = None) -> dict:
    """Where in the model file a problem is: keyword arguments ``file`` and ``line`` for
    :class:`~veerkracht_bayes.errors.Problem`.

    Parameters
    ----------
    model : LavaanModel
        The parsed model (its ``path`` is ``None`` for a model given as a string).
    line : int, optional
        1-based line of the model text; ``None`` (or 0) when the problem has no single line.

    Returns
    -------
    dict
        ``{"file": model.path, "line": line or None}``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> model_location(parse_lavaan("y ~ x"), 1)
    {'file': None, 'line': 1}
    """
    return {"file": model.path, "line": line or None}


def specify(model: LavaanModel, columns: Sequence[str]) -> SemSpec:
    """Resolve a lavaan model with lavaan's defaults (marker loadings, auto variances, ...).

    Parameters
    ----------
    model
        Parsed lavaan model (:func:`~veerkracht_bayes.graph.lavaan_syntax.parse_lavaan`).
    columns
        Names of the data columns.

    Returns
    -------
    SemSpec

    Raises
    ------
    ModelError
        Unsupported syntax (equality constraints ``==``, inequality constraints other than a
        sign on a coefficient label, covariances sharing a label), variables that are neither
        data columns nor latent variables.
    IdentificationError
        See :func:`check_identification` (called here).

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ x"), ["y", "x"])
    >>> [r.key for r in spec.rows], spec.covariates
    (['y ~ x', 'y ~~ y'], ('x',))
    """
    cols = [str(c) for c in columns]
    colset = set(cols)
    latents = model.latent_variables()
    latset = set(latents)
    probs: list[Problem] = []
    for r in model.rows:
        if r.op == "==":
            probs.append(Problem(f"equality constraint '{r.lhs} == {r.rhs}' is not supported by the "
                                 "Bayesian engine; expected equal labels (a*x1 + a*x2) instead",
                                 **model_location(model, r.line)))
    if model.definitions():
        log.info("defined parameters (':=') are not computed by the sem engine: %s",
                 ", ".join(r.lhs for r in model.definitions()))
    # -- names
    first_line: dict[str, int] = {}
    for r in model.rows:
        if r.op in ("=~", "~", "~~"):
            for v in (r.lhs, r.rhs):
                first_line.setdefault(v, r.line)
        elif r.op == "~1":
            first_line.setdefault(r.lhs, r.line)
    for v in model.variables():
        if v not in latset and v not in colset:
            probs.append(Problem(
                f"variable {v!r} is not a column of the data{did_you_mean(v, cols)} and not a latent "
                f"variable (no '{v} =~ ...' line defines it); expected a data column or a latent "
                "variable with indicators", **model_location(model, first_line.get(v)), field=v, value=v))
    if probs:
        raise ModelError(probs)
    # -- variable classes
    regs = model.regressions()
    meas = model.measurement()
    indicators = {r.rhs for r in meas}
    lhs_reg = {r.lhs for r in regs}
    rhs_reg = {r.rhs for r in regs}
    touched = {v for r in model.covariances() for v in (r.lhs, r.rhs)} | {r.lhs for r in model.intercepts()}
    covariates = [v for v in model.observed_variables()
                  if v in rhs_reg and v not in lhs_reg and v not in indicators and v not in touched]
    observed = [v for v in model.observed_variables() if v not in covariates]
    nodes = list(latents) + observed
    meanstructure = bool(model.intercepts())
    # -- sign constraints on coefficient labels
    sign_of: dict[str, str] = {}
    labels_all = model.labels()
    for r in model.constraints():
        if r.op == "==":
            continue
        lhs, op, rhs = r.lhs, r.op, r.rhs
        if _is_num(lhs) and rhs in labels_all:
            lhs, rhs, op = rhs, lhs, {"<": ">", ">": "<"}[op]
        ok = lhs in labels_all and _is_num(rhs) and float(rhs) == 0.0 and all(
            x.op in ("=~", "~") for x in labels_all[lhs])
        if not ok:
            probs.append(Problem(f"constraint '{r.lhs} {r.op} {r.rhs}' is not supported; expected a "
                                 "sign constraint 'label > 0' or 'label < 0' on a loading or "
                                 "regression label", **model_location(model, r.line)))
            continue
        sign_of[lhs] = "pos" if op == ">" else "neg"
    if probs:
        raise ModelError(probs)

    # -- rows: user rows first
    rows: list[ParamRow] = []
    pid_of_label: dict[str, int] = {}
    kind_of_pid: list[str] = []
    bounds: list[str | None] = []
    label_kind: dict[str, str] = {}

    def new_pid(label: str, kind: str, line: int) -> int:
        if label:
            if label in pid_of_label:
                k = kind_of_pid[pid_of_label[label]]
                if k != kind or kind == "corr":
                    raise ModelError(Problem(
                        f"label {label!r} is shared by parameters of different kinds or by "
                        "covariances; equality by label is supported among loadings/regressions/"
                        "intercepts and among variances only", **model_location(model, line), field="label",
                        value=label))
                return pid_of_label[label]
            pid_of_label[label] = len(kind_of_pid)
        kind_of_pid.append(kind)
        bounds.append(sign_of.get(label) if kind == "coef" else None)
        return len(kind_of_pid) - 1

    first_ind: dict[str, str] = {}
    for r in meas:
        first_ind.setdefault(r.lhs, r.rhs)
    seen: set[tuple[str, str, str]] = set()

    def add(lhs: str, op: str, rhs: str, kind: str, fixed: float | None, label: str, user: bool,
            line: int) -> None:
        k = (min(lhs, rhs), op, max(lhs, rhs)) if op == "~~" else (lhs, op, rhs)
        seen.add(k)
        pkind = {"coef": "coef", "var": "sd", "cov": "corr"}[kind]
        pid = -1 if fixed is not None else new_pid(label, pkind, line)
        rows.append(ParamRow(lhs, op, rhs, label, kind, fixed, pid, user, line))

    for r in model.rows:
        lab = r.label or ""
        if r.op == "=~":
            fixed = r.fixed
            if fixed is None and not r.freed and first_ind[r.lhs] == r.rhs:
                fixed = 1.0
            add(r.lhs, "=~", r.rhs, "coef", fixed, lab, True, r.line)
        elif r.op == "~":
            add(r.lhs, "~", r.rhs, "coef", r.fixed, lab, True, r.line)
        elif r.op == "~~":
            if (r.lhs in covariates) or (r.rhs in covariates):  # pragma: no cover - excluded above
                continue
            kind = "var" if r.lhs == r.rhs else "cov"
            if kind == "var" and r.fixed is not None and r.fixed < 0:
                raise ModelError(Problem(f"variance of {r.lhs!r} fixed at {r.fixed} (expected >= 0)",
                                         **model_location(model, r.line), value=r.fixed))
            add(r.lhs, "~~", r.rhs, kind, r.fixed, lab, True, r.line)
        elif r.op == "~1":
            if r.lhs in covariates:  # pragma: no cover - excluded above
                continue
            add(r.lhs, "~1", "", "coef", r.fixed, lab, True, r.line)
    # -- defaults
    for v in observed + list(latents):
        if (v, "~~", v) not in seen:
            add(v, "~~", v, "var", None, "", False, 0)
    exo_lat = [f for f in latents if f not in lhs_reg]
    pure_dep = [v for v in nodes if v in lhs_reg and v not in rhs_reg and v not in indicators]
    for group in (exo_lat, pure_dep):
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                k = (min(a, b), "~~", max(a, b))
                if k not in seen:
                    add(a, "~~", b, "cov", None, "", False, 0)
    if meanstructure:
        for v in observed:
            if (v, "~1", "") not in seen:
                add(v, "~1", "", "coef", None, "", False, 0)
    structural = [v for v in nodes if v in latset or v in lhs_reg or v in rhs_reg] + covariates
    spec = SemSpec(model=model, nodes=tuple(nodes), latents=tuple(latents), observed=tuple(observed),
                   covariates=tuple(covariates), rows=tuple(rows), n_free=len(kind_of_pid),
                   free_kind=tuple(kind_of_pid), bounds=tuple(bounds), meanstructure=meanstructure,
                   structural=tuple(structural))
    return spec


def _is_num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- identification
def check_identification(spec: SemSpec, priors: Mapping[str, SemPrior] | None = None) -> None:
    """Check identification before sampling; raise :class:`IdentificationError` explaining why not.

    Checks: every latent has a scale (a fixed loading or a fixed variance); a latent with a
    single indicator has that indicator's residual variance or its own variance fixed; the
    t-rule (free parameters <= sample moments); in each cyclic block of the structural part,
    the order condition (each equation excludes at least as many predetermined variables as
    it includes endogenous ones), unless every coefficient of the equation's endogenous
    regressors has an informative prior (sd < 1).

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> check_identification(specify(parse_lavaan("y ~ x"), ["y", "x"]))  # identified: returns None
    """
    priors = priors or {}
    model = spec.model
    probs: list[Problem] = []
    by_key = {(r.lhs, r.op, r.rhs): r for r in spec.rows}
    inds = model.indicators()
    for f in spec.latents:
        lrows = [by_key[(f, "=~", i)] for i in inds.get(f, [])]
        var = by_key.get((f, "~~", f))
        var_fixed = var is not None and not var.free
        line = lrows[0].line if lrows else None
        if all(r.free for r in lrows) and not var_fixed:
            probs.append(Problem(
                f"latent {f!r} has no scale: all its loadings are free and its variance is free; "
                "expected a fixed loading (lavaan's default marker: leave the first loading without "
                "NA*) or a fixed variance (f ~~ 1*f)", **model_location(model, line), field=f))
        if len(lrows) == 1:
            ind = lrows[0].rhs
            th = by_key.get((ind, "~~", ind))
            th_fixed = th is not None and not th.free
            if not th_fixed and not var_fixed:
                probs.append(Problem(
                    f"latent {f!r} has a single indicator {ind!r} with a free residual variance "
                    f"and a free latent variance: only their sum is identified; expected a fixed "
                    f"residual variance ({ind} ~~ 0*{ind}, or a value from a known reliability) "
                    "or more indicators", **model_location(model, line), field=f))
    t = spec.n_moments()
    if spec.n_free > t:
        probs.append(Problem(
            f"the model has {spec.n_free} free parameters but the data give only {t} sample "
            f"moments ({len(spec.observed)} observed variables"
            f"{', ' + str(len(spec.covariates)) + ' covariates' if spec.covariates else ''}"
            f"{', means' if spec.meanstructure else ''}): the t-rule fails; expected at most {t}",
            file=model.path))
    probs += _order_condition(spec, priors)
    if probs:
        raise IdentificationError(probs)


def _order_condition(spec: SemSpec, priors: Mapping[str, SemPrior]) -> list[Problem]:
    import networkx as nx

    regs = [r for r in spec.rows if r.op == "~"]
    g = nx.DiGraph()
    g.add_nodes_from({r.lhs for r in regs} | {r.rhs for r in regs})
    g.add_edges_from((r.rhs, r.lhs) for r in regs)
    probs = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) < 2:
            continue
        parents = {k: [r for r in regs if r.lhs == k] for k in comp}
        exo = {r.rhs for k in comp for r in parents[k] if r.rhs not in comp}
        for k in sorted(comp):
            endo = [r for r in parents[k] if r.rhs in comp]
            included_exo = {r.rhs for r in parents[k] if r.rhs not in comp}
            excluded = exo - included_exo
            if len(excluded) >= len(endo):
                continue
            informative = all(
                r.fixed is not None or prior_for(r, priors) is not None
                and prior_for(r, priors).sd < INFORMATIVE_SD for r in endo)
            if informative:
                continue
            line = endo[0].line if endo else None
            probs.append(Problem(
                f"equation of {k!r} in the feedback loop {sorted(comp)} includes {len(endo)} "
                f"endogenous regressor(s) {[r.rhs for r in endo]} but excludes only {len(excluded)} "
                f"predetermined variable(s) {sorted(excluded)}: the order condition fails, so its "
                "coefficients are not identified; expected an instrument (a variable that affects "
                "another equation of the loop but not this one) or an informative prior "
                f"(sd < {INFORMATIVE_SD}) on {[r.key for r in endo]}",
                **model_location(spec.model, line), field=k))
    return probs


def prior_for(row: ParamRow, priors: Mapping[str, SemPrior]) -> SemPrior | None:
    """The prior a priors file gives one parameter-table row: by its label first, else by its
    key ``"lhs op rhs"``; ``None`` when the file names neither.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ b*x"), ["y", "x"])
    >>> prior_for(spec.rows[0], {"b": SemPrior(0.3, 0.1)})
    SemPrior(mean=0.3, sd=0.1)
    >>> prior_for(spec.rows[1], {"b": SemPrior(0.3, 0.1)}) is None
    True
    """
    if row.label and row.label in priors:
        return priors[row.label]
    return priors.get(row.key)


# --------------------------------------------------------------------------- priors file
def load_sem_priors(path: str | Path, spec: SemSpec) -> dict[str, SemPrior]:
    """Read a priors file for a generic lavaan model.

    Format (YAML)::

        priors:                      # or the mapping at top level
          "dem60 ~ ind60": {mean: 1.0, sd: 0.5}
          "ind60 =~ x2":  {distribution: normal, mean: 2.0, sd: 1.0}
          a: {mean: 0.5, sd: 0.2}    # a label

    Keys are ``"lhs op rhs"`` (spaces as written, ``"y ~1"`` for an intercept) or labels of
    free loadings, regressions or intercepts. Only ``normal`` priors (mean, sd > 0).

    Raises
    ------
    PriorError
        Located at the file's line: unknown keys (did-you-mean), fixed or variance parameters,
        unknown fields or distributions, non-numeric or non-finite values, sd <= 0.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ b*x"), ["y", "x"])
    >>> path = Path(tempfile.mkdtemp()) / "priors.yaml"
    >>> _ = path.write_text("b: {mean: 0.3, sd: 0.1}")  # keyed by label (or "y ~ x")
    >>> load_sem_priors(path, spec)
    {'b': SemPrior(mean=0.3, sd=0.1)}
    """
    from veerkracht_bayes.yaml_io import load_yaml

    doc = load_yaml(path, error_cls=PriorError)
    data = doc.data
    base: list[str | int] = []
    if isinstance(data, Mapping) and set(data) == {"priors"}:
        data, base = data["priors"], ["priors"]
    if not isinstance(data, Mapping):
        raise PriorError(Problem("expected a mapping of parameter -> {mean, sd}", file=doc.path,
                                 line=doc.line_of(base)))
    coef_rows = {r.key: r for r in spec.rows if r.kind == "coef"}
    keys = {r.key.replace(" ", ""): r for r in coef_rows.values()}
    labels = {r.label: r for r in spec.rows if r.label and r.kind == "coef"}
    other = {r.key.replace(" ", ""): r for r in spec.rows if r.kind != "coef"}
    out: dict[str, SemPrior] = {}
    probs: list[Problem] = []
    for k, v in data.items():
        loc = [*base, str(k)]
        line = doc.line_of(loc)
        ks = str(k)
        norm = ks.replace(" ", "")
        row = keys.get(norm) or labels.get(ks)
        if row is None:
            why = ("is a (co)variance; only loadings, regressions and intercepts take a prior here"
                   if norm in other else "is not a parameter of the model")
            probs.append(Problem(f"{ks!r} {why}{did_you_mean(ks, list(coef_rows) + list(labels))}",
                                 file=doc.path, line=line, field=ks, value=ks))
            continue
        if not row.free:
            probs.append(Problem(f"{ks!r} is fixed at {row.fixed} in the model; a prior has no effect "
                                 "(expected a free parameter)", file=doc.path, line=line, field=ks))
            continue
        if not isinstance(v, Mapping):
            probs.append(Problem(f"prior of {ks!r} must be a mapping {{mean, sd}}, got {v!r}",
                                 file=doc.path, line=line, field=ks, value=v))
            continue
        extra = sorted(set(map(str, v)) - {"distribution", "mean", "sd"})
        if extra:
            probs.append(Problem(f"unknown field(s) {extra} in the prior of {ks!r}"
                                 f"{did_you_mean(extra[0], ['distribution', 'mean', 'sd'])} "
                                 "(expected distribution, mean, sd)", file=doc.path, line=line,
                                 field=extra[0]))
            continue
        dist = v.get("distribution", "normal")
        if dist != "normal":
            probs.append(Problem(f"unknown distribution {dist!r}{did_you_mean(str(dist), ['normal'])} "
                                 f"for {ks!r} (expected 'normal')", file=doc.path, line=line,
                                 field="distribution", value=dist))
            continue
        vals = {}
        for fld in ("mean", "sd"):
            x = v.get(fld)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                probs.append(Problem(f"{fld} of the prior of {ks!r} must be a finite number, got {x!r}",
                                     file=doc.path, line=doc.line_of([*loc, fld]), field=fld, value=x))
            else:
                vals[fld] = float(x)
        if len(vals) < 2:
            continue
        if vals["sd"] <= 0:
            probs.append(Problem(f"sd of the prior of {ks!r} must be > 0, got {vals['sd']}",
                                 file=doc.path, line=doc.line_of([*loc, "sd"]), field="sd",
                                 value=vals["sd"]))
            continue
        out[row.label if (row.label and ks == row.label) else row.key] = SemPrior(vals["mean"], vals["sd"])
    if probs:
        raise PriorError(probs)
    return out


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class SemData:
    """Complete-case sufficient statistics of the modelled columns.

    ``Syy = sum y y^T``, ``Suy = sum u y^T``, ``Suu = sum u u^T`` with ``u = [1, x]``; without
    a mean structure ``y`` and ``x`` are centred at their sample means first.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> isinstance(prepare_sem_data(spec, df), SemData)
    True
    """

    n: int
    n_dropped: int
    observed: tuple[str, ...]
    covariates: tuple[str, ...]
    Syy: np.ndarray
    Suy: np.ndarray
    Suu: np.ndarray
    mean: dict[str, float]
    sd: dict[str, float]
    x_cov: np.ndarray
    unused_columns: tuple[str, ...] = ()


def prepare_sem_data(spec: SemSpec, df: pd.DataFrame, source: str | None = None) -> SemData:
    """Select, check and summarise the data for ``spec``.

    Columns not used by the model are ignored (logged). Rows with a missing value in a used
    column are excluded and counted (logged at WARNING level).

    Raises
    ------
    ModelError
        A used column is not numeric (names the column and an offending value), or fewer than
        two complete rows remain.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> data = prepare_sem_data(spec, df)
    >>> isinstance(data, SemData), data.n
    (True, 200)
    """
    used = list(spec.observed) + list(spec.covariates)
    unused = tuple(str(c) for c in df.columns if str(c) not in set(used))
    if unused:
        log.info("ignoring %d data column(s) the model does not use: %s", len(unused),
                 ", ".join(unused[:20]) + (" ..." if len(unused) > 20 else ""))
    probs = []
    cols = {}
    for c in used:
        s = df[c]
        if s.dtype == bool:
            s = s.astype(float)
        num = pd.to_numeric(s, errors="coerce")
        bad = s.notna() & num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            probs.append(Problem(f"column {c!r} is not numeric: row {i + 2} has {s.iloc[i]!r} "
                                 "(expected numbers; recode categories as numeric codes or dummies)",
                                 file=source, location=c, field=c, value=s.iloc[i]))
        cols[c] = num.astype(float)
    if probs:
        raise ModelError(probs)
    X = pd.DataFrame(cols)[used].to_numpy(dtype=float) if used else np.zeros((len(df), 0))
    ok = np.isfinite(X).all(axis=1)
    dropped = int((~ok).sum())
    if dropped:
        log.warning("%d of %d row(s) have a missing value in a modelled column and are excluded "
                    "(complete-case analysis)", dropped, len(X))
    X = X[ok]
    n = len(X)
    if n < 2:
        raise ModelError(Problem(f"only {n} complete row(s) in the modelled columns; expected at least 2",
                                 file=source))
    p = len(spec.observed)
    y, x = X[:, :p], X[:, p:]
    mean = dict(zip(used, X.mean(axis=0).tolist()))
    sd = dict(zip(used, X.std(axis=0).tolist()))
    zero = [c for c in used if sd[c] == 0]
    if zero:
        raise ModelError(Problem(f"column(s) {zero} are constant in the complete cases; expected "
                                 "variation", file=source, field=zero[0]))
    if not spec.meanstructure:
        y = y - y.mean(axis=0)
        x = x - x.mean(axis=0)
    u = np.column_stack([np.ones(n), x])
    xc = x - x.mean(axis=0)
    return SemData(n=n, n_dropped=dropped, observed=spec.observed, covariates=spec.covariates,
                   Syy=y.T @ y, Suy=u.T @ y, Suu=u.T @ u, mean=mean, sd=sd,
                   x_cov=(xc.T @ xc) / n, unused_columns=unused)


# --------------------------------------------------------------------------- matrices
def reference_scales(spec: SemSpec, data: SemData) -> dict[str, float]:
    """Sample sd of each node's reference variable (itself, or the marker indicator of a latent).

    The scale ``s`` of the vague Gamma prior on every standard deviation (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 2.0, 4.0, 6.0]})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> round(reference_scales(spec, prepare_sem_data(spec, df))["y"], 3)
    2.236
    """
    inds = spec.model.indicators()
    out: dict[str, float] = {}

    def ref(v: str, depth: int = 0) -> float:
        if v in data.sd:
            return data.sd[v]
        if v in inds and depth < 20:
            return ref(inds[v][0], depth + 1)
        return 1.0

    for v in spec.nodes:
        out[v] = ref(v)
    return out


def table_row_values(spec: SemSpec, free: np.ndarray) -> np.ndarray:
    """``(S, R)`` value of every table row from ``(S, n_free)`` free-parameter values (numpy).

    Free parameters are on the sampler's scale: a variance row takes the square of its free
    value (a standard deviation), a covariance row its free value (a correlation) times the two
    standard deviations; fixed rows take their fixed value.

    Examples
    --------
    >>> import numpy as np
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ x"), ["y", "x"])
    >>> [r.key for r in spec.rows]
    ['y ~ x', 'y ~~ y']
    >>> table_row_values(spec, np.array([0.4, 2.0]))
    array([[0.4, 4. ]])
    """
    free = np.atleast_2d(free)
    S = free.shape[0]
    vals = np.zeros((S, len(spec.rows)))
    var_val: dict[str, np.ndarray] = {}
    for i, r in enumerate(spec.rows):
        if r.kind == "cov":
            continue
        if r.fixed is not None:
            vals[:, i] = r.fixed
        elif r.kind == "var":
            vals[:, i] = free[:, r.pid] ** 2
        else:
            vals[:, i] = free[:, r.pid]
        if r.kind == "var":
            var_val[r.lhs] = vals[:, i]
    for i, r in enumerate(spec.rows):
        if r.kind != "cov":
            continue
        if r.fixed is not None:
            vals[:, i] = r.fixed
        else:
            vals[:, i] = free[:, r.pid] * np.sqrt(var_val[r.lhs] * var_val[r.rhs])
    return vals


def implied_matrices(spec: SemSpec, values: np.ndarray) -> dict[str, np.ndarray]:
    """Matrices from table-row values ``(S, R)`` (numpy): ``B`` (S,N,N), ``Gamma`` (S,N,q),
    ``Psi`` (S,N,N), ``alpha`` (S,N) over ``spec.nodes``.

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ x"), ["y", "x"])
    >>> m = implied_matrices(spec, table_row_values(spec, np.array([0.4, 1.0])))
    >>> m["Gamma"][0].tolist(), m["Psi"][0].tolist()
    ([[0.4]], [[1.0]])
    """
    values = np.atleast_2d(values)
    S, N, q = values.shape[0], len(spec.nodes), len(spec.covariates)
    idx = spec.node_index
    cidx = {c: j for j, c in enumerate(spec.covariates)}
    B = np.zeros((S, N, N))
    G = np.zeros((S, N, q))
    Psi = np.zeros((S, N, N))
    alpha = np.zeros((S, N))
    for i, r in enumerate(spec.rows):
        v = values[:, i]
        if r.op == "=~":
            B[:, idx[r.rhs], idx[r.lhs]] = v
        elif r.op == "~":
            if r.rhs in cidx:
                G[:, idx[r.lhs], cidx[r.rhs]] = v
            else:
                B[:, idx[r.lhs], idx[r.rhs]] = v
        elif r.op == "~~":
            Psi[:, idx[r.lhs], idx[r.rhs]] = v
            Psi[:, idx[r.rhs], idx[r.lhs]] = v
        else:
            alpha[:, idx[r.lhs]] = v
    return {"B": B, "Gamma": G, "Psi": Psi, "alpha": alpha}


def sem_logp_reference(spec: SemSpec, data: SemData, values: np.ndarray) -> float:
    """Log-likelihood at one set of table-row values, by a direct multivariate-normal formula.

    An independent (numpy) implementation used by tests: builds ``Sigma`` and the mean of
    ``y | x`` and sums ``log N(y_n | mu(x_n), Sigma)`` written out from the sufficient
    statistics' definition.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> data = prepare_sem_data(spec, df)
    >>> lp = sem_logp_reference(spec, data, table_row_values(spec, np.array([0.5, 1.0]))[0])
    >>> bool(np.isfinite(lp)), lp > sem_logp_reference(spec, data, table_row_values(spec, np.array([-0.5, 1.0]))[0])
    (True, True)
    """
    m = implied_matrices(spec, np.asarray(values)[None])
    N = len(spec.nodes)
    A = np.linalg.inv(np.eye(N) - m["B"][0])
    F = [spec.node_index[v] for v in spec.observed]
    Sigma = (A @ m["Psi"][0] @ A.T)[np.ix_(F, F)]
    M = np.column_stack([(A @ m["alpha"][0])[F], (A @ m["Gamma"][0])[F]])
    p = len(F)
    sign, logdet = np.linalg.slogdet(Sigma)
    if sign <= 0:
        return -np.inf
    Si = np.linalg.inv(Sigma)
    R = data.Syy - M @ data.Suy - (M @ data.Suy).T + M @ data.Suu @ M.T
    return float(-0.5 * (data.n * (logdet + p * LOG_2PI) + np.trace(Si @ R)))


# --------------------------------------------------------------------------- PyMC model
def build_sem_model(spec: SemSpec, data: SemData, priors: Mapping[str, SemPrior] | None = None):
    """Build the PyMC model (see the module docstring for the likelihood and priors).

    Returns
    -------
    pm.Model
        Free variables ``coef`` (or ``coef_pos``/``coef_neg`` for sign-constrained labels),
        ``sd`` and ``corr``; deterministic ``param_value`` (dim ``param``: one value per
        parameter-table row, fixed rows included).

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> model = build_sem_model(spec, prepare_sem_data(spec, df))
    >>> sorted(v.name for v in model.free_RVs)[:2]
    ['coef', 'sd']
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors or {}
    scale = reference_scales(spec, data)
    frows = spec.free_rows()
    coef_ids = {"free": [], "pos": [], "neg": []}
    sd_ids, corr_ids = [], []
    for pid, kind in enumerate(spec.free_kind):
        if kind == "coef":
            coef_ids[spec.bounds[pid] or "free"].append(pid)
        elif kind == "sd":
            sd_ids.append(pid)
        else:
            corr_ids.append(pid)

    coords = {"param": [r.key for r in spec.rows]}
    with pm.Model(coords=coords) as model:
        free = pt.zeros((spec.n_free,))
        for grp, ids in coef_ids.items():
            if not ids:
                continue
            mu = np.array([coef_prior(spec, p, priors)[0] for p in ids])
            sg = np.array([coef_prior(spec, p, priors)[1] for p in ids])
            init = np.array([coef_start(frows[p][0], data) for p in ids])
            rv = coef_rv("coef" if grp == "free" else f"coef_{grp}", grp, mu, sg, init)
            free = pt.set_subtensor(free[np.array(ids)], rv)
        if sd_ids:
            s = np.array([scale[frows[p][0].lhs] for p in sd_ids])
            init = np.array([_sd_init(spec, frows[p][0], scale) for p in sd_ids])
            rv = pm.Gamma("sd", alpha=1.0, beta=VAGUE_SD_RATE / s, shape=len(sd_ids), initval=init)
            free = pt.set_subtensor(free[np.array(sd_ids)], rv)
        if corr_ids:
            rv = pm.Uniform("corr", lower=-1.0, upper=1.0, shape=len(corr_ids),
                            initval=np.zeros(len(corr_ids)))
            free = pt.set_subtensor(free[np.array(corr_ids)], rv)
        values = row_values_pt(spec, free)
        pm.Deterministic("param_value", values, dims="param")
        ll, psi_ok = sem_loglik_pt(spec, data, values)
        pm.Potential("loglik", ll)
        if corr_ids:
            pm.Potential("psi_positive_definite", pt.switch(psi_ok, 0.0, -np.inf))
    return model


def coef_prior(spec: SemSpec, pid: int, priors: Mapping[str, SemPrior]) -> tuple[float, float]:
    """``(mean, sd)`` of the Normal prior of free coefficient ``pid`` (a loading, regression or
    intercept): the first of its rows that a priors file names (:func:`prior_for`), else the
    vague default (module docstring; latent intercepts get :data:`VAGUE_LATENT_INTERCEPT_SD`).

    Examples
    --------
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ b*x"), ["y", "x"])
    >>> coef_prior(spec, 0, {}), coef_prior(spec, 0, {"b": SemPrior(0.3, 0.1)})
    ((0.0, 10.0), (0.3, 0.1))
    """
    rows = spec.free_rows()[pid]
    for r in rows:
        p = prior_for(r, priors)
        if p is not None:
            return p.mean, p.sd
    r0 = rows[0]
    if r0.op == "~1":
        return 0.0, VAGUE_LATENT_INTERCEPT_SD if r0.lhs in spec.latents else VAGUE_INTERCEPT_SD
    return 0.0, VAGUE_COEF_SD


def sem_loglik_pt(spec: SemSpec, data: SemData, values):
    """Normal log-likelihood of one group's sufficient statistics (PyTensor), the likelihood of
    :func:`build_sem_model` and of each group of a multi-group model.

    With ``A = (I - B)^-1`` and the observed nodes ``F``: ``Sigma = (A Psi A^T)[F, F]`` and
    ``M = [A alpha, A Gamma][F]``, the sum over the complete cases of ``log N(y | M u, Sigma)``,
    ``u = [1, x]``, written with ``R = Syy - M Suy - (M Suy)^T + M Suu M^T``::

        -0.5 * (n * (log det Sigma + p log 2 pi) + tr(Sigma^-1 R))

    (:func:`sem_logp_reference` is the independent NumPy check of this formula.)

    Parameters
    ----------
    spec : SemSpec
    data : SemData
        The group's sufficient statistics.
    values : TensorVariable
        ``(R,)`` value of every parameter-table row (:func:`row_values_pt`).

    Returns
    -------
    loglik : TensorVariable
        Scalar log-likelihood; ``-inf`` where ``Sigma`` is not positive definite.
    psi_ok : TensorVariable
        Boolean scalar: the disturbance covariance ``Psi`` is positive definite (checked on its
        correlation matrix). The caller decides when the check applies; left unused, it adds
        nothing to the graph.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> import pytensor.tensor as pt
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> data = prepare_sem_data(spec, df)
    >>> vals = table_row_values(spec, np.array([0.5, 1.0]))[0]
    >>> ll, psi_ok = sem_loglik_pt(spec, data, pt.as_tensor(vals))
    >>> bool(np.isclose(ll.eval(), sem_logp_reference(spec, data, vals))), bool(psi_ok.eval())
    (True, True)
    """
    import pytensor.tensor as pt

    B, G, Psi, alpha = matrices_pt(spec, values)
    N = len(spec.nodes)
    A = algebra.equilibrium_matrix(B, xp="pytensor")
    F = np.array([spec.node_index[v] for v in spec.observed], dtype=int)
    AF = A[F]
    Sigma = pt.dot(pt.dot(AF, Psi), AF.T)
    Sigma = 0.5 * (Sigma + Sigma.T)
    cols = [pt.dot(AF, alpha)[:, None]]
    if spec.covariates:
        cols.append(pt.dot(AF, G))
    M = pt.concatenate(cols, axis=1) if len(cols) > 1 else cols[0]
    MSuy = pt.dot(M, data.Suy)
    R = data.Syy - MSuy - MSuy.T + pt.dot(pt.dot(M, data.Suu), M.T)
    L = pt.linalg.cholesky(Sigma, on_error="nan")
    diagL = pt.diagonal(L)
    ok = pt.all(pt.gt(diagL, 0.0)) & pt.all(pt.isfinite(diagL))
    Lsafe = pt.switch(ok, L, pt.eye(len(F)))
    logdet = 2.0 * pt.sum(pt.log(pt.diagonal(Lsafe)))
    V = pt.linalg.solve_triangular(Lsafe, R, lower=True)
    U = pt.linalg.solve_triangular(Lsafe, V.T, lower=True)
    quad = pt.sum(pt.diagonal(U))
    ll = -0.5 * (data.n * (logdet + len(F) * LOG_2PI) + quad)
    d = pt.sqrt(pt.clip(pt.diagonal(Psi), 1e-300, np.inf))
    Rpsi = Psi / d[:, None] / d[None, :]
    Lp = pt.linalg.cholesky(Rpsi + 1e-10 * pt.eye(N), on_error="nan")
    dp = pt.diagonal(Lp)
    psi_ok = pt.all(pt.isfinite(dp)) & pt.all(pt.gt(dp, 0.0))
    return pt.switch(ok, ll, -np.inf), psi_ok


def coef_start(r: ParamRow, data: SemData) -> float:
    """Starting value of a free coefficient: 1 for a loading, the sample mean for an observed
    intercept (0 for a latent one), 0 for a regression.

    Examples
    --------
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 6.0]})
    >>> spec = specify(parse_lavaan("y ~ x; y ~ 1"), df.columns)
    >>> data = prepare_sem_data(spec, df)
    >>> {r.key: coef_start(r, data) for r in spec.rows if r.kind == "coef"}
    {'y ~ x': 0.0, 'y ~1': 3.0}
    """
    if r.op == "=~":
        return 1.0
    if r.op == "~1":
        return data.mean.get(r.lhs, 0.0)
    return 0.0


def _sd_init(spec: SemSpec, r: ParamRow, scale: Mapping[str, float]) -> float:
    return float(np.sqrt(0.5) * scale[r.lhs])


def row_values_pt(spec: SemSpec, free, zero: Collection[int] = (), *, stacked: bool = True):
    """PyTensor twin of :func:`table_row_values` for one draw: ``(R,)`` row values from the
    ``(n_free,)`` free parameters (sds squared to variances, correlations times the two sds).

    Rows listed in ``zero`` (positions in ``spec.rows``) are held at 0 and their variances feed no
    covariance: the ordinal model fills them in afterwards (derived residual variances, and the
    covariances built from them). ``stacked=False`` returns the list of row values instead of one
    vector, so that a caller can replace rows.

    Examples
    --------
    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ x"), ["y", "x"])
    >>> row_values_pt(spec, pt.as_tensor(np.array([0.4, 2.0]))).eval().tolist()
    [0.4, 4.0]
    """
    import pytensor.tensor as pt

    zero = set(zero)
    vals = [pt.constant(0.0) if i in zero else None for i in range(len(spec.rows))]
    var_val = {}
    for i, r in enumerate(spec.rows):
        if r.kind == "cov" or i in zero:
            continue
        if r.fixed is not None:
            v = pt.constant(float(r.fixed))
        elif r.kind == "var":
            v = free[r.pid] ** 2
        else:
            v = free[r.pid]
        vals[i] = v
        if r.kind == "var":
            var_val[r.lhs] = v
    for i, r in enumerate(spec.rows):
        if r.kind != "cov" or i in zero:
            continue
        vals[i] = (pt.constant(float(r.fixed)) if r.fixed is not None
                   else free[r.pid] * pt.sqrt(var_val[r.lhs] * var_val[r.rhs]))
    return pt.stack(vals) if stacked else vals


def matrices_pt(spec: SemSpec, values):
    """PyTensor twin of :func:`implied_matrices` for one draw: ``(B, Gamma, Psi, alpha)`` over
    ``spec.nodes`` from the ``(R,)`` row values.

    Examples
    --------
    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> spec = specify(parse_lavaan("y ~ x"), ["y", "x"])
    >>> B, G, Psi, alpha = matrices_pt(spec, pt.as_tensor(np.array([0.4, 1.0])))
    >>> G.eval().tolist(), Psi.eval().tolist()
    ([[0.4]], [[1.0]])
    """
    import pytensor.tensor as pt

    N, q = len(spec.nodes), len(spec.covariates)
    idx = spec.node_index
    cidx = {c: j for j, c in enumerate(spec.covariates)}
    groups: dict[str, tuple[list[int], list[int], list[int]]] = {
        k: ([], [], []) for k in ("B", "G", "Psi", "alpha")}
    for i, r in enumerate(spec.rows):
        if r.op == "=~":
            g, a, b = "B", idx[r.rhs], idx[r.lhs]
        elif r.op == "~":
            g, a, b = ("G", idx[r.lhs], cidx[r.rhs]) if r.rhs in cidx else ("B", idx[r.lhs], idx[r.rhs])
        elif r.op == "~~":
            g, a, b = "Psi", idx[r.lhs], idx[r.rhs]
        else:
            g, a, b = "alpha", idx[r.lhs], 0
        groups[g][0].append(i)
        groups[g][1].append(a)
        groups[g][2].append(b)
        if g == "Psi" and a != b:
            groups[g][0].append(i)
            groups[g][1].append(b)
            groups[g][2].append(a)

    def fill(shape, g):
        rows_, a, b = groups[g]
        out = pt.zeros(shape)
        if not rows_:
            return out
        ri = np.array(rows_, dtype=int)
        if len(shape) == 1:
            return pt.set_subtensor(out[np.array(a, dtype=int)], values[ri])
        return pt.set_subtensor(out[np.array(a, dtype=int), np.array(b, dtype=int)], values[ri])

    return fill((N, N), "B"), fill((N, q), "G"), fill((N, N), "Psi"), fill((N,), "alpha")


# --------------------------------------------------------------------------- fitting
@dataclass
class SemFit:
    """A fitted generic SEM: posterior draws plus what is needed to read them.

    Returned by :func:`fit_sem`; ``idata`` holds the deterministic ``param_value`` (dims
    ``chain, draw, param``: one value per parameter-table row).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> # hand-made draws (chain, draw, row) stand in for a posterior from fit_sem
    >>> draws = np.stack([rng.normal(0.5, 0.07, (2, 100)), rng.normal(1.0, 0.1, (2, 100))], axis=-1)
    >>> post = xr.Dataset({"param_value": (("chain", "draw", "param"), draws)})
    >>> fit = SemFit(spec, prepare_sem_data(spec, df), {"posterior": post})
    >>> fit.row_values().shape
    (2, 100, 2)
    >>> fit.table()[["lhs", "op", "rhs", "free"]].values.tolist()
    [['y', '~', 'x', 1], ['y', '~~', 'y', 2]]
    """

    spec: SemSpec
    data: SemData
    idata: object
    priors: dict[str, SemPrior] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def row_values(self) -> np.ndarray:
        """``(chains, draws, R)`` posterior draws of every parameter-table row."""
        post = _posterior(self.idata)
        return np.asarray(post["param_value"].transpose("chain", "draw", "param").values)

    def table(self, prob: float = 0.9) -> pd.DataFrame:
        """The parameter table (see :func:`parameter_table`)."""
        return parameter_table(self, prob)


def _posterior(idata):
    post = idata["posterior"]
    return post.to_dataset() if hasattr(post, "to_dataset") else post


Sampler = Literal["numpyro", "pymc", "nutpie", "blackjax"]


def fit_sem(
    model: LavaanModel,
    df: pd.DataFrame,
    *,
    priors: Mapping[str, SemPrior] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    seed: int = 2023,
    sampler: Sampler = "numpyro",
    target_accept: float = 0.9,
    progressbar: bool = False,
    source: str | None = None,
) -> SemFit:
    """Fit a lavaan model to data with NUTS (vague blavaan-like priors unless ``priors``).

    Steps: :func:`specify` -> :func:`prepare_sem_data` -> :func:`check_identification` ->
    :func:`build_sem_model` -> MAP by L-BFGS (the ML fit under flat-ish priors) -> NUTS with
    every chain started near the MAP (a small deterministic perturbation per chain, kept only
    when the log density is finite).

    Raises
    ------
    ModelError, IdentificationError
        Before any sampling, for bad inputs or unidentified models.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> fit = fit_sem(parse_lavaan("y ~ x"), df, draws=200, tune=200, chains=2, seed=1)  # doctest: +SKIP
    >>> fit.table()[["lhs", "op", "rhs", "mean", "lower", "upper", "r_hat"]]  # doctest: +SKIP
    >>> fit_sem(parse_lavaan("y ~ x"), df, draws=0)
    Traceback (most recent call last):
    ...
    veerkracht_bayes.errors.ModelError: ...draws must be >= 1, got 0...
    """
    from veerkracht_bayes.runtime import ensure_cpu_devices, release_compiled_programs_if_needed

    ensure_cpu_devices()
    release_compiled_programs_if_needed()  # PyMC's JAX sampler compiles new programs for each fit

    if sampler not in ("numpyro", "pymc", "nutpie", "blackjax"):
        raise ModelError(Problem(f"unknown sampler {sampler!r}{did_you_mean(str(sampler), ['numpyro', 'pymc', 'nutpie', 'blackjax'])} "
                                 "(expected numpyro, pymc, nutpie or blackjax)", field="sampler",
                                 value=sampler))
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if int(v) < lo:
            raise ModelError(Problem(f"{name} must be >= {lo}, got {v}", field=name, value=v))
    spec = specify(model, list(map(str, df.columns)))
    data = prepare_sem_data(spec, df, source)
    priors = dict(priors or {})
    check_identification(spec, priors)
    pm_model = build_sem_model(spec, data, priors)
    log.info("sampling %d chains x (%d tune + %d draws) with %s", chains, tune, draws, sampler)
    idata = sample_sem_model(pm_model, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                             target_accept=target_accept, progressbar=progressbar)
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed, "sampler": sampler,
                "target_accept": target_accept, "n": data.n, "n_dropped": data.n_dropped}
    try:
        import json

        idata.attrs["sem_settings"] = json.dumps(settings)
        idata.attrs["lavaan_model"] = model.to_lavaan()
    except Exception:  # pragma: no cover - attrs are a convenience
        pass
    fit = SemFit(spec=spec, data=data, idata=idata, priors=priors, settings=settings)
    div = count_divergences(idata)
    if div:
        log.warning("%d divergent transition(s) after tuning; check the parameter table's r_hat "
                    "and ess columns", div)
    return fit


def map_estimate(spec: SemSpec, data: SemData, priors: Mapping[str, SemPrior] | None = None
                 ) -> np.ndarray:
    """Posterior mode under the (vague) priors: the value of every parameter-table row.

    With the default vague priors this is the ML estimate up to the priors' small pull; it is
    what the chains start from. Used by tests to compare with lavaan's ML estimates.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> vals = map_estimate(spec, prepare_sem_data(spec, df))  # doctest: +SKIP
    >>> [r.key for r in spec.rows], np.ravel(vals).round(1).tolist()  # doctest: +SKIP
    (['y ~ x', 'y ~~ y'], [0.4, 1.0])
    """
    pm_model = build_sem_model(spec, data, priors)
    _, values = ml_start(pm_model, 1, 0, with_values=True)
    return values



def sample_sem_model(pm_model, *, draws: int, tune: int, chains: int, seed: int, sampler: str,
                     target_accept: float, progressbar: bool = False):
    """Sample a lavaan-route PyMC model from its posterior-mode start: the one sampling call of
    :func:`fit_sem`, the multi-group and the ordered-item fits.

    Chains start at the posterior mode (:func:`ml_start`) without jitter; numpyro runs chains in
    parallel where there is more than one core; PyMC's own sampler adapts a diagonal mass matrix.

    Parameters
    ----------
    pm_model
        The PyMC model (:func:`build_sem_model` or its multi-group / ordinal variants).
    draws, tune, chains, seed, sampler, target_accept, progressbar
        As in :func:`fit_sem`.

    Returns
    -------
    arviz.InferenceData
        Posterior and sample stats (no pointwise log-likelihood).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> m = build_sem_model(spec, prepare_sem_data(spec, df), {})
    >>> idata = sample_sem_model(m, draws=200, tune=200, chains=2, seed=1, sampler="numpyro",
    ...                          target_accept=0.9)  # doctest: +SKIP
    >>> round(float(idata.posterior["param_value"].sel(param=0).mean()), 1)  # doctest: +SKIP
    0.5
    """
    import pymc as pm

    initvals = ml_start(pm_model, chains, seed)
    nuts: dict[str, object] = {"target_accept": target_accept}
    if sampler in ("numpyro", "blackjax"):
        nuts["jitter"] = False
    if sampler == "numpyro":
        nuts["chain_method"] = "parallel" if chains > 1 and (os.cpu_count() or 1) > 1 else "sequential"
    kwargs: dict[str, object] = {"nuts": nuts, "initvals": initvals}
    if sampler == "pymc":
        kwargs["init"] = "adapt_diag"
    with pm_model:
        return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed,
                         cores=min(chains, os.cpu_count() or 1), progressbar=progressbar,
                         nuts_sampler=sampler, compute_convergence_checks=False,
                         idata_kwargs={"log_likelihood": False}, **kwargs)


def coef_rv(name: str, group: str, mu: np.ndarray, sigma: np.ndarray, init: np.ndarray):
    """The PyMC variable of a block of coefficients sharing a sign constraint: ``Normal`` for
    ``group == "free"``, a ``TruncatedNormal`` above 0 (``"pos"``) or below 0 (``"neg"``) started
    0.1 inside its bound. Call inside a model context.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as m:
    ...     rv = coef_rv("coef_pos", "pos", np.zeros(2), np.ones(2), np.array([-0.3, 0.2]))
    >>> m.rvs_to_initial_values[rv].tolist()
    [0.4, 0.30000000000000004]
    """
    import pymc as pm

    if group == "free":
        return pm.Normal(name, mu=mu, sigma=sigma, shape=len(mu), initval=init)
    lo, hi = (0.0, None) if group == "pos" else (None, 0.0)
    init = np.abs(init) * (1 if group == "pos" else -1) + (0.1 if group == "pos" else -0.1)
    return pm.TruncatedNormal(name, mu=mu, sigma=sigma, lower=lo, upper=hi, shape=len(mu), initval=init)

def ml_start(pm_model, chains: int, seed: int, with_values: bool = False):
    """Chain starts: the MAP (L-BFGS on the JAX-compiled log density, i.e. the ML fit under the
    vague priors) for chain 0; for further chains the MAP plus a small perturbation (sd 0.02) on
    the unconstrained scale, kept only where the log density is finite (else the MAP itself).

    Parameters
    ----------
    pm_model : pm.Model
        A model with a deterministic ``param_value`` (:func:`build_sem_model` and its ordinal
        and multi-group relatives).
    chains, seed : int
        Number of starts; seed of the perturbations.
    with_values : bool
        Also return the MAP's ``param_value``.

    Returns
    -------
    list of dict or (list of dict, np.ndarray)
        One ``{free variable: value}`` start per chain (PyMC ``initvals``), and with
        ``with_values`` the MAP's parameter-table values.

    Raises
    ------
    ModelError
        When the model's initial point has zero density.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> starts = ml_start(build_sem_model(spec, prepare_sem_data(spec, df)), 2, 0)  # doctest: +SKIP
    >>> len(starts), sorted(starts[0])  # doctest: +SKIP
    (2, ['coef', 'sd'])
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from veerkracht_bayes.sem.jax_conversion import jaxify

    jax.config.update("jax_enable_x64", True)
    value_vars = pm_model.value_vars
    logp_fn = jaxify(inputs=value_vars, outputs=[pm_model.logp(jacobian=False)])
    outs = pm_model.replace_rvs_by_values(list(pm_model.free_RVs) + [pm_model["param_value"]])
    back_fn = jaxify(inputs=value_vars, outputs=outs)
    ip = pm_model.initial_point()
    shapes = [np.shape(ip[v.name]) for v in value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    x0 = np.concatenate([np.ravel(ip[v.name]) for v in value_vars]).astype(float)

    def unflat(x):
        out, k = [], 0
        for shp, n in zip(shapes, sizes):
            out.append(jnp.reshape(x[k:k + n], shp))
            k += n
        return out

    def neg(x):
        return -logp_fn(*unflat(x))[0]

    vg = jax.jit(jax.value_and_grad(neg))

    def f(x):
        v, g = vg(jnp.asarray(x))
        v = float(v)
        if not np.isfinite(v):
            return 1e300, np.zeros_like(x)
        return v, np.asarray(g, dtype=float)

    if not np.isfinite(f(x0)[0]) or f(x0)[0] >= 1e300:
        raise ModelError("the starting values give a zero density (the implied covariance matrix "
                         "is not positive definite); check the model's fixed values")
    res = minimize(f, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 10000, "ftol": 1e-14, "gtol": 1e-9})
    nit = res.nit
    # L-BFGS-B's first step can land in the zero-density region (returned as 1e300 with a zero
    # gradient) and stop there with a large gradient; then walk downhill with short normalised
    # gradient steps (backtracking) before handing back to L-BFGS-B, a few rounds at most
    for _ in range(20):
        if np.max(np.abs(res.jac)) < 1e-3 * max(1.0, abs(res.fun)) ** 0.5:
            break
        x, v = _descend(f, res.x)
        again = minimize(f, x, jac=True, method="L-BFGS-B",
                         options={"maxiter": 10000, "ftol": 1e-14, "gtol": 1e-9})
        nit += again.nit
        if not again.fun < res.fun - 1e-10 * max(1.0, abs(res.fun)):
            res = again if again.fun < res.fun else res
            break
        res = again
    xs = res.x
    log.info("ML/MAP start: -logp %.4f after %d iterations (%s)", res.fun, nit, res.message)
    rng = np.random.default_rng(seed)
    names = [rv.name for rv in pm_model.free_RVs]
    starts = []
    for c in range(chains):
        x = xs
        if c > 0:
            for _ in range(20):
                cand = xs + 0.02 * rng.standard_normal(xs.shape)
                if np.isfinite(float(neg(jnp.asarray(cand)))):
                    x = cand
                    break
        vals = back_fn(*unflat(jnp.asarray(x)))
        starts.append({n: np.asarray(v, dtype=float) for n, v in zip(names, vals)})
        if c == 0:
            map_values = np.asarray(vals[-1], dtype=float)
    return (starts, map_values) if with_values else starts


def _descend(f, x: np.ndarray, iters: int = 300) -> tuple[np.ndarray, float]:
    """Normalised gradient descent with backtracking (step length adapted, no step into a point
    with a higher or infinite value); ``f`` returns ``(value, gradient)``."""
    v, g = f(x)
    step = 0.05
    for _ in range(iters):
        gn = float(np.linalg.norm(g))
        if not np.isfinite(gn) or gn < 1e-8:
            break
        while step > 1e-12:
            xn = x - step * g / gn
            vn, g_new = f(xn)
            if vn < v:
                x, v, g = xn, vn, g_new
                step *= 1.5
                break
            step *= 0.5
        else:
            break
    return x, v


def count_divergences(idata) -> int:
    """Number of divergent transitions after tuning in ``idata`` (0 when it records none).

    Examples
    --------
    >>> import numpy as np
    >>> import xarray as xr
    >>> ss = xr.Dataset({"diverging": (("chain", "draw"), np.array([[False, True, True]]))})
    >>> count_divergences({"sample_stats": ss})
    2
    """
    try:
        ss = idata["sample_stats"]
        ss = ss.to_dataset() if hasattr(ss, "to_dataset") else ss
        return int(np.asarray(ss["diverging"].values).sum())
    except (KeyError, AttributeError):  # pragma: no cover
        return 0


def parameter_table(fit: SemFit, prob: float = 0.9) -> pd.DataFrame:
    """Parameter table in lavaan's conventions.

    Columns :data:`TABLE_COLUMNS`: ``lhs, op, rhs`` as lavaan (``~1`` rows have ``rhs`` ""),
    ``label``, ``free`` (1-based free-parameter index as lavaan, 0 for fixed rows), posterior
    ``mean``, ``sd``, ``median``, central ``prob`` interval ``lower``/``upper``, rank-normalised
    ``r_hat``, bulk and tail ESS. Fixed rows carry their value as mean/median/lower/upper and
    NaN sd and diagnostics. Variances are variances (not sds); covariances are covariances.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> # hand-made draws (chain, draw, row) stand in for a posterior from fit_sem
    >>> draws = np.stack([rng.normal(0.5, 0.07, (2, 100)), rng.normal(1.0, 0.1, (2, 100))], axis=-1)
    >>> post = xr.Dataset({"param_value": (("chain", "draw", "param"), draws)})
    >>> fit = SemFit(spec, prepare_sem_data(spec, df), {"posterior": post})
    >>> table = parameter_table(fit, prob=0.9)
    >>> table.columns.tolist() == list(TABLE_COLUMNS)
    True
    >>> table["mean"].round(1).tolist(), bool((table["lower"] < table["upper"]).all())
    ([0.5, 1.0], True)
    """
    from arviz_stats.base import array_stats

    vals = fit.row_values()  # (C, D, R)
    flat = vals.reshape(-1, vals.shape[-1])
    a = (1 - prob) / 2
    recs = []
    for i, r in enumerate(fit.spec.rows):
        x = flat[:, i]
        if r.free:
            arr = vals[:, :, i]
            rhat = float(array_stats.rhat(arr)) if arr.shape[0] > 1 else float("nan")
            eb = float(array_stats.ess(arr, method="bulk"))
            et = float(array_stats.ess(arr, method="tail", prob=(a, 1 - a)))
            recs.append((r.lhs, r.op, r.rhs, r.label, r.pid + 1, x.mean(), x.std(ddof=1),
                         np.median(x), np.quantile(x, a), np.quantile(x, 1 - a), rhat, eb, et))
        else:
            v = float(r.fixed)
            recs.append((r.lhs, r.op, r.rhs, r.label, 0, v, np.nan, v, v, v, np.nan, np.nan, np.nan))
    return pd.DataFrame.from_records(recs, columns=list(TABLE_COLUMNS))


# --------------------------------------------------------------------------- structural form
@dataclass(frozen=True)
class StructuralView:
    """Posterior of the structural part over ``nodes`` (latents, observed structural variables,
    covariates), raw scale: ``B`` (S,P,P), ``Psi`` (S,P,P) disturbance covariance (covariates:
    their sample covariance), ``alpha`` (S,P), total covariance ``Cov`` (S,P,P), ``mean`` (P,)
    reference means (sample means of observed nodes, 0 for latents).

    Examples
    --------
    Made by :func:`structural_view`:

    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.1, 0.4, 1.2, 1.4]})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> view = structural_view(SemFit(spec, prepare_sem_data(spec, df), None), np.array([0.5, 1.0]))
    >>> isinstance(view, StructuralView), view.nodes, view.edge_keys, view.B.shape
    (True, ('y', 'x'), ('x->y',), (1, 2, 2))
    """

    nodes: tuple[str, ...]
    edge_keys: tuple[str, ...]
    B: np.ndarray
    Psi: np.ndarray
    alpha: np.ndarray
    cov: np.ndarray
    mean: np.ndarray
    meanstructure: bool

    @property
    def total_sd(self) -> np.ndarray:
        """``(S, P)`` model-implied total SD of each node."""
        return np.sqrt(np.clip(np.diagonal(self.cov, axis1=1, axis2=2), 0, None))


def structural_view(fit: SemFit, values: np.ndarray | None = None) -> StructuralView:
    """Convert posterior draws to the structural form over the structural nodes.

    The structural nodes are the latents and the observed variables of ``~`` rows (plus the
    fixed.x covariates as parentless nodes); indicators are left out. ``B`` restricted to them
    is exact because indicators never cause structural variables in lavaan's model. ``alpha``
    is the intercept vector when the model has a mean structure, else 0 (shift effects do not
    depend on it).

    Examples
    --------
    With given row values (``y ~ x`` = 0.5, ``y ~~ y`` = 1) instead of the posterior draws:

    >>> import numpy as np, pandas as pd
    >>> from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> df = pd.DataFrame({"x": x, "y": 0.5 * x + rng.normal(size=200)})
    >>> spec = specify(parse_lavaan("y ~ x"), df.columns)
    >>> fit = SemFit(spec, prepare_sem_data(spec, df), None)
    >>> view = structural_view(fit, np.array([0.5, 1.0]))
    >>> view.nodes, view.edge_keys, view.B[0].tolist()
    (('y', 'x'), ('x->y',), [[0.0, 0.5], [0.0, 0.0]])
    >>> bool(np.isclose(view.cov[0, 0, 0], 0.25 * view.cov[0, 1, 1] + 1.0))
    True
    """
    spec = fit.spec
    vals = fit.row_values().reshape(-1, len(spec.rows)) if values is None else np.atleast_2d(values)
    m = implied_matrices(spec, vals)
    S = vals.shape[0]
    nodes_in = [v for v in spec.structural if v not in spec.covariates]
    nodes = nodes_in + list(spec.covariates)
    idx = spec.node_index
    sel = [idx[v] for v in nodes_in]
    P, k, q = len(nodes), len(nodes_in), len(spec.covariates)
    B = np.zeros((S, P, P))
    B[:, :k, :k] = m["B"][:, sel][:, :, sel]
    B[:, :k, k:] = m["Gamma"][:, sel]
    Psi = np.zeros((S, P, P))
    Psi[:, :k, :k] = m["Psi"][:, sel][:, :, sel]
    Psi[:, k:, k:] = fit.data.x_cov
    alpha = np.zeros((S, P))
    if spec.meanstructure:
        alpha[:, :k] = m["alpha"][:, sel]
        alpha[:, k:] = [fit.data.mean[c] for c in spec.covariates]
    A = algebra.equilibrium_matrix(B)
    cov = A @ Psi @ np.swapaxes(A, 1, 2)
    mean = np.array([fit.data.mean.get(v, 0.0) for v in nodes])
    edges = [f"{nodes[j]}->{nodes[i]}" for i in range(P) for j in range(P)
             if np.any(B[:, i, j] != 0)]
    return StructuralView(tuple(nodes), tuple(edges), B, Psi, alpha, cov, mean, spec.meanstructure)
