"""Prior specifications: one prior per edge of a causal graph, plus non-edge defaults.

A priors file (``priors/marvel.yaml``; format in ``priors/README.md`` and
``docs/priors.md``) has ``priors_version: 1``, ``graph: <name>``, a ``defaults:`` section
(the sign-constrained edge default, the vague default, and priors for loadings,
intercepts, residual sds, thresholds...) and ``edges:`` keyed by ``source->target``.
Each edge prior is a distribution on the *standardised* path coefficient:

* ``truncated_normal`` (default): Normal(mean, sd) truncated to the edge's sign;
* ``half_normal``: sign x |Normal(0, sd)|;
* ``normal`` and ``student_t`` (with ``nu``): unconstrained.

:func:`load_priors` validates a file against a graph and a .bib and raises
:class:`~veerkracht_bayes.errors.PriorError` for every problem, each with file, line,
YAML path, field, value and what was expected (did-you-mean for names).
:func:`default_priors` builds a prior set without a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from veerkracht_bayes.resources import shipped_root
from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph
from veerkracht_bayes.priors.effect_sizes import CONVERTERS, sd_range
from veerkracht_bayes.errors import Problem, PriorError, did_you_mean, format_path
from veerkracht_bayes.yaml_io import YamlDocument, load_yaml

__all__ = [
    "PRIORS_VERSION",
    "DISTRIBUTIONS",
    "DEFAULT_EDGE_SD",
    "VAGUE_EDGE_SD",
    "CONVERSION_TOLERANCE",
    "MAX_PRIOR_MAGNITUDE",
    "MIN_PRIOR_SCALE",
    "MAX_EDGE_MOMENT",
    "ConversionStep",
    "EdgePrior",
    "ParamPrior",
    "PriorDefaults",
    "PriorSet",
    "load_priors",
    "default_priors",
    "priors_dir",
    "marvel_priors_path",
]

#: The priors file format version this package reads.
PRIORS_VERSION = 1

Distribution = Literal["truncated_normal", "normal", "student_t", "half_normal"]
ParamDistribution = Literal["truncated_normal", "normal", "student_t", "half_normal", "gamma", "beta"]
Metric = Literal["r", "d", "OR", "beta", "none"]
Confidence = Literal["strong", "moderate", "weak"]
SourceKind = Literal["literature", "default"]
Sign = Literal["+", "-"]

#: Edge distributions a priors file may use.
DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "normal", "student_t", "half_normal")

#: Scale of the sign-constrained default HalfNormal(0.2) (research note §4, "Edges with no source").
DEFAULT_EDGE_SD = 0.2
#: Sd of the unconstrained vague default Normal(0, 1) on a standardised coefficient.
VAGUE_EDGE_SD = 1.0
#: Largest allowed difference between a recorded conversion result and its recomputation
#: (results are recorded to 3 decimals from inputs rounded to 3-4 digits).
CONVERSION_TOLERANCE = 2e-3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ConversionStep(_Strict):
    """One call of a converter of :mod:`veerkracht_bayes.priors.effect_sizes`.

    Examples
    --------
    >>> ConversionStep(function="r_to_d", args={"r": 0.3}, result=0.629).function
    'r_to_d'
    """

    function: str = Field(description="Converter name (a key of effect_sizes.CONVERTERS).")
    args: dict[str, float] = Field(default_factory=dict, description="Keyword arguments.")
    result: float = Field(description="The converter's output as recorded (checked on load).")
    note: str = ""

    def recompute(self) -> float:
        """Call the converter with :attr:`args` and return its result."""
        return float(CONVERTERS[self.function](**self.args))


def _side_dist(mean: float, sd: float, side: str) -> Any:
    from scipy import stats  # here, not at import: scipy.stats costs about 0.4 s, and a fit never needs it

    if side == "+":
        return stats.truncnorm(a=(0.0 - mean) / sd, b=np.inf, loc=mean, scale=sd)
    return stats.truncnorm(a=-np.inf, b=(0.0 - mean) / sd, loc=mean, scale=sd)


class EdgePrior(_Strict):
    """The prior of one edge's standardised coefficient, with its provenance.

    Examples
    --------
    >>> EdgePrior(mean=0.2, sd=0.1, sign="+").distribution
    'truncated_normal'
    """

    distribution: Distribution = Field(default="truncated_normal",
                                       description="truncated_normal (to the edge's sign), normal, "
                                       "student_t or half_normal.")
    mean: float = Field(default=0.0, description="Location on the standardised scale (0 for half_normal).")
    sd: float = Field(description="Scale (sd of the untruncated normal; scale of the t).")
    nu: float | None = Field(default=None, description="Degrees of freedom (student_t only).")
    sign: Sign | None = Field(default=None, description="Side of truncated/half-normal priors; "
                              "defaults to the edge's sign (filled in on load).")
    citations: list[str] = Field(default_factory=list, description="BibTeX keys.")
    metric: Metric = Field(default="none", description="Metric of the value as read.")
    value: float | None = Field(default=None, description="Effect size as read (metric units).")
    value_detail: str = Field(default="", description="The source's numbers in words.")
    conversion: list[ConversionStep] = Field(default_factory=list,
                                             description="Converter calls from value to the r scale.")
    confidence: Confidence = "weak"
    rationale: str = Field(default="", description="One line: why this prior.")
    source: SourceKind = Field(default="default", description="literature or default.")
    scale: Literal["standardised", "per_unit"] = Field(
        default="standardised", description="standardised: beta per SD of the source (r-sized); "
        "per_unit: the target's SD change per unit of a 0/1 source (a Cohen's d), for binary "
        "covariates and exposure levers, which the model keeps in 0/1 units.")
    exposure_share: float | None = Field(
        default=None, description="per_unit only: share p of the population with source = 1, used "
        "by the confidence-to-sd rule (range / sqrt(p(1 - p)); equal groups, p = 0.5, when absent).")
    sd_exception: str = Field(
        default="", description="Why the sd is outside the confidence range (the rule is enforced "
        "on load unless this names a reason; shown in to_frame).")

    @field_validator("conversion", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        if isinstance(v, Mapping):
            return [v]
        return [] if v is None else v

    # ----------------------------------------------------------------- derived views
    @property
    def lower(self) -> float | None:
        """Lower bound of the support (0 for a positive-side truncated/half-normal)."""
        if self.distribution in ("truncated_normal", "half_normal") and self.sign == "+":
            return 0.0
        return None

    @property
    def upper(self) -> float | None:
        """Upper bound of the support (0 for a negative-side truncated/half-normal)."""
        if self.distribution in ("truncated_normal", "half_normal") and self.sign == "-":
            return 0.0
        return None

    @property
    def converted(self) -> float | None:
        """The value on the correlation scale (the last conversion step's result)."""
        return self.conversion[-1].result if self.conversion else None

    def dist(self, sign: str | None = None) -> Any:
        """A frozen :mod:`scipy.stats` distribution of the coefficient.

        Parameters
        ----------
        sign
            Side for truncated/half-normal priors when :attr:`sign` is not set.

        Returns
        -------
        scipy.stats frozen distribution
            ``truncnorm`` (truncated and half normal), ``norm`` or ``t``; use ``.mean()``,
            ``.var()``, ``.ppf()``, ``.rvs()`` for prior predictive and contraction computations.
        """
        from scipy import stats

        if self.distribution == "normal":
            return stats.norm(loc=self.mean, scale=self.sd)
        if self.distribution == "student_t":
            return stats.t(df=self.nu, loc=self.mean, scale=self.sd)
        side = self.sign or sign
        if side not in ("+", "-"):
            raise PriorError(Problem(f"a {self.distribution} prior needs a side (expected sign '+' "
                                     f"or '-'; got {side!r})", field="sign", value=side))
        mean = 0.0 if self.distribution == "half_normal" else self.mean
        return _side_dist(mean, self.sd, side)

    def label(self) -> str:
        """Compact notation: ``N(0.22, 0.05)+``, ``HN(0.2)-``, ``N(0, 1)``, ``t3(0, 1)``."""
        suffix = {"+": "+", "-": "−"}.get(self.sign or "", "")
        if self.distribution == "half_normal":
            return f"HN({self.sd:g}){suffix}"
        if self.distribution == "normal":
            return f"N({self.mean:g}, {self.sd:g})"
        if self.distribution == "student_t":
            return f"t{self.nu:g}({self.mean:g}, {self.sd:g})"
        return f"N({self.mean:g}, {self.sd:g}){suffix}"


class ParamPrior(_Strict):
    """A prior for a class of non-edge parameters (loadings, intercepts, thresholds...).

    Examples
    --------
    >>> ParamPrior(distribution="normal", mean=0.0, sd=1.0).sd
    1.0
    """

    distribution: ParamDistribution
    mean: float | None = None
    sd: float | None = None
    nu: float | None = None
    alpha: float | None = None
    beta: float | None = None
    lower: float | None = None
    upper: float | None = None
    scale: str = Field(default="value", description="Scale the prior is on: value, sd, variance, "
                       "precision, or an expression such as '(rho + 1) / 2' (not 'on': YAML 1.1 "
                       "reads the key 'on' as true).")
    rationale: str = ""
    reference: str = ""

    def dist(self) -> Any:
        """A frozen :mod:`scipy.stats` distribution (on the scale named by :attr:`scale`)."""
        from scipy import stats

        d = self.distribution
        if d == "normal":
            return stats.norm(loc=self.mean or 0.0, scale=self.sd)
        if d == "student_t":
            return stats.t(df=self.nu, loc=self.mean or 0.0, scale=self.sd)
        if d == "half_normal":
            return stats.halfnorm(loc=0.0, scale=self.sd)
        if d == "truncated_normal":
            m = self.mean or 0.0
            lo = -np.inf if self.lower is None else (self.lower - m) / self.sd
            hi = np.inf if self.upper is None else (self.upper - m) / self.sd
            return stats.truncnorm(a=lo, b=hi, loc=m, scale=self.sd)
        if d == "gamma":
            return stats.gamma(a=self.alpha, scale=1.0 / self.beta)
        return stats.beta(a=self.alpha, b=self.beta)

    def required(self) -> tuple[str, ...]:
        """Parameters the distribution needs."""
        return {"normal": ("mean", "sd"), "student_t": ("mean", "sd", "nu"), "half_normal": ("sd",),
                "truncated_normal": ("mean", "sd"), "gamma": ("alpha", "beta"),
                "beta": ("alpha", "beta")}[self.distribution]


class RuleNote(_Strict):
    """A documented default rule whose numbers are given per edge."""

    distribution: Distribution = "truncated_normal"
    rationale: str = ""
    reference: str = ""


class PriorDefaults(_Strict):
    """The ``defaults:`` section.

    Examples
    --------
    >>> PriorDefaults().edge.distribution
    'half_normal'
    """

    edge: ParamPrior = Field(default_factory=lambda: ParamPrior(
        distribution="half_normal", sd=DEFAULT_EDGE_SD,
        rationale="sign-constrained HalfNormal(0.2) (research note §4)"))
    near_definitional: RuleNote | None = None
    vague_edge: ParamPrior = Field(default_factory=lambda: ParamPrior(
        distribution="normal", mean=0.0, sd=VAGUE_EDGE_SD, rationale="unconstrained Normal(0, 1)"))
    standardised: dict[str, ParamPrior] = Field(default_factory=dict)
    vague: dict[str, ParamPrior] = Field(default_factory=dict)


class PriorSet(_Strict):
    """All edge priors of one graph, with the non-edge defaults.

    Use :func:`load_priors` (validated against a graph and a .bib) or
    :func:`default_priors`; constructing it directly skips the cross-checks.

    Examples
    --------
    >>> ps = load_priors(marvel_priors_path(), graph="marvel")
    >>> isinstance(ps, PriorSet), ps.graph
    (True, 'marvel')
    """

    priors_version: int = PRIORS_VERSION
    graph: str
    description: str = ""
    defaults: PriorDefaults = Field(default_factory=PriorDefaults)
    edges: dict[str, EdgePrior]

    _path: str | None = PrivateAttr(default=None)
    _bib_path: str | None = PrivateAttr(default=None)

    @property
    def path(self) -> str | None:
        """File the set was read from (None when built in code)."""
        return self._path

    @property
    def bib_path(self) -> str | None:
        """The .bib file its citations were checked against, if any."""
        return self._bib_path

    def for_edge(self, key: str) -> EdgePrior:
        """The prior of edge ``source->target``.

        Raises
        ------
        PriorError
            For an unknown key, with a did-you-mean hint.
        """
        try:
            return self.edges[key]
        except KeyError:
            raise PriorError(Problem(f"no prior for edge {key!r} in prior set for graph "
                                     f"{self.graph!r}{did_you_mean(key, self.edges)}",
                                     file=self._path, field="edge", value=key)) from None

    def dist(self, key: str) -> Any:
        """The frozen scipy distribution of edge ``key`` (see :meth:`EdgePrior.dist`)."""
        return self.for_edge(key).dist()

    def citations_used(self) -> list[str]:
        """Citation keys used by the edge priors, unique, in order of first use."""
        seen: dict[str, None] = {}
        for p in self.edges.values():
            for c in p.citations:
                seen.setdefault(c, None)
        return list(seen)

    def keys(self) -> list[str]:
        """Edge keys in file order."""
        return list(self.edges)

    def to_frame(self) -> pd.DataFrame:
        """One row per edge: the prior, its implied moments and 90% interval, and its provenance.

        Columns: ``edge, source_node, target_node, sign, prior, distribution, mean, sd, lower,
        upper, prior_mean, prior_sd, q05, q95, metric, value, converted, confidence, source,
        citations, rationale``. ``prior_mean``/``prior_sd``/``q05``/``q95`` are those of the
        (truncated) distribution itself, not of the untruncated normal.
        """
        rows = []
        for key, p in self.edges.items():
            src, _, tgt = key.partition("->")
            d = p.dist()
            rows.append({
                "edge": key, "source_node": src, "target_node": tgt, "sign": p.sign,
                "prior": p.label(), "distribution": p.distribution, "mean": p.mean, "sd": p.sd,
                "lower": p.lower, "upper": p.upper,
                "prior_mean": float(d.mean()), "prior_sd": float(d.std()),
                "q05": float(d.ppf(0.05)), "q95": float(d.ppf(0.95)),
                "metric": p.metric, "value": p.value, "converted": p.converted,
                "confidence": p.confidence, "source": p.source, "scale": p.scale,
                "sd_exception": p.sd_exception,
                "citations": ", ".join(p.citations), "rationale": p.rationale,
            })
        return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- locations
def priors_dir() -> Path:
    """The repository's ``priors/`` folder (next to ``src/``).

    Examples
    --------
    >>> priors_dir().is_dir()
    True
    """
    return shipped_root("priors")


def marvel_priors_path() -> Path:
    """Path of ``priors/marvel.yaml``.

    Examples
    --------
    >>> marvel_priors_path().name
    'marvel.yaml'
    """
    return priors_dir() / "marvel.yaml"


# ------------------------------------------------------------------------------ validation
def _prob(doc: YamlDocument, loc: tuple[str | int, ...], msg: str, fld: str | None, value: object
          ) -> Problem:
    return Problem(msg, file=doc.path, line=doc.line_of(loc), location=format_path(loc), field=fld,
                   value=value)


_FIELD_CHOICES = {
    "distribution": DISTRIBUTIONS,
    "metric": ("r", "d", "OR", "beta", "none"),
    "confidence": ("strong", "moderate", "weak"),
    "source": ("literature", "default"),
    "sign": ("+", "-"),
}


def _pydantic_problems(exc: ValidationError, doc: YamlDocument, base: tuple[str | int, ...],
                       model: type[BaseModel]) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = base + tuple(err["loc"])
        fld = next((str(p) for p in reversed(err["loc"]) if isinstance(p, str)), None)
        value = err.get("input")
        kind = err["type"]
        shown = value if not isinstance(value, (dict, list)) else type(value).__name__
        if kind == "missing":
            text = f"missing required field {fld!r}"
        elif kind == "extra_forbidden":
            allowed = list(model.model_fields)
            text = (f"unknown field {fld!r} (expected one of: {', '.join(allowed)})"
                    f"{did_you_mean(str(fld), allowed)}")
        elif kind == "literal_error" and fld in _FIELD_CHOICES:
            choices = _FIELD_CHOICES[fld]
            what = "distribution" if fld == "distribution" else f"value for {fld!r}"
            text = (f"unknown {what} {shown!r} (expected one of: {', '.join(choices)})"
                    f"{did_you_mean(str(value), choices)}")
        else:
            text = f"field {fld!r} has value {shown!r}: {err['msg']}"
        out.append(_prob(doc, loc, text, fld, value))
    return out


#: Largest magnitude of any number in a prior (location, scale, bound, shape): beyond it the
#: arithmetic of prior sampling and of the model (squares, inverses of I - B) overflows.
MAX_PRIOR_MAGNITUDE = 1e6
#: Smallest positive scale (sd, shape) of a prior: below it standardising by the scale overflows.
MIN_PRIOR_SCALE = 1e-6
#: Largest |mean| and sd of an edge prior: edge priors are on standardised path coefficients (or
#: per-exposure Cohen's d), where 10 is already far outside anything a source could support.
MAX_EDGE_MOMENT = 10.0


def _check_number(doc: YamlDocument, loc: tuple, fld: str, v: float | None, *, positive: bool,
                  bound: float = MAX_PRIOR_MAGNITUDE) -> list[Problem]:
    if v is None:
        return []
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return [_prob(doc, loc + (fld,), f"{fld} must be a number, got {v!r}", fld, v)]
    if not math.isfinite(v):
        return [_prob(doc, loc + (fld,), f"{fld} must be a finite number, got {v!r}", fld, v)]
    if positive and v <= 0:
        return [_prob(doc, loc + (fld,), f"{fld} must be > 0, got {v!r} (expected a positive "
                      f"{'scale' if fld == 'sd' else 'number'})", fld, v)]
    if abs(v) > bound:
        return [_prob(doc, loc + (fld,), f"{fld} {v!r} is too large in magnitude (expected |{fld}| "
                      f"<= {bound:g}; larger values overflow the model's arithmetic)", fld, v)]
    if positive and v < MIN_PRIOR_SCALE:
        return [_prob(doc, loc + (fld,), f"{fld} {v!r} is too small (expected {fld} >= "
                      f"{MIN_PRIOR_SCALE:g}; smaller scales overflow when standardising)", fld, v)]
    return []


def _check_edge_prior(doc: YamlDocument, key: str, p: EdgePrior, edge_sign: str,
                      bib_keys: list[str] | None, source_role: str | None = None) -> list[Problem]:
    loc: tuple[str | int, ...] = ("edges", key)
    probs: list[Problem] = []
    # the scale of the coefficient: per-unit (d) priors only on 0/1 sources
    if p.scale == "per_unit":
        if source_role is not None and source_role not in ("exogenous", "policy_lever"):
            probs.append(_prob(doc, loc + ("scale",), f"a per_unit prior needs a 0/1 source (an "
                               f"exogenous covariate or a policy lever), but the source is a "
                               f"{source_role!r} node (expected scale: standardised)", "scale", p.scale))
        if p.exposure_share is not None and not (0.0 < p.exposure_share < 1.0):
            probs.append(_prob(doc, loc + ("exposure_share",), f"a per_unit prior needs exposure_share, "
                               f"the share with source = 1 (got {p.exposure_share!r}; expected a number "
                               "in (0, 1))", "exposure_share", p.exposure_share))
    elif p.exposure_share is not None:
        probs.append(_prob(doc, loc + ("exposure_share",), "exposure_share only applies to per_unit "
                           "priors (expected no exposure_share, or scale: per_unit)", "exposure_share",
                           p.exposure_share))
    # the confidence-to-sd rule (docs/priors.md §3) for sourced priors
    if p.source == "literature" and math.isfinite(p.sd) and p.sd > 0 and not p.sd_exception.strip():
        share = None
        if p.scale == "per_unit":
            share = p.exposure_share if (p.exposure_share is not None
                                         and 0.0 < p.exposure_share < 1.0) else 0.5
        lo, hi = sd_range(p.confidence, share)
        if not (lo - 1e-9 <= p.sd <= hi + 1e-9):
            unit = (f" (per-unit scale: the {p.confidence} range divided by sqrt(p(1 - p)) at "
                    f"p = {share:g})" if share is not None else "")
            probs.append(_prob(doc, loc + ("sd",), f"sd {p.sd:g} is outside the {p.confidence} range "
                               f"{lo:.3f}-{hi:.3f}{unit} (docs/priors.md §3: strong 0.05-0.07, "
                               "moderate 0.08-0.10, weak 0.10-0.15; expected an sd in the range, another "
                               "confidence, or sd_exception with the reason)", "sd", p.sd))
    probs += _check_number(doc, loc, "sd", p.sd, positive=True, bound=MAX_EDGE_MOMENT)
    probs += _check_number(doc, loc, "mean", p.mean, positive=False, bound=MAX_EDGE_MOMENT)
    probs += _check_number(doc, loc, "value", p.value, positive=False)
    if p.distribution == "student_t":
        if p.nu is None:
            probs.append(_prob(doc, loc + ("distribution",), "a student_t prior needs 'nu' "
                               "(expected degrees of freedom > 0)", "nu", None))
        else:
            probs += _check_number(doc, loc, "nu", p.nu, positive=True)
    elif p.nu is not None:
        probs.append(_prob(doc, loc + ("nu",), f"'nu' is only used by student_t priors, not "
                           f"{p.distribution} (expected no 'nu')", "nu", p.nu))
    # sign consistency
    sgn = 1.0 if edge_sign == "+" else -1.0
    if p.distribution in ("truncated_normal", "half_normal"):
        if p.sign is not None and p.sign != edge_sign:
            probs.append(_prob(doc, loc + ("sign",),
                               f"{p.distribution} prior on the {p.sign!r} side contradicts the edge's "
                               f"sign {edge_sign!r} (expected sign {edge_sign!r} or no 'sign')",
                               "sign", p.sign))
    elif p.sign is not None:
        probs.append(_prob(doc, loc + ("sign",), f"'sign' only applies to truncated_normal and "
                           f"half_normal priors, not {p.distribution} (expected no 'sign')",
                           "sign", p.sign))
    if p.distribution == "half_normal":
        if p.mean != 0.0:
            probs.append(_prob(doc, loc + ("mean",), f"a half_normal prior has mean 0 (got "
                               f"{p.mean!r}; expected no 'mean' or 0; use truncated_normal for a "
                               f"shifted prior)", "mean", p.mean))
    elif math.isfinite(p.mean) and p.mean * sgn < 0:
        probs.append(_prob(doc, loc + ("mean",),
                           f"{p.distribution} prior with mean {p.mean!r} contradicts the edge's sign "
                           f"{edge_sign!r} (expected a mean {'>=' if sgn > 0 else '<='} 0)",
                           "mean", p.mean))
    # provenance
    if p.source == "literature":
        if not p.citations:
            probs.append(_prob(doc, loc + ("citations",), "a literature prior needs at least one "
                               "citation (expected a list of .bib keys; empty only for "
                               "source: default)", "citations", p.citations))
        if p.metric == "none" or p.value is None:
            probs.append(_prob(doc, loc + ("metric",), f"a literature prior needs the effect size as "
                               f"read (got metric {p.metric!r}, value {p.value!r}; expected metric "
                               f"r, d, OR or beta and a numeric value, or source: default)",
                               "metric", p.metric))
        if not p.conversion:
            probs.append(_prob(doc, loc + ("conversion",), "a literature prior needs a conversion "
                               "(expected {function, args, result}; use function: identity for r "
                               "and beta)", "conversion", None))
    elif p.metric != "none" or p.value is not None:
        probs.append(_prob(doc, loc + ("source",), f"an effect size is given (metric {p.metric!r}, "
                           f"value {p.value!r}) but source is 'default' (expected source: "
                           f"literature, or metric: none without value)", "source", p.source))
    if not p.rationale:
        probs.append(_prob(doc, loc + ("rationale",), "missing rationale (expected one line saying "
                           "why this prior)", "rationale", p.rationale))
    for i, step in enumerate(p.conversion):
        sloc = loc + ("conversion", i)
        if step.function not in CONVERTERS:
            probs.append(_prob(doc, sloc + ("function",), f"unknown converter {step.function!r} "
                               f"(expected one of: {', '.join(CONVERTERS)})"
                               f"{did_you_mean(step.function, CONVERTERS)}", "function",
                               step.function))
            continue
        try:
            got = step.recompute()
        except (TypeError, ValueError) as exc:
            probs.append(_prob(doc, sloc + ("args",), f"converter {step.function} cannot be called "
                               f"with {step.args}: {exc}", "args", step.args))
            continue
        if not abs(got - step.result) <= CONVERSION_TOLERANCE:
            probs.append(_prob(doc, sloc + ("result",), f"recorded result {step.result!r} of "
                               f"{step.function}({step.args}) differs from the recomputed {got:.4f} "
                               f"(expected agreement within {CONVERSION_TOLERANCE})", "result",
                               step.result))
    if bib_keys is not None:
        lower = {k.lower() for k in bib_keys}
        for i, c in enumerate(p.citations):
            if c.lower() not in lower:
                probs.append(_prob(doc, loc + ("citations", i), f"citation key {c!r} is not in the "
                                   f"bibliography (expected a key of the .bib file)"
                                   f"{did_you_mean(c, bib_keys)}", "citations", c))
    return probs


def _check_param_prior(doc: YamlDocument, loc: tuple, p: ParamPrior) -> list[Problem]:
    probs = []
    for name in p.required():
        if getattr(p, name) is None:
            probs.append(_prob(doc, loc, f"a {p.distribution} prior needs {name!r}", name, None))
    for name in ("sd", "nu", "alpha", "beta"):
        probs += _check_number(doc, loc, name, getattr(p, name), positive=True)
    for name in ("mean", "lower", "upper"):
        probs += _check_number(doc, loc, name, getattr(p, name), positive=False)
    if (p.lower is not None and p.upper is not None and math.isfinite(p.lower)
            and math.isfinite(p.upper) and p.lower >= p.upper):
        probs.append(_prob(doc, loc + ("lower",), f"lower {p.lower!r} is not below upper {p.upper!r} "
                           "(expected lower < upper)", "lower", p.lower))
    return probs


def _bib_keys(bib_path: str | Path) -> list[str]:
    from veerkracht_bayes.priors.bibliography import load_bib

    return load_bib(bib_path).keys


def parse_priors(doc: YamlDocument, graph: CausalGraph, bib_path: str | Path | None = None
                 ) -> PriorSet:
    """Validate a loaded priors document against ``graph`` (and a .bib when given).

    See :func:`load_priors`.
    """
    data = doc.data
    if not isinstance(data, dict):
        raise PriorError(Problem(f"expected a YAML mapping with keys priors_version, graph, defaults, "
                                 f"edges; got {type(data).__name__}", file=doc.path, line=1))
    problems: list[Problem] = []
    top = {"priors_version", "graph", "description", "defaults", "edges"}
    for k in data:
        if k not in top:
            problems.append(_prob(doc, (k,), f"unknown top-level key {k!r} (expected one of: "
                                  f"{', '.join(sorted(top))}){did_you_mean(str(k), top)}", str(k), k))
    version = data.get("priors_version")
    if version != PRIORS_VERSION:
        problems.append(_prob(doc, ("priors_version",), f"unsupported priors_version {version!r} "
                              f"(expected {PRIORS_VERSION})", "priors_version", version))
    gname = data.get("graph")
    if gname != graph.name:
        problems.append(_prob(doc, ("graph",), f"priors are for graph {gname!r} but the graph is "
                              f"{graph.name!r} (expected graph: {graph.name})", "graph", gname))
    defaults = PriorDefaults()
    if data.get("defaults") is not None:
        try:
            defaults = PriorDefaults.model_validate(data["defaults"])
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, ("defaults",), PriorDefaults)
        else:
            problems += _check_param_prior(doc, ("defaults", "edge"), defaults.edge)
            problems += _check_param_prior(doc, ("defaults", "vague_edge"), defaults.vague_edge)
            for group in ("standardised", "vague"):
                for name, pp in getattr(defaults, group).items():
                    problems += _check_param_prior(doc, ("defaults", group, name), pp)
    raw_edges = data.get("edges")
    if not isinstance(raw_edges, dict):
        problems.append(_prob(doc, ("edges",), f"'edges' must be a mapping of 'source->target' keys "
                              f"to priors (got {type(raw_edges).__name__})", "edges", None))
        raise PriorError(problems)
    bib_keys = None if bib_path is None else _bib_keys(bib_path)
    signs = {e.key: e.sign for e in graph.edges}
    graph_keys = list(signs)
    unknown = [k for k in raw_edges if str(k) not in signs]
    missing = [k for k in graph_keys if k not in raw_edges]
    for k in unknown:
        hint = did_you_mean(str(k), graph_keys)
        problems.append(_prob(doc, ("edges", k), f"prior for edge {k!r}, which is not an edge of graph "
                              f"{graph.name!r} (expected a key 'source->target' of the graph){hint}",
                              "edges", k))
    if missing:
        hints = []
        for k in missing:
            near = did_you_mean(k, [str(u) for u in unknown])
            hints.append(f"{k}{near.replace(' (did you mean', ' (written as')}" if near else k)
        problems.append(_prob(doc, ("edges",), f"{len(missing)} edge(s) of graph {graph.name!r} have "
                              f"no prior (expected one entry per edge): {', '.join(hints)}",
                              "edges", missing))
    edges: dict[str, EdgePrior] = {}
    for k, raw in raw_edges.items():
        if str(k) not in signs:
            continue
        if not isinstance(raw, dict):
            problems.append(_prob(doc, ("edges", k), f"the prior of {k!r} must be a mapping (got "
                                  f"{type(raw).__name__})", k, raw))
            continue
        try:
            p = EdgePrior.model_validate(raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, doc, ("edges", k), EdgePrior)
            continue
        problems += _check_edge_prior(doc, k, p, signs[k], bib_keys,
                                      graph.node(str(k).split("->")[0]).role)
        if p.sign is None and p.distribution in ("truncated_normal", "half_normal"):
            p = p.model_copy(update={"sign": signs[k]})
        edges[k] = p
    if bib_keys is None and any(p.citations for p in edges.values()):
        problems.append(Problem("the priors cite references but no .bib file was given or found "
                                "(expected bib_path, or references.bib next to the priors file)",
                                file=doc.path, field="bib_path"))
    if problems:
        raise PriorError(problems)
    ordered = {k: edges[k] for k in graph_keys}
    ps = PriorSet(priors_version=version, graph=gname, description=str(data.get("description") or ""),
                  defaults=defaults, edges=ordered)
    ps._path = doc.path
    ps._bib_path = None if bib_path is None else str(bib_path)
    return ps


