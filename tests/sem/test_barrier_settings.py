"""The standardisation barrier's settings (``StabilitySettings.psi_floor`` / ``psi_width``) reach
the model's log-density and the prior draws, and bad values are refused."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
from veerkracht_bayes.inference.sampling import draw_prior
from veerkracht_bayes.sem import algebra
from veerkracht_bayes.sem.model_builder import StabilitySettings, build_model

GRAPH = "b ~ a\nc ~ b\nb ~ c"  # a loop b <-> c fed by a


@pytest.mark.parametrize("unmeasured", ["cut", "joint"])
def test_barrier_settings_reach_the_log_density(monkeypatch: pytest.MonkeyPatch, unmeasured: str) -> None:
    seen: list[tuple[float, float]] = []
    real = algebra.standardisation_barrier

    def spy(psi, *, floor=algebra.PSI_FLOOR, width=algebra.PSI_WIDTH, xp=None):
        seen.append((floor, width))
        return real(psi, floor=floor, width=width, xp=xp)

    monkeypatch.setattr(algebra, "standardisation_barrier", spy)
    g = graph_from_lavaan(GRAPH)
    m1, _ = build_model(g, None, stability=StabilitySettings(psi_floor=0.3, psi_width=0.05), unmeasured=unmeasured)
    assert seen == [(0.3, 0.05)]
    m0, _ = build_model(g, None, unmeasured=unmeasured)
    assert seen[1:] == [(algebra.PSI_FLOOR, algebra.PSI_WIDTH)]
    # and the value differs accordingly at the same point
    point = m0.initial_point()
    p0, p1 = (float(m.compile_fn(m["standardisation_soft"], inputs=m.value_vars, on_unused_input="ignore")(point))
              for m in (m0, m1))
    assert p1 < p0 < 0


def test_prior_draws_use_the_models_barrier() -> None:
    g = graph_from_lavaan(GRAPH)
    # floor 0.6, width 0.01: a draw with psi < 0.55 is kept with probability < e^-5
    model, layout = build_model(g, None, stability=StabilitySettings(psi_floor=0.6, psi_width=0.01))
    ds = draw_prior(model, layout, g, 400, seed=3)
    idx = [list(g.nodes).index(k) for k in layout.latent]
    psi = np.asarray(ds["psi"]).reshape(-1, len(g.nodes))[:, idx]
    assert psi.min() > 0.5
    model0, layout0 = build_model(g, None)
    psi0 = np.asarray(draw_prior(model0, layout0, g, 400, seed=3)["psi"]).reshape(-1, len(g.nodes))[:, idx]
    assert psi0.min() < 0.5  # the default barrier lets such draws through


@pytest.mark.parametrize("kw", [{"psi_floor": -0.1}, {"psi_floor": 1.0}, {"psi_width": 0.0}])
def test_bad_barrier_settings_are_refused(kw: dict) -> None:
    (field,) = kw
    with pytest.raises(ModelError, match=field):
        StabilitySettings(**kw)
