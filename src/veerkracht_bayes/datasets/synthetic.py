"""A seeded synthetic survey population drawn from a known structural model on the MARVEL graph.

The data are **synthetic**: every respondent is drawn from the model below, whose parameters
(the *truth*) are written beside the data so that estimators can be checked for recovery.
See ``docs/synthetic.md`` for the model in full.

Structural model (all ``P`` graph nodes as one vector, node order = ``graph.nodes``)::

    eta = B eta + alpha + Gamma x + zeta,     eta = (I - B)^-1 (alpha + Gamma x + zeta)

* ``B[k, j]`` is the coefficient of edge ``j -> k`` (sign from the diagram); rows of exogenous
  nodes and policy levers are zero; the spectral radius of ``B`` is checked to be below 1.
* ``x`` are 0/1 covariates (migration background, refugee, youth, female) entering through
  ``Gamma``; ``alpha = -Gamma E_pop[x]`` so every node has population mean 0.
* ``zeta`` of an ordinary node is ``N(0, psi_k)``; for ``community_support`` and
  ``neighbourhood_trust`` it is the sum of a neighbourhood (wijk) random effect with variance
  ``neighbourhood_variance[k]`` and an individual part with variance ``psi_k - that``.
* ``zeta`` of an exogenous node is its standardised observed value: the single-parent 0/1
  indicator ``(s - p) / sqrt(p (1 - p))`` and the adverse-event count ``(c - lam) / sqrt(lam)``
  with the *population* constants ``p`` and ``lam`` (so variance 1, non-Gaussian).
* Policy levers are 0 for everyone (they are unmeasured and exist for do-queries only).
* ``psi`` solves ``diag(Cov(eta)) = 1`` in the population, so coefficients are standardised.

Measurement model: for each item a continuous response ``y* = lambda eta_k + eps`` with
``Var(eps) = 1 - lambda^2`` (``Var(y*) = 1``), cut by thresholds ``tau`` into categories
(ordered probit) on the construct-aligned scale; reverse-coded items are then recorded as
``valid_min + valid_max - aligned``. Household income is ``round(exp(mu + sigma y*))`` euros.

Public API: :class:`SyntheticTruth`, :func:`default_truth`, :func:`simulate_population`,
:class:`SyntheticSurvey`, :func:`implied_moments`, :func:`implied_shares`,
:func:`write_synthetic` (command line: ``veerkracht-bayes simulate``). Randomness comes only from
``numpy.random.Generator(PCG64(seed))``; there is no global random state.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import optimize, special, stats

from veerkracht_bayes.graph.causal_graph import CausalGraph, load_graph
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.survey.codebook import Codebook, ConstructSpec, ItemSpec, SubgroupSpec
from veerkracht_bayes.errors import ConfigError, Problem, did_you_mean, format_path
from veerkracht_bayes.yaml_io import load_yaml

__all__ = [
    "TRUTH_VERSION",
    "DEFAULT_TRUTH_SEED",
    "DATA_FILE",
    "CODEBOOK_FILE",
    "TRUTH_FILE",
    "ItemTruth",
    "CovariateTruth",
    "ExogenousTruth",
    "WelfareRule",
    "CalibrationTarget",
    "DesignTruth",
    "SyntheticTruth",
    "SyntheticSurvey",
    "default_truth",
    "implied_moments",
    "implied_shares",
    "simulate_population",
    "heterogeneity_truth",
    "build_codebook",
    "write_synthetic",
]

TRUTH_VERSION = 1
#: Seed of the (small) random part of the default truth: loading and threshold jitter.
DEFAULT_TRUTH_SEED = 20230915
DATA_FILE = "veerkracht_synthetic.csv.gz"
CODEBOOK_FILE = "codebook_synthetic.yaml"
TRUTH_FILE = "truth.yaml"
README_FILE = "README.md"

SOURCE = "TNO 2023 R10055 'Metaonderzoek veerkracht' (figures as encoded in docs/marvel_encoding.md)"


# =============================================================================== truth schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemTruth(_Strict):
    """Generating parameters of one survey item (construct-aligned scale).

    Examples
    --------
    >>> isinstance(default_truth().items[0], ItemTruth)
    True
    """

    column: str
    node: str = Field(description="The graph node (construct) the item measures.")
    scale: Literal["likert", "binary", "continuous", "count"]
    instrument: str = ""
    label: str = ""
    loading: float = Field(description="lambda: y* = loading * eta + eps (aligned direction).")
    residual_variance: float = Field(description="Var(eps) = 1 - loading^2 on the y* scale.")
    thresholds: list[float] = Field(default_factory=list,
                                    description="Ordered-probit cut points on y* (aligned scale).")
    categories: int | None = None
    valid_min: float | None = None
    valid_max: float | None = None
    reverse: bool = False
    log_mean: float | None = Field(default=None, description="Continuous: log(value) = log_mean + log_sd * y*.")
    log_sd: float | None = None
    missing_rate: float = Field(default=0.0, ge=0, le=1, description="MCAR share coded -9.")
    dont_know_rate: float = Field(default=0.0, ge=0, le=1, description="MCAR share coded dont_know_code.")
    dont_know_code: int | None = None
    missing_codes: list[int] = Field(default_factory=list)
    value_labels: dict[int, str] = Field(default_factory=dict)


class CovariateTruth(_Strict):
    """A 0/1 covariate of ``x`` (entering the structural model through ``gamma``).

    Examples
    --------
    >>> isinstance(default_truth().covariates[0], CovariateTruth)
    True
    """

    name: str
    column: str
    definition: str = Field(description="How x is computed from the data's columns.")
    population_share: float = Field(gt=0, lt=1)
    sample_share: float = Field(gt=0, lt=1, description="Share in the drawn sample (over-sampling).")
    within: str | None = Field(default=None, description="Shares are conditional on this covariate == 1.")


class ExogenousTruth(_Strict):
    """An exogenous node whose disturbance is its standardised observed value.

    Examples
    --------
    >>> t = default_truth()
    >>> all(isinstance(e, ExogenousTruth) for e in t.exogenous.values())
    True
    """

    column: str
    distribution: Literal["bernoulli", "poisson"]
    parameter: float = Field(gt=0, description="Bernoulli p or Poisson rate (population).")
    mean: float
    sd: float
    node_value: str = Field(description="Formula of the node value from the column.")


class WelfareRule(_Strict):
    """welfare_benefit = 1 iff -loading * eta[node] + sqrt(1 - loading^2) e > threshold.

    Examples
    --------
    >>> isinstance(default_truth().welfare, WelfareRule)
    True
    """

    column: str = "welfare_benefit"
    node: str = "livelihood_security"
    loading: float
    threshold: float


class CalibrationTarget(_Strict):
    """A subgroup share the population is calibrated to.

    Examples
    --------
    >>> t = default_truth()
    >>> all(isinstance(c, CalibrationTarget) for c in t.calibration.values())
    True
    """

    description: str
    where: str
    report_figure: float | None = None
    figure_source: str = ""
    implied_population_share: float
    implied_sample_share: float


class DesignTruth(_Strict):
    """Sampling design, grouping and weighting.

    Examples
    --------
    >>> isinstance(default_truth().design, DesignTruth)
    True
    """

    municipalities: list[str]
    wijken_per_municipality: list[int]
    wijk_size_gamma_shape: float = 4.0
    age_youth: list[int] = Field(default_factory=lambda: [12, 25], description="Age range of youth (x=1).")
    age_other: list[int] = Field(default_factory=lambda: [26, 90], description="Age range of the others.")
    weight_cells: list[str] = Field(description="Covariates whose cells are post-stratified.")
    weights: str = ""


class SyntheticTruth(_Strict):
    """Every parameter that generated a synthetic survey, in the model's parameterisation.

    Examples
    --------
    >>> truth = default_truth()
    >>> isinstance(truth, SyntheticTruth), len(truth.coefficients) > 0
    (True, True)
    """

    truth_version: int = TRUTH_VERSION
    synthetic: bool = True
    description: str = ""
    graph: str = "marvel"
    truth_seed: int = DEFAULT_TRUTH_SEED
    nodes: list[str]
    exogenous_nodes: list[str]
    policy_levers: list[str]
    coefficients: dict[str, float] = Field(description="B: edge 'source->target' -> coefficient.")
    intercepts: dict[str, float] = Field(description="alpha per node (0 where not listed).")
    covariates: list[CovariateTruth]
    gamma: dict[str, float] = Field(description="Gamma: 'covariate->node' -> coefficient.")
    psi: dict[str, float] = Field(description="Total disturbance variance per node.")
    neighbourhood_variance: dict[str, float]
    exogenous: dict[str, ExogenousTruth]
    items: list[ItemTruth]
    welfare: WelfareRule
    low_income_threshold_eur: float
    mhi5_columns: list[str]
    mhi5_cutoff: float = 60.0
    design: DesignTruth
    calibration: dict[str, CalibrationTarget] = Field(default_factory=dict)
    spectral_radius: float = 0.0

    # ------------------------------------------------------------------ matrices
    @property
    def index(self) -> dict[str, int]:
        """Position of each node."""
        return {n: i for i, n in enumerate(self.nodes)}

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(B, alpha, Gamma, psi)`` in node order (``Gamma`` is ``P x Q``, covariate order)."""
        b = _link_matrix(self.coefficients, self.nodes, field="coefficients")
        alpha = np.array([self.intercepts.get(n, 0.0) for n in self.nodes])
        gamma = _link_matrix(self.gamma, self.nodes, [c.name for c in self.covariates], field="gamma")
        psi = np.array([self.psi.get(n, 0.0) for n in self.nodes])
        return b, alpha, gamma, psi

    def to_yaml(self, path: str | Path) -> Path:
        """Write the truth as YAML (floats written exactly, round-trip safe)."""
        path = Path(path)
        header = ("# SYNTHETIC DATA: true parameters of the veerkracht_bayes synthetic population.\n"
                  "# Model and conventions: docs/synthetic.md. Read with SyntheticTruth.from_yaml.\n")
        text = yaml.safe_dump(_tidy(self.model_dump()), sort_keys=False, allow_unicode=True, width=100)
        path.write_text(header + text, encoding="utf-8")
        return path

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SyntheticTruth":
        """Read a truth file (safe YAML; located errors)."""
        doc = load_yaml(path, error_cls=ConfigError)
        try:
            return cls.model_validate(doc.data)
        except ValidationError as exc:
            probs = []
            for err in exc.errors():
                loc = tuple(err["loc"])
                probs.append(Problem(f"{err['msg']} (expected a valid synthetic truth file)",
                                     file=str(path), line=doc.line_of(loc), location=format_path(loc),
                                     value=err.get("input")))
            raise ConfigError(probs) from None


