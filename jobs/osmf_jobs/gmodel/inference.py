"""Inference on trained G-MLLMs: prompt generation (policy) and scoring (GRM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import Batch, answer_logprobs, assemble, encode_answers, encode_prompts
from .model import GroupMLLM, load_gmodel
from .text import instruction


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class PromptRequest:
    """One (group, product) to write a background prompt for."""

    representatives: np.ndarray  # (n_vectors, group_dim)
    product_title: str
    product_image: Any  # PIL image (RGBA cut-outs are composited on white)


def prompt_batch(model: GroupMLLM, processor: Any, requests: Sequence[PromptRequest], answers: Sequence[str] | None = None) -> Batch:
    ids, vision = encode_prompts(processor, [r.product_image for r in requests], [instruction("prompt", title=r.product_title) for r in requests])
    answer_ids = encode_answers(processor.tokenizer, answers) if answers is not None else None
    return assemble(ids, [r.representatives for r in requests], vision, processor.tokenizer.pad_token_id, model.n_tokens, answer_ids)


def score_batch_inputs(model: GroupMLLM, processor: Any, representatives: Sequence[np.ndarray], titles: Sequence[str], images: Sequence[Any],
                       image_stats: np.ndarray | None = None) -> Batch:
    """The GRM's rows; a GRM with the group × image interaction also gets the images' statistics
    (computed here unless the caller has them)."""
    ids, vision = encode_prompts(processor, images, [instruction("score", title=t) for t in titles])
    batch = assemble(ids, list(representatives), vision, processor.tokenizer.pad_token_id, model.n_tokens)
    if model.interaction is not None:
        stats = model.stats_encoder.encode(list(images))[0] if image_stats is None else image_stats
        batch.image_stats = torch.as_tensor(np.asarray(stats), dtype=torch.float32)
    return batch


@torch.no_grad()
def sample_answers(model: GroupMLLM, batch: Batch, n: int, temperature: float, seed: int, max_new_tokens: int, eos_id: int, pad_id: int) -> list[list[list[int]]]:
    """n sampled answers per row (token ids, ending with </s> unless cut by max_new_tokens); T=0 = greedy."""
    embeds = model.embed(batch.input_ids, batch.group_mask, batch.representatives)
    repeat = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
    kwargs: dict[str, Any] = {k: repeat(v) for k, v in batch.vision.items()}
    kwargs["pixel_values"] = kwargs["pixel_values"].to(model.mllm.dtype)
    # An image token inside an answer would break LLaVA's image-token count when the answer is fed back.
    suppressed = sorted({model.mllm.config.image_token_id, pad_id} - {eos_id})
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    with torch.random.fork_rng(devices=[batch.input_ids.device] if batch.input_ids.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.mllm.generate(
            inputs_embeds=repeat(embeds), attention_mask=repeat(batch.attention_mask), max_new_tokens=max_new_tokens,
            eos_token_id=eos_id, pad_token_id=pad_id, suppress_tokens=suppressed, **sampling, **kwargs,
        )
    # Keep </s> when the sample ended with it: its probability is part of the sequence's (DPO sums it).
    rows = [seq[: seq.index(eos_id) + 1] if eos_id in seq else seq for seq in out.tolist()]
    return [rows[i * n : (i + 1) * n] for i in range(len(rows) // n)]


class GroupPolicy:
    """A G-MLLM (optionally with a Group-DPO LoRA adapter) that writes background prompts."""

    def __init__(self, model: GroupMLLM, processor: Any, info: dict[str, Any], device: torch.device, adapter: Any = None):
        self.model, self.processor, self.info, self.device = model.eval(), processor, info, device
        self.adapter = adapter  # the peft wrapper when an adapter is loaded
        self.tokenizer = processor.tokenizer

    @classmethod
    def load(cls, source: Any, adapter: Any = None, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "GroupPolicy":
        """`source`: a pretrain GMLLMTraining run (store or URI) or its model directory;
        `adapter`: a GroupDPORun run or its adapter directory."""
        from .location import adapter_dir, gmodel_dir

        device = torch.device(device) if device is not None else default_device()
        model, processor, info = load_gmodel(gmodel_dir(source), reward_head=False, dtype=dtype or default_dtype(device), device=device)
        peft_model = None
        if adapter is not None:
            from peft import PeftModel

            # Injects the LoRA layers into model.mllm in place; GroupMLLM keeps calling the same modules.
            peft_model = PeftModel.from_pretrained(model.mllm, str(adapter_dir(adapter)))
            peft_model.eval()
        return cls(model, processor, info, device, peft_model)

    def sample_ids(self, requests: Sequence[PromptRequest], n: int, temperature: float, seed: int, max_new_tokens: int = 48) -> list[list[list[int]]]:
        batch = prompt_batch(self.model, self.processor, requests).to(self.device)
        return sample_answers(self.model, batch, n, temperature, seed, max_new_tokens, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def generate_batch(self, requests: Sequence[PromptRequest], n: int = 1, temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 48) -> list[list[str]]:
        """n prompts per request (same seed → same prompts); temperature 0 = greedy."""
        return [[self.decode(ids) for ids in rows] for rows in self.sample_ids(requests, n, temperature, seed, max_new_tokens)]

    def generate_prompts(self, representatives: np.ndarray, product_title: str, product_image: Any, n: int = 1, temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 48) -> list[str]:
        return self.generate_batch([PromptRequest(np.asarray(representatives, dtype=np.float32), product_title, product_image)], n, temperature, seed, max_new_tokens)[0]

    @torch.no_grad()
    def logprobs(self, requests: Sequence[PromptRequest], prompts: Sequence[str]) -> list[float]:
        """Summed token log-probability of each prompt (as the policy would write it)."""
        batch = prompt_batch(self.model, self.processor, requests, answers=prompts).to(self.device)
        logits = self.model(**batch.model_inputs(), logits_to_keep=batch.answer_len + 1)
        return answer_logprobs(logits, batch)[0].tolist()


class RewardModel:
    """The GRM: a scalar score of (group, product, image); higher = the group clicks it more."""

    def __init__(self, model: GroupMLLM, processor: Any, info: dict[str, Any], device: torch.device):
        self.model, self.processor, self.info, self.device = model.eval(), processor, info, device

    @classmethod
    def load(cls, source: Any, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "RewardModel":
        """`source`: a reward GMLLMTraining run (store or URI) or its model directory."""
        from .location import gmodel_dir

        device = torch.device(device) if device is not None else default_device()
        model, processor, info = load_gmodel(gmodel_dir(source), dtype=dtype or default_dtype(device), device=device)
        if info["role"] != "reward":
            raise ValueError(f"{source}: a {info['role']} model, not a reward model (GMLLMTraining task reward)")
        return cls(model, processor, info, device)

    @torch.no_grad()
    def score_batch(self, representatives: Sequence[np.ndarray], product_titles: Sequence[str], images: Sequence[Any], zero_group: bool = False, batch_size: int = 16) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            batch = score_batch_inputs(self.model, self.processor, representatives[start:stop], product_titles[start:stop], images[start:stop]).to(self.device)
            blind = zero_group or bool(self.info.get("group_blind"))  # a group-blind GRM never reads the group
            scores += self.model(**batch.model_inputs(), zero_group=blind, output="score").tolist()
        return scores

    def score(self, representatives: np.ndarray, product_title: str, image: Any, zero_group: bool = False) -> float:
        return self.score_batch([np.asarray(representatives, dtype=np.float32)], [product_title], [image], zero_group)[0]
