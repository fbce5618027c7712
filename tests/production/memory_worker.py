"""One rank of the FSDP loading memory test (test_memory.py), under torchrun:

    python memory_worker.py MODEL_DIR OUT_DIR

Loads the LLaVA directory the way the gmllm job does under FSDP (meta-device model, `fully_shard`,
per-rank slices from the safetensors: `gmodel.loading`) and writes OUT_DIR/rank-<r>.json with its
RSS just before loading (after the imports and the process group), its peak RSS, the parameters it holds and a check of one loaded shard.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import psutil
import torch


def main() -> None:
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()

    from osmf_jobs.gmodel.loading import empty_hf_model, materialize, snapshot
    from osmf_jobs.gmodel.model import GroupMLLM
    from osmf_jobs.gmodel.training.device import Device
    from osmf_jobs.gmodel.training.parallel import wrap_model

    # Code, not weights: the modelling modules transformers imports lazily on the first build (about
    # 250 MB of RSS), and the checkpoint reader, are imported before the baseline is taken.
    import torch.distributed.checkpoint as dcp  # noqa: F401
    from transformers.models.clip import modeling_clip  # noqa: F401
    from transformers.models.llama import modeling_llama  # noqa: F401
    from transformers.models.llava import modeling_llava  # noqa: F401

    device = Device(torch.device("cpu"), "fp32", rank, torch.distributed.get_world_size())
    torch.distributed.barrier()
    before = psutil.Process().memory_info().rss
    model = GroupMLLM(empty_hf_model(model_dir), 128, 10, 10)
    total = sum(p.numel() for p in model.parameters())
    kept = snapshot(model)
    wrap_model(model, device, "fsdp")
    materialize(model, model.mllm, model_dir, device.device, kept)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    local = sum(p.to_local().numel() for p in model.parameters())

    from safetensors import safe_open

    index = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    key = "language_model.lm_head.weight" if "language_model.lm_head.weight" in index else "lm_head.weight"
    shard = model.mllm.lm_head.weight.to_local()
    start = rank * -(-model.mllm.lm_head.weight.shape[0] // device.world_size)
    with safe_open(str(model_dir / index[key]), framework="pt") as handle:
        expected = handle.get_slice(key)[start : start + shard.shape[0]].float()
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "rank": rank, "rss_before": before, "peak_rss": peak, "params_total": total, "params_local": local,
        "shard_matches_checkpoint": bool(torch.equal(shard, expected)), "pid": os.getpid(),
    }))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
