#!/usr/bin/env bash
# Recipes for one workstation or node with several GPUs. Read, then run the part you need.
#
#   bash deploy/multi-gpu-node.sh embedded REGIONS MODISCO_H5 OUT     # (1)
#   bash deploy/multi-gpu-node.sh by-hand  REGIONS MODISCO_H5 OUT     # (2)
set -euo pipefail
MODE=${1:?embedded or by-hand}
REGIONS=${2:?regions store}
MODISCO=${3:?modisco H5}
OUT=${4:?output directory}

case "$MODE" in
embedded)
    # (1) nemo-dask starts a dask-cuda LocalCUDACluster: one worker per GPU listed in
    # CUDA_VISIBLE_DEVICES (all GPUs when unset), one thread each, loopback only; it is closed
    # when the run ends. Choose GPUs with e.g. CUDA_VISIBLE_DEVICES=0,2.
    nemo-dask call-hits -r "$REGIONS" -m "$MODISCO" -o "$OUT" --cluster cuda
    ;;
by-hand)
    # (2) A long-lived cluster you start yourself and reuse for several runs (or share between
    # notebooks): a scheduler and `dask cuda worker`, which starts one worker process per visible
    # GPU and gives each its own CUDA_VISIBLE_DEVICES. Everything listens on 127.0.0.1 only.
    # No RMM pool: torch's caching allocator manages GPU memory.
    TMP=$(mktemp -d)
    trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
    dask scheduler --host 127.0.0.1 --port 8786 --dashboard-address 127.0.0.1:8787 \
        --scheduler-file "$TMP/scheduler.json" &
    while [ ! -s "$TMP/scheduler.json" ]; do sleep 1; done
    dask cuda worker --scheduler-file "$TMP/scheduler.json" --host 127.0.0.1 \
        --nthreads 1 --no-dashboard &
    # Blocks go wherever a worker is free; a worker that dies has its blocks recomputed.
    nemo-dask call-hits -r "$REGIONS" -m "$MODISCO" -o "$OUT" --scheduler tcp://127.0.0.1:8786
    # On a machine shared with other users, run the scheduler and workers with TLS instead:
    #   dask scheduler --protocol tls --tls-ca-file ca.pem --tls-cert me.pem --tls-key me.key ...
    #   dask cuda worker tls://127.0.0.1:8786 --tls-ca-file ca.pem --tls-cert me.pem --tls-key me.key
    #   nemo-dask call-hits ... --scheduler tls://127.0.0.1:8786 \
    #       --tls-ca-file ca.pem --tls-cert me.pem --tls-key me.key
    ;;
*)
    echo "unknown mode $MODE (embedded or by-hand)" >&2; exit 2 ;;
esac
