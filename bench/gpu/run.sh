#!/usr/bin/env bash
# The H100 benchmark in one go (≤ 8 minutes): G-MLLM training tokens/s + MFU and a Group-DPO step,
# then SD1.5 + ControlNet 512x512x30 images/s, each beside its plain baseline measured in the same run.
# Usage: bash bench/gpu/run.sh [OUT_DIR]      (CPU smoke: DRY_RUN=1 bash bench/gpu/run.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-bench-gpu-results}}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
DRY=${DRY_RUN:+--dry-run}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONPATH="$PWD/operator:$PWD/jobs:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/device.txt" || echo "no GPU" | tee "$OUT/device.txt"
timeout 300 "$PY" bench/gpu/train.py $DRY --out "$OUT/train.json" | tee "$OUT/train.txt"
timeout 200 "$PY" bench/gpu/render.py $DRY | tee "$OUT/render.txt"