def _tidy(obj: object) -> object:
    """Plain YAML-ready data: integral floats of valid ranges become ints, containers recursed."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("valid_min", "valid_max") and isinstance(v, float) and v.is_integer():
                v = int(v)
            out[k] = _tidy(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_tidy(v) for v in obj]
    return obj


# =============================================================================== default truth
#: True standardised edge coefficients (signs from the diagram; magnitudes near the literature
#: literature priors of priors/marvel.yaml, but not equal to them).
MARVEL_COEFFICIENTS: dict[str, float] = {
    "stress->wellbeing": -0.30,
    "wellbeing->livelihood_security": 0.12,
    "livelihood_security->stress": -0.18,
    "stress->education_work_functioning": -0.20,
    "education_work_functioning->livelihood_security": 0.30,
    "livelihood_security->future_outlook": 0.30,
    "future_outlook->stress": -0.22,
    "single_parent_household->stress": 0.10,
    "stress->parenting_quality": -0.22,
    "parenting_quality->parent_child_relationship": 0.25,
    "parent_child_relationship->life_skills": 0.18,
    "life_skills->stress": -0.20,
    "stress->parent_child_relationship": -0.12,
    "help_system_complexity->help_navigation": -0.20,
    "help_navigation->professional_help": 0.35,
    "professional_help->mental_problems": -0.12,
    "professional_help->life_skills": 0.12,
    "life_skills->help_navigation": 0.15,
    "mental_problems->signalling": 0.30,
    "signalling->professional_help": 0.25,
    "social_network->self_confidence": 0.25,
    "self_confidence->individual_agency": 0.35,
    "social_network->individual_agency": 0.15,
    "social_network->life_skills": 0.18,
    "social_network->societal_participation": 0.20,
    "societal_participation->social_network": 0.15,
    "social_network->help_navigation": 0.12,
    "shared_ideals->social_network": 0.15,
    "social_network->wellbeing": 0.20,
    "social_network->stress": -0.15,
    "success_experiences->individual_agency": 0.30,
    "individual_agency->societal_participation": 0.22,
    "societal_participation->success_experiences": 0.25,
    "societal_participation->collective_agency": 0.18,
    "community_support->collective_agency": 0.35,
    "societal_participation->neighbourhood_trust": 0.15,
    "societal_participation->community_support": 0.20,
    "societal_participation->life_skills": 0.10,
    "meeting_places->community_support": 0.15,
    "adverse_life_events->stress": 0.25,
    "adverse_life_events->mental_problems": 0.15,
    "performance_pressure->stress": 0.20,
    "stress->physical_problems": 0.25,
    "stress->mental_problems": 0.35,
    "stress->shame": 0.20,
    "shame->stress": 0.15,
    "financial_means->stress": -0.20,
    "financial_means->livelihood_security": 0.35,
    "mental_problems->wellbeing": -0.25,
    "physical_problems->wellbeing": -0.15,
    "collective_agency->societal_participation": 0.12,
    # policy levers (levers are 0 in the survey: these act only under do-queries)
    "parenting_support->parenting_quality": 0.20,
    "parenting_support->social_network": 0.10,
    "school_care_network->signalling": 0.20,
    "school_care_network->community_support": 0.10,
    "accessible_government->help_system_complexity": -0.25,
    "meeting_places->social_network": 0.10,
    "neighbourhood_professionals->help_navigation": 0.12,
    "neighbourhood_professionals->community_support": 0.15,
    "mh_waiting_time->professional_help": -0.20,
    "peer_support->social_network": 0.12,
    "asylum_labour_access->societal_participation": 0.10,
    "learning_opportunities->life_skills": 0.12,
    "learning_opportunities->education_work_functioning": 0.15,
}

#: Truth of the exposure-lever links added after the shipped survey was drawn (per exposure, in SD of
#: the target). They draw nothing from the truth seed, so the shipped survey stays bit-identical
#: (levers are 0 for every respondent; these act only under do-queries).
EXPOSURE_LEVER_COEFFICIENTS: dict[str, float] = {
    "care_relief->stress": -0.15,
    "material_support->financial_means": 0.25,
    "income_floor->financial_means": 0.30,
    "income_floor->livelihood_security": 0.20,
    "community_initiatives->community_support": 0.15,
    "community_initiatives->societal_participation": 0.10,
    "central_intake->professional_help": 0.20,
    "peer_support->mental_problems": -0.30,
}

#: Covariate effects (Gamma), 'covariate->node'. x are raw 0/1 indicators.
DEFAULT_GAMMA: dict[str, float] = {
    "migration_background->financial_means": -0.35,
    "migration_background->social_network": -0.10,
    "migration_background->shared_ideals": 0.20,
    "migration_background->education_work_functioning": -0.10,
    "refugee->financial_means": -0.50,
    "refugee->mental_problems": 0.30,
    "youth->performance_pressure": 0.35,
    "female->stress": 0.10,
    "female->mental_problems": 0.08,
}

DEFAULT_COVARIATES = [
    CovariateTruth(name="migration_background", column="migration_background",
                   definition="migration_background == 1", population_share=0.25, sample_share=0.35),
    CovariateTruth(name="refugee", column="refugee", definition="refugee == 1 (only if migration_background == 1)",
                   population_share=0.12, sample_share=0.12, within="migration_background"),
    CovariateTruth(name="youth", column="age", definition="12 <= age <= 25",
                   population_share=0.19, sample_share=0.19),
    CovariateTruth(name="female", column="sex", definition="sex == 2",
                   population_share=0.505, sample_share=0.505),
]

NEIGHBOURHOOD_VARIANCE = {"neighbourhood_trust": 0.05, "community_support": 0.05}

# value labels of the response scales
_FREQ6 = {0: "at no time", 1: "some of the time", 2: "less than half of the time",
          3: "more than half of the time", 4: "most of the time", 5: "all of the time"}
_PSS5 = {0: "never", 1: "almost never", 2: "sometimes", 3: "fairly often", 4: "very often"}
_LONELY3 = {1: "no", 2: "more or less", 3: "yes"}
_AGREE4 = {1: "strongly disagree", 2: "disagree", 3: "agree", 4: "strongly agree"}
_AGREE5 = {1: "strongly disagree", 2: "disagree", 3: "neither", 4: "agree", 5: "strongly agree"}
_MHI6 = {1: "never", 2: "rarely", 3: "sometimes", 4: "often", 5: "mostly", 6: "always"}
_SRH5 = {1: "very good", 2: "good", 3: "fair", 4: "poor", 5: "very poor"}
_YESNO = {0: "no", 1: "yes"}
_OFTEN5 = {1: "never", 2: "rarely", 3: "sometimes", 4: "often", 5: "very often"}
_EASY5 = {1: "very hard", 2: "hard", 3: "neither", 4: "easy", 5: "very easy"}
_WORRY4 = {1: "never", 2: "sometimes", 3: "often", 4: "almost always"}
_LIMIT3 = {1: "not limited", 2: "somewhat limited", 3: "severely limited"}

# construct -> (instrument, scale, categories, valid_min, base thresholds (aligned), value labels,
#               [(column, label, reverse)], dont-know rate)
_Instrument = tuple[str, str, int | None, int, list[float], dict[int, str], list[tuple[str, str, bool]], float]
INSTRUMENTS: dict[str, _Instrument] = {
    "wellbeing": ("WHO-5-like wellbeing index (own wording)", "likert", 6, 0,
                  [-2.0, -1.3, -0.6, 0.2, 1.1], _FREQ6, [
                      ("wb1", "Over the past two weeks I was in good spirits", False),
                      ("wb2", "Over the past two weeks I felt at ease and relaxed", False),
                      ("wb3", "Over the past two weeks I felt full of energy", False),
                      ("wb4", "Over the past two weeks I woke up rested", False),
                      ("wb5", "Over the past two weeks my days were filled with things I care about", False),
                  ], 0.0),
    "stress": ("PSS-10-like perceived stress (own wording; items 4, 5, 7, 8 positive, reverse-coded)",
               "likert", 5, 0, [-0.9, 0.0, 0.9, 1.8], _PSS5, [
                   ("pss1", "In the past month, how often were you thrown by something unexpected?", False),
                   ("pss2", "... felt you could not steer the important things in your life?", False),
                   ("pss3", "... felt tense or on edge?", False),
                   ("pss4", "... felt sure you could deal with your personal problems?", True),
                   ("pss5", "... felt that life was going your way?", True),
                   ("pss6", "... felt you could not keep up with everything you had to do?", False),
                   ("pss7", "... managed to keep irritations under control?", True),
                   ("pss8", "... felt on top of things?", True),
                   ("pss9", "... got angry about things outside your control?", False),
                   ("pss10", "... felt problems were piling up beyond what you could handle?", False),
               ], 0.0),
    "social_network": ("De Jong Gierveld-like loneliness, 6 items (own wording); loneliness items reverse-coded "
                       "for the social network", "likert", 3, 1, [-1.1, -0.3], _LONELY3, [
                           ("lon1", "I miss having someone really close to me", True),
                           ("lon2", "I often feel empty inside", True),
                           ("lon3", "I often feel let down by others", True),
                           ("lon4", "There are enough people I can turn to when things are hard", False),
                           ("lon5", "There are many people I fully trust", False),
                           ("lon6", "I have enough people I feel close to", False),
                       ], 0.0),
    "individual_agency": ("Pearlin-like mastery, 7 items (own wording; 5 negative items reverse-coded)",
                          "likert", 4, 1, [-1.6, -0.6, 0.8], _AGREE4, [
                              ("mas1", "I have little grip on what happens to me", True),
                              ("mas2", "Some of my problems I simply cannot solve", True),
                              ("mas3", "There is little I can do to change important things in my life", True),
                              ("mas4", "I often feel helpless with the problems of life", True),
                              ("mas5", "Sometimes I feel pushed around by life", True),
                              ("mas6", "What happens to me later mostly depends on me", False),
                              ("mas7", "I can do almost anything I really set my mind to", False),
                          ], 0.0),
    "neighbourhood_trust": ("Social-cohesion scale, items 1-3 (own wording)", "likert", 5, 1,
                            [-1.8, -0.9, 0.1, 1.3], _AGREE5, [
                                ("coh1", "People in my neighbourhood can be trusted", False),
                                ("coh2", "People around here know each other well", False),
                                ("coh3", "People in this neighbourhood do not get along", True),
                            ], 0.0),
    "community_support": ("Social-cohesion scale, items 4-5 (own wording)", "likert", 5, 1,
                          [-1.6, -0.7, 0.3, 1.4], _AGREE5, [
                              ("coh4", "People in my neighbourhood help each other", False),
                              ("coh5", "If I want to change something here, neighbours would back me", False),
                          ], 0.0),
    "livelihood_security": ("Income-adequacy items (own wording)", "mixed", None, 1, [], {}, [], 0.0),
    "mental_problems": ("MHI-5-like mental-health items (own wording; scored 0-100, high = healthy, "
                        "psychologically unhealthy below 60)", "likert", 6, 1,
                        [-0.6, 0.3, 1.0, 1.6, 2.2], _MHI6, [
                            ("mhi1", "In the past four weeks, how often were you very nervous?", False),
                            ("mhi2", "... felt so low that nothing could cheer you up?", False),
                            ("mhi3", "... felt calm and at peace?", True),
                            ("mhi4", "... felt gloomy and sad?", False),
                            ("mhi5", "... felt happy?", True),
                        ], 0.0),
    "physical_problems": ("Self-rated health and chronic conditions (own wording)", "mixed", None, 1, [], {}, [], 0.0),
    "societal_participation": ("Participation items (own wording)", "mixed", None, 0, [], {}, [], 0.0),
    "collective_agency": ("Collective-efficacy items (own wording; 'don't know' coded 99)", "likert", 5, 1,
                          [-1.5, -0.5, 0.5, 1.5], _AGREE5, [
                              ("ce1", "Together, residents here can improve the neighbourhood", False),
                              ("ce2", "If the council closed a local facility, residents would organise to stop it", False),
                              ("ce3", "Residents here can solve neighbourhood problems together", False),
                          ], 0.04),
    "future_outlook": ("Future-outlook items (own wording)", "likert", 5, 1, [-1.7, -0.8, 0.2, 1.3], _AGREE5, [
        ("fut1", "I look forward to the future with confidence", False),
        ("fut2", "I expect my life to get better in the coming years", False),
        ("fut3", "My future looks bleak", True),
    ], 0.0),
    "education_work_functioning": ("Functioning at school or work (own wording)", "likert", 5, 1,
                                   [-2.0, -1.2, -0.2, 1.0], _AGREE5, [
                                       ("ewf1", "I keep up well with my work or studies", False),
                                       ("ewf2", "I often fall behind at work or school", True),
                                   ], 0.0),
}

# mixed-format instruments: (column, label, scale, categories, valid_min, thresholds, labels, reverse)
_MIXED: dict[str, list[tuple[str, str, str, int | None, int, list[float], dict[int, str], bool]]] = {
    "livelihood_security": [
        ("ends_meet", "How easy or hard is it for your household to make ends meet?", "likert", 5, 1,
         [-2.0, -1.2, -0.3, 0.9], _EASY5, False),
        ("arrears", "Has your household fallen behind on rent, energy or other bills in the past 12 months?",
         "binary", None, 0, [-1.4], _YESNO, True),
        ("money_worries", "How often do you worry about money?", "likert", 4, 1, [-1.3, -0.3, 0.9], _WORRY4, True),
    ],
    "physical_problems": [
        ("srh", "How is your health in general?", "likert", 5, 1, [-0.5, 0.6, 1.5, 2.3], _SRH5, False),
        ("chronic", "Do you have a long-standing illness or condition?", "binary", None, 0, [0.5], _YESNO, False),
        ("limited", "Are you limited in daily activities by health problems?", "likert", 3, 1, [0.8, 1.8],
         _LIMIT3, False),
    ],
    "societal_participation": [
        ("volunteer", "Did you do voluntary work in the past 12 months?", "binary", None, 0, [0.1], _YESNO, False),
        ("member", "Are you an active member of a club or association?", "binary", None, 0, [-0.2], _YESNO, False),
        ("nbh_activity", "How often do you take part in neighbourhood activities?", "likert", 5, 1,
         [-0.3, 0.5, 1.2, 1.9], _OFTEN5, False),
    ],
    "professional_help": [
        ("prof_help", "Did you see a professional about mental or emotional problems in the past 12 months?",
         "binary", None, 0, [1.2], _YESNO, False),
    ],
}

INCOME_LOG_MEAN = math.log(38_000.0)
INCOME_LOG_SD = 0.5

#: report-based calibration figures
TARGETS = {
    "single_parent": (0.16, "~16% of children live in a single-parent family (" + SOURCE + ")"),
    "low_income": (0.11, ">10% of the Dutch population lives in poverty (" + SOURCE + "); 11% chosen"),
    "mental_health_problems": (0.15, "15% of people aged 12+ psychologically unhealthy, 2021 (" + SOURCE + ")"),
    "welfare_recipient": (0.05, "assumption of this package (not a report figure): ~5% receive welfare"),
    "migration_background": (0.25, "assumption (CBS order of magnitude, not a report figure)"),
    "youth": (0.19, "assumption: share aged 12-25 among people aged 12+ (CBS order of magnitude)"),
}


def _edge_default(rng: np.random.Generator, sign: str) -> float:
    v = round(float(rng.uniform(0.10, 0.30)), 2)
    return v if sign == "+" else -v


def default_truth(graph: CausalGraph | str | None = None, seed: int = DEFAULT_TRUTH_SEED) -> SyntheticTruth:
    """The default generating parameters on a graph (MARVEL by default).

    Parameters
    ----------
    graph
        The diagram (default ``load_graph("marvel")``). Edges not in :data:`MARVEL_COEFFICIENTS`
        get a coefficient of the edge's sign and size U(0.10, 0.30) drawn from ``seed``.
    seed
        Seed of the small random part: item loadings U(0.60, 0.85), threshold shifts
        U(-0.2, 0.2), missing rates U(0.01, 0.04).

    Returns
    -------
    SyntheticTruth
        With ``psi`` solved so every non-lever node has population variance 1, the
        MHI-5 thresholds, low-income threshold and welfare threshold calibrated to the
        report's figures (exactly, by root finding on the implied population shares).

    Raises
    ------
    ConfigError
        If the graph has no stable equilibrium with these coefficients (spectral radius >= 1)
        or no positive ``psi`` gives unit variances.

    Examples
    --------
    >>> truth = default_truth()
    >>> truth.graph, truth.synthetic
    ('marvel', True)
    """
    if graph is None or (isinstance(graph, str) and graph == "marvel"):
        return _marvel_truth(int(seed))
    return _default_truth(load_graph(graph), seed)


@functools.lru_cache(maxsize=4)
def _marvel_truth(seed: int) -> SyntheticTruth:
    return _default_truth(load_graph("marvel"), seed)


def _default_truth(g: CausalGraph, seed: int) -> SyntheticTruth:
    rng = np.random.Generator(np.random.PCG64(seed))
    nodes = list(g.nodes)
    levers = g.nodes_where(role="policy_lever")
    exo = g.nodes_where(role="exogenous")
    coefs = {}
    for e in g.edges:
        if e.target in levers or e.target in exo:
            raise ConfigError(Problem(f"edge {e.key} points into an exogenous node or policy lever "
                                      "(expected those nodes to have no parents)", location=e.key))
        if e.key in EXPOSURE_LEVER_COEFFICIENTS:  # no draw: keeps the seeded stream of older edges
            coefs[e.key] = EXPOSURE_LEVER_COEFFICIENTS[e.key]
        else:
            coefs[e.key] = MARVEL_COEFFICIENTS.get(e.key, _edge_default(rng, e.sign))
        if np.sign(coefs[e.key]) != (1 if e.sign == "+" else -1):
            raise ConfigError(f"edge {e.key}: coefficient {coefs[e.key]} contradicts the sign {e.sign!r}")
    node_set = set(nodes)
    gamma = {k: v for k, v in DEFAULT_GAMMA.items() if k.split("->")[1] in node_set}
    exogenous: dict[str, ExogenousTruth] = {}
    if "single_parent_household" in exo:
        p = 0.16
        sd = math.sqrt(p * (1 - p))
        exogenous["single_parent_household"] = ExogenousTruth(
            column="single_parent", distribution="bernoulli", parameter=p, mean=p, sd=sd,
            node_value=f"(single_parent - {p}) / sqrt({p} * (1 - {p}))")
    if "adverse_life_events" in exo:
        lam = 0.7
        exogenous["adverse_life_events"] = ExogenousTruth(
            column="adverse_events_12m", distribution="poisson", parameter=lam, mean=lam, sd=math.sqrt(lam),
            node_value=f"(adverse_events_12m - {lam}) / sqrt({lam})")
    for n in exo:
        if n not in exogenous:
            raise ConfigError(f"exogenous node {n!r} has no synthetic distribution (known: "
                              "single_parent_household, adverse_life_events)")

    items = _default_items(rng, node_set)
    mhi_cols = [it.column for it in items if it.node == "mental_problems"]
    municipalities = [f"GM{9001 + i}" for i in range(20)]
    wpm = [4, 6, 8, 10, 12, 14, 16, 6, 8, 10, 12, 14, 16, 18, 9, 11, 7, 5, 9, 5]  # sums to 200
    design = DesignTruth(
        municipalities=municipalities, wijken_per_municipality=wpm,
        weight_cells=["migration_background", "youth", "female"],
        weights=("post-stratification: weight = population share / realised sample share of the respondent's "
                 "cell of migration_background x youth x female (mean exactly 1); migration background is "
                 "over-sampled (sample share 0.35 vs population 0.25)"))
    b = _link_matrix(coefs, nodes, field="coefficients")
    rho = float(algebra.spectral_radius(b))
    if rho >= 1:
        raise ConfigError(f"spectral radius of B is {rho:.3f} (expected < 1 for a stable equilibrium)")
    truth = SyntheticTruth(
        description=("SYNTHETIC population for veerkracht_bayes: a cyclic linear structural model on the "
                     "MARVEL diagram with an ordered-probit measurement model. Not real data."),
        graph=g.name, truth_seed=seed, nodes=nodes, exogenous_nodes=exo, policy_levers=levers,
        coefficients=coefs, intercepts={n: 0.0 for n in nodes},
        covariates=[c for c in DEFAULT_COVARIATES], gamma=gamma,
        psi={n: 0.0 for n in nodes}, neighbourhood_variance={k: v for k, v in NEIGHBOURHOOD_VARIANCE.items()
                                                             if k in node_set},
        exogenous=exogenous, items=items,
        welfare=WelfareRule(loading=0.7, threshold=0.0), low_income_threshold_eur=0.0,
        mhi5_columns=mhi_cols, design=design, spectral_radius=rho)
    truth = _solve_intercepts_and_psi(truth)
    truth = _calibrate(truth)
    return truth


def _link_matrix(links: Mapping[str, float], rows: Sequence[str], cols: Sequence[str] | None = None, *,
                 field: str) -> np.ndarray:
    """:func:`~veerkracht_bayes.sem.algebra.link_matrix`, its error located at the truth's ``field``."""
    try:
        return algebra.link_matrix(links, rows, cols)
    except ValueError as err:
        raise ConfigError(Problem(f"synthetic truth: {err}", field=field)) from err


