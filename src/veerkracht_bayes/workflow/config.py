"""Run configuration: one TOML file naming every input, setting and the output folder.

A run config (``veerkracht-bayes run CONFIG.toml``; format in ``docs/pipeline.md``) has the
sections ``[inputs]``, ``[sampler]``, ``[model]``, ``[query]``, ``[diagnostics]`` and
``[output]``. Every section and table is strict: an unknown key is an error with a did-you-mean
suggestion, its TOML key path and (found by a cheap scan of the text) its line.

Relative paths resolve against the folder of the config file.

:func:`load_config` parses and checks the schema; :func:`validate_inputs` then loads and
cross-checks every input (graph, priors, codebook, survey, policies, outcomes, subgroups, output
folder) so that a run fails *before* any sampling, with every problem found listed at once.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from veerkracht_bayes.causal.thresholds import ThresholdSpec
from veerkracht_bayes.errors import ConfigError, Problem, VeerkrachtError, did_you_mean, format_path

__all__ = [
    "InputsConfig",
    "SamplerConfig",
    "ModelConfig",
    "QueryConfig",
    "DiagnosticsConfig",
    "OutputConfig",
    "NeighbourhoodsConfig",
    "RunConfig",
    "ValidatedInputs",
    "load_config",
    "parse_config",
    "validate_inputs",
    "fast_settings",
    "FAST_DRAWS",
    "FAST_GROUP_DRAWS",
    "FAST_PRIOR_DRAWS",
    "FAST_NEIGHBOURHOOD_DRAWS",
    "NEIGHBOURHOOD_CONSTRUCTS",
    "MAX_GROUPS",
    "MIN_GROUP_FIT",
    "OUTPUT_FORMATS",
]

log = logging.getLogger(__name__)

#: Draws and tuning steps per chain in ``--fast`` mode. 400 + 400 is the least tried that passes
#: the demo's diagnostics on 2 chains for several seeds: with 200 warm-up steps the mass matrix of
#: the two-indicator constructs (loading/residual-variance ridges, e.g. ``ewf1``/``ewf2``) is
#: not adapted yet (bulk ESS 62 < 80 at 200 + 300, R-hat 1.057 at 200 + 200); at 400 + 400 the
#: smallest bulk ESS was 259-590 (threshold 107) and the largest R-hat 1.018-1.026 (seeds 1, 7, 2023).
FAST_DRAWS = 400
#: Draws per chain of each multi-group fit in ``--fast`` mode. Their slowest quantity on the demo
#: is a between-group SD ``tau`` (a funnel with two groups): bulk ESS 99 from 2 x 400 draws, under
#: the fast threshold of 107, so the fast group fits take 500 (their threshold is not rescaled by
#: draws; see workflow.for_whom).
FAST_GROUP_DRAWS = 500
#: Prior draws in ``--fast`` mode.
FAST_PRIOR_DRAWS = 500
#: Most draws (and tuning steps) per chain of the two-level ``[neighbourhoods]`` fit in ``--fast``
#: mode: half the configured number, at most this.
FAST_NEIGHBOURHOOD_DRAWS = 250
#: Default ``[neighbourhoods] constructs``: the collective constructs with survey items plus the
#: social network (its items carry neighbourhood variance through the within level's links).
NEIGHBOURHOOD_CONSTRUCTS = ("neighbourhood_trust", "community_support", "collective_agency", "social_network")
#: Output kinds the ``[output] formats`` list may name.
OUTPUT_FORMATS = ("csv", "parquet", "netcdf", "brief")

_SHIPPED = ("marvel", "shipped")


class _Strict(BaseModel):
    # strict: a TOML boolean is not an integer (``seed = true`` is refused, not read as 1) and a
    # float is not an integer; allow_inf_nan=False: ``inf``/``nan`` never enter the model.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True,
                              allow_inf_nan=False)


class InputsConfig(_Strict):
    """``[inputs]``: what the run reads.

    Examples
    --------
    >>> InputsConfig(prior_only=True).priors
    'marvel'
    """

    graph: str = Field(default="marvel", description="'marvel' or a graph file (YAML or lavaan).")
    priors: str = Field(default="marvel", description="'marvel' (priors/marvel.yaml), 'default' "
                        "(sign-constrained defaults), 'vague', or a priors YAML file.")
    survey: str | None = Field(default=None, description="Survey file (CSV, Parquet, .sav, .dta).")
    codebook: str | None = Field(default=None, description="Codebook YAML of the survey.")
    prior_only: bool = Field(default=False, description="Sample the priors only (no fit to data); "
                             "a survey, if given, then only supplies subgroup shares and sizes.")
    policies: str = Field(default="marvel", description="'marvel'/'shipped' or a policy YAML file.")

    @model_validator(mode="after")
    def _pairs(self) -> "InputsConfig":
        if (self.survey is None) != (self.codebook is None):
            raise ValueError("survey and codebook must be given together (expected both or neither)")
        if self.survey is None and not self.prior_only:
            raise ValueError("no survey given: set survey and codebook, or prior_only = true")
        return self


class SamplerConfig(_Strict):
    """``[sampler]``: NUTS settings and the seed.

    Examples
    --------
    >>> SamplerConfig(draws=1000, chains=4).sampler
    'numpyro'
    """

    sampler: Literal["numpyro", "blackjax", "nutpie", "pymc"] = Field(
        default="numpyro", description="'numpyro' (default) or 'blackjax': the package's JAX driver with "
        "that library's NUTS; 'nutpie' or 'pymc': pm.sample (continuous path only).")
    chains: int = Field(default=2, ge=1, le=64)
    draws: int = Field(default=500, ge=10)
    tune: int = Field(default=500, ge=0)
    target_accept: float = Field(default=0.9, gt=0.0, lt=1.0)
    seed: int = Field(default=2023, ge=0)
    prior_draws: int = Field(default=1000, ge=50)


class ModelConfig(_Strict):
    """``[model]``: measurement and missing-data choices.

    Examples
    --------
    >>> ModelConfig().reliability
    0.8
    >>> ModelConfig(measurement="polychoric", unmeasured="joint").unmeasured
    'joint'
    >>> ModelConfig().measurement, ModelConfig().unmeasured
    ('auto', None)
    """

    reliability: float = Field(default=0.8, gt=0.0, le=1.0,
                               description="Assumed reliability of single-item constructs.")
    missing: Literal["auto", "fiml", "two_stage"] = "auto"
    measurement: Literal["auto", "continuous", "polychoric"] = Field(
        default="auto", description="'auto' (default: the codebook decides: 'polychoric' with unmeasured = "
        "'joint' when any model item is binary or Likert with at most 7 categories, else 'continuous'; "
        "the choice and its reason are in provenance.json and the brief), 'continuous' (every item "
        "standardised, the sufficient-statistics path) or 'polychoric' (binary and Likert items with at "
        "most 7 categories on their latent-response scale; docs/model.md §10; sampler numpyro or blackjax; "
        "outputs that need the continuous fit are skipped with a stated reason, docs/pipeline.md).")
    unmeasured: Literal["cut", "joint"] | None = Field(
        default=None, description="Polychoric route only: 'cut' (links touching constructs "
        "without items left out of the implied correlations) or 'joint' (kept, on their priors). "
        "Unset: 'joint' when measurement = 'auto' picks the polychoric route, else 'cut'.")
    groups: list[str] = Field(default_factory=list, description="Groupings of the multi-group model "
                              "(heterogeneity.csv): codebook subgroups (members vs the rest) or "
                              "categorical survey columns; empty = off (docs/pipeline.md, 'For whom').")
    group_equal: list[Literal["loadings", "intercepts", "regressions"]] = Field(
        default_factory=lambda: ["loadings", "intercepts"], description="Parameter types equal across "
        "groups; loadings and intercepts must be (free single items with group_free_*).")
    group_pool: list[str] = Field(default_factory=lambda: ["regressions"], description="'regressions' "
                                  "(every data-informed link gets partially pooled group deviations) or "
                                  "a list of links 'a->b' (only those; the others are equal).")
    group_tau_sd: float = Field(default=0.1, gt=0.0, le=2.0, description="Scale of the HalfNormal prior "
                                "of each pooled link's between-group SD (standardised units).")
    group_free_loadings: list[str] = Field(default_factory=list, description="Items whose loading "
                                           "differs by group (partial invariance).")
    group_free_intercepts: list[str] = Field(default_factory=list, description="Items whose intercept "
                                             "differs by group (partial invariance).")
    group_draws: int | None = Field(default=None, ge=10, description="Draws per chain of each "
                                    "multi-group fit (default: [sampler] draws).")
    group_tune: int | None = Field(default=None, ge=0, description="Tuning steps per chain of each "
                                   "multi-group fit (default: [sampler] tune).")

    @field_validator("unmeasured")
    @classmethod
    def _unmeasured_needs_polychoric(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v not in (None, "cut") and info.data.get("measurement") == "continuous":
            raise ValueError(f"unmeasured = {v!r} applies to measurement = 'polychoric' (the continuous path "
                             "always cuts the links of constructs without items); expected 'cut' or "
                             "measurement = 'polychoric' or 'auto'")
        return v

    @field_validator("groups")
    @classmethod
    def _distinct_groups(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"groups lists a grouping twice: {v} (expected distinct names)")
        if any(not g.strip() for g in v):
            raise ValueError("groups has an empty name (expected codebook subgroups or survey columns)")
        return v

    @field_validator("group_equal")
    @classmethod
    def _measurement_equal(cls, v: list[str]) -> list[str]:
        missing = [t for t in ("loadings", "intercepts") if t not in v]
        if missing:
            raise ValueError(
                f"group_equal must hold 'loadings' and 'intercepts' (missing {missing}): groups are "
                "compared on one measurement scale, and group differences in level are carried by the "
                "latent group means, which are not identified when every item's loading or intercept is "
                "free; free single items with group_free_loadings / group_free_intercepts (a configural "
                "fit is `veerkracht-bayes sem --group`)")
        return v

    @field_validator("group_pool")
    @classmethod
    def _pool(cls, v: list[str], info: ValidationInfo) -> list[str]:
        types = [p for p in v if "->" not in p]
        bad = [p for p in types if p != "regressions"]
        if bad:
            raise ValueError(f"group_pool entries must be 'regressions' or links 'a->b'; got {bad}")
        if types and len(types) != len(v):
            raise ValueError("group_pool mixes 'regressions' with single links (expected one or the other)")
        equal = info.data.get("group_equal") or []
        if "regressions" in equal and v:
            raise ValueError("'regressions' is both in group_equal and pooled by group_pool (expected "
                             "one of them: group_pool = [] for equal links)")
        if "regressions" not in equal and not v:
            raise ValueError("links neither equal (group_equal) nor pooled (group_pool): a configural fit "
                             "with free links per group is `veerkracht-bayes sem --group`; expected "
                             "group_pool = ['regressions'] or 'regressions' in group_equal")
        return v

    @property
    def pooled_links(self) -> list[str] | None:
        """Links with group deviations for :func:`~veerkracht_bayes.inference.multigroup_fit.fit_multigroup`:
        ``None`` = every data-informed link, ``[]`` = none (links equal across groups)."""
        if "regressions" in self.group_equal:
            return []
        if self.group_pool == ["regressions"]:
            return None
        return ["->".join(s.strip() for s in p.split("->", 1)) for p in self.group_pool]


class QueryConfig(_Strict):
    """``[query]``: which policies, outcomes and subgroups, and how to summarise.

    Examples
    --------
    >>> QueryConfig(outcomes=["wellbeing"]).outcomes
    ['wellbeing']
    """

    policies: list[str] | None = Field(default=None, description="Policy ids (default: all).")
    outcomes: list[str] | None = Field(default=None, description="Outcome nodes (default: the "
                                       "policy file's / the standard six).")
    composites: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                    description="{name: {node: weight}}.")
    subgroups: list[str] | None = Field(default=None, description="Codebook subgroups (default all).")
    prevalence: dict[str, float] = Field(default_factory=dict, description="Subgroup shares for "
                                         "prior-only runs without a survey.")
    ci_prob: float = Field(default=0.90, gt=0.0, lt=1.0)
    min_relevant_change: float = Field(default=0.05, ge=0.0)
    min_cell_size: int | None = Field(default=None, ge=1, description="Default: the codebook's.")
    horizon: int = Field(default=20, ge=1, le=500, description="Years simulated for trajectories.")
    dose_seed: int = Field(default=0, ge=0)
    thresholds: list[ThresholdSpec] = Field(default_factory=list, description="``[[query.thresholds]]``: "
                                            "shares beyond a cut-off on an observed scale "
                                            "(causal/thresholds.py; docs/do_queries.md).")
    threshold_min_change_pp: float = Field(default=1.0, ge=0.0, le=100.0, description="Minimal "
                                           "relevant change of a threshold share, in percentage "
                                           "points (thresholds.csv p_meaningful).")


class DiagnosticsConfig(_Strict):
    """``[diagnostics]``: thresholds of :func:`veerkracht_bayes.inference.diagnostics.diagnose`.

    ``ess_min`` is for the configured number of draws; ``--fast`` scales it (see
    :func:`fast_settings`).

    Examples
    --------
    >>> DiagnosticsConfig().rhat_max
    1.01
    """

    rhat_max: float = Field(default=1.01, gt=1.0, description="Largest acceptable split R-hat.")
    ess_min: float = Field(default=400.0, ge=0.0, description="Smallest bulk and tail ESS.")
    bfmi_min: float = Field(default=0.3, ge=0.0, description="Smallest E-BFMI per chain.")
    contraction_min: float = Field(default=0.5, ge=0.0, le=1.0, description="Edges contracting "
                                   "less (1 - var_post/var_prior) are prior-dominated.")
    sensitivity_max: float = Field(default=0.05, ge=0.0, description="Power-scaling prior "
                                   "sensitivity above this (with weak likelihood) is prior-dominated.")
    ppp_min: float = Field(default=0.05, ge=0.0, le=1.0, description="Smallest acceptable "
                           "posterior predictive p-value.")
    ppp_draws: int = Field(default=200, ge=1, description="Draws used by the predictive check.")
    srmr_max: float = Field(default=0.08, ge=0.0, description="A PPP below ppp_min fails the run "
                            "only when the SRMR also exceeds this (otherwise it is reported).")


class OutputConfig(_Strict):
    """``[output]``: where to write, and what.

    Examples
    --------
    >>> OutputConfig(formats=["csv"]).formats
    ['csv']
    """

    dir: str = "veerkracht_output"
    formats: list[Literal["csv", "parquet", "netcdf", "brief"]] = Field(
        default_factory=lambda: list(OUTPUT_FORMATS))


class StructureConfig(_Strict):
    """``[structure]`` (optional): how sure is the diagram? Inclusion probabilities of the inferred
    links and the robustness of the rankings (``structure.csv``, ``robustness.csv``; see
    :mod:`veerkracht_bayes.causal.structure`)."""

    variants: Literal["inferred", "none"] = Field(default="inferred", description="'inferred': "
                                                  "the links marked inferred are uncertain; 'none'.")
    prior_inclusion: float = Field(default=0.5, gt=0.0, lt=1.0,
                                   description="Prior inclusion probability of an inferred link.")
    n_structures: int = Field(default=200, ge=1, description="Structures drawn for robustness.csv.")
    draws_per_structure: int = Field(default=200, ge=10, description="Posterior draws per structure.")
    seed: int = Field(default=0, ge=0)


class VoiConfig(_Strict):
    """``[voi]`` (optional): value of information of a next survey wave (``voi.csv``; see
    :mod:`veerkracht_bayes.causal.voi`)."""

    candidates: Literal["unmeasured", "all"] | list[str] = Field(
        default="unmeasured", description="'unmeasured', 'all' or a list of constructs.")
    n: int | list[int] = Field(default=2000, description="Wave size(s).")
    items: int = Field(default=3, ge=1, description="Items per measured construct.")
    reliability: float = Field(default=0.8, gt=0.0, le=1.0, description="Each item's reliability.")
    outcome: str = Field(default="wellbeing", description="The decision's outcome node.")
    method: Literal["reweight", "gaussian"] = Field(
        default="reweight", description="'reweight': preposterior simulation of the wave and an "
        "update by Pareto-smoothed importance reweighting; 'gaussian': the fast approximation.")
    outer_draws: int = Field(default=400, ge=10, description="Simulated waves per candidate "
                             "('reweight').")
    max_refits: int = Field(default=0, ge=0, description="Short NUTS refits per candidate for "
                            "simulated waves whose importance weights degenerate ('reweight').")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _positive_n(self) -> "VoiConfig":
        ns = self.n if isinstance(self.n, list) else [self.n]
        if not ns or any(v < 1 for v in ns):
            raise ValueError(f"n must be a positive wave size or a non-empty list of them (got {self.n!r})")
        return self


class NeighbourhoodsConfig(_Strict):
    """``[neighbourhoods]`` (optional): the two-level (within / between neighbourhoods) model of the
    collective constructs, neighbourhood-level policies and design effects
    (``neighbourhoods.json``, ``neighbourhood_effects.csv``, ``neighbourhood_links.csv``; see
    :mod:`veerkracht_bayes.workflow.neighbourhoods` and ``docs/twolevel.md``). No table: off.

    Examples
    --------
    >>> NeighbourhoodsConfig(cluster="wijk_code").min_cluster_size
    2
    """

    cluster: str = Field(min_length=1, description="Survey column of the neighbourhood code, e.g. 'wijk_code'.")
    constructs: list[str] | None = Field(default=None, description="Constructs whose items enter the "
                                         "two-level model (default: neighbourhood_trust, community_support, "
                                         "collective_agency, social_network, those with items).")
    between: list[str] | None = Field(default=None, description="Between (neighbourhood-level) constructs "
                                      "(default: the collective ones among constructs).")
    policies: list[str] | None = Field(default=None, description="Policy ids evaluated at the neighbourhood "
                                       "level (default: the untargeted policies with a lever linked into a "
                                       "between construct).")
    draws: int = Field(default=500, ge=10, description="Draws per chain of the two-level fit.")
    tune: int = Field(default=500, ge=0, description="Tuning steps per chain of the two-level fit.")
    chains: int = Field(default=2, ge=1, le=64, description="Chains of the two-level fit.")
    min_cluster_size: int = Field(default=2, ge=1, description="Neighbourhoods with fewer respondents "
                                  "are counted as small (reported, kept in the statistics).")

    @field_validator("constructs", "between", "policies")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(set(v)) != len(v):
            raise ValueError(f"lists a name twice: {v} (expected distinct names)")
        if any(not x.strip() for x in v):
            raise ValueError("has an empty name (expected construct or policy ids)")
        return v


class RunConfig(_Strict):
    """A whole run configuration (see module docstring).

    Examples
    --------
    >>> cfg = RunConfig(inputs={"prior_only": True})
    >>> cfg.inputs.graph, cfg.output.dir
    ('marvel', 'veerkracht_output')
    """

    inputs: InputsConfig = Field(default_factory=InputsConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    structure: StructureConfig | None = Field(default=None, description="Optional [structure].")
    voi: VoiConfig | None = Field(default=None, description="Optional [voi].")
    neighbourhoods: NeighbourhoodsConfig | None = Field(default=None, description="Optional [neighbourhoods].")
    _path: Path | None = PrivateAttr(default=None)
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def path(self) -> Path | None:
        """The config file, if read from one."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths resolve against (the config file's folder)."""
        return self._base

    def with_base(self, base: str | Path, path: str | Path | None = None) -> "RunConfig":
        """Set the folder relative paths resolve against (and the config file path)."""
        self._base = Path(base).resolve()
        self._path = None if path is None else Path(path).resolve()
        return self

    def resolve(self, value: str | Path) -> Path:
        """Resolve a path written in the config against :attr:`base_dir`.

        ``shipped:data/...`` and ``shipped:priors/...`` name files that ship with the package
        (:func:`veerkracht_bayes.resources.shipped_path`), wherever it is installed.
        """
        if isinstance(value, str) and value.startswith("shipped:"):
            from veerkracht_bayes.resources import shipped_path

            top, _, rest = value.removeprefix("shipped:").partition("/")
            return shipped_path(top, *Path(rest).parts)
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self._base / p)

    @property
    def out_dir(self) -> Path:
        """The resolved output folder."""
        return self.resolve(self.output.dir)


