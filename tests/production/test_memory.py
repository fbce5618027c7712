"""FSDP loading keeps no full copy of the model in any rank: a LLaVA-class model of ≥ 300 M
parameters, stored as sharded bf16 safetensors (as published checkpoints are), loaded by 2 ranks
for FSDP the way the gmllm job loads it. Each rank's resident memory grows by its fp32 shard (½ of
the fp32 model) plus one tensor slice in flight, never by a whole copy (which would be ≥ 1×).
Measured from each rank's RSS once its imports and process group are up (code, ~0.8 GB here, is not
the model) to its peak RSS (`ru_maxrss`) after loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT = 0.6  # × the full fp32 model


def save_large_llava(path: Path) -> int:
    """A 637 M-parameter LLaVA (Llama 1280 × 28 layers, 32k vocabulary; a small CLIP tower) with
    random bf16 weights, saved in 200 MB safetensors shards; returns its parameter count."""
    import torch
    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       image_size=32, patch_size=8, projection_dim=64),
        text_config=LlamaConfig(vocab_size=32064, hidden_size=1280, intermediate_size=3456, num_hidden_layers=28,
                                num_attention_heads=20, num_key_value_heads=20, tie_word_embeddings=False),
        image_token_id=32000, image_seq_length=16, vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    with init_empty_weights(include_buffers=False):
        model = LlavaForConditionalGeneration(config)
    model.to_empty(device="cpu")  # no initialisation pass: the values are drawn below, in bf16
    model.to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02, generator=generator)
    model.save_pretrained(path, max_shard_size="200MB")
    return sum(p.numel() for p in model.parameters())


def test_two_fsdp_ranks_each_hold_their_shard_not_the_model(tmp_path: Path) -> None:
    params = save_large_llava(tmp_path / "llava")
    assert params >= 300_000_000 and len(list((tmp_path / "llava").glob("*.safetensors"))) > 1
    out = tmp_path / "out"
    out.mkdir()
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(Path(__file__).with_name("memory_worker.py")), str(tmp_path / "llava"), str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    fp32_bytes = 4 * params
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        grown = rank["peak_rss"] - rank["rss_before"]
        print(f"rank {rank['rank']}: RSS before loading {rank['rss_before'] / 2**20:.0f} MiB, peak {rank['peak_rss'] / 2**20:.0f} MiB, "
              f"grown {grown / 2**20:.0f} MiB = {grown / fp32_bytes:.2f} × the fp32 model ({fp32_bytes / 2**20:.0f} MiB)")
        assert rank["shard_matches_checkpoint"]
        assert abs(rank["params_local"] - params / 2) < 0.01 * params  # half of every tensor
        assert grown <= LIMIT * fp32_bytes, (rank, grown / fp32_bytes)
