"""Simulation-based calibration of the exact ordinal path (harness: ``tests/_ordinal_sbc.py``).

Statistics. Ranks are uniform on 0..L under a correct path, but the 49 ranks of one
replication are dependent (they share a data set), so tests are built from one number per
replication and parameter class (edges, loadings, thresholds), which are independent across
replications:

* location: the mean over the class of ``rank / L − 1/2`` (expectation exactly 0 under H0);
  a biased posterior (e.g. edges pulled to 0) moves it;
* spread: the share of the class's ranks in the outer tails ``rank < a`` or ``rank > L − a``
  (expectation exactly ``2a / (L + 1)`` under H0); too narrow posteriors raise it, too wide
  ones lower it.

Each of the 6 statistics is tested with a one-sample t-test across replications (two-sided);
family-wise alpha 0.01, Bonferroni: per test 0.01 / 6. A correct path fails with probability
about 1% (the t-approximation for means of bounded scores is good at these sizes; the
thinned draws must be near independent, which the ESS check bounds).

Negative control (must fail the same statistics): the answers are simulated with a latent
residual sd of 1.6 instead of 1 (the probit scale misstated), so the posterior loadings and
thresholds sit at about 1/1.6 of the truth relative to the noise and the truths' ranks pile up
at the top for loadings (and at both ends for thresholds).

Sizes and results (2 cores, OMP threads 1):

* fast (default suite): 8 replications, 200 + 50 draws per chain, L = 19 (every 5th of the
  100 draws), plus 4 control replications; about 4 CPU-min. Seed 2024: all p >= 0.29 (median ESS
  of the kept draws 19.5-22.6 of 19); control rejected through the thresholds' tails
  (p = 3e-4; loadings' location 0.013). With 100 draws per chain (thinned by 10) it was all
  p >= 0.46 and control p = 4e-5 (loadings 0.007), at a sixth more sampling. The ranks' law, and
  so the tests' power, depends on L and on the kept draws being near-independent posterior
  draws, not on how many draws lie between them: the ESS check (``_check``) guards the second.
* full (slow): 60 replications, 300 + 200 draws, L = 39, seed 7; 26 min. All p >= 0.17
  (edges' location 0.88, tails 0.40; loadings 0.34, 0.17; thresholds 0.76, 0.77); truths inside
  the central 90%: edges 91%, loadings 92%, thresholds 90%. Two replications had R-hat 2.2 (a
  construct measured by loadings of 0.13-0.2, with links near 1) and eight more than 5%
  divergent transitions (3% over all); they are kept, as SBC requires.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _ordinal_sbc import OrdinalSBCResult, run_ordinal_sbc  # noqa: E402
from scipy.stats import ttest_1samp  # noqa: E402

FAMILY_ALPHA = 0.01
N_TESTS = 6


def tail_width(L: int) -> int:
    """``a`` with ``2a`` of the ``L + 1`` rank values in the tails: about 20% (a = 4 at L = 39)."""
    return max(1, round(0.1 * (L + 1)))


def class_statistics(res: OrdinalSBCResult) -> dict[str, dict[str, np.ndarray]]:
    """Per replication and class: mean centred normalised rank and share of tail ranks."""
    a = tail_width(res.L)
    out = {}
    for k, r in res.ranks.items():
        out[k] = {"location": np.mean(r / res.L - 0.5, axis=1),
                  "tails": np.mean((r < a) | (r > res.L - a), axis=1)}
    return out


def pvalues(res: OrdinalSBCResult) -> dict[str, float]:
    """Two-sided one-sample t-test p-values of the 6 statistics against their null means."""
    stats = class_statistics(res)
    tail_mean = 2 * tail_width(res.L) / (res.L + 1)
    out = {}
    for k, s in stats.items():
        out[f"{k}:location"] = float(ttest_1samp(s["location"], 0.0).pvalue)
        out[f"{k}:tails"] = float(ttest_1samp(s["tails"], tail_mean).pvalue)
    return out


def test_statistics_have_the_stated_null_means():
    """Exactly uniform ranks give location 0 and tail share 2a/(L+1) (the tests' null means)."""
    for L in (19, 39):
        grid = np.arange(L + 1)[None, :]
        res = OrdinalSBCResult(L=L, ranks={"x": grid}, names={"x": []}, ess={}, rhat=np.zeros(1),
                               divergences=np.zeros(1), seconds=0.0)
        s = class_statistics(res)["x"]
        assert s["location"][0] == pytest.approx(0.0, abs=1e-15)
        assert s["tails"][0] == pytest.approx(2 * tail_width(L) / (L + 1)) == pytest.approx(0.2)


def _check(res: OrdinalSBCResult) -> dict[str, float]:
    p = pvalues(res)
    # near-independent kept draws (else the ranks are anti-conservative)
    for k, e in res.ess.items():
        assert np.median(e) >= res.L / 2, f"median ESS of the kept {k} draws {np.median(e):.1f} < L/2"
    return p


@pytest.fixture(scope="module")
def fast() -> OrdinalSBCResult:
    return run_ordinal_sbc(8, L=19, draws=50, tune=200, seed=2024)


@pytest.fixture(scope="module")
def fast_control() -> OrdinalSBCResult:
    return run_ordinal_sbc(4, L=19, draws=50, tune=200, seed=4048, latent_noise_sd=1.6)


def test_ordinal_sbc_fast(fast):
    p = _check(fast)
    bad = {k: v for k, v in p.items() if v < FAMILY_ALPHA / N_TESTS}
    assert not bad, f"ordinal SBC rejects uniform ranks: {bad} (all p: {p})"


def test_ordinal_sbc_negative_control_is_rejected(fast_control):
    p = pvalues(fast_control)
    assert min(p["lambda:location"], p["thresholds:tails"]) < FAMILY_ALPHA / N_TESTS, p


@pytest.mark.slow
def test_ordinal_sbc_full():
    res = run_ordinal_sbc(60, seed=7)
    p = _check(res)
    bad = {k: v for k, v in p.items() if v < FAMILY_ALPHA / N_TESTS}
    assert not bad, f"ordinal SBC rejects uniform ranks: {bad} (all p: {p})"
