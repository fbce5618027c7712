"""Turn (group vectors, image, instruction[, answer]) into model-ready tensors.

Every row is `[pad…] [group × k] <s> USER: <image…> instruction ASSISTANT: [answer </s>]`, left-padded,
so the answer (when there is one) sits at the tail of every row: the LM head only needs the last
`max answer length + 1` positions, and the reward head reads position -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .text import PROMPT_TEMPLATE


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), pad where group tokens go
    attention_mask: torch.Tensor  # (B, T)
    group_mask: torch.Tensor  # (B, T) bool, k True per row
    representatives: torch.Tensor  # (B, n, d)
    vision: dict[str, torch.Tensor]  # pixel_values (+ image_sizes for LLaVA-NeXT)
    answer_mask: torch.Tensor | None = None  # (B, T) bool, answer tokens (incl. </s>)
    answer_len: int = 0  # longest answer: the tail the LM head must cover
    image_stats: torch.Tensor | None = None  # (B, F) statistics of the scored images (a GRM's interaction)

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return Batch(
            move(self.input_ids), move(self.attention_mask), move(self.group_mask), move(self.representatives),
            {k: v.to(device) for k, v in self.vision.items()}, move(self.answer_mask), self.answer_len, move(self.image_stats),
        )

    def model_inputs(self) -> dict[str, Any]:
        inputs = {
            "input_ids": self.input_ids, "attention_mask": self.attention_mask, "group_mask": self.group_mask,
            "representatives": self.representatives, **self.vision,
        }
        if self.image_stats is not None:
            inputs["image_stats"] = self.image_stats
        return inputs


def to_rgb(image: Any) -> Any:
    """Model view of an image: RGBA cut-outs are composited onto white."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def encode_prompts(processor: Any, images: Sequence[Any], instructions: Sequence[str]) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
    """Token ids of each prompt (image tokens expanded by the processor) and the vision tensors."""
    texts = [PROMPT_TEMPLATE.format(image=processor.image_token, instruction=text) for text in instructions]
    encoded = processor(images=[to_rgb(image) for image in images], text=texts, padding=True, return_tensors="pt")
    ids = [row[mask.bool()].tolist() for row, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
    vision = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")}
    return ids, vision


def encode_answers(tokenizer: Any, answers: Sequence[str]) -> list[list[int]]:
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [row + [tokenizer.eos_token_id] for row in ids]


def assemble(
    prompt_ids: Sequence[Sequence[int]],
    representatives: Sequence[np.ndarray] | torch.Tensor,
    vision: dict[str, torch.Tensor],
    pad_id: int,
    n_tokens: int,
    answer_ids: Sequence[Sequence[int]] | None = None,
    max_length: int | None = None,
) -> Batch:
    """Left-padded batch with k group slots before each prompt (and the answer after it)."""
    rows, masks = [], []
    for i, prompt in enumerate(prompt_ids):
        answer = list(answer_ids[i]) if answer_ids is not None else []
        if max_length is not None and n_tokens + len(prompt) + len(answer) > max_length:
            room = max_length - n_tokens - len(prompt)
            if room < 2:
                raise ValueError(
                    f"an example's prompt needs {n_tokens + len(prompt)} tokens (group tokens and image included) "
                    f"but the token limit is {max_length}; raise training.maxLength"
                )
            answer = answer[:room]
        rows.append([pad_id] * n_tokens + list(prompt) + answer)
        masks.append(len(answer))
    width = max(len(row) for row in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    group_mask = torch.zeros((batch, width), dtype=torch.bool)
    answer_mask = torch.zeros((batch, width), dtype=torch.bool)
    for i, row in enumerate(rows):
        start = width - len(row)
        input_ids[i, start:] = torch.tensor(row)
        attention[i, start:] = 1
        group_mask[i, start : start + n_tokens] = True
        if masks[i]:
            answer_mask[i, width - masks[i] :] = True
    reps = representatives if isinstance(representatives, torch.Tensor) else torch.as_tensor(np.stack(representatives), dtype=torch.float32)
    return Batch(
        input_ids, attention, group_mask, reps.float(), vision,
        answer_mask if answer_ids is not None else None, max(masks) if answer_ids is not None else 0,
    )


def answer_logprobs(logits_tail: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's answer, and its token count.

    `logits_tail` holds the logits of the last `batch.answer_len + 1` positions.
    """
    n = batch.answer_len
    targets = batch.input_ids[:, -n:]
    mask = batch.answer_mask[:, -n:]
    logprobs = torch.log_softmax(logits_tail[:, :-1].float(), dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


def examples_batch(
    model: Any,
    processor: Any,
    representatives: Sequence[np.ndarray],
    images: Sequence[Any],
    instructions: Sequence[str],
    answers: Sequence[str] | None = None,
    max_length: int | None = None,
) -> Batch:
    """encode_prompts + encode_answers + assemble for one list of examples."""
    ids, vision = encode_prompts(processor, images, instructions)
    answer_ids = encode_answers(processor.tokenizer, answers) if answers is not None else None
    return assemble(ids, list(representatives), vision, processor.tokenizer.pad_token_id, model.n_tokens, answer_ids, max_length)
