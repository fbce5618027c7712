"""The world's true click model as a group scorer: the oracle reward of the Group-DPO ablation.

`TruthScorer` has the interface of `osmf_jobs.scoring` (`score_batch(representatives, titles,
images)`) and scores an image for a group as the group's true expected CTR: every user of the world
that the grouping assigns to the group, σ(their true logit) with the image's style bonus read from
its pixels. It finds the group from its representative vectors (they are unique per group in
groups.parquet). Only evaluation harnesses use it (`bench/generation.py`): the truth never enters a
production path.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from osmf_core.layout import Grouping
from osmf_core.store import open_store
from osmf_jobs.tables import read_parquet

from .truth import Truth, load_truth


class TruthScorer:
    name = "oracle"

    def __init__(self, world: str, grouping: Any):
        from osmf_jobs.paag import Assigner

        self.truth: Truth = load_truth(world)
        store = grouping if hasattr(grouping, "uri") else open_store(grouping)
        self.assigner = Assigner.load(store.uri)
        groups = read_parquet(store, Grouping.GROUPS, ["product_id", "group_id", "representatives"])
        self.keys = {self.key_of(np.stack([np.asarray(v, np.float32) for v in reps])): (str(p), int(g))
                     for p, g, reps in zip(groups["product_id"], groups["group_id"], groups["representatives"])}
        self.members: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def key_of(representatives: np.ndarray) -> bytes:
        return np.round(np.asarray(representatives, np.float32), 5).tobytes()

    def group_members(self, key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """(true segments, base logits) of the group's users, as the predictor assigns them."""
        if key not in self.members:
            pid, gid = key
            users = self.truth.users.reset_index()
            groups = self.assigner.assign_many([pid] * len(users), users)
            ids = users["user_id"].to_numpy().astype(str)[groups == gid]
            segments = self.truth.user_segments.loc[ids, self.truth.category(pid)].to_numpy().astype(np.int64)
            self.members[key] = (segments, self.truth.base_logits(pid, segments, list(ids)))
        return self.members[key]

    def score_batch(self, representatives: Sequence[np.ndarray], titles: Sequence[str], images: Sequence[Any],
                    batch_size: int | None = None) -> list[float]:
        out = []
        for reps, image in zip(representatives, images):
            key = self.keys.get(self.key_of(reps))
            if key is None:
                raise KeyError("representatives that no group of this grouping has; the oracle scores this grouping's groups only")
            segments, base = self.group_members(key)
            bonus = self.truth.segment_bonuses(key[0], self.truth.describe(image))[segments]
            out.append(float(np.mean(1.0 / (1.0 + np.exp(-(base + bonus))))) if len(segments) else 0.0)
        return out


def truth_scorer_factory(world: str):
    """A `scorer_factory` for the Group-DPO job (same signature as `osmf_jobs.scoring.make_scorer`)."""

    def make(choice: str, grouping: Any, reward: Any, field: str, device: Any = None) -> tuple[TruthScorer, dict[str, Any]]:
        return TruthScorer(world, grouping), {"requested": choice, "used": TruthScorer.name, "heldout_pairwise_accuracy": {}}

    return make
