"""Property-based fuzzing of every input format: mutations of the shipped files give either
success or a located VeerkrachtError, never another exception.

The default suite runs a bounded, derandomised profile (a few examples per format, fixed
seed); ``-m slow`` runs a longer random one. Mutations: tests/_fuzz_inputs.py.
"""

from __future__ import annotations

import tomllib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _fuzz_inputs as fz

FAST = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

_GRAPH = yaml.safe_load(fz.GRAPH.read_text(encoding="utf-8"))
_PRIORS = yaml.safe_load(fz.PRIORS.read_text(encoding="utf-8"))
_CODEBOOK = yaml.safe_load(fz.CODEBOOK.read_text(encoding="utf-8"))
_POLICIES = yaml.safe_load(fz.POLICIES.read_text(encoding="utf-8"))
_CONFIG_TEXT = ('[inputs]\nprior_only = true\n'
                + fz.DEMO.read_text(encoding="utf-8").split("[sampler]", 1)[1].join(["[sampler]", ""]))

CASES = {
    "graph": (st.one_of(fz.tree_mutations(_GRAPH).map(fz.dump_yaml),
                        fz.text_mutations(fz.GRAPH.read_text(encoding="utf-8"))), fz.check_graph),
    "priors": (st.one_of(fz.tree_mutations(_PRIORS).map(fz.dump_yaml),
                         fz.text_mutations(fz.PRIORS.read_text(encoding="utf-8"))), fz.check_priors),
    "codebook": (st.one_of(fz.tree_mutations(_CODEBOOK).map(fz.dump_yaml),
                           fz.text_mutations(fz.CODEBOOK.read_text(encoding="utf-8"))),
                 fz.check_codebook),
    "policies": (st.one_of(fz.tree_mutations(_POLICIES).map(fz.dump_yaml),
                           fz.text_mutations(fz.POLICIES.read_text(encoding="utf-8"))),
                 fz.check_policies),
    "config": (fz.text_mutations(_CONFIG_TEXT), lambda t: fz.check_config(t)),
    "survey_csv": (fz.csv_mutations(), fz.check_survey_csv),
    "survey_parquet": (fz.frame_mutations(), fz.check_survey_parquet),
}


def test_config_base_is_valid() -> None:
    """The unmutated run config parses (so mutations start from a valid file)."""
    tomllib.loads(_CONFIG_TEXT)
    fz.check_config(_CONFIG_TEXT)


#: Examples per format in the default suite (a priors file takes about a second to load).
FAST_EXAMPLES = {"priors": 5}


@pytest.mark.parametrize("name", list(CASES))
def test_fuzz_bounded(name: str) -> None:
    strategy, check = CASES[name]
    prof = settings(FAST, max_examples=FAST_EXAMPLES.get(name, FAST.max_examples))
    prof(given(strategy)(check))()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fuzz_long(name: str) -> None:
    strategy, check = CASES[name]
    LONG(given(strategy)(check))()


@pytest.mark.slow
def test_fuzz_config_validated_long() -> None:
    """Mutated configs also go through validate_inputs (loads graph, priors, policies)."""
    settings(max_examples=60, deadline=None, database=None,
             suppress_health_check=list(HealthCheck))(
        given(fz.text_mutations(_CONFIG_TEXT))(lambda t: fz.check_config(t, validate=True)))()
