"""The JAX driver's two NUTS kernels (numpyro, the default, and blackjax) on a closed-form posterior.

The model: ``mu ~ N(0, 1)`` per coordinate (2 coordinates) with ``n`` observations of known
variance 1 entering through a data container (their mean ``ybar``), so the posterior of each
``mu_j`` is ``N(n ybar_j / (n + 1), 1 / (n + 1))``; and ``s ~ HalfNormal(1)``, which no data touch,
sampled on the log scale, so its posterior mean is ``sqrt(2 / pi)`` and its sd
``sqrt(1 - 2 / pi)``. Tolerances are Monte Carlo errors from each run's own effective sample size:
a mean within 4 MCSE, a standard deviation within 4 of its large-sample standard errors
(``sd / sqrt(2 ESS)``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from veerkracht_bayes.errors import ModelError  # noqa: E402
from veerkracht_bayes.inference import jax_nuts  # noqa: E402
from veerkracht_bayes.sem.model_builder import DATA_PREFIX  # noqa: E402

N_OBS = 50


def _model(ybar: np.ndarray):
    import pymc as pm

    with pm.Model() as model:
        data = pm.Data(DATA_PREFIX + "ybar", np.asarray(ybar, dtype=float))
        mu = pm.Normal("mu", 0.0, 1.0, shape=2)
        pm.HalfNormal("s", 1.0)
        pm.Potential("obs", -0.5 * N_OBS * ((data - mu) ** 2).sum())
    return model


def _run(kernel: str, ybar: np.ndarray, seed: int, draws: int = 1000, tune: int = 500):
    model = _model(ybar)
    s = jax_nuts.JaxNutsSettings(draws=draws, tune=tune, chains=2, kernel=kernel, precondition=False)
    starts = [{"mu": np.zeros(2), "s": 1.0}, {"mu": np.ones(2), "s": 0.5}]
    return jax_nuts.sample_nuts(model, starts, s, seed)


@pytest.mark.parametrize("kernel", jax_nuts.KERNELS)
def test_kernel_recovers_the_closed_form_posterior(kernel: str) -> None:
    from arviz_stats import ess

    ybar = np.array([0.8, -0.3])
    post, stats, _ = _run(kernel, ybar, seed=5)
    e = ess(post[["mu", "s"]], method="bulk")
    mean_mu = N_OBS * ybar / (N_OBS + 1)
    sd_mu = np.sqrt(1.0 / (N_OBS + 1))
    mu = post["mu"].values.reshape(-1, 2)
    ess_mu = e["mu"].values
    assert np.all(np.abs(mu.mean(0) - mean_mu) < 4 * sd_mu / np.sqrt(ess_mu))
    assert np.all(np.abs(mu.std(0) / sd_mu - 1) < 4 / np.sqrt(2 * ess_mu))
    s = post["s"].values.ravel()
    ess_s = float(e["s"])
    mean_s, sd_s = np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi)
    assert abs(s.mean() - mean_s) < 4 * sd_s / np.sqrt(ess_s)
    # |s| ~ HalfNormal has excess kurtosis, so its sd's error is wider than the normal-theory one
    assert abs(s.std() / sd_s - 1) < 6 / np.sqrt(2 * ess_s)
    assert int(stats["diverging"].sum()) == 0
    assert post.attrs["inference_library"] == kernel
    assert set(stats) >= {"diverging", "energy", "n_steps", "tree_depth", "acceptance_rate", "lp", "step_size"}


def test_blackjax_kernel_is_reproducible_and_records_its_warmup() -> None:
    ybar = np.array([0.1, 0.2])
    a, sa, _ = _run("blackjax", ybar, seed=3, draws=200, tune=200)
    b, _, _ = _run("blackjax", ybar, seed=3, draws=200, tune=200)
    c, _, _ = _run("blackjax", ybar, seed=4, draws=200, tune=200)
    np.testing.assert_array_equal(a["mu"].values, b["mu"].values)
    assert not np.array_equal(a["mu"].values, c["mu"].values)
    # the two chains are different chains (each folds its index into the seed's key)
    assert not np.array_equal(a["mu"].values[0], a["mu"].values[1])
    assert sa.attrs["warmup_leapfrog_steps"] >= 2 * 200 and sa.attrs["warmup_divergences"] >= 0
    # the step size is the adapted one, constant over a chain's draws
    assert np.all(sa["step_size"].values == sa["step_size"].values[:, :1])


def test_unknown_kernel_is_refused() -> None:
    model = _model(np.zeros(2))
    with pytest.raises(ModelError, match="unknown NUTS kernel 'hmc'"):
        jax_nuts.compiled_sampler(model, jax_nuts.JaxNutsSettings(kernel="hmc"))


def test_the_multigroup_and_twolevel_routes_take_the_blackjax_kernel() -> None:
    """``sampler="blackjax"`` runs through the JAX driver on the routes that refused it before
    (PyMC's own blackjax bridge compiled the data in as constants)."""
    from _small_fit import CONSTRUCT, ITEMS, small_graph

    from veerkracht_bayes.datasets.clustered import simulate_clustered
    from veerkracht_bayes.inference.multigroup_fit import fit_multigroup
    from veerkracht_bayes.inference.twolevel_fit import fit_twolevel
    from veerkracht_bayes.sem.multigroup import prepare_group_data
    from veerkracht_bayes.survey.clusters import cluster_statistics

    rng = np.random.default_rng(8)
    n = 400
    x = rng.normal(size=(n, 1))
    a = 0.4 * x[:, 0] + rng.normal(size=n)
    d = rng.normal(size=n)
    b = 0.4 * a + 0.3 * d + rng.normal(size=n)
    c = 0.3 * b + rng.normal(size=n)
    y = 0.8 * np.column_stack([a, a, b, b, c, d, d]) + rng.normal(0, 0.6, size=(n, 7))
    gd = prepare_group_data(y, ITEMS, CONSTRUCT, np.where(np.arange(n) % 2 == 0, "g1", "g2"),
                            covariates=x, covariate_names=["x"])
    res = fit_multigroup(small_graph(), gd, None, draws=60, tune=60, chains=2, random_seed=3,
                         progressbar=False, sampler="blackjax")
    assert res.idata["sample_stats"].attrs["inference_library"] == "blackjax"
    assert np.isfinite(res.posterior["beta"].values).all()

    df, truth = simulate_clustered(n_clusters=30, min_size=3, max_size=8, seed=2)
    items = list(truth.item_construct)
    cs = cluster_statistics(df[items].to_numpy(), df["wijk_code"], item_names=items)
    tl = fit_twolevel(cs, truth.item_construct, between=list(truth.between),
                      between_links=list(truth.between_links), within_links=list(truth.within_links),
                      draws=30, tune=30, chains=2, random_seed=1, progressbar=False, sampler="blackjax")
    assert tl.idata["sample_stats"].attrs["inference_library"] == "blackjax"


def test_numpyro_chains_equal_numpyros_own_mcmc_run() -> None:
    """The "numpyro" kernel runs numpyro's NUTS ``init`` and ``sample`` in the driver's own chunked
    loop: its draws and statistics must be numpyro's ``MCMC.run``'s, bit for bit, for the same
    keys and starts (parallel chains on one device each)."""
    import jax
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, init_to_value

    from veerkracht_bayes.runtime import ensure_cpu_devices

    ensure_cpu_devices()
    if jax.local_device_count() < 2:
        pytest.skip("needs two XLA devices (asked for by veerkracht_bayes.runtime.ensure_cpu_devices on a machine with 2+ cores)")
    jax.config.update("jax_enable_x64", True)
    model = _model(np.array([0.4, -0.2]))
    comp = jax_nuts.CompiledModel(model)
    data = [np.asarray(v) for v in jax_nuts.data_values(model)]
    x0 = {"mu": np.array([[0.0, 0.0], [1.0, 1.0]]), "s_log__": np.array([0.0, -0.7])}
    flat0 = np.column_stack([x0["mu"], x0["s_log__"]])  # sorted names: mu, s_log__
    s = jax_nuts.JaxNutsSettings(draws=150, tune=150, chains=2, chain_method="parallel")
    draws, stats = jax_nuts.NumpyroChains(comp, s).run(11, flat0, np.ones(3), data)

    def numpyro_model(ybar):
        params = {k: numpyro.sample(k, dist.ImproperUniform(dist.constraints.real, (), shape))
                  for k, shape in comp.shapes.items()}
        numpyro.factor("logp", comp.logp(params, [ybar]))

    start = {k: v[0] for k, v in x0.items()}
    kernel = NUTS(numpyro_model, target_accept_prob=s.target_accept, max_tree_depth=s.max_tree_depth,
                  init_strategy=init_to_value(values=start))
    mcmc = MCMC(kernel, num_warmup=s.tune, num_samples=s.draws, num_chains=2, chain_method="parallel",
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(11), data[0], init_params=x0, extra_fields=("num_steps", "potential_energy"))
    theirs = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(draws[..., :2], np.asarray(theirs["mu"]))
    np.testing.assert_array_equal(draws[..., 2], np.asarray(theirs["s_log__"]))
    np.testing.assert_array_equal(stats["num_steps"], np.asarray(extra["num_steps"]))
    np.testing.assert_array_equal(stats["potential_energy"], np.asarray(extra["potential_energy"]))
    assert stats["warmup_num_steps"].shape == (2, 150)
