"""The value-of-information refit fallback: a short NUTS refit of the small cyclic model on a
simulated wave, called where the importance weights degenerate."""

from __future__ import annotations

import numpy as np
import pytest
from _small_fit import small_fit

from veerkracht_bayes.causal.do import do_query
from veerkracht_bayes.causal.draws import StructuralDraws
from veerkracht_bayes.causal.interventions import Intervention, Shift
from veerkracht_bayes.causal.voi import value_of_information
from veerkracht_bayes.workflow.uncertainty import voi_from_fit, wave_refit


@pytest.fixture(scope="module")
def fitted():
    res = small_fit()  # 100 + 150 per chain: the suite's shared small-model program (_small_fit)
    draws = StructuralDraws.from_posterior(res.idata, res.graph)
    ivs = [Intervention(name="via_d", parts=[Shift(node="d", delta=1.0)]),
           Intervention(name="via_x", parts=[Shift(node="x", delta=1.0)])]
    return res, draws, ivs, do_query(draws, ivs, ["c"])


def test_refit_called_for_degenerate_waves(fitted):
    res, draws, ivs, dq = fitted
    factory = wave_refit(res, ivs, "c", max_refits=1, draws=60, tune=80)
    calls = []

    def counting(construct, kept, policies):
        f = factory(construct, kept, policies)
        return lambda j, W, n: calls.append(f(j, W, n)) or calls[-1]

    tab = voi_from_fit(res, dq, outcome="c", candidates=["d"], n=[200000], outer_draws=20,
                       refit=counting)
    row = tab.iloc[0]
    assert row["method"] == "reweight" and row["outer_draws"] == 20
    # a wave of 200,000 on a 300-respondent posterior: the weights degenerate, the refit is
    # called for each such wave; one is made (the budget), or none where its short chains never
    # move (then it returns None and the wave stays flagged)
    assert row["share_k_bad"] > 0 and len(calls) == round(row["share_k_bad"] * 20)
    assert row["n_refits"] == sum(c is not None for c in calls) <= 1
    assert 0.0 <= row["evsi_raw"] <= row["evpi"] + 3 * row["evsi_se"] + 1e-12
    # 19 of 20 waves keep degenerate weights: the value is flagged or refused, never "ok"
    assert row["status"] in ("rough", "not_estimable")
    assert np.isnan(row["evsi"]) == (row["status"] == "not_estimable")
    # the refit returns finite posterior mean utilities in the order of the policies
    again = wave_refit(res, ivs, "c", max_refits=1, draws=60, tune=80)("d", draws, ["via_d", "via_x"])
    u = again(0, None, 100)
    assert u.shape == (2,) and np.isfinite(u).all()
    assert again(1, None, 100) is None  # over its budget


def test_reweight_on_a_fit_runs_without_refit(fitted):
    res, _, _, dq = fitted
    tab = value_of_information(dq, res.graph, "c", measured={"a", "b", "c", "d"}, covariates={"x"},
                               candidates="all", n=[100, 1000], outer_draws=50)
    assert (tab["evsi_raw"] >= 0).all() and (tab["n_refits"] == 0).all()
    assert (tab["evsi"].isna() == (tab["status"] == "not_estimable")).all()
    assert set(tab["construct"]) == {"a", "b", "c", "d"}


# ------------------------------------------------- the update routes against true NUTS refits
def _refit_vs_reweight(res, draws, n, J, refit_draws, refit_tune):
    """EVSI of a wave of ``n`` measuring ``d`` (the wave re-measures the survey's constructs too)
    by true NUTS refits of ``J`` simulated waves, and by the reweighting routes (400 outer draws)
    and the Gaussian approximation on the same posterior. The two policies are scaled to equal
    expected effects, so that a wave often switches the decision."""
    from veerkracht_bayes.causal.voi import (
        decision_utilities,
        evsi_reweight,
        measured_nodes,
        wave_scores,
    )

    unit = [Intervention(name="via_d", parts=[Shift(node="d", delta=1.0)]),
            Intervention(name="via_x", parts=[Shift(node="x", delta=1.0)])]
    _, U1, _ = decision_utilities(do_query(draws, unit, ["c"]), "c")
    ratio = float(U1[0].mean() / U1[1].mean())
    ivs = [unit[0], Intervention(name="via_x", parts=[Shift(node="x", delta=ratio)])]
    dq = do_query(draws, ivs, ["c"])
    names, U, keep = decision_utilities(dq, "c")
    kept = draws.subset(np.flatnonzero(keep))
    meas, cov = measured_nodes(res)
    _, Sig = wave_scores(res.graph, kept, meas, "d", cov)
    out = {}
    for lk in ("full", "conditional"):
        ev, se, _ = evsi_reweight(U, Sig, [n], outer=400, seed=0, likelihood=lk)
        out[lk] = (ev[0], se[0])
    ga = value_of_information(dq, res.graph, "c", measured=meas, covariates=cov, candidates=["d"],
                              n=[n], method="gaussian")
    out["gaussian"] = (ga["evsi"].iloc[0], ga["evsi_se"].iloc[0])
    jj = np.random.default_rng(0).choice(U.shape[1], size=J, replace=False)
    f = wave_refit(res, ivs, "c", max_refits=J, draws=refit_draws, tune=refit_tune, seed=100)(
        "d", kept, names)
    got = [f(int(j), None, n) for j in jj]
    vals = np.array([v for v in got if v is not None])  # (J, I) posterior mean utilities
    assert len(vals) >= 0.8 * J  # a refit without a healthy chain (None): 2 of 40 measured
    J = len(vals)
    jb = int(vals.mean(axis=0).argmax())
    gain = vals.max(axis=1) - vals[:, jb]
    out["refit"] = (float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(J)))
    out["evpi"] = float(U.max(axis=0).mean() - U.mean(axis=1).max())
    out["refit_vals"], out["U"] = vals, U
    return out