# ----------------------------------------------------------------------------- TOML parsing
def _line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort 1-based line of a TOML key path (section header + key scan)."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    lines = text.splitlines()
    # Longest prefix that is a [section] header; then the next key in that section.
    for cut in range(len(keys) - 1, -1, -1):
        section = ".".join(keys[:cut])
        start = 0
        if section:
            pat = re.compile(r"^\s*\[\s*" + re.escape(section).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
            hits = [i for i, ln in enumerate(lines) if pat.match(ln)]
            if not hits:
                continue
            start = hits[0] + 1
        if cut == len(keys):
            return start
        key = keys[cut]
        kpat = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*(=|\.)")
        for i in range(start, len(lines)):
            if section and re.match(r"^\s*\[", lines[i]):
                break
            if not section and re.match(r"^\s*\[", lines[i]):
                break
            if kpat.match(lines[i]):
                return i + 1
        if section:
            return start  # the section header line
    return None


def _known_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names of the pydantic model that sits at ``loc`` (for did-you-mean)."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        # an optional table (``X | None``, e.g. [structure], [neighbourhoods]): its model
        members = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)) and len(members) == 1:
            ann = members[0]
        cur = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if cur is None:
            return []
    return list(getattr(cur, "model_fields", {}))


def parse_config(data: dict[str, Any], *, text: str = "", source: str | None = None,
                 base: str | Path | None = None) -> RunConfig:
    """Validate a parsed TOML mapping as a :class:`RunConfig`.

    Parameters
    ----------
    data
        The mapping (from :func:`tomllib.loads`).
    text
        The TOML text (only used to find line numbers).
    source
        File name for messages.
    base
        Folder relative paths resolve against (default: the current folder).

    Raises
    ------
    ConfigError
        Every schema problem, with TOML key path, line, value and what was expected.

    Examples
    --------
    >>> cfg = parse_config({"inputs": {"prior_only": True}, "sampler": {"draws": 300, "chains": 2}})
    >>> cfg.sampler.draws, cfg.inputs.graph
    (300, 'marvel')
    """
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        probs = []
        for e in exc.errors():
            loc = list(e["loc"])
            where = format_path(loc)
            line = _line_of(text, loc) if text else None
            if e["type"] == "extra_forbidden":
                key = str(loc[-1])
                known = _known_keys(RunConfig, loc[:-1])
                msg = (f"unknown key {key!r}{did_you_mean(key, known)} (expected one of "
                       f"{known})")
            elif e["type"] == "finite_number":
                msg = f"expected a finite number, got {e.get('input')!r} (inf and nan are not allowed)"
            elif e["type"] in ("int_type", "int_from_float") and isinstance(e.get("input"), bool):
                msg = (f"expected an integer, got the boolean {e.get('input')!r} (write a number, "
                       "e.g. 2023, not true/false)")
            elif isinstance(e.get("input"), bool) and e["type"].endswith("_type"):
                msg = f"{e['msg']}; got the boolean {e.get('input')!r} (expected a number or text)"
            else:
                msg = f"{e['msg']} (got {e.get('input')!r})"
            probs.append(Problem(msg, file=source, line=line, location=where,
                                 field=str(loc[-1]) if loc else None, value=e.get("input")))
        raise ConfigError(probs) from None
    return cfg.with_base(base or Path.cwd(), source)


