#!/usr/bin/env bash
# GPU acceptance in one go on one H100 or H200 (≤ 8 minutes): the real G-MLLM job at the h100
# example's settings (bf16, FSDP on one rank, gradient checkpointing) on the largest LLaVA-class model
# that fits, a Group-DPO step, SD1.5 + ControlNet 512² × 30 steps, each beside a plain baseline
# measured in the same run (bench/gpu/acceptance.py says what each row is).
# Usage: bash bench/gpu/acceptance.sh [OUT_DIR]        (CPU smoke: DRY_RUN=1 bash bench/gpu/acceptance.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-bench-gpu-results}}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/core:$PWD/jobs:$PWD/operator:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/device.txt" || echo "no GPU" | tee "$OUT/device.txt"
timeout 480 "$PY" bench/gpu/acceptance.py ${DRY_RUN:+--dry-run} --out "$OUT" 2>"$OUT/acceptance.stderr" | tee "$OUT/acceptance.txt"