def _agree(out, a, b):
    (ea, sa), (eb, sb) = out[a], out[b]
    return abs(ea - eb) <= 3.0 * np.hypot(sa, sb), (a, ea, sa, b, eb, sb)


@pytest.fixture(scope="module")
def refit_comparison(fitted):
    """8 true refits (posterior of 200 draws, wave of n = 100) and the other routes."""
    res, draws, _, _ = fitted
    return _refit_vs_reweight(res, draws, n=100, J=8, refit_draws=60, refit_tune=80)


def _far_refits(out):
    """Refits whose posterior mean utility of some policy lies more than 5 current posterior
    SDs from the current posterior mean. A wave of 100 added to 300 respondents moves a posterior
    mean by about half a posterior SD (sd of the shift ~ sqrt(1 - 300/400) SD), so a correct
    refit practically never does (a 10-sigma event)."""
    vals, U = out["refit_vals"], out["U"]
    z = np.abs(vals - U.mean(axis=1)) / U.std(axis=1)
    return int((z > 5).any(axis=1).sum())


def test_refit_route_runs_and_agrees_loosely(refit_comparison):
    """Fast twin of the slow check: 8 true refits agree with the reweighting of the whole wave
    within 3 combined Monte Carlo standard errors."""
    out = refit_comparison
    assert out["refit"][1] > 0  # some simulated waves switch the decision: a real comparison
    ok, info = _agree(out, "refit", "full")
    assert ok, info
    assert 0.0 <= out["refit"][0] <= out["evpi"] + 3 * out["refit"][1]


def test_refits_stay_near_the_current_posterior(refit_comparison):
    """No refit's posterior mean utility lands far outside the current posterior (before chains
    that never left their start were dropped: 3 of these 8 waves gave 0.5 to 1.8 SD of ``c``
    against a current mean of 0.068, posterior SD 0.025)."""
    assert _far_refits(refit_comparison) == 0


@pytest.mark.slow
def test_reweight_and_gaussian_match_true_refits():
    """n = 100 (a third of the 300-respondent survey), 40 true NUTS refits against 1,000
    posterior draws: no refit lands far outside the current posterior, and the refits agree with the reweighting of the whole wave within 3 combined Monte Carlo
    standard errors; the routes that use only what measuring ``d`` adds (reweighting of the
    conditional factor, the Gaussian approximation) stay below the refits' value (the wave's
    re-measurement of the survey is worth something too) up to the same error, and agree with
    each other."""
    res = small_fit(draws=500, tune=300)
    draws = StructuralDraws.from_posterior(res.idata, res.graph)
    out = _refit_vs_reweight(res, draws, n=100, J=40, refit_draws=200, refit_tune=200)
    for a, b in (("refit", "full"), ("conditional", "gaussian")):
        ok, info = _agree(out, a, b)
        assert ok, info
    (er, sr), (ec, sc) = out["refit"], out["conditional"]
    assert ec <= er + 3.0 * np.hypot(sr, sc)
    assert out["full"][0] > 5 * out["full"][1]  # not a comparison between two zeros
    assert _far_refits(out) == 0


def test_refit_keeps_the_fits_reliabilities(fitted, monkeypatch):
    """The refit's model keeps the measurement assumptions of the fit it refits (the global and
    the per-item single-item reliabilities), not the defaults."""
    import dataclasses

    import veerkracht_bayes.inference.sampling as sampling

    res, draws, ivs, _ = fitted
    lay = dataclasses.replace(res.layout, reliability=0.7, item_reliability={res.layout.items[0]: 0.4})
    seen = {}

    class Stop(Exception):
        pass

    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(sampling, "fit", spy)
    with pytest.raises(Stop):
        wave_refit(dataclasses.replace(res, layout=lay), ivs, "c", max_refits=1)("d", draws, ["via_d"])(0, None, 50)
    assert seen["reliability"] == 0.7 and seen["item_reliability"] == {res.layout.items[0]: 0.4}
