#!/usr/bin/env bash
# The GPU checks of issues 13 and 21 as one short script (run from the repository root on a machine with an
# accelerator; the checkout's own code runs, not an installed copy):
#   bash sims/gpu_checks.sh OUT_DIR [ML100K_DIR]
# 1) the DIN benchmark (coda-sim bench engine): engine vs the per-user step loop vs FedJAX for_each_client,
#    1,024 users, 50 fine-tuning steps, interleaved rounds, the whole chunk in lockstep on the accelerator;
# 2) MovieLens 100K end to end (chunks of 1,024 users: a step holds chunk x methods fine-tuning runs);
# 3) the MovieLens-20M-shaped planted population (138k users) with the full device workload (100 + 100 steps).
# Each prints its times (compile and execute apart), lanes per step, and device memory (peak per device).
# No scann on the GPU box: retrieval.backend auto picks the exact sharded search there.
set -euo pipefail
out=${1:-runs/gpu}
ml100k=${2:-/work/shared/data/ml-100k}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax; print('jax', jax.__version__, 'devices:', jax.devices())"
memory() {  # device memory after a step: what XLA's allocator reports per device, and nvidia-smi's view
  python - "$1" <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
t, m = r.get("timings", {}), r.get("memory", {})
print(f"  device stage {t.get('device_stage', 0):.1f} s = compile {t.get('device_stage_compile', 0):.1f} s "
      f"({t.get('device_stage_compiles')} programs) + execute {t.get('device_stage_execute', 0):.1f} s; "
      f"device peak GiB {m.get('device_peak_gb')}; host peak RSS {m.get('peak_rss_gb')} GiB")
lanes = r.get("retrieval", {}).get("lanes") or r.get("lanes")
if lanes:
    print(f"  lanes per step: {lanes}")
EOF
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader 2>/dev/null || true
}
echo "== 1) DIN benchmark (engine vs loop vs FedJAX)"
timeout 240 python -m sims.bench_engine --users 1024 --steps 50 --chunk-users 1024 --lockstep-users 0 \
    --repeats 3 --one-device --out "$out/bench_engine.json" 2>&1 | grep -v Warning | tail -20
echo "== 2) MovieLens 100K"
timeout 240 python -m sims.cli run --config configs/movielens100k.yaml --data-dir "$ml100k" \
    --set engine.chunk_users=1024 --out "$out/ml100k" --overwrite 2>&1 | grep -v "device stage:" | tail -12
memory "$out/ml100k/results.json"
echo "== 3) 138k-user population, full workload"
timeout 300 python -m sims.cli run --config configs/synthetic_ml20m.yaml --set classifier.steps=100 \
    --set finetune.steps=100 --set engine.chunk_users=1024 --out "$out/synthetic_ml20m" --overwrite 2>&1 \
    | grep -v "device stage:" | tail -12
memory "$out/synthetic_ml20m/results.json"
