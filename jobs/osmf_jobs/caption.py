"""Captions of ad images' backgrounds (DESIGN §6 "Captions"), per the GAIPDataset's `spec.captioner`.

- `probe`: deterministic — `style.probe` reads the background ring and `style.caption` writes the
  vocabulary words ("warm palette, striped backdrop, bright lighting, energetic mood"). Exact on
  images painted from the vocabulary; the nearest words for any other image.
- `vlm`: a vision-language model loaded by URI (a Hugging Face image-text-to-text directory with
  its processor: LLaVA-class and the like), asked `spec.captioner.prompt`; greedy decoding, on the
  GPU in bf16 when the pod has one (the GAIPDataset's aggregate step asks for GPUs only then).

    captioner = make_captioner(spec.captioner)
    captions = captioner.caption([pil_image, ...])        # -> list[str], same order
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from osmf_jobs import style
from osmf_jobs.model_dirs import HF_CONFIG, model_dir
from osmf_jobs.runtime import InvalidInput

VLM_MAX_NEW_TOKENS = 32
VLM_BATCH = 8


class ProbeCaptioner:
    kind = "probe"

    def caption(self, images: Sequence[Any]) -> list[str]:
        return [style.caption(style.probe(np.asarray(image.convert("RGB")))) for image in images]


class VLMCaptioner:
    kind = "vlm"

    def __init__(self, uri: str, prompt: str, field: str = "spec.captioner.uri", device: Any = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        # The GPU when the pod has one, in bf16 (a 7B VLM: 14 GB, generating on a CPU takes hours),
        # weights read straight onto it; else the CPU in fp32.
        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        path = model_dir(uri, field, HF_CONFIG, "give a vision-language model directory saved with save_pretrained() (model and processor)")
        try:
            self.processor = AutoProcessor.from_pretrained(str(path))
            self.model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=self.dtype, device_map={"": self.device}).eval()
        except (OSError, ValueError) as error:
            raise InvalidInput(f"{field}: cannot load a vision-language model from {uri} ({' '.join(str(error).split())[:160]})") from None
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise InvalidInput(f"{field}: {uri} has no tokenizer in its processor; save the processor with the model")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        self.prompt = prompt

    def _text(self) -> str:
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{self.prompt}"

    def caption(self, images: Sequence[Any]) -> list[str]:
        import torch

        text = self._text()
        out: list[str] = []
        for start in range(0, len(images), VLM_BATCH):
            chunk = [image.convert("RGB") for image in images[start:start + VLM_BATCH]]
            batch = self.processor(images=chunk, text=[text] * len(chunk), return_tensors="pt", padding=True).to(self.device, dtype=self.dtype)
            with torch.no_grad():
                generated = self.model.generate(**batch, max_new_tokens=VLM_MAX_NEW_TOKENS, do_sample=False)
            new = generated[:, batch["input_ids"].shape[1]:]
            out += [" ".join(t.split()) for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        return out


def make_captioner(spec: Any) -> ProbeCaptioner | VLMCaptioner:
    if spec.kind == "probe":
        return ProbeCaptioner()
    if not spec.uri:
        raise InvalidInput("spec.captioner.uri: a vlm captioner needs the model URI")
    return VLMCaptioner(spec.uri, spec.prompt)