def _default_items(rng: np.random.Generator, node_set: set[str]) -> list[ItemTruth]:
    items: list[ItemTruth] = []

    def add(construct: str, instrument: str, column: str, label: str, scale: str, k: int | None, vmin: int,
            taus: list[float], labels: dict[int, str], reverse: bool, dk: float) -> None:
        lam = round(float(rng.uniform(0.60, 0.85)), 2)
        shift = round(float(rng.uniform(-0.2, 0.2)), 2)
        miss = round(float(rng.uniform(0.01, 0.04)), 3)
        ncat = 2 if scale == "binary" else k
        assert ncat is not None and len(taus) == ncat - 1
        vmax = vmin + ncat - 1
        items.append(ItemTruth(
            column=column, node=construct, scale=scale, instrument=instrument, label=label,  # type: ignore[arg-type]
            loading=lam, residual_variance=round(1 - lam * lam, 6),
            thresholds=[round(t + shift, 3) for t in taus], categories=k if scale == "likert" else None,
            valid_min=vmin, valid_max=vmax, reverse=reverse, missing_rate=miss,
            dont_know_rate=dk, dont_know_code=99 if dk > 0 else None,
            missing_codes=[-9, 99] if dk > 0 else [-9], value_labels=labels))

    for construct, (instr, scale, k, vmin, taus, labels, rows, dk) in INSTRUMENTS.items():
        if construct not in node_set:
            continue
        if scale == "mixed":
            continue
        for col, label, rev in rows:
            add(construct, instr, col, label, scale, k, vmin, taus, labels, rev, dk)
    for construct, rows in _MIXED.items():
        if construct not in node_set:
            continue
        instr = INSTRUMENTS[construct][0] if construct in INSTRUMENTS else "Single item (own wording)"
        for col, label, scale, k, vmin, taus, labels, rev in rows:
            add(construct, instr, col, label, scale, k, vmin, taus, labels, rev, 0.0)
    if "financial_means" in node_set:
        lam = round(float(rng.uniform(0.75, 0.90)), 2)
        items.append(ItemTruth(
            column="household_income", node="financial_means", scale="continuous",
            instrument="Net household income, euros per year", label="Net household income per year (euros)",
            loading=lam, residual_variance=round(1 - lam * lam, 6), valid_min=0,
            log_mean=INCOME_LOG_MEAN, log_sd=INCOME_LOG_SD, missing_rate=0.02, dont_know_rate=0.05,
            dont_know_code=-8, missing_codes=[-9, -8],
            value_labels={}))
    # order items by node order then as defined
    order = {n: i for i, n in enumerate(INSTRUMENTS)}
    items.sort(key=lambda it: order.get(it.node, len(order)))
    return items