def load_config(path: str | Path) -> RunConfig:
    """Read and schema-check a run config TOML file.

    Raises
    ------
    ConfigError
        The file is missing, not valid TOML (with its line) or breaks the schema.

    Examples
    --------
    >>> from veerkracht_bayes.resources import package_data_path
    >>> cfg = load_config(package_data_path("demo.toml"))
    >>> isinstance(cfg, RunConfig)
    True
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(Problem(f"config file not found: {str(p)!r} (expected a TOML file)",
                                  file=str(p), field="config", value=str(p)))
    from veerkracht_bayes.yaml_io import read_text_utf8

    text = read_text_utf8(p, ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(Problem(f"not valid TOML: {exc}", file=str(p),
                                  line=int(m.group(1)) if m else None)) from None
    return parse_config(data, text=text, source=str(p), base=p.resolve().parent)


def fast_settings(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` with ``--fast`` sampler settings and diagnostics thresholds.

    Draws and tuning steps become ``min(FAST_DRAWS, configured)``, prior draws
    ``min(FAST_PRIOR_DRAWS, configured)``; the ``[neighbourhoods]`` fit gets half its draws and
    tuning steps, at most ``FAST_NEIGHBOURHOOD_DRAWS`` each. The ESS thresholds are scaled by
    ``fast draws / configured draws`` (an ESS requirement is a fraction of the draws), and
    ``rhat_max`` is relaxed to at least 1.05 (split-Rhat is noisier on short chains) and the
    posterior predictive check uses at most 100 draws.

    Examples
    --------
    >>> cfg = parse_config({"inputs": {"prior_only": True}})
    >>> fast_settings(cfg).sampler.draws <= cfg.sampler.draws
    True
    """
    new = cfg.model_copy(deep=True)
    new._base, new._path = cfg._base, cfg._path
    s = cfg.sampler
    draws = min(FAST_DRAWS, s.draws)
    new.sampler = s.model_copy(update={"draws": draws, "tune": min(FAST_DRAWS, s.tune),
                                       "prior_draws": min(FAST_PRIOR_DRAWS, s.prior_draws)})
    m = cfg.model
    if m.groups:  # the multi-group fits: at most FAST_GROUP_DRAWS draws, FAST_DRAWS tuning steps
        new.model = m.model_copy(update={
            "group_draws": min(FAST_GROUP_DRAWS, m.group_draws if m.group_draws is not None else s.draws),
            "group_tune": min(FAST_DRAWS, m.group_tune if m.group_tune is not None else s.tune)})
    nb = cfg.neighbourhoods
    if nb is not None:  # the two-level fit: half its draws and tuning, at most FAST_NEIGHBOURHOOD_DRAWS
        new.neighbourhoods = nb.model_copy(update={
            "draws": max(10, min(FAST_NEIGHBOURHOOD_DRAWS, nb.draws // 2)),
            "tune": min(FAST_NEIGHBOURHOOD_DRAWS, nb.tune // 2)})
    scale = draws / s.draws
    d = cfg.diagnostics
    new.diagnostics = d.model_copy(update={"ess_min": d.ess_min * scale,
                                           "rhat_max": max(d.rhat_max, 1.05),
                                           "ppp_draws": min(d.ppp_draws, 100)})
    return new


# ----------------------------------------------------------------------------- cross-checks
@dataclass
class ValidatedInputs:
    """Everything a run reads, loaded and cross-checked (see :func:`validate_inputs`).

    Examples
    --------
    >>> import tempfile
    >>> cfg = parse_config({"inputs": {"prior_only": True}, "output": {"dir": tempfile.mkdtemp() + "/run"}})
    >>> inputs = validate_inputs(cfg)
    >>> isinstance(inputs, ValidatedInputs), inputs.graph.name, inputs.survey is None
    (True, 'marvel', True)
    """

    config: RunConfig
    graph: Any
    priors: Any
    survey: Any
    policies: Any
    interventions: list[Any]
    outcomes: list[Any]
    subgroups: list[str]
    min_cell_size: int
    out_dir: Path
    files: dict[str, Path | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: ``[model] groups``: grouping -> one group label per survey row (None: no label), in the
    #: labelling of :func:`veerkracht_bayes.sem.multigroup.group_labels_from_survey`.
    groupings: dict[str, list[Any]] = field(default_factory=dict)
    #: ``[neighbourhoods]`` resolved: ``cluster``, ``constructs``, ``between``, ``policies`` (ids),
    #: ``skipped`` (policy id -> why it is not evaluated); None when the table is absent.
    neighbourhoods: dict[str, Any] | None = None


def _path_problem(cfg: RunConfig, key: str, value: str) -> Problem | None:
    p = cfg.resolve(value)
    if p.is_file():
        return None
    what = "is a folder, expected a file" if p.is_dir() else "file not found"
    return Problem(f"{what}: {str(p)!r}", file=str(cfg.path) if cfg.path else None,
                   location=key, field=key.split(".")[-1], value=value)


def _cfg_problem(cfg: RunConfig, key: str, msg: str, value: object = None) -> Problem:
    return Problem(msg, file=str(cfg.path) if cfg.path else None, location=key,
                   field=key.split(".")[-1], value=value)


def validate_inputs(cfg: RunConfig, *, overwrite: bool = False) -> ValidatedInputs:
    """Load and cross-check every input of a run before any sampling.

    Checks, all reported together: input files exist; the graph, priors, codebook, survey and
    policies load (their own located errors) and agree; the selected policies, outcomes,
    composites and subgroups exist (did-you-mean); the output folder, when it exists and is not
    empty, is refused unless ``overwrite``.

    Raises
    ------
    ConfigError
        Listing every problem found.

    Examples
    --------
    A prior-only run of the shipped diagram, priors and policies:

    >>> import tempfile
    >>> cfg = parse_config({"inputs": {"prior_only": True}, "output": {"dir": tempfile.mkdtemp() + "/run"}})
    >>> inputs = validate_inputs(cfg)
    >>> len(inputs.interventions), [o.name for o in inputs.outcomes][:2], inputs.out_dir.name
    (10, ['wellbeing', 'stress'], 'run')
    """
    from veerkracht_bayes.graph.causal_graph import load_graph
    from veerkracht_bayes.causal.do import DEFAULT_OUTCOMES, Outcome
    from veerkracht_bayes.causal.policies import load_policies, policies_path
    from veerkracht_bayes.priors.spec import default_priors, load_priors, marvel_priors_path

    inp = cfg.inputs
    probs: list[Problem] = []
    files: dict[str, Path | None] = {"config": cfg.path}

    def collect(exc: VeerkrachtError) -> None:
        probs.extend(exc.problems)

    # 1. files exist
    for key in ("graph", "priors", "policies", "survey", "codebook"):
        val = getattr(inp, key)
        if val is None or (key == "graph" and val == "marvel") or \
                (key == "priors" and val in ("marvel", "default", "vague")) or \
                (key == "policies" and val in _SHIPPED):
            continue
        pr = _path_problem(cfg, f"inputs.{key}", val)
        if pr is not None:
            probs.append(pr)
    out_dir = cfg.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        probs.append(_cfg_problem(cfg, "output.dir", f"output path {str(out_dir)!r} exists and is not "
                                  "a folder (expected a folder to write into)", cfg.output.dir))
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        probs.append(_cfg_problem(cfg, "output.dir", f"output folder {str(out_dir)!r} exists and is "
                                  "not empty; refusing to overwrite it (use --overwrite, or choose "
                                  "another [output] dir)", cfg.output.dir))
    if probs:
        raise ConfigError(probs)

    # 2. load inputs
    graph = priors = survey = policy_set = None
    try:
        graph = load_graph(inp.graph if inp.graph == "marvel" else cfg.resolve(inp.graph))
        files["graph"] = Path(graph.path) if getattr(graph, "path", None) else None
    except VeerkrachtError as exc:
        collect(exc)
    if graph is not None:
        try:
            if inp.priors == "marvel":
                priors = load_priors(marvel_priors_path(), graph)
                files["priors"] = marvel_priors_path()
            elif inp.priors == "default":
                priors = default_priors(graph)
            elif inp.priors == "vague":
                priors = None
            else:
                files["priors"] = cfg.resolve(inp.priors)
                priors = load_priors(files["priors"], graph)
        except VeerkrachtError as exc:
            collect(exc)
        if inp.survey is not None and inp.codebook is not None:
            from veerkracht_bayes.survey.reading import read_survey

            files["survey"], files["codebook"] = cfg.resolve(inp.survey), cfg.resolve(inp.codebook)
            try:
                survey = read_survey(files["survey"], files["codebook"], graph=graph)
            except VeerkrachtError as exc:
                collect(exc)
    if survey is not None:
        defined = list(survey.codebook.subgroups)
    else:  # no survey: the policy file's known subgroups, shares from [query] prevalence
        from veerkracht_bayes.causal.policies import KNOWN_SUBGROUPS

        defined = list(dict.fromkeys(list(KNOWN_SUBGROUPS) + list(cfg.query.prevalence)))
    if graph is not None:
        try:
            ppath = policies_path() if inp.policies in _SHIPPED else cfg.resolve(inp.policies)
            files["policies"] = ppath
            # Subgroup names are checked below against the codebook (or [query] prevalence).
            policy_set = load_policies(ppath, graph=graph, subgroups=defined)
        except VeerkrachtError as exc:
            collect(exc)
    if probs:
        raise ConfigError(probs)

    # 3. cross-checks of [query]
    q = cfg.query
    interventions = policy_set.to_interventions()
    ids = policy_set.ids()
    if q.policies is not None:
        for i, pid in enumerate(q.policies):
            if pid not in ids:
                probs.append(_cfg_problem(cfg, f"query.policies[{i}]", f"unknown policy {pid!r}"
                                          f"{did_you_mean(pid, ids)} (expected an id of the policy "
                                          f"file {str(files['policies'])!r}: {ids})", pid))
        interventions = [iv for iv in interventions if iv.name in q.policies]
    outcome_names = list(q.outcomes) if q.outcomes is not None else list(DEFAULT_OUTCOMES)
    nodes = list(graph.nodes)
    for i, o in enumerate(outcome_names):
        if not graph.has_node(o):
            probs.append(_cfg_problem(cfg, f"query.outcomes[{i}]", f"unknown outcome {o!r}"
                                      f"{did_you_mean(o, nodes)} (expected a node of graph "
                                      f"{graph.name!r})", o))
    outcomes: list[Any] = [Outcome.node(o) for o in outcome_names if graph.has_node(o)]
    for name, weights in q.composites.items():
        if name in outcome_names:
            probs.append(_cfg_problem(cfg, f"query.composites.{name}", f"composite {name!r} has the "
                                      "name of an outcome node (expected a new name)", name))
        if not weights:
            probs.append(_cfg_problem(cfg, f"query.composites.{name}", "empty composite (expected "
                                      "{node = weight, ...})", weights))
        bad = [n for n in weights if not graph.has_node(n)]
        for n in bad:
            probs.append(_cfg_problem(cfg, f"query.composites.{name}.{n}", f"unknown node {n!r}"
                                      f"{did_you_mean(n, nodes)} (expected a node of graph "
                                      f"{graph.name!r})", n))
        if weights and not bad:
            outcomes.append(Outcome(name=name, weights=dict(weights)))
    for i, th in enumerate(q.thresholds):
        if not graph.has_node(th.outcome):
            probs.append(_cfg_problem(cfg, f"query.thresholds[{i}].outcome", f"unknown outcome {th.outcome!r}"
                                      f"{did_you_mean(th.outcome, nodes)} (expected a node of graph "
                                      f"{graph.name!r})", th.outcome))
    # subgroups
    if q.subgroups is not None:
        for i, g in enumerate(q.subgroups):
            if g not in defined:
                src = "the codebook" if survey is not None else "the known subgroups"
                probs.append(_cfg_problem(cfg, f"query.subgroups[{i}]", f"unknown subgroup {g!r}"
                                          f"{did_you_mean(g, defined)} (expected a subgroup of "
                                          f"{src}: {defined})", g))
        subgroups = [g for g in q.subgroups if g in defined]
    else:
        subgroups = list(defined)
    for name, share in q.prevalence.items():
        if not 0.0 < share <= 1.0:
            probs.append(_cfg_problem(cfg, f"query.prevalence.{name}", f"prevalence {share!r} not "
                                      "in (0, 1]", share))
    # targeted policies need their subgroup
    needed = sorted({iv.subgroup for iv in interventions if iv.subgroup is not None})
    if survey is not None:
        for g in needed:
            if g not in defined:
                probs.append(_cfg_problem(cfg, "inputs.policies", f"policy subgroup {g!r} is not "
                                          f"defined{did_you_mean(g, defined)} (expected one of "
                                          f"{defined})", g))
    min_cell = q.min_cell_size if q.min_cell_size is not None else (
        survey.codebook.min_cell_size if survey is not None else 50)
    probs += _threshold_item_problems(cfg, survey)
    groupings, gprobs = _grouping_problems(cfg, graph, survey)
    probs += gprobs
    nbh, nprobs = _neighbourhood_problems(cfg, graph, survey, policy_set)
    probs += nprobs
    if probs:
        raise ConfigError(probs)
    warnings: list[str] = []
    if survey is None:
        for g in needed:
            if g not in q.prevalence:
                warnings.append(f"no survey and no [query] prevalence for subgroup {g!r}: its "
                                "population average uses a share of 1 (equal to the "
                                "within-subgroup effect)")
    return ValidatedInputs(config=cfg, graph=graph, priors=priors, survey=survey,
                           policies=policy_set, interventions=interventions, outcomes=outcomes,
                           subgroups=subgroups, min_cell_size=int(min_cell), out_dir=out_dir,
                           files=files, warnings=warnings, groupings=groupings, neighbourhoods=nbh)


#: Most groups one ``[model] groups`` entry may form (a column with more values is refused).
MAX_GROUPS = 20
#: Fewest respondents per group the multi-group model is fitted with.
MIN_GROUP_FIT = 10


def _threshold_item_problems(cfg: RunConfig, survey: Any) -> list[Problem]:
    """``[[query.thresholds]]`` items must be item columns of the threshold's outcome construct."""
    probs: list[Problem] = []
    if survey is None:
        return probs
    constructs = survey.constructs
    for i, th in enumerate(cfg.query.thresholds):
        cols = constructs.get(th.outcome)
        if cols is None:
            probs.append(_cfg_problem(cfg, f"query.thresholds[{i}].outcome", f"outcome {th.outcome!r} "
                                      "has no items in the codebook (expected a construct measured by the "
                                      f"survey: {sorted(constructs)})", th.outcome))
            continue
        for j, it in enumerate(th.items):
            if it not in cols:
                probs.append(_cfg_problem(cfg, f"query.thresholds[{i}].items[{j}]", f"item {it!r} is not an "
                                          f"item of {th.outcome!r}{did_you_mean(it, cols)} (expected one of "
                                          f"{cols})", it))
    return probs


def _grouping_problems(cfg: RunConfig, graph: Any, survey: Any) -> tuple[dict[str, list[Any]], list[Problem]]:
    """Check ``[model] groups`` and the other ``group_*`` options against the survey and graph;
    returns the group labels of each grouping."""
    m = cfg.model
    probs: list[Problem] = []
    out: dict[str, list[Any]] = {}
    if not m.groups:
        return out, probs
    if cfg.inputs.prior_only or survey is None:
        probs.append(_cfg_problem(cfg, "model.groups", "groups need a fit to survey data (expected "
                                  "prior_only = false with a survey, or no groups)", m.groups))
        return out, probs
    keys = list(graph.edge_keys)
    for i, k in enumerate(m.pooled_links or []):
        if k not in keys:
            probs.append(_cfg_problem(cfg, f"model.group_pool[{i}]", f"unknown link {k!r}"
                                      f"{did_you_mean(k, keys)} (expected 'regressions' or a link of graph "
                                      f"{graph.name!r})", k))
    items = list(survey.item_columns)
    for key in ("group_free_loadings", "group_free_intercepts"):
        for i, it in enumerate(getattr(m, key)):
            if it not in items:
                probs.append(_cfg_problem(cfg, f"model.{key}[{i}]", f"unknown item {it!r}"
                                          f"{did_you_mean(it, items)} (expected an item column of the "
                                          "codebook)", it))
    subgroups = list(survey.codebook.subgroups)
    columns = [str(c) for c in survey.data.columns]
    for i, by in enumerate(m.groups):
        loc = f"model.groups[{i}]"
        if by not in subgroups and by not in columns:
            probs.append(_cfg_problem(cfg, loc, f"unknown grouping {by!r}{did_you_mean(by, subgroups + columns)} "
                                      f"(expected a codebook subgroup {subgroups} or a column of the survey)", by))
            continue
        from veerkracht_bayes.sem.multigroup import group_labels_from_survey

        labels = group_labels_from_survey(survey, by)
        counts: dict[str, int] = {}
        for v in labels:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        if len(counts) < 2:
            probs.append(_cfg_problem(cfg, loc, f"grouping {by!r} forms {len(counts)} group(s) in the survey "
                                      f"{sorted(counts)} (expected at least 2)", by))
        elif len(counts) > MAX_GROUPS:
            probs.append(_cfg_problem(cfg, loc, f"grouping {by!r} has {len(counts)} distinct values (expected a "
                                      f"categorical column with at most {MAX_GROUPS} groups)", by))
        else:
            out[by] = labels
    return out, probs


def _neighbourhood_problems(cfg: RunConfig, graph: Any, survey: Any, policy_set: Any
                            ) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Check ``[neighbourhoods]`` against the survey, the graph and the policies; returns the
    resolved constructs, between constructs and policy ids."""
    nb = cfg.neighbourhoods
    probs: list[Problem] = []
    if nb is None:
        return None, probs
    if cfg.inputs.prior_only or survey is None:
        probs.append(_cfg_problem(cfg, "neighbourhoods", "the two-level neighbourhood model needs survey "
                                  "data (expected prior_only = false with a survey, or no [neighbourhoods] "
                                  "table)", None))
        return None, probs
    columns = [str(c) for c in survey.data.columns]
    if nb.cluster not in columns:
        probs.append(_cfg_problem(cfg, "neighbourhoods.cluster", f"cluster column {nb.cluster!r} is not in "
                                  f"the survey{did_you_mean(nb.cluster, columns)} (expected a neighbourhood "
                                  "code column, e.g. 'wijk_code')", nb.cluster))
    cmap = survey.constructs
    if nb.constructs is None:
        constructs = [c for c in NEIGHBOURHOOD_CONSTRUCTS if c in cmap]
        if not constructs:
            probs.append(_cfg_problem(cfg, "neighbourhoods.constructs", "none of the default constructs "
                                      f"{list(NEIGHBOURHOOD_CONSTRUCTS)} has items in the codebook (expected "
                                      "constructs = [...] naming constructs with items)", None))
    else:
        constructs = []
        for i, c in enumerate(nb.constructs):
            if not graph.has_node(c):
                probs.append(_cfg_problem(cfg, f"neighbourhoods.constructs[{i}]", f"unknown construct {c!r}"
                                          f"{did_you_mean(c, list(graph.nodes))} (expected a node of graph "
                                          f"{graph.name!r})", c))
            elif c not in cmap:
                probs.append(_cfg_problem(cfg, f"neighbourhoods.constructs[{i}]", f"construct {c!r} has no "
                                          f"items in the codebook{did_you_mean(c, list(cmap))} (expected a "
                                          f"construct measured by the survey: {sorted(cmap)})", c))
            else:
                constructs.append(c)
    from veerkracht_bayes.sem.twolevel import COLLECTIVE_CONSTRUCTS

    if nb.between is None:
        between = [c for c in constructs if c in COLLECTIVE_CONSTRUCTS and len(cmap.get(c, [])) >= 2]
    else:
        between = []
        for i, c in enumerate(nb.between):
            if c not in constructs:
                probs.append(_cfg_problem(cfg, f"neighbourhoods.between[{i}]", f"between construct {c!r} is "
                                          f"not among the constructs{did_you_mean(c, constructs)} (expected one "
                                          f"of {constructs})", c))
            elif len(cmap.get(c, [])) < 2:
                probs.append(_cfg_problem(cfg, f"neighbourhoods.between[{i}]", f"between construct {c!r} has "
                                          "one item (expected at least 2: a single-item construct has no "
                                          "between factor of its own)", c))
            else:
                between.append(c)
    if not between and not probs:
        probs.append(_cfg_problem(cfg, "neighbourhoods.between", "no between construct (expected at least one "
                                  f"construct with 2 or more items among {constructs})", nb.between))
    # policies: untargeted, with a lever linked into a between construct
    skipped: dict[str, str] = {}
    policies: list[str] = []
    pols = list(getattr(policy_set, "policies", None) or [])

    def reaches(p: Any) -> list[str]:
        return [f"{lv.node}->{t}" for lv in p.levers for t in graph.children(lv.node) if t in between]

    if nb.policies is None:
        for p in pols:
            if reaches(p) and p.subgroup is None:
                policies.append(p.id)
            elif reaches(p):
                skipped[p.id] = (f"targeted at the subgroup {p.subgroup!r}: its coverage is a share of that "
                                 "subgroup, not of the neighbourhood")
    else:
        by_id = {p.id: p for p in pols}
        for i, pid in enumerate(nb.policies):
            loc = f"neighbourhoods.policies[{i}]"
            p = by_id.get(pid)
            if p is None:
                probs.append(_cfg_problem(cfg, loc, f"unknown policy {pid!r}{did_you_mean(pid, list(by_id))} "
                                          f"(expected a policy id: {list(by_id)})", pid))
            elif not reaches(p):
                levers = [lv.node for lv in p.levers]
                probs.append(_cfg_problem(cfg, loc, f"policy {pid!r} has no lever linked into a between "
                                          f"construct (levers {levers}; between constructs {between}); it does "
                                          "not act at the neighbourhood level in this model", pid))
            elif p.subgroup is not None:
                probs.append(_cfg_problem(cfg, loc, f"policy {pid!r} is targeted at {p.subgroup!r} (expected an "
                                          "untargeted policy: a targeted policy's coverage is a share of its "
                                          "subgroup, not of the neighbourhood)", pid))
            else:
                policies.append(pid)
    return ({"cluster": nb.cluster, "constructs": constructs, "between": between, "policies": policies,
             "skipped": skipped}, probs)
