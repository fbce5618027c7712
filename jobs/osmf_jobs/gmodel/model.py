"""The G-MLLM: a LLaVA-style model plus a group projector (and, for the GRM, a scalar head).

The group's representative vectors (DESIGN §6: 10 vectors of the preference space) become soft tokens
that are written into the input embeddings at the positions `group_mask` marks — always before the
image and the text, never at image-token positions (LLaVA finds those by comparing embeddings with
the image token's embedding when it is given `inputs_embeds`).

On disk a G-MLLM is a directory:

    gmodel.json              role (policy | reward), group sizes, base model URI
    group.safetensors        group projector (+ reward head)
    mllm/                    the LLaVA model and its processor, `save_pretrained` format
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from osmf_core.layout import GModel

GMODEL_FORMAT = 1
TINY_LLAVA = "builtin:tiny-llava"

# builtin:tiny-llava: small enough for a 2-core CPU test, big enough to learn the synth world.
TINY_IMAGE_SIZE = 32
TINY_PATCH_SIZE = 8
TINY_VISION_HIDDEN = 64
TINY_TEXT_HIDDEN = 128
TINY_LAYERS = 2
TINY_HEADS = 4


class GroupProjector(nn.Module):
    """n representative vectors (d floats each) → k soft tokens of the LM's hidden size.

    Each vector goes through the same MLP; a learned slot embedding tells the tokens apart (the
    vectors come in percentile bands), and a k×n mixing matrix (identity when k == n) maps vectors
    to tokens.
    """

    def __init__(self, group_dim: int, n_vectors: int, n_tokens: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(group_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.mix = nn.Parameter(torch.eye(n_tokens, n_vectors) if n_tokens == n_vectors else torch.full((n_tokens, n_vectors), 1.0 / n_vectors))
        self.slot = nn.Parameter(torch.zeros(n_tokens, hidden))
        nn.init.normal_(self.fc2.weight, std=0.02)
        nn.init.zeros_(self.fc2.bias)
        # Per-dimension standardisation of the input vectors (fixed, not trained; see `standardize`).
        self.register_buffer("center", torch.zeros(group_dim))
        self.register_buffer("scale", torch.ones(group_dim))

    def standardize(self, vectors: torch.Tensor) -> None:
        """Fix center/scale to the mean and standard deviation of `vectors` (…, d), per dimension."""
        flat = vectors.reshape(-1, vectors.shape[-1]).float()
        self.center.copy_(flat.mean(0))
        self.scale.copy_(flat.std(0).clamp(min=1e-6) if len(flat) > 1 else torch.ones_like(self.scale))

    def forward(self, representatives: torch.Tensor) -> torch.Tensor:  # (B, n, d) → (B, k, hidden)
        normed = (representatives - self.center.to(representatives.dtype)) / self.scale.to(representatives.dtype)
        per_vector = self.fc2(self.act(self.fc1(normed)))
        return torch.einsum("kn,bnh->bkh", self.mix.to(per_vector.dtype), per_vector) + self.slot.to(per_vector.dtype)


class PreferenceInteraction(nn.Module):
    """The GRM's explicit group × image term: the mean over the group's vectors g_k of ⟨W g_k, v⟩.

    v is the image's creative vector under the AudienceGrouping's preference model (its image
    encoder's statistics through the creative tower PAAG trained on the impressions): frozen
    features that live in the same space as the group vectors, so with W = I the term starts as
    PAAG's own ⟨e, v⟩ and training on GAIP pairs adjusts W beside the LM's score. Without it the
    score is a head on the LM's last hidden state, which learns the group × image saddle slowly
    (held-out pairwise accuracy 0.58–0.61 on the demo world).
    """

    def __init__(self, group_dim: int, stats_dim: int):
        super().__init__()
        self.register_buffer("stats_mean", torch.zeros(stats_dim))
        self.register_buffer("stats_std", torch.ones(stats_dim))
        self.norm = nn.LayerNorm(stats_dim)
        self.c1, self.c2 = nn.Linear(stats_dim, group_dim), nn.Linear(group_dim, group_dim)
        for module in (self.norm, self.c1, self.c2):
            module.requires_grad_(False)
        self.weight = nn.Parameter(torch.eye(group_dim))

    def load_creative_tower(self, arrays: dict[str, Any]) -> None:
        """Copy the preference model's creative tower (the grouping's exported numpy arrays)."""
        with torch.no_grad():
            self.stats_mean.copy_(torch.as_tensor(arrays["creative.mean"]))
            self.stats_std.copy_(torch.as_tensor(arrays["creative.std"]))
            for module, name in ((self.norm, "creative_ln"), (self.c1, "c1"), (self.c2, "c2")):
                module.weight.copy_(torch.as_tensor(arrays[f"{name}.weight"]))
                module.bias.copy_(torch.as_tensor(arrays[f"{name}.bias"]))

    def forward(self, representatives: torch.Tensor, image_stats: torch.Tensor) -> torch.Tensor:  # (B, n, d), (B, F) → (B,)
        x = self.norm((image_stats.float() - self.stats_mean) / self.stats_std)
        v = self.c2(nn.functional.gelu(self.c1(x), approximate="tanh"))
        g = representatives.float() @ self.weight.T
        return (g * v[:, None, :]).sum(-1).mean(-1)


class GroupMLLM(nn.Module):
    """LLaVA + group projector (+ scalar reward head, + the group × image interaction). One `forward`
    so DDP sees every call."""

    def __init__(self, mllm: nn.Module, group_dim: int, n_vectors: int, n_tokens: int, reward_head: bool = False,
                 interaction_stats: int = 0):
        super().__init__()
        self.mllm = mllm
        hidden = mllm.config.text_config.hidden_size
        self.group_dim, self.n_vectors, self.n_tokens = group_dim, n_vectors, n_tokens
        self.group_projector = GroupProjector(group_dim, n_vectors, n_tokens, hidden)
        self.reward_head = nn.Linear(hidden, 1) if reward_head else None
        if self.reward_head is not None:
            nn.init.normal_(self.reward_head.weight, std=0.02)
            nn.init.zeros_(self.reward_head.bias)
        self.interaction = PreferenceInteraction(group_dim, interaction_stats) if reward_head and interaction_stats else None
        self.stats_encoder: Any = None  # the image encoder behind the interaction's statistics (not a module)

    def embed(self, input_ids: torch.Tensor, group_mask: torch.Tensor, representatives: torch.Tensor, zero_group: bool = False) -> torch.Tensor:
        embeds = self.mllm.get_input_embeddings()(input_ids)
        tokens = self.group_projector(representatives.to(self.group_projector.fc1.weight.dtype))
        if zero_group:  # the group-blind variant: soft tokens carry nothing
            tokens = torch.zeros_like(tokens)
        return embeds.masked_scatter(group_mask.unsqueeze(-1), tokens.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        group_mask: torch.Tensor,
        representatives: torch.Tensor,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        zero_group: bool = False,
        output: str = "logits",
        logits_to_keep: int = 0,
        image_stats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """output="logits": LM logits of the last `logits_to_keep` positions (0 = all);
        output="score": the reward head on the last position's hidden state (rows are left-padded),
        plus the group × image interaction on `image_stats` unless the group is zeroed."""
        kwargs: dict[str, Any] = {
            "inputs_embeds": self.embed(input_ids, group_mask, representatives, zero_group),
            "attention_mask": attention_mask,
            "pixel_values": pixel_values.to(self.mllm.dtype),
        }
        if image_sizes is not None:
            kwargs["image_sizes"] = image_sizes
        if output == "score":
            if self.reward_head is None:
                raise ValueError("this G-MLLM has no reward head; load a reward-task model")
            hidden = self.mllm.model(**kwargs).last_hidden_state[:, -1]
            score = self.reward_head(hidden.to(self.reward_head.weight.dtype)).squeeze(-1).float()
            if self.interaction is not None and not zero_group:
                if image_stats is None:
                    raise ValueError("this GRM scores with the group × image interaction: pass image_stats")
                score = score + self.interaction(representatives, image_stats)
            return score
        return self.mllm(**kwargs, logits_to_keep=logits_to_keep).logits

    # ---- persistence -----------------------------------------------------------------------

    def group_state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"group_projector.{k}": v for k, v in self.group_projector.state_dict().items()}
        if self.reward_head is not None:
            state |= {f"reward_head.{k}": v for k, v in self.reward_head.state_dict().items()}
        if self.interaction is not None:
            state |= {f"interaction.{k}": v for k, v in self.interaction.state_dict().items()}
        return state

    def load_group_state_dict(self, state: dict[str, torch.Tensor], strict_head: bool = True) -> None:
        projector = {k.removeprefix("group_projector."): v for k, v in state.items() if k.startswith("group_projector.")}
        # Models saved before the standardisation buffers existed read their vectors raw.
        projector.setdefault("center", torch.zeros_like(self.group_projector.center))
        projector.setdefault("scale", torch.ones_like(self.group_projector.scale))
        self.group_projector.load_state_dict(projector)
        head = {k.removeprefix("reward_head."): v for k, v in state.items() if k.startswith("reward_head.")}
        if self.reward_head is not None and (head or strict_head):
            self.reward_head.load_state_dict(head)
        interaction = {k.removeprefix("interaction."): v for k, v in state.items() if k.startswith("interaction.")}
        if self.interaction is not None and interaction:
            self.interaction.load_state_dict(interaction)


def save_gmodel(model: GroupMLLM, processor: Any, path: Path, meta: dict[str, Any]) -> None:
    """Write a G-MLLM directory (see the module docstring)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.mllm.save_pretrained(path / GModel.MLLM_DIR)
    processor.save_pretrained(path / GModel.MLLM_DIR)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.group_state_dict().items()}, str(path / GModel.GROUP_WEIGHTS))
    info = {
        "format": GMODEL_FORMAT,
        "role": "reward" if model.reward_head is not None else "policy",
        "group_dim": model.group_dim,
        "n_vectors": model.n_vectors,
        "group_tokens": model.n_tokens,
    } | meta
    (path / GModel.INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


def read_gmodel_info(path: Path) -> dict[str, Any]:
    info_path = Path(path) / GModel.INFO
    if not info_path.is_file():
        raise FileNotFoundError(f"{path} is not a G-MLLM directory (no {GModel.INFO})")
    return json.loads(info_path.read_text())


def load_gmodel(path: Path, reward_head: bool | None = None, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                empty: bool = False):
    """(GroupMLLM, processor, info) from a G-MLLM directory.

    `reward_head=None` follows the saved role; True on a policy adds a fresh head (a GRM initialised
    from a G-MLLM); False on a reward model drops the head. `empty=True` leaves the LLaVA part on
    the meta device for sharded loading (`gmodel.loading.materialize`; the group projector and head
    are real).
    """
    from safetensors.torch import load_file

    path = Path(path)
    info = read_gmodel_info(path)
    if empty:
        from .loading import empty_hf_model

        mllm, processor = empty_hf_model(path / GModel.MLLM_DIR), load_llava_processor(path / GModel.MLLM_DIR)
    else:
        mllm, processor = load_hf_llava(path / GModel.MLLM_DIR, dtype=dtype, device=device)
    want_head = info["role"] == "reward" if reward_head is None else reward_head
    interaction = info.get("interaction") if want_head and info["role"] == "reward" else None
    model = GroupMLLM(mllm, info["group_dim"], info["n_vectors"], info["group_tokens"], reward_head=want_head,
                      interaction_stats=int(interaction["stats_dim"]) if interaction else 0)
    model.load_group_state_dict(load_file(str(path / GModel.GROUP_WEIGHTS)), strict_head=info["role"] == "reward" and want_head)
    if interaction:
        model.stats_encoder = image_stats_encoder(interaction["image_encoder"])
    if empty:
        return model, processor, info
    model = model.to(device=device, dtype=dtype)
    if model.interaction is not None:
        model.interaction.float()  # frozen statistics and a small matrix: always in fp32
    return model, processor, info


def image_stats_encoder(uri: str) -> Any:
    """The image encoder whose statistics feed the interaction (the grouping's, by its URI)."""
    from osmf_jobs.paag.encoders import ImageEncoder

    return ImageEncoder(uri, "the GRM's interaction (the grouping's spec.model.imageEncoder)")


def load_hf_llava(path: Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A LLaVA-class model (LLaVA, LLaVA-NeXT, …) and its processor from a local directory; the
    weights are read straight onto `device` in `dtype` (no CPU copy first)."""
    from transformers import AutoModelForImageTextToText

    processor = load_llava_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype, device_map={"": torch.device(device)})
    return model, processor


def load_llava_processor(path: Path):
    """The processor of a LLaVA-class directory, set up for left-padded batches."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(path))
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_token", None) is None:
        raise ValueError(f"{path}: the processor has no tokenizer or image token; a LLaVA-class processor is needed")
    processor.tokenizer.padding_side = "left"
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.unk_token or processor.tokenizer.eos_token
    return processor


def build_tiny_llava(vocabulary: list[str] | set[str], seed: int = 0, max_length: int = 512):
    """builtin:tiny-llava — a random tiny LLaVA (CLIP vision tower + Llama LM) and its processor.

    The tokenizer is word-level over `vocabulary` (see tokenizer.py). Same vocabulary and seed →
    identical weights.
    """
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from .tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(vocabulary, model_max_length=max_length)
    vision = CLIPVisionConfig(
        hidden_size=TINY_VISION_HIDDEN, intermediate_size=2 * TINY_VISION_HIDDEN, num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS, image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE, projection_dim=TINY_VISION_HIDDEN,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_TEXT_HIDDEN, intermediate_size=2 * TINY_TEXT_HIDDEN,
        num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS, num_key_value_heads=TINY_HEADS,
        max_position_embeddings=max(max_length, 512), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id,
        image_seq_length=(TINY_IMAGE_SIZE // TINY_PATCH_SIZE) ** 2, vision_feature_select_strategy="default",
        # -1: every vision layer feeds the projector, so all parameters get gradients (DDP needs that).
        vision_feature_layer=-1, projector_hidden_act="gelu",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=TINY_PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    return model, processor
