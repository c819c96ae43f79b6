#!/usr/bin/env bash
# The issue-13 GPU checks as one short script (run on a machine with an accelerator, from the repository root):
#   bash sims/gpu_checks.sh OUT_DIR
# 1) coda-sim bench scaling at GPU sizes (engine vs the loops and FedJAX when installed; FLOP/s; retrieval);
# 2) the MovieLens-20M-shaped planted population end to end with the full device workload (100 + 100 steps).
# Each step prints its table; results land in OUT_DIR. No scann on the GPU box: retrieval.backend auto picks
# the exact sharded search there.
set -euo pipefail
out=${1:-runs/gpu}
mkdir -p "$out"
python -c "import jax; print('devices:', jax.devices())"
timeout 300 coda-sim bench scaling --users 4096 16384 65536 131072 --subset 256 --repeats 2 --no-retrieval \
    --out "$out/scaling" 2>&1 | tail -40
timeout 600 coda-sim run --config configs/synthetic_ml20m.yaml --set classifier.steps=100 --set finetune.steps=100 \
    --out "$out/synthetic_ml20m" --overwrite 2>&1 | grep -v "device stage:" | tail -30
