"""Group-DPO's training step on trl's `DPOTrainer`, with every term conditioned on the group.

trl builds the DPO batch as [chosen rows; rejected rows] and calls
`model(**batch, labels=…, fused_lm_head=True)`, reading per-token log-probabilities from trl's fused
LM head (which patches the model's forward to run `model.base_model(...)` and then the LM head on the
completion positions). Three small pieces carry the group's soft tokens through that loop:

- `GroupConditionedLM`: what trl trains. Its `base_model` writes the group tokens into the input
  embeddings (`GroupMLLM.embed`) and runs LLaVA's backbone; the LoRA-adapted LM head is the G-MLLM's.
- `GroupPreferenceCollator`: rows as the G-MLLM reads them (left-padded, k group slots before the
  image and the instruction), plus `group_mask`, `representatives` and the vision tensors, which trl
  passes to the model untouched, and `completion_mask` over the prompt tokens.
- `GroupDPOTrainer`: the dataset arrives tokenized (the round's pairs are token ids the policy
  sampled) with reference log-probabilities the job computed with the adapter disabled, group tokens
  included: dataset preparation and trl's own reference pass are skipped, the extra columns are kept.

The loss is trl's (sigmoid DPO, β = spec.dpo.beta, token log-probabilities summed per sequence).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer


class GroupConditionedBackbone(nn.Module):
    """LLaVA's backbone over inputs whose group slots hold the group's soft tokens."""

    def __init__(self, group_model: Any):
        super().__init__()
        self.group_model = group_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, group_mask: torch.Tensor,
                representatives: torch.Tensor, pixel_values: torch.Tensor, use_cache: bool = False, **vision: Any) -> Any:
        mllm = self.group_model.mllm
        embeds = self.group_model.embed(input_ids, group_mask, representatives)
        return mllm.model(inputs_embeds=embeds, attention_mask=attention_mask, pixel_values=pixel_values.to(mllm.dtype),
                          use_cache=False, **vision)


class GroupConditionedLM(nn.Module):
    """The G-MLLM (LoRA layers in place) as trl's DPOTrainer trains it; trl patches `forward`."""

    def __init__(self, group_model: Any):
        super().__init__()
        self.base_model = GroupConditionedBackbone(group_model)
        mllm = group_model.mllm
        self.config, self.generation_config = mllm.config, mllm.generation_config

    def get_output_embeddings(self) -> nn.Module:
        return self.base_model.group_model.mllm.get_output_embeddings()

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.group_model.mllm.get_input_embeddings()

    def add_model_tags(self, tags: Any) -> None:
        """No model card: the run's outputs are the adapter and the manifest."""

    def forward(self, **kwargs: Any) -> Any:  # replaced by trl's fused LM head
        raise RuntimeError("GroupConditionedLM.forward runs through trl's fused LM head; train it with GroupDPOTrainer")


class GroupPreferenceCollator:
    """Pairs (dataset rows) → one DPO batch: the chosen rows, then the rejected rows."""

    def __init__(self, build: Callable[[list[int], list[list[int]]], Any]):
        self.build = build  # (pair indices, answers) → a gmodel Batch with answer_mask

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [e["pair"] for e in examples] * 2
        answers = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        batch = self.build(keys, answers)
        return {
            **batch.model_inputs(),
            "completion_mask": batch.answer_mask.long(),
            "ref_chosen_logps": torch.tensor([e["ref_chosen_logps"] for e in examples], dtype=torch.float32),
            "ref_rejected_logps": torch.tensor([e["ref_rejected_logps"] for e in examples], dtype=torch.float32),
        }


class GroupDPOTrainer(DPOTrainer):
    """trl's DPOTrainer over pre-tokenized, group-conditioned pairs with their reference log-probabilities."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        return dataset  # token ids the policy sampled: nothing to extract, template or tokenize

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        return dataset  # the job computed them with the adapter disabled and the group tokens in place

    def _set_signature_columns_if_needed(self) -> None:
        self._signature_columns = ["pair", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]


class ProgressCallback(TrainerCallback):
    """Each optimiser step → the job's progress report (loss and DPO statistics of the step)."""

    def __init__(self, on_step: Callable[[int, float, dict[str, float]], None]):
        self.on_step = on_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            stats = {"implicit_margin": float(logs.get("rewards/margins", 0.0)), "implicit_accuracy": float(logs.get("rewards/accuracies", 0.0))}
            self.on_step(state.global_step, float(logs["loss"]), stats)


def dpo_config(dpo: Any, seed: int, output_dir: str, device: Any) -> DPOConfig:
    """trl's settings for one round from spec.dpo (the round's seed; precision and device from the job)."""
    on_gpu = device.device.type == "cuda"
    return DPOConfig(
        output_dir=output_dir, per_device_train_batch_size=dpo.batch_size, num_train_epochs=dpo.epochs,
        learning_rate=dpo.learning_rate, lr_scheduler_type="constant", warmup_steps=0, beta=dpo.beta,
        seed=seed, data_seed=seed, use_cpu=not on_gpu, bf16=on_gpu and device.precision == "bf16",
        fp16=on_gpu and device.precision == "fp16", precompute_ref_log_probs=True, remove_unused_columns=False,
        max_length=None, gradient_checkpointing=False, report_to=[], logging_steps=1, save_strategy="no",
        disable_tqdm=True, log_level="warning", dataloader_num_workers=0,
    )


def train_round(group_model: Any, tokenizer: Any, rows: list[dict[str, Any]], build: Callable, config: DPOConfig,
                on_step: Callable[[int, float, dict[str, float]], None]) -> list[dict[str, float]]:
    """One round of DPO on `rows` (pair index, chosen/rejected token ids, reference log-probs)."""
    from datasets import Dataset

    log: list[dict[str, float]] = []

    def record(step: int, loss: float, stats: dict[str, float]) -> None:
        log.append({"loss": loss} | stats)
        on_step(step, loss, stats)

    trainer = GroupDPOTrainer(
        model=GroupConditionedLM(group_model), args=config, train_dataset=Dataset.from_list(rows),
        data_collator=GroupPreferenceCollator(build), processing_class=tokenizer, callbacks=[ProgressCallback(record)],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to progress.json (ProgressCallback), not stdout
    trainer.train()
    return log
