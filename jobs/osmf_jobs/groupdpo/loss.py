"""The Group-DPO loss.

Why not trl's DPOTrainer: it builds the model inputs itself from text (and images) through the
processing class and calls `model(input_ids=…, pixel_values=…)` for the policy and the reference;
there is no hook to add the group's soft tokens to `inputs_embeds` for all four terms. The loss is a
few lines, so it lives here, with the log-probabilities computed by `gmodel.batching.answer_logprobs`
(summed over the prompt's tokens, as in the DPO paper and CAIG).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """-log σ(β[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))]), mean over pairs.

    Inputs are summed token log-probabilities of each pair's chosen/rejected prompt given the same
    (group tokens, product image, instruction).
    """
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    stats = {
        "implicit_margin": float(margin.detach().mean()),
        "implicit_accuracy": float((margin.detach() > 0).float().mean()),
    }
    return loss, stats
