#!/usr/bin/env bash
# Run the whole test suite, as the README says and as CI does.
#
#   bash scripts/test.sh            creates .venv if needed, installs .[dev], runs all tests
#   VENV=/path bash scripts/test.sh uses (or creates) that virtual environment instead
#   bash scripts/test.sh -m "not slow"   extra arguments go to the main pytest run
#
# Two pytest processes: the main suite, then the numba.cuda kernels under the CUDA
# simulator, which must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba is imported.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"

# pytest exits 5 when a selection holds no test; only that case is tolerated, and only
# for the simulator run (which has no tests until the first CUDA kernel exists).
run_pytest() {
    local allow_empty=$1; shift
    set +e
    "$VENV/bin/python" -m pytest "$@"
    local rc=$?
    set -e
    if [ "$rc" -eq 5 ] && [ "$allow_empty" = yes ]; then
        echo "(no tests selected in: pytest $*)"
        return 0
    fi
    return "$rc"
}

run_pytest no -m "not cudasim" "$@"
NUMBA_ENABLE_CUDASIM=1 run_pytest yes -m cudasim -q
