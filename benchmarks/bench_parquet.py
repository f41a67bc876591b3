"""Out-of-core benchmark: sufficient statistics of a large Parquet survey, time and peak memory.

``run_parquet_benchmark(rows, path)`` writes (if absent) a synthetic Parquet file of ``rows``
respondents in chunks — MARVEL's synthetic population of up to 100,000 rows
(:func:`veerkracht_bayes.datasets.synthetic.simulate_population`, seed 5) repeated with fresh ids, so
its missingness patterns are those of the base sample — and its codebook next to it, then
measures :func:`veerkracht_bayes.survey.out_of_core.stats_from_parquet` in a **fresh subprocess**, so
the peak resident memory belongs to that measurement alone. The peak is read from
``/proc/self/status`` (``VmHWM``), not ``ru_maxrss``: on Linux ``ru_maxrss`` survives fork + exec,
so a child of a large parent (the one that just wrote the file) would report the parent's peak. The baseline RSS
after the imports is reported too, so the increment of the statistics is visible.

Run directly: ``python benchmarks/bench_parquet.py ROWS PATH [--chunk-rows N] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from veerkracht_bayes.graph.causal_graph import load_graph
from veerkracht_bayes.survey.codebook import load_codebook
from veerkracht_bayes.survey.out_of_core import stats_from_parquet
path = Path(sys.argv[1]); chunk = int(sys.argv[2])
g = load_graph("marvel")
cb = load_codebook(path.with_suffix(".codebook.yaml"), graph=g)
def hwm():
    # VmHWM: this process's own peak. ru_maxrss is not used: Linux keeps the parent's value
    # across fork + exec, so a child of a big parent would report the parent's peak.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = hwm()
t0 = time.perf_counter()
md = stats_from_parquet(path, cb, g, chunk_rows=chunk)
sec = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"rows": md.n, "patterns": md.n_patterns, "method": md.missing_method,
                  "seconds": sec, "peak_rss_mb": peak, "baseline_rss_mb": base,
                  "increment_rss_mb": peak - base, "chunk_rows": chunk,
                  "n_excluded": md.n_excluded, "missing_information": md.missing_information}))
"""


def _codebook_yaml(cb: object) -> str:
    import yaml  # writing only (reading goes through veerkracht_bayes.yaml_io)

    return yaml.safe_dump(cb.model_dump(mode="json", exclude_none=True), sort_keys=False)


def write_parquet(rows: int, path: str | Path, *, base_rows: int = 100_000, seed: int = 5) -> float:
    """Write ``rows`` synthetic respondents to ``path`` (and ``path.codebook.yaml``); seconds taken."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from veerkracht_bayes.datasets.synthetic import simulate_population

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = simulate_population(min(rows, base_rows), seed)
    df, cb = base.data, base.codebook
    tmp = path.with_name(path.name + ".partial")
    writer = None
    try:
        for a0 in range(0, rows, len(df)):
            chunk = df.iloc[: min(len(df), rows - a0)].copy()
            chunk[cb.id_column] = np.arange(a0, a0 + len(chunk)) + 1
            tbl = pa.Table.from_pandas(chunk, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, tbl.schema)
            writer.write_table(tbl)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    path.with_suffix(".codebook.yaml").write_text(_codebook_yaml(cb))
    return time.perf_counter() - t0


def run_parquet_benchmark(rows: int, path: str, *, chunk_rows: int = 100_000, timeout_s: float = 3600) -> dict:
    """Write the file if absent, then measure ``stats_from_parquet`` in a fresh subprocess.

    Parameters
    ----------
    rows
        Respondents in the file.
    path
        Parquet path (its codebook is written next to it as ``<stem>.codebook.yaml``).
    chunk_rows
        Rows per record batch read.
    timeout_s
        Limit for the measuring subprocess.

    Returns
    -------
    dict
        ``rows`` (used), ``rows_requested``, ``patterns``, ``method``, ``seconds``,
        ``peak_rss_mb``, ``baseline_rss_mb`` (after imports), ``increment_rss_mb``,
        ``write_s`` (0 when the file existed), ``file_mb``, ``chunk_rows``.
    """
    p = Path(path)
    write_s = 0.0
    if not p.exists() or not p.with_suffix(".codebook.yaml").exists():
        write_s = write_parquet(rows, p)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(p), str(chunk_rows)], capture_output=True,
                          text=True, env=env, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"stats_from_parquet failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(rows_requested=rows, write_s=write_s, file_mb=p.stat().st_size / 2 ** 20)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", type=int)
    ap.add_argument("path")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the Parquet file (default: delete it after)")
    a = ap.parse_args(argv)
    existed = Path(a.path).exists()
    try:
        res = run_parquet_benchmark(a.rows, a.path, chunk_rows=a.chunk_rows)
    finally:
        if not a.keep and not existed:
            for f in (Path(a.path), Path(a.path).with_suffix(".codebook.yaml")):
                f.unlink(missing_ok=True)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
