#!/usr/bin/env bash
# Create ./.venv with a Python >= 3.12 and install veerkracht_bayes with its test extras.
# Safe to rerun: an existing, working .venv is reused (the package is reinstalled editable).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local cands=()
  [[ -n "${VEERKRACHT_PYTHON:-}" ]] && cands+=("$VEERKRACHT_PYTHON")
  cands+=(python3.13 python3.12 python3)
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for d in "$root"/versions/3.13* "$root"/versions/3.12*; do
    [[ -x "$d/bin/python" ]] && cands+=("$d/bin/python")
  done
  for c in "${cands[@]}"; do
    if command -v "$c" >/dev/null 2>&1 || [[ -x "$c" ]]; then
      if "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
        echo "$c"; return 0
      fi
    fi
  done
  return 1
}

if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
  :
else
  if ! PY="$(find_python)"; then
    echo "error: veerkracht_bayes needs Python >= 3.12 (PyMC 6, ArviZ 1.x) and none was found." >&2
    echo "Tried python3.13, python3.12, python3 and \$PYENV_ROOT/versions/3.1[23]*." >&2
    echo "Install one (e.g. 'pyenv install 3.12') or set VEERKRACHT_PYTHON=/path/to/python3.12." >&2
    exit 1
  fi
  echo "Using $PY ($("$PY" --version 2>&1)) to create .venv" >&2
  rm -rf .venv
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >&2
.venv/bin/python -m pip install --quiet -e ".[test,samplers,realdata]" >&2
# An editable install leaves the package's modules uncompiled, and with PYTHONDONTWRITEBYTECODE set
# every process would compile them again (about 0.3 s of a first result's imports); a wheel
# install compiles them as this does.
.venv/bin/python -m compileall -q src >/dev/null
echo "veerkracht_bayes installed in .venv" >&2

# Fill the persistent compilation cache with the programs of the README's first result
# (vb.fit(graph, survey, priors="marvel"): 2 chains x (1000 + 1000)), so that the first fit reads
# them instead of compiling them (docs/performance.md §7). The cache is $VEERKRACHT_JAX_CACHE or
# ~/.cache/veerkracht_bayes/jax (veerkracht_bayes.runtime). It runs only when this install's
# programs are not there yet (--if-missing: a rerun costs about a second); VEERKRACHT_WARMUP=0
# skips it. A failed warmup is a warning: the first fit then compiles its programs itself.
if [[ "${VEERKRACHT_WARMUP:-1}" != "0" ]]; then
  echo "Filling the compilation cache for a first MARVEL fit if needed (VEERKRACHT_WARMUP=0 skips it)" >&2
  if ! .venv/bin/veerkracht-bayes --quiet warmup --if-missing >&2; then
    echo "warning: 'veerkracht-bayes warmup' failed; the first fit will compile its programs itself" \
         "(about 20 s more)" >&2
  fi
fi