# =============================================================================== implied moments
@dataclass(frozen=True)
class _Cells:
    prob: np.ndarray  # (C,)
    mean: np.ndarray  # (C, P) mean of eta given the discrete cell
    x: np.ndarray  # (C, Q)
    gauss_cov: np.ndarray  # (P, P) Gaussian part of Cov(eta), same in every cell
    a: np.ndarray  # (I - B)^-1


def _support(ex: ExogenousTruth) -> tuple[np.ndarray, np.ndarray]:
    if ex.distribution == "bernoulli":
        return np.array([0.0, 1.0]), np.array([1 - ex.parameter, ex.parameter])
    kmax = int(stats.poisson.isf(1e-15, ex.parameter)) + 2
    k = np.arange(kmax + 1, dtype=float)
    return k, stats.poisson.pmf(k, ex.parameter)


def _x_cells(truth: SyntheticTruth, design: Literal["population", "sample"]) -> tuple[np.ndarray, np.ndarray]:
    names = [c.name for c in truth.covariates]
    xs = [np.zeros(len(names))]
    ps = [1.0]
    for j, c in enumerate(truth.covariates):
        share = c.population_share if design == "population" else c.sample_share
        new_x, new_p = [], []
        for x, p in zip(xs, ps):
            on = 1.0 if c.within is None else x[names.index(c.within)]
            s = share * on
            for v, pv in ((0.0, 1 - s), (1.0, s)):
                if pv <= 0:
                    continue
                x2 = x.copy()
                x2[j] = v
                new_x.append(x2)
                new_p.append(p * pv)
        xs, ps = new_x, new_p
    return np.array(xs), np.array(ps)


