"""G-MLLM / GRM model code shared by the gmllm, groupdpo and campaign jobs (DESIGN §6).

A G-MLLM is a LLaVA-class model (vision tower + projector + causal LM) plus a group projector that
maps a group's representative vectors (10 × 128 floats, `groups.parquet`) to 10 soft tokens placed
before the image and the text. The GRM is the same model with a scalar head on the last token.

Inference API (what the campaign and Group-DPO use)::

    from osmf_jobs.gmodel import GroupPolicy, RewardModel, PromptRequest

    policy = GroupPolicy.load(pretrain_run)                       # a GMLLMTraining (pretrain) run
    policy = GroupPolicy.load(pretrain_run, adapter=dpo_run)      # + a GroupDPORun's LoRA adapter
    prompts = policy.generate_prompts(reps, "red ceramic mug", product_rgba, n=4, temperature=1.0, seed=7)
    prompts = policy.generate_batch([PromptRequest(reps, title, image), ...], n=4, temperature=1.0, seed=7)

    grm = RewardModel.load(reward_run)                            # a GMLLMTraining (reward) run
    score = grm.score(reps, "red ceramic mug", rendered_image)    # float, higher = clicked more
    scores = grm.score_batch([reps, ...], [title, ...], [image, ...])

`pretrain_run`, `reward_run` and `dpo_run` are an `ArtifactStore` of the run directory, its URI
(s3://, file://, a path), or the model/adapter directory itself; S3 content is downloaded once per
node into `$OSMF_MODEL_CACHE` (default ~/.cache/osmf/models; see `osmf_jobs.model_dirs`). `reps` is a (10, 128) float array (one row of
`groups.parquet`'s `representatives`); images are PIL images. Same inputs and seed → same prompts.
`device`/`dtype` default to CUDA + bf16 when a GPU is present, else CPU + fp32.

Building blocks (for training code):
- `model`: `GroupMLLM`, `build_tiny_llava` (builtin:tiny-llava), `save_gmodel`, `load_gmodel`.
- `tokenizer`: `build_word_tokenizer` — an offline word-level tokenizer.
- `batching`: prompt/answer encoding into left-padded batches with group slots; answer log-probs.
- `data`: reading a GAIP run + grouping into training examples for the four pretrain tasks and
  the GRM's pairs; group profiles from attribute statistics.
- `text`: templates, the word splitter, style-word matching (the "learning is real" metric).
- `location`: where a run keeps its G-MLLM or adapter, as a local directory (`gmodel_dir`,
  `adapter_dir`, through `osmf_jobs.model_dirs`), and a run's model role.
- `training`: device and precision, DDP/FSDP wrapping, checkpoints in the artifact store, the LR
  schedule and data order, the fit loop, progress (one module each).

Model directory layout: see `model`. Heavy imports (torch, transformers) happen on first use of
the names below, so `import osmf_jobs.gmodel` stays cheap.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "GroupPolicy": "inference",
    "RewardModel": "inference",
    "PromptRequest": "inference",
    "GroupMLLM": "model",
    "build_tiny_llava": "model",
    "load_gmodel": "model",
    "save_gmodel": "model",
    "TINY_LLAVA": "model",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
