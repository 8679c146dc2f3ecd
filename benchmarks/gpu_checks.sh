#!/bin/bash
# The GPU checks of issue 24 in one script, for a machine with a CUDA GPU and nemo_dask's
# dependencies importable (pip install -e ".[test,cuda]", or packages carried to PYTHONPATH).
# Prints one "[t+Ns] phase" line per phase; each phase has its own time limit (seconds, from the
# environment: T_TESTS, T_MEM, T_MATRIX) so that a slow one leaves the others their turn.
# Logs go to $OUT (default: ./gpu_checks_out).
#
#   bash benchmarks/gpu_checks.sh                       # tests, M = 300, then the matrix
#   T_MATRIX=2400 bash benchmarks/gpu_checks.sh         # the whole matrix (about 30 min, H200)
S=$(date +%s); el() { echo "[t+$(( $(date +%s) - S ))s] $*"; }
OUT=${OUT:-gpu_checks_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 benchmarks/make_heldout_like.py /tmp/ho >/dev/null && el "held-out-like input"
timeout "${T_TESTS:-200}" python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py \
    tests/solver/test_solver.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
el tests
timeout "${T_MEM:-90}" python3 benchmarks/gpu_compendium.py /tmp/ho/r3000.npz \
    tests/data/modisco.h5 -n 3000 2>&1 | tee "$OUT/gpu_compendium.log"
el "M = 300"
timeout "${T_MATRIX:-200}" python3 -m nemo_dask bench -r /tmp/ho/r3000.npz \
    -m /tmp/ho/modisco10.h5 -d cuda --matrix $MATRIX_ARGS 2>&1 | tee "$OUT/gpu_matrix.log"
el matrix