def _cells(truth: SyntheticTruth, design: Literal["population", "sample"] = "population") -> _Cells:
    b, alpha, gamma, psi = truth.matrices()
    a = algebra.equilibrium_matrix(b)
    xs, px = _x_cells(truth, design)
    idx = truth.index
    inputs = alpha[None, :] + xs @ gamma.T  # (Cx, P)
    probs = px
    xrep = xs
    for node, ex in truth.exogenous.items():
        vals, pv = _support(ex)
        z = (vals - ex.mean) / ex.sd
        c0 = inputs.shape[0]
        inputs = np.repeat(inputs, len(vals), axis=0)
        inputs[:, idx[node]] += np.tile(z, c0)
        probs = (probs[:, None] * pv[None, :]).ravel()
        xrep = np.repeat(xrep, len(vals), axis=0)
    means = inputs @ a.T
    gpsi = psi.copy()
    for n in truth.exogenous_nodes + truth.policy_levers:
        gpsi[idx[n]] = 0.0
    gauss = algebra.latent_covariance(a, gpsi)
    return _Cells(prob=probs, mean=means, x=xrep, gauss_cov=gauss, a=a)


def implied_moments(truth: SyntheticTruth,
                    design: Literal["population", "sample"] = "population") -> tuple[np.ndarray, np.ndarray]:
    """Exact mean vector and covariance matrix of ``eta`` implied by the truth.

    Parameters
    ----------
    truth
        The generating parameters.
    design
        ``"population"`` (population covariate shares) or ``"sample"`` (the over-sampled design).

    Returns
    -------
    mean, cov
        ``(P,)`` and ``(P, P)`` in node order (exogenous Poisson support truncated at 1e-15 tail).

    Examples
    --------
    >>> mean, cov = implied_moments(default_truth())
    >>> cov.shape[0] == cov.shape[1] == mean.shape[0]
    True
    """
    c = _cells(truth, design)
    m = c.prob @ c.mean
    d = c.mean - m
    return m, c.gauss_cov + (d * c.prob[:, None]).T @ d


def _solve_intercepts_and_psi(truth: SyntheticTruth) -> SyntheticTruth:
    """alpha = -Gamma E_pop[x]; psi such that every non-lever node has population variance 1."""
    b, _, gamma, _ = truth.matrices()
    xs, px = _x_cells(truth, "population")
    ex = px @ xs
    alpha = -gamma @ ex
    idx = truth.index
    psi = np.zeros(len(truth.nodes))
    for n in truth.exogenous_nodes:
        psi[idx[n]] = 1.0
    t1 = truth.model_copy(update={"intercepts": {n: float(alpha[i]) + 0.0 for i, n in enumerate(truth.nodes)},
                                  "psi": {n: float(psi[i]) for i, n in enumerate(truth.nodes)}})
    _, cov0 = implied_moments(t1, "population")  # variance from x and exogenous nodes only
    a = algebra.equilibrium_matrix(b)
    endo = [i for i, n in enumerate(truth.nodes) if n not in truth.exogenous_nodes and n not in truth.policy_levers]
    # exogenous nodes and levers have no Gaussian disturbance (their variance is in cov0)
    sol = algebra.unit_variance_psi(a, np.diag(cov0), free=endo)
    for i in endo:
        n = truth.nodes[i]
        floor = truth.neighbourhood_variance.get(n, 0.0)
        if not sol[i] > floor:
            raise ConfigError(f"no positive disturbance variance gives node {n!r} variance 1 "
                              f"(solved psi = {sol[i]:.4f}); reduce the coefficients into it")
        psi[i] = sol[i]
    return t1.model_copy(update={"psi": {n: float(psi[i]) for i, n in enumerate(truth.nodes)}})


