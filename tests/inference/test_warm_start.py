"""The persistent compilation cache across processes: what one process compiles, the next reads.

Each fit runs in a fresh interpreter (JAX fixes its cache folder once a process has compiled
anything), with ``VEERKRACHT_JAX_CACHE`` pointing at a temporary folder, as a fresh install's
``veerkracht-bayes warmup`` and the user's first ``vb.fit`` do. JAX's own counters
(``jax.monitoring``) say how many programs were compiled and how many were read from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from veerkracht_bayes.runtime import compilation_cache_dir, configure, warmup_stamp

ROOT = Path(__file__).resolve().parents[2]

# the small cyclic model of tests/_small_fit.py, another seed in the second process
SCRIPT = r"""
import json, sys
import jax.monitoring as mon
counts = {"hits": 0, "misses": 0}
def on_event(event, **_):
    if event == "/jax/compilation_cache/cache_hits":
        counts["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
        counts["misses"] += 1
mon.register_event_listener(on_event)
sys.path.insert(0, sys.argv[1])
from _small_fit import small_data, small_graph
from veerkracht_bayes.inference.sampling import fit
seed = int(sys.argv[2])
res = fit(small_graph(), small_data(seed=3), draws=30, tune=30, chains=2, random_seed=seed,
          prior_draws=50, progressbar=False, pointwise=False)
print(json.dumps({**counts, "draws": int(res.idata["posterior"].sizes["draw"])}))
"""


def _fit_in_fresh_process(cache: Path, seed: int) -> dict:
    env = {**os.environ, "VEERKRACHT_JAX_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "tests"), str(seed)], env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_every_program_from_the_cache(tmp_path: Path):
    cache = tmp_path / "jax"
    first = _fit_in_fresh_process(cache, seed=3)
    assert first["draws"] == 30
    # an empty cache: everything compiled and written
    assert first["hits"] == 0 and first["misses"] >= 5
    assert len([p for p in cache.iterdir() if not p.name.endswith(".stamp")]) >= first["misses"] // 2
    # the fit's four programs were also kept traced and lowered (veerkracht_bayes.programs)
    kept = sorted(p.name.rsplit("-", 1)[0] for p in (cache / "exported").iterdir())
    assert kept == ["gradients", "numpyro-chunk", "numpyro-init", "outputs"], kept
    second = _fit_in_fresh_process(cache, seed=4)  # another seed: other starts, other random keys
    assert second["misses"] == 0, second
    # the second process reads those four programs and traces nothing, so it needs none of the
    # small programs that tracing compiled in the first
    assert second["hits"] == 4, second


def test_warmup_stamp_names_the_setting_and_follows_the_cache_setting(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VEERKRACHT_JAX_CACHE", str(tmp_path))
    a, b = warmup_stamp(1000, 1000), warmup_stamp(1000, 500)
    assert a is not None and b is not None
    assert a.parent == tmp_path == compilation_cache_dir()
    assert a != b and a == warmup_stamp(1000, 1000) and a.name.endswith(".stamp")
    # the route is part of the setting: the README's call (auto) and the continuous one, and
    # vb.fit's default tuning (None) apart from an explicit one
    assert warmup_stamp(1000, 1000, "auto") not in (a, warmup_stamp(1000, None, "auto"))
    assert a == warmup_stamp(1000, 1000, "continuous")
    configure(compilation_cache=False)
    try:
        assert warmup_stamp(1000, 1000) is None
    finally:
        configure(compilation_cache=True)
