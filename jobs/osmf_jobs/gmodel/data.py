"""Training data for the G-MLLM and the GRM, read from a GAIP run and its grouping (DESIGN §5).

Pretrain examples, one image each, all conditioned on the (product, group) soft tokens:
- profile: product image → the group profile ("age_band 25-34 , region north").
- prefer: product image + the captions of a GAIP pair as options a/b → "a" or "b".
- product: a logged ad image → "<title> ; background : <caption>".
- prompt: product image → the caption of the group's best image (highest CTR): the generation target.

Group profiles: a `profile` column of groups.parquet when the grouping wrote one; otherwise derived
from assignments.parquet + the users table: for each attribute the grouping was allowed to read,
the value most over-represented in the group relative to all the product's users (highest lift).
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from osmf_core.api import Kind
from osmf_core.layout import GAIP, Dataset, Grouping
from osmf_jobs.runtime import InvalidInput
from osmf_jobs.seeds import stable_unit
from osmf_jobs.tables import read_parquet, read_users, require_columns

from .text import TASKS, instruction, product_answer, template_words, words

SAMPLE_COLUMNS = ("product_id", "title", "image_id", "image_uri", "group_id", "ctr", "caption", "split")
PAIR_COLUMNS = ("product_id", "group_id", "chosen_image_id", "rejected_image_id", "chosen_ctr", "rejected_ctr", "split")
GROUP_COLUMNS = ("product_id", "group_id", "representatives")
TRAIN = GAIP.TRAIN

# The pretrain task mixture per (product, group). A GAIP run yields ~20 pairs per group but only one
# prompt target (its best image's caption), so with every pair as a prefer example the generation
# target was ~4% of the steps (demo world: 2753 prefer vs 120 prompt examples) and the policy barely
# conditioned on the group (style_match 0.254 vs chance 0.241). Measured on the demo world at equal
# steps: prefer capped at 4 per group and 10 epochs → 0.282; capped at 2 with the prompt example
# repeated 3× → 0.307 (other groups' targets 0.196). The prefer task stays (held-out accuracy ~0.5
# either way: a 2-layer word-level LM does not learn to bind "a"/"b" to caption words).
PREFER_PAIRS_PER_GROUP: int | None = 2  # prefer examples per training (product, group), largest CTR ratio first; None = all
PROMPT_REPEATS = 3  # copies of each training prompt example per epoch

GroupKey = tuple[str, int]


@dataclass
class Example:
    task: str
    product_id: str
    group_id: int
    image_uri: str
    instruction: str
    answer: str


@dataclass
class PairExample:
    product_id: str
    group_id: int
    chosen_uri: str
    rejected_uri: str
    chosen_ctr: float
    rejected_ctr: float


@dataclass
class GaipData:
    """Everything the training jobs read, indexed for lookups."""

    samples: Any  # DataFrame
    pairs: Any  # DataFrame (may be empty)
    representatives: dict[GroupKey, np.ndarray]
    titles: dict[str, str]
    product_images: dict[str, str]
    split: dict[str, str]
    profiles: dict[GroupKey, str]
    profile_source: str
    data_store: Any
    _images: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def group_dim(self) -> int:
        return int(next(iter(self.representatives.values())).shape[1])

    @property
    def n_vectors(self) -> int:
        return int(next(iter(self.representatives.values())).shape[0])

    def is_train(self, product_id: str) -> bool:
        return self.split.get(product_id, TRAIN) == TRAIN

    def group_keys(self, train: bool) -> list[GroupKey]:
        keys = {(p, int(g)) for p, g in zip(self.samples["product_id"], self.samples["group_id"]) if self.is_train(p) == train}
        return sorted(k for k in keys if k in self.representatives)

    def image(self, uri: str):
        """A PIL image by URI (relative to the data root, or absolute s3:// / file://)."""
        return _load_image(self.data_store, uri)

    def best_captions(self) -> dict[GroupKey, str]:
        """Caption of each group's best image: highest CTR, then most impressions, then image id."""
        frame = self.samples.assign(_imp=self.samples["impressions"] if "impressions" in self.samples else 0)
        frame = frame.sort_values(["product_id", "group_id", "ctr", "_imp", "image_id"], ascending=[True, True, False, False, True])
        best = frame.drop_duplicates(["product_id", "group_id"])
        return {(p, int(g)): c for p, g, c in zip(best["product_id"], best["group_id"], best["caption"])}

    def vocabulary(self, style_words: set[str]) -> set[str]:
        """Every word the tiny tokenizer must know for this dataset."""
        found = set(template_words()) | style_words
        for text in list(self.titles.values()) + list(self.samples["caption"].unique()) + list(self.profiles.values()):
            found |= set(words(text))
        return found


@lru_cache(maxsize=8192)
def _read_image_bytes(store_uri: str, uri: str) -> bytes:
    from osmf_core.store import open_store

    if "://" in uri:
        parent, _, name = uri.rpartition("/")
        return open_store(parent).read_bytes(name)
    return open_store(store_uri).read_bytes(uri)


def _load_image(data_store: Any, uri: str):
    from PIL import Image

    try:
        data = _read_image_bytes(data_store.uri, uri)
    except (FileNotFoundError, OSError) as error:
        raise InvalidInput(f"image {uri}: cannot be read from the data root {data_store.uri} ({error})") from None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def load_gaip(dataset_store: Any, grouping_store: Any, data_store: Any, need_pairs: bool) -> GaipData:
    samples = read_parquet(dataset_store, GAIP.SAMPLES, what="GAIP dataset")
    require_columns(samples.columns, SAMPLE_COLUMNS, f"GAIP {GAIP.SAMPLES}")
    if samples.empty:
        raise InvalidInput(f"GAIP dataset {dataset_store.uri}: {GAIP.SAMPLES} is empty; lower the GAIPDataset's minImpressions")
    pairs = read_parquet(dataset_store, GAIP.PAIRS, what="GAIP dataset") if dataset_store.exists(GAIP.PAIRS) else None
    if pairs is not None:
        require_columns(pairs.columns, PAIR_COLUMNS, f"GAIP {GAIP.PAIRS}")
    if need_pairs and (pairs is None or not (pairs["split"] == TRAIN).any()):
        raise InvalidInput(
            f"GAIP dataset {dataset_store.uri} has no training pairs; the reward task needs them "
            "(lower the GAIPDataset's minImpressions or widen its pairs band)"
        )
    groups = read_parquet(grouping_store, Grouping.GROUPS, what=Kind.AUDIENCE_GROUPING)
    require_columns(groups.columns, GROUP_COLUMNS, f"grouping {Grouping.GROUPS}")
    representatives = {
        (str(p), int(g)): np.stack([np.asarray(v, dtype=np.float32) for v in reps])
        for p, g, reps in zip(groups["product_id"], groups["group_id"], groups["representatives"])
    }
    shapes = {v.shape for v in representatives.values()}
    if len(shapes) != 1:
        raise InvalidInput(f"grouping {Grouping.GROUPS}: representatives have mixed shapes {sorted(shapes)}; every group needs the same number of vectors")
    samples = samples.assign(product_id=samples["product_id"].astype(str), group_id=samples["group_id"].astype(int))
    missing = {(p, g) for p, g in zip(samples["product_id"], samples["group_id"])} - set(representatives)
    if missing:
        example = sorted(missing)[0]
        raise InvalidInput(
            f"GAIP samples name {len(missing)} (product, group) pairs the grouping does not have, e.g. {example}; "
            "the GAIPDataset must come from this AudienceGrouping"
        )
    products = _products(data_store, samples)
    split = dict(zip(samples["product_id"], samples["split"].astype(str)))
    profiles, source = _profiles(groups, grouping_store, data_store)
    if pairs is not None:
        pairs = pairs.assign(product_id=pairs["product_id"].astype(str), group_id=pairs["group_id"].astype(int))
    return GaipData(
        samples=samples, pairs=pairs, representatives=representatives,
        titles=dict(zip(samples["product_id"], samples["title"].astype(str))), product_images=products,
        split=split, profiles=profiles, profile_source=source, data_store=data_store,
    )


def _products(data_store: Any, samples: Any) -> dict[str, str]:
    """Product cut-out URIs from the products table (falls back to nothing: callers check)."""
    products = read_parquet(data_store, Dataset.table_file(Dataset.PRODUCTS), ["product_id", "image_uri"], "data root")
    uris = dict(zip(products["product_id"].astype(str), products["image_uri"].astype(str)))
    missing = sorted(set(samples["product_id"]) - set(uris))
    if missing:
        raise InvalidInput(f"products table of {data_store.uri} lacks {len(missing)} GAIP products, e.g. {missing[0]}; the GAIP run must come from this data root")
    return uris


def _profiles(groups: Any, grouping_store: Any, data_store: Any) -> tuple[dict[GroupKey, str], str]:
    if "profile" in groups.columns:
        return {(str(p), int(g)): str(t) for p, g, t in zip(groups["product_id"], groups["group_id"], groups["profile"])}, f"{Grouping.GROUPS} profile"
    from osmf_jobs.paag.export import recorded_attributes

    attributes = recorded_attributes(grouping_store)
    if not attributes or not grouping_store.exists(Grouping.ASSIGNMENTS):
        return {}, "none (no profile column, or no assignments and allowed attributes in the grouping)"
    assignments = read_parquet(grouping_store, Grouping.ASSIGNMENTS, ["product_id", "user_id", "group_id"], Kind.AUDIENCE_GROUPING)
    try:
        users = read_users(data_store, attributes)  # projected: only user_id + the grouping's allow-list
    except InvalidInput as error:
        return {}, f"none (the users table cannot be read for the grouping's attributes: {error})"
    return derive_profiles(assignments, users, attributes), f"derived from assignments + users ({', '.join(attributes)})"


def derive_profiles(assignments: Any, users: Any, attributes: list[str]) -> dict[GroupKey, str]:
    """For each (product, group) and attribute, the value with the highest lift over the product's users."""
    frame = assignments[["product_id", "user_id", "group_id"]].merge(users[["user_id", *attributes]], on="user_id")
    frame = frame.assign(product_id=frame["product_id"].astype(str), group_id=frame["group_id"].astype(int))
    profiles: dict[GroupKey, list[str]] = defaultdict(list)
    for attribute in attributes:
        share_product = frame.groupby(["product_id", attribute]).size() / frame.groupby("product_id").size()
        share_group = frame.groupby(["product_id", "group_id", attribute]).size() / frame.groupby(["product_id", "group_id"]).size()
        lift = (share_group / share_product.reindex(share_group.index.droplevel("group_id")).to_numpy()).reset_index(name="lift")
        lift = lift.sort_values(["product_id", "group_id", "lift", attribute], ascending=[True, True, False, True])
        for p, g, value in lift.drop_duplicates(["product_id", "group_id"])[["product_id", "group_id", attribute]].itertuples(index=False):
            profiles[(p, int(g))].append(f"{attribute.replace('_', ' ')} {value}")
    return {k: " , ".join(v) for k, v in profiles.items()}


def pretrain_examples(data: GaipData, train: bool, seed: int) -> list[Example]:
    """The four pretrain tasks for the train (or held-out) products, in a fixed order."""
    examples: list[Example] = []
    best = data.best_captions()
    captions = dict(zip(data.samples["image_id"].astype(str), data.samples["caption"].astype(str)))
    for key in data.group_keys(train):
        product, group = key
        title, cutout = data.titles[product], data.product_images[product]
        if key in data.profiles:
            examples.append(Example("profile", product, group, cutout, instruction("profile", title=title), data.profiles[key]))
        prompt = Example("prompt", product, group, cutout, instruction("prompt", title=title), best[key])
        examples += [prompt] * (PROMPT_REPEATS if train else 1)
    if data.pairs is not None:
        pairs = data.pairs
        if PREFER_PAIRS_PER_GROUP is not None and train:
            pairs = (pairs.assign(_ratio=pairs["chosen_ctr"] / pairs["rejected_ctr"].clip(lower=1e-12))
                     .sort_values(["product_id", "group_id", "_ratio", "chosen_image_id", "rejected_image_id"], ascending=[True, True, False, True, True])
                     .groupby(["product_id", "group_id"]).head(PREFER_PAIRS_PER_GROUP))
        for row in pairs.itertuples(index=False):
            if data.is_train(row.product_id) != train or (row.product_id, row.group_id) not in data.representatives:
                continue
            chosen, rejected = captions.get(str(row.chosen_image_id)), captions.get(str(row.rejected_image_id))
            if chosen is None or rejected is None or chosen == rejected:
                continue
            chosen_first = stable_unit(seed, row.product_id, row.group_id, row.chosen_image_id, row.rejected_image_id) < 0.5
            a, b = (chosen, rejected) if chosen_first else (rejected, chosen)
            examples.append(Example(
                "prefer", row.product_id, int(row.group_id), data.product_images[row.product_id],
                instruction("prefer", title=data.titles[row.product_id], a=a, b=b), "a" if chosen_first else "b",
            ))
    images = data.samples.drop_duplicates("image_id").sort_values("image_id")
    for row in images.itertuples(index=False):
        if data.is_train(row.product_id) != train:
            continue
        # The product task is about the image, not the group: any of the product's groups conditions it.
        group = min(g for p, g in data.representatives if p == row.product_id)
        examples.append(Example("product", row.product_id, group, row.image_uri, instruction("product"), product_answer(row.title, row.caption)))
    assert {e.task for e in examples} <= set(TASKS)
    return examples


def reward_examples(data: GaipData, train: bool) -> list[PairExample]:
    uris = dict(zip(data.samples["image_id"].astype(str), data.samples["image_uri"].astype(str)))
    out = []
    for row in data.pairs.itertuples(index=False):
        if data.is_train(row.product_id) != train:
            continue
        chosen, rejected = uris.get(str(row.chosen_image_id)), uris.get(str(row.rejected_image_id))
        if chosen is None or rejected is None:
            raise InvalidInput(f"GAIP {GAIP.PAIRS} names image {row.chosen_image_id if chosen is None else row.rejected_image_id} that {GAIP.SAMPLES} lacks; re-run the GAIPDataset")
        out.append(PairExample(row.product_id, int(row.group_id), chosen, rejected, float(row.chosen_ctr), float(row.rejected_ctr)))
    return out


def eval_subset(items: list[Any], limit: int, key: Any, seed: int = 0) -> list[Any]:
    """At most `limit` items, chosen by a seeded hash of `key(item)` (stable under reordering), in
    their original order: held-out evaluation stays bounded on a catalogue of 100k products."""
    if len(items) <= limit:
        return items
    ranked = sorted(range(len(items)), key=lambda i: stable_unit(seed, "eval", key(items[i])))[:limit]
    return [items[i] for i in sorted(ranked)]
