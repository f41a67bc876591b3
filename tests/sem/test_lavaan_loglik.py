"""The one normal log-likelihood of the generic lavaan SEM (``sem_loglik_pt``).

``build_sem_model`` and each group of ``build_sem_multigroup_model`` use it; both are checked here
against ``sem_logp_reference``, the independent NumPy formula written from the definition of the
sufficient statistics. No sampling: the models are only evaluated at points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

from veerkracht_bayes.graph.lavaan_syntax import parse_lavaan
from veerkracht_bayes.sem.lavaan_model import (
    build_sem_model,
    prepare_sem_data,
    sem_logp_reference,
    sem_loglik_pt,
    specify,
    table_row_values,
)
from veerkracht_bayes.sem.lavaan_multigroup import build_sem_multigroup_model, multigroup_layout

MODEL = "f =~ a + b + c\ny ~ f + x\na ~~ b\n"


def _frame(seed: int, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    f = 0.4 * x + rng.normal(size=n)
    cols = {k: lam * f + rng.normal(scale=0.6, size=n) for k, lam in (("a", 1.0), ("b", 0.8), ("c", 1.2))}
    return pd.DataFrame({**cols, "y": 0.5 * f + 0.2 * x + rng.normal(size=n), "x": x})


def _at_initial_point(model) -> tuple[np.ndarray, float]:
    """``param_value`` and the ``loglik`` potential at the model's initial point."""
    outs = model.replace_rvs_by_values([model["param_value"], model["loglik"]])
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    ip = model.initial_point()
    vals, ll = fn(*[ip[v.name] for v in model.value_vars])
    return np.asarray(vals), float(ll)


def test_loglik_matches_the_reference_formula():
    df = _frame(0)
    spec = specify(parse_lavaan(MODEL), df.columns)
    data = prepare_sem_data(spec, df)
    rng = np.random.default_rng(1)
    for _ in range(3):
        free = np.array([rng.uniform(0.5, 1.5) if k == "sd" else rng.uniform(-0.4, 0.4) if k == "corr"
                         else rng.normal(0.5, 0.3) for k in spec.free_kind])
        vals = table_row_values(spec, free)[0]
        ll, psi_ok = sem_loglik_pt(spec, data, pt.as_tensor(vals))
        assert np.isclose(float(ll.eval()), sem_logp_reference(spec, data, vals), rtol=1e-10, atol=1e-8)
        assert bool(psi_ok.eval())


def test_psi_check_flags_an_impossible_correlation():
    df = _frame(2)
    spec = specify(parse_lavaan(MODEL), df.columns)
    data = prepare_sem_data(spec, df)
    free = np.array([1.5 if k == "corr" else 1.0 if k == "sd" else 0.5 for k in spec.free_kind])
    _, psi_ok = sem_loglik_pt(spec, data, pt.as_tensor(table_row_values(spec, free)[0]))
    assert not bool(psi_ok.eval())


def test_single_and_multigroup_models_use_the_same_likelihood():
    frames = [_frame(3), _frame(4, n=120)]
    model = parse_lavaan(MODEL)
    spec = specify(model, frames[0].columns)
    one = build_sem_model(spec, prepare_sem_data(spec, frames[0]))
    vals, ll = _at_initial_point(one)
    assert np.isclose(ll, sem_logp_reference(spec, prepare_sem_data(spec, frames[0]), vals), rtol=1e-10)

    lay = multigroup_layout(model, frames, ["p", "q"])
    gvals, ll = _at_initial_point(build_sem_multigroup_model(lay))
    ref = sum(sem_logp_reference(lay.spec, lay.data[g], gvals[g]) for g in range(2))
    assert np.isclose(ll, ref, rtol=1e-10)
