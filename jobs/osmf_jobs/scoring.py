"""How much a group would click an image: the campaign's selector and Group-DPO's reward.

Two measurements of the same thing behind one interface, `score_batch(representatives, titles,
images) -> list[float]` (higher = the group clicks it more; comparable across one group's images):

- `PreferenceModelScorer` — the AudienceGrouping's preference model (PAAG). An image becomes the
  model's creative vector (its image encoder's statistics of the pixels, through the creative
  tower), and the score is the group's expected click probability: the mean over the group's
  representative vectors (points of the preference space) of σ(click logit(vector, image)). It is
  calibrated on millions of impressions and reads any image, logged or generated, the same way.
- `RewardModelScorer` — the GRM (a GMLLMTraining task reward): its scalar score.

`make_scorer(choice, ...)` builds the one a spec asks for; `auto` takes the better measured: the
scorer with the higher held-out pairwise accuracy on the GAIPDataset's held-out pairs, as the reward
run recorded both (`pairwise_accuracy`, `preference_model_pairwise_accuracy`); without a reward run,
the preference model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from osmf_core.layout import METRICS
from osmf_jobs.runtime import InvalidInput

AUTO, PREFERENCE_MODEL, REWARD_MODEL = "auto", "preferenceModel", "rewardModel"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class PreferenceModelScorer:
    """The grouping's preference model scoring images for a group's representative vectors."""

    name = PREFERENCE_MODEL

    def __init__(self, grouping: Any, field: str):
        from osmf_jobs.paag import Assigner
        from osmf_jobs.paag.encoders import ImageEncoder

        try:
            self.assigner = Assigner.load(grouping.uri, with_groups=False)
        except FileNotFoundError as error:
            raise InvalidInput(f"{field}: the grouping {grouping.uri} has no exported preference model ({error}); re-run the AudienceGrouping") from None
        self.encoder = ImageEncoder(self.assigner.config["image_encoder"], field)
        self.field = field
        self.dim = int(self.assigner.config["embedding_dim"])

    def score_batch(self, representatives: Sequence[np.ndarray], titles: Sequence[str], images: Sequence[Any],
                    batch_size: int = 256) -> list[float]:
        if not images:
            return []
        reps = np.stack([np.asarray(r, dtype=np.float32) for r in representatives])  # (N, n, d)
        if reps.shape[-1] != self.dim:
            raise InvalidInput(f"{self.field}: group vectors have {reps.shape[-1]} dimensions but the preference model reads {self.dim}; "
                               "use the AudienceGrouping these groups come from")
        out: list[float] = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start:start + batch_size])
            try:
                stats, _ = self.encoder.encode(chunk)
            except (ValueError, OSError) as error:
                raise InvalidInput(f"{self.field}: the preference model cannot read an image ({' '.join(str(error).split())[:160]}); "
                                   "images must be RGB(A) pictures of at least 16x16 pixels") from None
            block = reps[start:start + len(chunk)]  # (B, n, d)
            b, n, d = block.shape
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # non-finite scores are reported below
                vectors = self.assigner.creative_vectors(stats)  # (B, d)
                logits = self.assigner.model.click_logit(block.reshape(b * n, d), creative_v=np.repeat(vectors, n, axis=0))
                out += sigmoid(logits.reshape(b, n)).mean(axis=1).astype(float).tolist()
        check_finite(out, self.field)
        return out


class RewardModelScorer:
    """The GRM's scalar score."""

    name = REWARD_MODEL

    def __init__(self, grm: Any, field: str, batch_size: int = 16):
        self.grm, self.field, self.batch_size = grm, field, batch_size

    def score_batch(self, representatives: Sequence[np.ndarray], titles: Sequence[str], images: Sequence[Any],
                    batch_size: int | None = None) -> list[float]:
        scores = self.grm.score_batch(list(representatives), list(titles), list(images), batch_size=batch_size or self.batch_size)
        check_finite(scores, self.field)
        return scores


def check_finite(scores: Sequence[float], field: str) -> None:
    bad = [i for i, s in enumerate(scores) if not np.isfinite(s)]
    if bad:
        raise InvalidInput(f"{field}: the scorer returned {scores[bad[0]]} for {len(bad)} image(s); "
                           "it cannot rank them — choose the other scorer or retrain it")


def measured_accuracies(reward: Any | None) -> dict[str, float]:
    """{scorer: held-out pairwise accuracy} as the reward run measured them ({} without a run)."""
    if reward is None:
        return {}
    try:
        metrics = reward.read_json(METRICS)
    except (FileNotFoundError, ValueError):
        return {}
    found = {REWARD_MODEL: metrics.get("pairwise_accuracy"), PREFERENCE_MODEL: metrics.get("preference_model_pairwise_accuracy")}
    return {k: float(v) for k, v in found.items() if isinstance(v, (int, float))}


def resolve_choice(choice: str, reward: Any | None, field: str) -> tuple[str, dict[str, float]]:
    """(the scorer to use, the accuracies it was chosen on) for spec value `choice`."""
    accuracies = measured_accuracies(reward)
    if choice == REWARD_MODEL and reward is None:
        raise InvalidInput(f"{field}: rewardModel needs a reward model reference; set rewardModelRef or choose preferenceModel")
    if choice != AUTO:
        return choice, accuracies
    if reward is None or REWARD_MODEL not in accuracies:
        return PREFERENCE_MODEL, accuracies
    better = accuracies[REWARD_MODEL] > accuracies.get(PREFERENCE_MODEL, float("-inf"))
    return (REWARD_MODEL if better else PREFERENCE_MODEL), accuracies


def make_scorer(choice: str, grouping: Any, reward: Any | None, field: str, device: Any = None) -> tuple[Any, dict[str, Any]]:
    """The scorer `choice` names (auto: the better measured) and a record of the decision."""
    name, accuracies = resolve_choice(choice, reward, field)
    if name == PREFERENCE_MODEL:
        scorer: Any = PreferenceModelScorer(grouping, field)
    else:
        from osmf_jobs.gmodel import RewardModel
        from osmf_jobs.gmodel.location import gmodel_dir

        grm_dir = gmodel_dir(reward, f"{field} (the reward model)", "point rewardModelRef at a task: reward GMLLMTraining")
        try:
            grm = RewardModel.load(grm_dir, device=device)
        except ValueError as error:
            raise InvalidInput(f"{field}: {error}") from None
        scorer = RewardModelScorer(grm, field)
    return scorer, {"requested": choice, "used": name, "heldout_pairwise_accuracy": accuracies}


def pairwise_accuracy(scorer: Any, pairs: Sequence[tuple[np.ndarray, str, Any, Any]]) -> float | None:
    """Share of (representatives, title, chosen image, rejected image) the scorer ranks right, ties ½."""
    if not pairs:
        return None
    reps = [p[0] for p in pairs] * 2
    titles = [p[1] for p in pairs] * 2
    images = [p[2] for p in pairs] + [p[3] for p in pairs]
    scores = scorer.score_batch(reps, titles, images)
    n = len(pairs)
    return float(np.mean([1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(scores[:n], scores[n:])]))
