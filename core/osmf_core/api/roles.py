"""The names of a job config's `inputs`: what each artifact a Job reads is to it."""

from __future__ import annotations


class Role:
    DATA = "data"  # the logs root (DESIGN §5 tables)
    GROUPING = "grouping"  # an AudienceGrouping run
    DATASET = "dataset"  # a GAIPDataset run
    INIT = "init"  # the pretrain GMLLMTraining run a reward model starts from
    POLICY = "policy"  # a pretrain GMLLMTraining run (the policy Group-DPO aligns)
    REWARD = "reward"  # a reward GMLLMTraining run (the GRM)
    GENERATOR = "generator"  # the campaign's prompt generator (GroupDPORun or pretrain GMLLMTraining)