def _gh(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def _item(truth: SyntheticTruth, column: str) -> ItemTruth:
    for it in truth.items:
        if it.column == column:
            return it
    raise ConfigError(f"unknown item column {column!r} in the truth")


def _share_below(cells: _Cells, node: int, loading: float, threshold: float) -> float:
    """P(loading * eta_node + eps < threshold), Var(eps) = 1 - loading^2."""
    m = cells.mean[:, node]
    v = loading**2 * cells.gauss_cov[node, node] + 1 - loading**2
    return float(cells.prob @ special.ndtr((threshold - loading * m) / np.sqrt(v)))


def _mhi_unhealthy_share(truth: SyntheticTruth, cells: _Cells, shift: float = 0.0) -> float:
    """P(MHI-5 score < cutoff): sum of aligned problem categories >= 25 - cutoff/4 (+1 if integral)."""
    node = truth.index["mental_problems"]
    its = [_item(truth, c) for c in truth.mhi5_columns]
    z, w = _gh()
    m = cells.mean[:, node]
    sd = math.sqrt(cells.gauss_cov[node, node])
    eta = m[:, None] + sd * z[None, :]  # (C, G)
    dist = np.ones(eta.shape + (1,))
    for it in its:
        tau = np.array(it.thresholds) + shift
        s = math.sqrt(it.residual_variance)
        cdf = special.ndtr((tau[None, None, :] - it.loading * eta[..., None]) / s)
        cdf = np.concatenate([np.zeros(eta.shape + (1,)), cdf, np.ones(eta.shape + (1,))], axis=-1)
        pc = np.diff(cdf, axis=-1)  # (C, G, K)
        k = pc.shape[-1]
        new = np.zeros(eta.shape + (dist.shape[-1] + k - 1,))
        for c in range(k):
            new[..., c:c + dist.shape[-1]] += dist * pc[..., c:c + 1]
        dist = new
    # score = 4 * sum(5 - a_i) = 100 - 4 * sum(a); score < cutoff <=> sum(a) > (100 - cutoff) / 4
    limit = (100 - truth.mhi5_cutoff) / 4
    sums = np.arange(dist.shape[-1])
    p_unhealthy = dist[..., sums > limit].sum(-1)  # (C, G)
    return float(cells.prob @ (p_unhealthy @ w))


def implied_shares(truth: SyntheticTruth,
                   design: Literal["population", "sample"] = "population") -> dict[str, float]:
    """Exact subgroup shares implied by the truth (before item missingness).

    The discrete part (covariates, single parent, adverse-event count) is enumerated; given it,
    every latent is Gaussian, so threshold shares are exact normal integrals (Gauss-Hermite for
    the MHI-5 sum score).

    Examples
    --------
    >>> shares = implied_shares(default_truth())
    >>> all(0 <= v <= 1 for v in shares.values())
    True
    """
    cells = _cells(truth, design)
    idx = truth.index
    out: dict[str, float] = {}
    if "single_parent_household" in truth.exogenous:
        out["single_parent"] = truth.exogenous["single_parent_household"].parameter
    cov = {c.name: c for c in truth.covariates}
    xs, px = _x_cells(truth, design)
    for name in ("migration_background", "refugee", "youth"):
        if name in cov:
            out[name] = float(px @ xs[:, [c.name for c in truth.covariates].index(name)])
    inc = [it for it in truth.items if it.column == "household_income"]
    if inc and truth.low_income_threshold_eur > 0:
        it = inc[0]
        t = (math.log(truth.low_income_threshold_eur) - it.log_mean) / it.log_sd  # type: ignore[operator]
        out["low_income"] = _share_below(cells, idx["financial_means"], it.loading, t)
    w = truth.welfare
    if w.node in idx:
        out["welfare_recipient"] = _share_below(cells, idx[w.node], w.loading, -w.threshold)
    if truth.mhi5_columns:
        out["mental_health_problems"] = _mhi_unhealthy_share(truth, cells)
    return out


def _calibrate(truth: SyntheticTruth) -> SyntheticTruth:
    """Root-find the MHI-5 threshold shift, low-income threshold and welfare threshold."""
    cells = _cells(truth, "population")
    idx = truth.index
    upd: dict[str, object] = {}
    items = list(truth.items)
    if truth.mhi5_columns:
        target = TARGETS["mental_health_problems"][0]
        shift = optimize.brentq(lambda s: _mhi_unhealthy_share(truth, cells, s) - target, -2.0, 2.0, xtol=1e-12)
        items = [it.model_copy(update={"thresholds": [float(t + shift) for t in it.thresholds]})
                 if it.column in truth.mhi5_columns else it for it in items]
    inc = [it for it in items if it.column == "household_income"]
    if inc:
        it = inc[0]
        z = optimize.brentq(lambda t: _share_below(cells, idx["financial_means"], it.loading, t)
                            - TARGETS["low_income"][0], -5, 5, xtol=1e-12)
        upd["low_income_threshold_eur"] = float(round(math.exp(it.log_mean + it.log_sd * z)))  # type: ignore[operator]
    w = truth.welfare
    if w.node in idx:
        z = optimize.brentq(lambda t: _share_below(cells, idx[w.node], w.loading, t)
                            - TARGETS["welfare_recipient"][0], -5, 5, xtol=1e-12)
        upd["welfare"] = w.model_copy(update={"threshold": float(-z)})
    upd["items"] = items
    t2 = truth.model_copy(update=upd)
    pop = implied_shares(t2, "population")
    smp = implied_shares(t2, "sample")
    where = {
        "single_parent": "single_parent == 1",
        "low_income": f"household_income >= 0 and household_income < {t2.low_income_threshold_eur:g}",
        "mental_health_problems": f"mhi5_score >= 0 and mhi5_score < {t2.mhi5_cutoff:g}",
        "welfare_recipient": "welfare_benefit == 1",
        "migration_background": "migration_background == 1",
        "youth": "age >= 12 and age <= 25",
    }
    desc = {
        "single_parent": "lives in a single-parent household",
        "low_income": "net household income below the low-income threshold (bottom of financial_means)",
        "mental_health_problems": "psychologically unhealthy: MHI-5-like score below 60 (complete cases)",
        "welfare_recipient": "receives a welfare benefit (probit on low livelihood_security)",
        "migration_background": "has a migration background",
        "youth": "aged 12-25",
    }
    cal = {}
    for k, (fig, src) in TARGETS.items():
        if k in pop:
            cal[k] = CalibrationTarget(description=desc[k], where=where[k], report_figure=fig, figure_source=src,
                                       implied_population_share=float(pop[k]), implied_sample_share=float(smp[k]))
    return t2.model_copy(update={"calibration": cal})


# =============================================================================== simulation
@dataclass(frozen=True)
class SyntheticSurvey:
    """A drawn synthetic survey.

    Attributes
    ----------
    data
        The survey as it would be delivered (item codes, missing codes, weights, groups).
    codebook
        Its codebook (``synthetic: true``).
    truth
        The generating parameters.
    latent
        ``n x P`` true construct scores (node columns) -- in memory only, never written.
    item_latent
        ``n x items`` continuous responses ``y*`` on the aligned scale -- in memory only.
    disturbance
        ``n x P`` the disturbances ``zeta`` -- in memory only.
    covariates
        ``n x Q`` the covariates ``x``.

    Examples
    --------
    >>> sim = simulate_population(200, seed=2, truth=default_truth())
    >>> isinstance(sim, SyntheticSurvey)
    True
    """

    data: pd.DataFrame
    codebook: Codebook
    truth: SyntheticTruth
    latent: pd.DataFrame = field(repr=False)
    item_latent: pd.DataFrame = field(repr=False)
    disturbance: pd.DataFrame = field(repr=False)
    covariates: pd.DataFrame = field(repr=False)
    #: the heterogeneity truth (:func:`heterogeneity_truth`), when links differ by group
    heterogeneity: dict | None = None


def _check_truth_graph(truth: SyntheticTruth, g: CausalGraph) -> None:
    probs = []
    if list(truth.nodes) != list(g.nodes):
        probs.append(Problem(f"truth nodes differ from the graph {g.name!r} nodes (expected the same list "
                             "in the same order)", field="nodes"))
    missing = sorted(set(g.edge_keys) - set(truth.coefficients))
    extra = sorted(set(truth.coefficients) - set(g.edge_keys))
    if missing:
        probs.append(Problem(f"truth has no coefficient for edges {missing}", field="coefficients"))
    if extra:
        probs.append(Problem(f"truth has coefficients for edges not in the graph: {extra}", field="coefficients"))
    if probs:
        raise ConfigError(probs)


def heterogeneity_truth(truth: SyntheticTruth, spec: Mapping[str, object]) -> dict:
    """Validate a heterogeneity spec and return its truth (links that differ by group).

    ``spec = {"group": COVARIATE, "links": {"source->target": deviation, ...}}``: respondents with
    covariate value 1 (e.g. ``refugee``, ``single_parent``, ``youth``) have link ``B + deviation``;
    everyone else has the population link ``B``. The returned truth lists, per link, the
    population value and the members' and non-members' values (written as
    ``heterogeneity_truth.yaml`` by :func:`write_synthetic`). The truth's ``psi`` and calibration stay
    those of the population without heterogeneity, so the members' latent variances shift slightly.

    Raises
    ------
    ConfigError
        Located at the offending field (unknown group or link, non-numeric deviation, unstable
        group system).

    Examples
    --------
    >>> h = heterogeneity_truth(default_truth(), {"group": "refugee", "links": {"stress->wellbeing": -0.1}})
    >>> h["group"], h["links"]["stress->wellbeing"]
    ('refugee', {'population': -0.3, 'members': -0.4, 'non_members': -0.3, 'deviation': -0.1})
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(Problem("heterogeneity must be a mapping with 'group' and 'links'", field="heterogeneity"))
    unknown = sorted(set(spec) - {"group", "links"})
    if unknown:
        raise ConfigError(Problem(f"heterogeneity has unknown field(s) {unknown} (expected 'group', 'links')",
                                  field="heterogeneity", value=unknown))
    names = [c.name for c in truth.covariates]
    group = spec.get("group")
    if group not in names:
        raise ConfigError(Problem(f"heterogeneity.group {group!r} is not a covariate of the truth "
                                  f"(expected one of {names}){did_you_mean(str(group), names)}",
                                  field="heterogeneity.group", value=group))
    links = spec.get("links")
    if not isinstance(links, Mapping) or not links:
        raise ConfigError(Problem("heterogeneity.links must map 'source->target' to a deviation",
                                  field="heterogeneity.links"))
    out = {}
    members: dict[str, float] = {}
    for key, dev in links.items():
        if key not in truth.coefficients:
            raise ConfigError(Problem(f"heterogeneity.links: {key!r} is not a link between constructs of the truth"
                                      f"{did_you_mean(str(key), list(truth.coefficients))}",
                                      field=f"heterogeneity.links.{key}", value=key))
        if isinstance(dev, bool) or not isinstance(dev, (int, float)) or not math.isfinite(dev):
            raise ConfigError(Problem(f"heterogeneity.links.{key}: deviation must be a finite number, got {dev!r}",
                                      field=f"heterogeneity.links.{key}", value=dev))
        pop = float(truth.coefficients[key])
        members[key] = pop + float(dev)
        out[key] = {"population": pop, "members": members[key], "non_members": pop, "deviation": float(dev)}
    b_g = _link_matrix({**truth.coefficients, **members}, truth.nodes, field="heterogeneity.links")
    rho = float(algebra.spectral_radius(b_g))
    if not rho < 1:
        raise ConfigError(Problem(f"heterogeneity: the members' system has spectral radius {rho:.3f} (expected < 1)",
                                  field="heterogeneity.links"))
    return {"group": str(group), "group_value": 1, "links": out}


def simulate_population(n: int, seed: int, truth: SyntheticTruth | None = None,
                        graph: CausalGraph | str | None = None,
                        heterogeneity: Mapping[str, object] | None = None) -> SyntheticSurvey:
    """Draw ``n`` synthetic respondents.

    Parameters
    ----------
    n
        Number of respondents (>= 1).
    seed
        Seed of ``numpy.random.Generator(PCG64(seed))``; the only source of randomness.
    truth
        Generating parameters (default :func:`default_truth` on ``graph``).
    graph
        The diagram (default MARVEL); must match the truth's nodes and edges.
    heterogeneity
        Optional links that differ by group (:func:`heterogeneity_truth`): members of a covariate
        group get ``B + deviation`` on the named links. None (default) leaves the draw unchanged.

    Returns
    -------
    SyntheticSurvey

    Examples
    --------
    >>> sim = simulate_population(300, seed=1, truth=default_truth())
    >>> isinstance(sim, SyntheticSurvey), len(sim.data)
    (True, 300)
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(Problem(f"n must be a positive integer (got {n!r})", field="n", value=n))
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(Problem(f"seed must be a non-negative integer (got {seed!r})", field="seed", value=seed))
    g = load_graph("marvel" if graph is None else graph)
    truth = default_truth(g) if truth is None else truth
    _check_truth_graph(truth, g)
    het = None if heterogeneity is None else heterogeneity_truth(truth, heterogeneity)
    n = int(n)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    nodes = truth.nodes
    idx = truth.index
    p = len(nodes)
    b, alpha, gamma, psi = truth.matrices()
    rho = float(algebra.spectral_radius(b))
    if not rho < 1:
        raise ConfigError(f"spectral radius of B is {rho:.4f} (expected < 1)")

    # --- neighbourhoods
    d = truth.design
    wijk_codes = [f"WK{m[2:]}{j + 1:02d}" for m, k in zip(d.municipalities, d.wijken_per_municipality)
                  for j in range(k)]
    wijk_mun = [m for m, k in zip(d.municipalities, d.wijken_per_municipality) for _ in range(k)]
    nw = len(wijk_codes)
    size = rng.gamma(d.wijk_size_gamma_shape, size=nw)
    wijk = rng.choice(nw, size=n, p=size / size.sum())
    nb_nodes = list(truth.neighbourhood_variance)
    nb_eff = rng.standard_normal((nw, len(nb_nodes))) * np.sqrt([truth.neighbourhood_variance[k] for k in nb_nodes])

    # --- covariates x
    names = [c.name for c in truth.covariates]
    x = np.zeros((n, len(names)))
    for j, c in enumerate(truth.covariates):
        draw = (rng.random(n) < c.sample_share).astype(float)
        if c.within is not None:
            draw *= x[:, names.index(c.within)]
        x[:, j] = draw
    youth = x[:, names.index("youth")] if "youth" in names else np.zeros(n)
    lo_y, hi_y = d.age_youth
    lo_o, hi_o = d.age_other
    age = np.where(youth == 1, rng.integers(lo_y, hi_y + 1, size=n), rng.integers(lo_o, hi_o + 1, size=n))

    # --- exogenous nodes and disturbances
    zeta = np.zeros((n, p))
    raw_exo: dict[str, np.ndarray] = {}
    for node, ex in truth.exogenous.items():
        if ex.distribution == "bernoulli":
            v = (rng.random(n) < ex.parameter).astype(np.int64)
        else:
            v = rng.poisson(ex.parameter, size=n).astype(np.int64)
        raw_exo[node] = v
        zeta[:, idx[node]] = (v - ex.mean) / ex.sd
    gauss = [i for i, nd in enumerate(nodes) if nd not in truth.exogenous_nodes and nd not in truth.policy_levers]
    within = psi.copy()
    for k in nb_nodes:
        within[idx[k]] -= truth.neighbourhood_variance[k]
    eps = rng.standard_normal((n, len(gauss)))
    zeta[:, gauss] = eps * np.sqrt(within[gauss])[None, :]
    for j, k in enumerate(nb_nodes):
        zeta[:, idx[k]] += nb_eff[wijk, j]

    # --- equilibrium
    rhs = alpha[None, :] + x @ gamma.T + zeta
    eta = algebra.solve_equilibrium(b, rhs)
    if het is not None:  # members of the group: their own links (same disturbances and covariates)
        member = x[:, names.index(het["group"])] == 1
        b_g = _link_matrix({**truth.coefficients, **{k: v["members"] for k, v in het["links"].items()}},
                           nodes, field="heterogeneity.links")
        eta[member] = algebra.solve_equilibrium(b_g, rhs[member])

    # --- items
    cols: dict[str, np.ndarray] = {}
    ystar: dict[str, np.ndarray] = {}
    for it in truth.items:
        if it.node in truth.exogenous:
            continue
        e = rng.standard_normal(n) * math.sqrt(it.residual_variance)
        ys = it.loading * eta[:, idx[it.node]] + e
        ystar[it.column] = ys
        if it.scale == "continuous":
            cols[it.column] = np.rint(np.exp(it.log_mean + it.log_sd * ys)).astype(np.int64)  # type: ignore[operator]
        else:
            cat = np.searchsorted(np.asarray(it.thresholds), ys, side="left")  # 0..k-1
            aligned = int(it.valid_min or 0) + cat
            if it.reverse:
                aligned = int(it.valid_min or 0) + int(it.valid_max or 0) - aligned
            cols[it.column] = aligned.astype(np.int64)
    for node, ex in truth.exogenous.items():
        cols[ex.column] = raw_exo[node]

    # welfare rule
    w = truth.welfare
    wstar = -w.loading * eta[:, idx[w.node]] + math.sqrt(1 - w.loading**2) * rng.standard_normal(n)
    welfare = (wstar > w.threshold).astype(np.int64)

    # MHI-5 score from complete items (before missingness)
    mhi_items = [_item(truth, c) for c in truth.mhi5_columns]
    if mhi_items:
        probs_sum = np.zeros(n, dtype=np.int64)
        for it in mhi_items:
            v = cols[it.column]
            aligned = (int(it.valid_min or 0) + int(it.valid_max or 0) - v) if it.reverse else v
            probs_sum += aligned - int(it.valid_min or 0)
        mhi_score = 100 - 4 * probs_sum
    # --- missingness (MCAR)
    for it in truth.items:
        if it.column not in cols or (it.missing_rate == 0 and it.dont_know_rate == 0):
            continue
        u = rng.random(n)
        v = cols[it.column].copy()
        v[u < it.missing_rate] = -9
        if it.dont_know_code is not None:
            v[(u >= it.missing_rate) & (u < it.missing_rate + it.dont_know_rate)] = it.dont_know_code
        cols[it.column] = v
    if mhi_items:
        any_missing = np.zeros(n, dtype=bool)
        for it in mhi_items:
            any_missing |= np.isin(cols[it.column], it.missing_codes)
        mhi_score = np.where(any_missing, -9, mhi_score)

    # --- post-stratification weights
    wc = [names.index(c) for c in d.weight_cells if c in names]
    cell_id = np.zeros(n, dtype=np.int64)
    for j in wc:
        cell_id = cell_id * 2 + x[:, j].astype(np.int64)
    pop_share = np.ones(n)
    for j in wc:
        s = truth.covariates[j].population_share
        pop_share *= np.where(x[:, j] == 1, s, 1 - s)
    counts = np.bincount(cell_id, minlength=2 ** len(wc))
    weight = pop_share / (counts[cell_id] / n)
    weight = weight / weight.mean()

    # --- assemble in fixed column order
    data: dict[str, object] = {
        "respondent_id": np.arange(1, n + 1, dtype=np.int64),
        "gemeente_code": np.array(wijk_mun, dtype=object)[wijk],
        "wijk_code": np.array(wijk_codes, dtype=object)[wijk],
        "age": age.astype(np.int64),
        "sex": np.where(x[:, names.index("female")] == 1, 2, 1).astype(np.int64) if "female" in names
        else np.ones(n, dtype=np.int64),
        "migration_background": x[:, names.index("migration_background")].astype(np.int64),
        "refugee": x[:, names.index("refugee")].astype(np.int64),
        "welfare_benefit": welfare,
    }
    for it in truth.items:
        if it.node in truth.exogenous:
            continue
        data[it.column] = cols[it.column]
    for node, ex in truth.exogenous.items():
        data[ex.column] = cols[ex.column]
    if mhi_items:
        data["mhi5_score"] = mhi_score.astype(np.int64)
    data["weight"] = np.round(weight, 6)
    df = pd.DataFrame(data)
    for c in ("gemeente_code", "wijk_code"):
        df[c] = df[c].astype(str)
    codebook = build_codebook(truth, n=n, seed=int(seed))
    return SyntheticSurvey(
        data=df, codebook=codebook, truth=truth,
        latent=pd.DataFrame(eta, columns=nodes),
        item_latent=pd.DataFrame(ystar),
        disturbance=pd.DataFrame(zeta, columns=nodes),
        covariates=pd.DataFrame(x, columns=names), heterogeneity=het)


def regenerate_command(n: int, seed: int, out: str = "data/synthetic") -> str:
    """The CLI command that regenerates a synthetic survey bit-identically."""
    return f"veerkracht-bayes simulate --n {n} --seed {seed} --out {out}"


def _single_item_reliability(its: list[ItemTruth], truth: SyntheticTruth) -> float | None:
    """The generator's reliability of a construct's single item (loading squared), else None.

    The generator draws the item's latent response as ``loading * eta + e`` with Var = 1, so its
    reliability on the latent-response (or, for a continuous item, the transformed) scale is
    ``loading**2``. Exogenous covariates (observed without error) carry none."""
    if len(its) != 1 or its[0].node in truth.exogenous:
        return None
    r = round(float(its[0].loading) ** 2, 6)
    return r if 0.0 < r < 1.0 else None


#: written above every ``reliability:`` line of the synthetic codebook
_RELIABILITY_COMMENT = ("# reliability: the synthetic generator's loading squared (truth.yaml); on real data "
                        "an external reliability estimate of the single item -- an assumption")


def build_codebook(truth: SyntheticTruth, n: int, seed: int) -> Codebook:
    """The codebook of a synthetic survey drawn from ``truth`` (validated, ``synthetic: true``).

    Examples
    --------
    >>> cb = build_codebook(default_truth(), n=1000, seed=1)
    >>> cb.synthetic
    True
    """
    constructs: dict[str, ConstructSpec] = {}
    by_node: dict[str, list[ItemTruth]] = {}
    for it in truth.items:
        by_node.setdefault(it.node, []).append(it)
    for node, ex in truth.exogenous.items():
        scale = "binary" if ex.distribution == "bernoulli" else "count"
        label = ("Lives in a single-parent household (0 = no, 1 = yes)" if scale == "binary"
                 else "Number of adverse life events in the past 12 months")
        by_node.setdefault(node, []).append(ItemTruth(
            column=ex.column, node=node, scale=scale, label=label, loading=1.0, residual_variance=0.0,
            valid_min=0, valid_max=1 if scale == "binary" else None,
            value_labels=_YESNO if scale == "binary" else {}))
    for node in truth.nodes:
        if node in truth.policy_levers:
            continue
        its = by_node.get(node, [])
        if not its:
            constructs[node] = ConstructSpec(description="not measured in this survey: carried on priors")
            continue
        specs = [ItemSpec(column=it.column, scale=it.scale, categories=it.categories,
                          valid_min=it.valid_min, valid_max=it.valid_max, reverse=it.reverse,
                          missing_codes=list(it.missing_codes), label=it.label, value_labels=dict(it.value_labels),
                          transform="log" if (it.scale == "continuous" and it.log_mean is not None) else None,
                          reliability=_single_item_reliability(its, truth))
                 for it in its]
        constructs[node] = ConstructSpec(items=specs, instrument=its[0].instrument)
    subgroups = {
        "single_parent": SubgroupSpec(label_en="Single-parent households", label_nl="Eenoudergezinnen",
                                      where="single_parent == 1"),
        "low_income": SubgroupSpec(label_en="Low income", label_nl="Laag inkomen",
                                   where=f"household_income >= 0 and household_income < "
                                         f"{truth.low_income_threshold_eur:g}",
                                   description="net household income below the low-income threshold (euros/year)"),
        "migration_background": SubgroupSpec(label_en="Migration background", label_nl="Migratieachtergrond",
                                             where="migration_background == 1"),
        "refugee": SubgroupSpec(label_en="Refugees", label_nl="Vluchtelingen", where="refugee == 1"),
        "mental_health_problems": SubgroupSpec(
            label_en="Psychologically unhealthy", label_nl="Psychisch ongezond",
            where=f"mhi5_score >= 0 and mhi5_score < {truth.mhi5_cutoff:g}",
            description="MHI-5-like score 0-100 below 60; -9 when an MHI item is missing"),
        "welfare_recipient": SubgroupSpec(label_en="Welfare recipients", label_nl="Bijstandsontvangers",
                                          where="welfare_benefit == 1"),
        "youth": SubgroupSpec(label_en="Youth (12-25)", label_nl="Jongeren (12-25)", where="age >= 12 and age <= 25"),
        "pupils_and_parents": SubgroupSpec(
            label_en="School pupils and their parents (approximation)",
            label_nl="Leerlingen PO/VO en hun ouders (benadering)",
            where="(age >= 12 and age <= 18) or single_parent == 1",
            description=("advice 2 (PO- en VO-scholen, ouders): the survey starts at age 12 and records only "
                         "single parenthood, so secondary-school-age respondents (12-18) plus single parents; "
                         "primary-school pupils and parents in two-parent families are missing")),
        "bottom_labour_market": SubgroupSpec(
            label_en="Welfare recipients and low earners", label_nl="Bijstand en onderkant arbeidsmarkt",
            where=(f"welfare_benefit == 1 or (household_income >= 0 and household_income < "
                   f"{truth.low_income_threshold_eur:g})"),
            description=("advice 10 (mensen in de bijstand en aan de onderkant arbeidsmarkt): welfare recipients "
                         "or a net household income below the low-income threshold (the survey has no wage or "
                         "job-level column, so low household income stands in for low-paid work)")),
    }
    return Codebook.model_validate(dict(
        name="veerkracht_synthetic",
        description=("SYNTHETIC survey drawn from a known structural model on the MARVEL diagram "
                     "(veerkracht_bayes.datasets.synthetic); not real respondents. True parameters in truth.yaml."),
        synthetic=True,
        source=f"Generated by `{regenerate_command(n, seed)}` (truth seed {truth.truth_seed})",
        licence="CC0-1.0",
        id_column="respondent_id", weight_column="weight",
        group_columns={"neighbourhood": "wijk_code", "municipality": "gemeente_code"},
        min_cell_size=50,
        constructs=constructs, subgroups=subgroups,
        extra_columns=["age", "sex", "migration_background", "refugee", "welfare_benefit", "mhi5_score"],
    ))


# =============================================================================== writing
def _csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.6f")
    raw = buf.getvalue().encode("utf-8")
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def _readme(n: int, seed: int, truth: SyntheticTruth, files: dict[str, Path], shares: dict[str, float]) -> str:
    sha = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in files.items()}
    lines = [
        "# SYNTHETIC survey data (not real respondents)",
        "",
        f"`{DATA_FILE}` holds **{n:,} synthetic respondents** drawn by `veerkracht_bayes.datasets.synthetic` from a",
        "known cyclic structural model on the MARVEL resilience diagram (TNO 2023 R10055) with an",
        "ordered-probit measurement model. No real person is in it. It exists so that the package runs",
        "end to end and estimators can be checked against known truth.",
        "",
        "Files:",
        f"- `{DATA_FILE}`: the survey (gzip CSV, comma separated, UTF-8); id `respondent_id`, weight `weight`,",
        "  neighbourhood `wijk_code` (200 fictitious wijken), municipality `gemeente_code` (fictitious GM9xxx codes);",
        "  missing codes -9 (no answer), 99 (don't know, collective-efficacy items), -8 (income: won't say).",
        f"- `{CODEBOOK_FILE}`: its codebook (`synthetic: true`).",
        f"- `{TRUTH_FILE}`: every generating parameter (edge coefficients, psi, Gamma, loadings, thresholds, ...).",
        "  Latent scores are never written.",
        "",
        "Regenerate bit-identically (same package version):",
        "",
        "```",
        regenerate_command(n, seed),
        "```",
        "",
        "SHA-256 of the generated files:",
        "",
    ]
    lines += [f"- `{files[k].name}`: `{sha[k]}`" for k in sorted(files)]
    lines += ["", "Calibration: the report's figure, the share the truth implies in the population (exact), and the",
              "weighted share in this file (sampling error about 0.3 percentage points):", ""]
    lines += ["| subgroup | report figure | implied population | weighted in file |", "|---|---|---|---|"]
    for k, c in truth.calibration.items():
        lines.append(f"| {k} | {c.report_figure} | {c.implied_population_share:.4f} | {shares.get(k, float('nan')):.4f} |")
    lines += ["", "Model and caveats: `docs/synthetic.md`.", ""]
    return "\n".join(lines)