def load_priors(path: str | Path, graph: str | Path | CausalGraph = "marvel",
                bib_path: str | Path | None = None) -> PriorSet:
    """Read a priors YAML file and check it against a graph and a bibliography.

    Parameters
    ----------
    path
        The priors file, or ``"marvel"`` for the repository's ``priors/marvel.yaml``.
    graph
        The diagram (anything :func:`~veerkracht_bayes.graph.causal_graph.load_graph` accepts).
    bib_path
        The .bib file; default ``references.bib`` next to the priors file (if present).

    Returns
    -------
    PriorSet
        Edges in the graph's edge order; truncated/half-normal priors carry their side.

    Raises
    ------
    PriorError
        Listing every problem with file, line, YAML path, field, value and what was expected:
        a prior for an edge not in the graph or a graph edge without a prior (did-you-mean),
        an unknown distribution, a prior whose sign contradicts the edge's, ``sd <= 0``, a
        citation key absent from the .bib, a conversion that does not recompute, and schema
        errors.

    Examples
    --------
    >>> from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path
    >>> priors = load_priors(marvel_priors_path(), graph="marvel")
    >>> len(priors.edges)
    72
    """
    if str(path) == "marvel":
        path = marvel_priors_path()
    g = load_graph(graph)
    if bib_path is None:
        sibling = Path(path).with_name("references.bib")
        bib_path = sibling if sibling.exists() else None
    return parse_priors(load_yaml(path, error_cls=PriorError), g, bib_path)


