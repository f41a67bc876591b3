#!/usr/bin/env bash
# The ordinal path on one GPU (issue 7): n = 20,000 and n = 1,000,000, 2 chains vectorized on the
# device (numpyro chain_method="vectorized"), the benchmark model of bench_ordinal.py.
# Run from the repository root on the GPU machine. Packages the machine lacks (pymc, pytensor,
# arviz, pydantic...) travel as wheels in .whl/ (see docs/performance.md §5); results go to $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH" || exit 1
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, numpyro, numba, pymc, pytensor, numpy; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__, 'numba', numba.__version__, 'pymc', pymc.__version__, 'pytensor', pytensor.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"
stage() {  # n draws tune limit_s
  local t0=$SECONDS
  timeout "$4" python3 benchmarks/bench_ordinal.py --stage ours --n "$1" --draws "$2" --tune "$3" \
    --chain-method vectorized 2>"$OUT/err_$1.log" | tail -1 | tee "$OUT/ordinal_gpu_$1.json"
  echo "n=$1 process wall $((SECONDS - t0)) s (limit $4 s)" | tee -a "$OUT/gpu.txt"
  tail -5 "$OUT/err_$1.log"
}
stage 20000 100 100 "${LIMIT_20K:-150}"
stage 1000000 "${DRAWS_1M:-60}" "${TUNE_1M:-60}" "${LIMIT_1M:-380}"