def _weighted_shares(survey: SyntheticSurvey) -> dict[str, float]:
    df = survey.data
    w = df["weight"].to_numpy()
    t = survey.truth
    masks = {
        "single_parent": (df["single_parent"] == 1, np.ones(len(df), bool)),
        "migration_background": (df["migration_background"] == 1, np.ones(len(df), bool)),
        "youth": ((df["age"] >= 12) & (df["age"] <= 25), np.ones(len(df), bool)),
        "welfare_recipient": (df["welfare_benefit"] == 1, np.ones(len(df), bool)),
        "low_income": ((df["household_income"] >= 0) & (df["household_income"] < t.low_income_threshold_eur),
                       df["household_income"] >= 0),
        "mental_health_problems": ((df["mhi5_score"] >= 0) & (df["mhi5_score"] < t.mhi5_cutoff),
                                   df["mhi5_score"] >= 0),
    }
    out = {}
    for k, (m, valid) in masks.items():
        m, valid = np.asarray(m), np.asarray(valid)
        out[k] = float((w * m)[valid].sum() / w[valid].sum())
    return out


def write_synthetic(out_dir: str | Path, n: int = 20000, seed: int = 2023, *,
                    truth: SyntheticTruth | None = None,
                    heterogeneity: Mapping[str, object] | None = None) -> dict[str, Path]:
    """Draw a synthetic survey and write data, codebook, truth and README.

    The gzip CSV is written with ``mtime=0``, a fixed column order and float format, so a given
    ``(n, seed, truth)`` gives byte-identical files.

    Returns
    -------
    dict
        ``{"data", "codebook", "truth", "readme"}`` -> paths; with ``heterogeneity``
        (:func:`heterogeneity_truth`) also ``"heterogeneity"``: ``heterogeneity_truth.yaml``.

    Examples
    --------
    Drawing and calibrating takes a couple of seconds even for a small ``n``:

    >>> import tempfile
    >>> files = write_synthetic(tempfile.mkdtemp(), n=200, seed=1)  # doctest: +SKIP
    >>> sorted(files)  # doctest: +SKIP
    ['codebook', 'data', 'readme', 'truth']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    survey = simulate_population(n, seed, truth=truth, heterogeneity=heterogeneity)
    files = {"data": out / DATA_FILE, "codebook": out / CODEBOOK_FILE, "truth": out / TRUTH_FILE}
    files["data"].write_bytes(_csv_bytes(survey.data))
    cb = _tidy(survey.codebook.model_dump(exclude_defaults=True))
    cb = {"codebook_version": survey.codebook.codebook_version, **cb}
    header = "# SYNTHETIC DATA codebook (veerkracht_bayes.datasets.synthetic). Not real respondents.\n"
    body = yaml.safe_dump(cb, sort_keys=False, allow_unicode=True, width=110)
    body = re.sub(r"(?m)^( *)(reliability: )", lambda m: f"{m.group(1)}{_RELIABILITY_COMMENT}\n{m.group(1)}"
                  f"{m.group(2)}", body)
    files["codebook"].write_text(header + body, encoding="utf-8")
    survey.truth.to_yaml(files["truth"])
    readme = out / README_FILE
    readme.write_text(_readme(n, seed, survey.truth, files, _weighted_shares(survey)), encoding="utf-8")
    files["readme"] = readme
    if survey.heterogeneity is not None:
        files["heterogeneity"] = out / "heterogeneity_truth.yaml"
        files["heterogeneity"].write_text(
            "# SYNTHETIC DATA: links that differ by group (members = covariate value 1).\n"
            + yaml.safe_dump(survey.heterogeneity, sort_keys=False), encoding="utf-8")
    return files


def _main(argv: list[str] | None = None) -> int:
    """``python -m veerkracht_bayes.datasets.synthetic --n N --seed S --out DIR`` (same files as
    ``veerkracht-bayes simulate``)."""
    import sys

    ap = argparse.ArgumentParser(prog="python -m veerkracht_bayes.datasets.synthetic",
                                 description="Draw a SYNTHETIC survey from the MARVEL model.")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--out", default="synthetic_out")
    a = ap.parse_args(argv)
    try:
        files = write_synthetic(a.out, n=a.n, seed=a.seed)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write("".join(f"{k}: {p}\n" for k, p in files.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