def default_priors(graph: str | Path | CausalGraph = "marvel", *, vague: bool = False,
                   sd: float | None = None) -> PriorSet:
    """Priors for every edge without a file.

    Parameters
    ----------
    graph
        The diagram.
    vague
        False (default): the sign-constrained weakly informative default
        ``sign x HalfNormal(0.2)`` of the research note (§4). True: unconstrained
        ``Normal(0, 1)`` for generic (e.g. lavaan) models whose link signs are unknown.
    sd
        Override the scale (0.2 sign-constrained, 1.0 vague).

    Examples
    --------
    >>> p = default_priors("marvel")
    >>> len(p.edges)
    72
    """
    g = load_graph(graph)
    scale = (VAGUE_EDGE_SD if vague else DEFAULT_EDGE_SD) if sd is None else float(sd)
    if not (math.isfinite(scale) and scale > 0):
        raise PriorError(Problem(f"default prior sd must be > 0, got {sd!r}", field="sd", value=sd))
    edges = {}
    for e in g.edges:
        if vague:
            edges[e.key] = EdgePrior(distribution="normal", mean=0.0, sd=scale, confidence="weak",
                                     source="default",
                                     rationale=f"Vague default: unconstrained Normal(0, {scale:g}).")
        else:
            edges[e.key] = EdgePrior(distribution="half_normal", sd=scale, sign=e.sign,
                                     confidence="weak", source="default",
                                     rationale=f"Default (research note §4): sign-constrained "
                                     f"HalfNormal({scale:g}); no literature prior given.")
    return PriorSet(graph=g.name, description="default priors" + (" (vague)" if vague else ""),
                    edges=edges)
