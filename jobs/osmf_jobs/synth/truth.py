"""The synthetic world's true click model, for evaluation code (never for the pipeline's jobs).

    from osmf_jobs.synth.truth import load_truth, click_probability, segment_of
    truth = load_truth("file:///…/world")              # or a local path; reads truth/ + users
    seg = segment_of(truth, {"age": "25-34", "gender": "female"}, "p0003")   # the product's category decides
    p = click_probability(truth, seg, "p0003", Style("warm", "striped", "bright", "calm"))
    p_user = click_probability(truth, "u000042", "p0003", style, with_user_noise=True)
    bonus = truth.image_bonus("p0003", segments, pixels)  # any image, read the way the world reads it

`who` is a segment id (int, of the product's category), a user id (str) or a dict of attributes
(only the product's category's segment attributes are needed). For a segment or an attribute dict
the result is the expected click probability of a member, averaged over the per-user noise
(Gauss-Hermite quadrature); for a user id it is that user's probability without the noise unless
`with_user_noise=True`. `click_logit(...)` gives the explainable logit. What the image contributes
is the world's style space's bonus (`spaces.py`) of its description: a `Style` (vocabulary worlds),
a description dict, or pixels via `Truth.describe`.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from typing import Any

import numpy as np

from osmf_core.layout import Dataset, World
from osmf_core.store import open_store
from osmf_jobs import style as S
from osmf_jobs.tables import read_parquet

from .spaces import space_named


@dataclasses.dataclass
class Truth:
    world: dict[str, Any]
    users: Any  # pandas DataFrame: user_id + attribute columns, indexed by user_id
    user_noise: dict[str, float]
    store: Any = None  # the world's root, for the lazily read tables below

    @property
    def intercept(self) -> float:
        return float(self.world["intercept"])

    @cached_property
    def space(self) -> Any:
        return space_named(self.world.get("style_space", "vocabulary"))

    def category(self, product_id: str) -> str:
        try:
            return self.world["products"][product_id]["category"]
        except KeyError:
            raise KeyError(f"product {product_id!r} is not in this synthetic world") from None

    def segments(self, product_id: str) -> int:
        return len(self.world["categories"][self.category(product_id)]["preferences"])

    def preference(self, product_id: str, segment: int) -> dict[str, Any]:
        return self.world["categories"][self.category(product_id)]["preferences"][segment]

    def preferences(self, product_id: str, segment: int) -> S.Style:
        """A vocabulary world's preferred style of a segment."""
        return S.Style(**self.preference(product_id, segment))

    def describe(self, pixels: Any) -> dict[str, Any]:
        """What the truth reads from an image (RGB array or PIL image)."""
        arr = np.asarray(pixels.convert("RGB")) if hasattr(pixels, "convert") else np.asarray(pixels)
        return self.space.describe(arr)

    def bonus(self, product_id: str, segment: int, description: dict[str, Any]) -> float:
        return self.space.bonus(description, self.preference(product_id, segment), self.world["beta"])

    def segment_bonuses(self, product_id: str, description: dict[str, Any]) -> np.ndarray:
        """The image's bonus for every segment of the product's category."""
        return np.asarray([self.bonus(product_id, s, description) for s in range(self.segments(product_id))])

    def ideal_bonus(self) -> float:
        """The largest bonus any image can earn (the style oracle's)."""
        return self.space.ideal_bonus(self.world["beta"])

    def base_logits(self, product_id: str, segments: np.ndarray, users: list[str] | None = None) -> np.ndarray:
        """intercept + product bias + segment bias (+ each user's noise when users are given)."""
        info = self.world["categories"][self.category(product_id)]
        out = self.intercept + float(self.world["products"][product_id]["bias"]) + np.asarray(info["segment_bias"], dtype=np.float64)[segments]
        if users is not None:
            out = out + np.asarray([self.user_noise[u] for u in users], dtype=np.float64)
        return out

    @cached_property
    def user_segments(self) -> Any:
        """pandas frame indexed by user_id, one column per category: each user's true segment."""
        frame = read_parquet(self.store, World.SEGMENTS)
        return frame.pivot(index="user_id", columns="category", values="segment")

    @cached_property
    def logged(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """product id → [(image id, description)] of its logged creatives, as the world described them."""
        frame = read_parquet(self.store, World.IMAGE_STYLES)
        keys = [k for k in self.description_keys if k in frame.columns]
        out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for row in frame.to_dict("records"):
            out.setdefault(str(row["product_id"]), []).append((str(row["image_id"]), {k: row[k] for k in keys}))
        return out

    def logged_description(self, product_id: str, image_id: str) -> dict[str, Any]:
        for iid, description in self.logged.get(product_id, []):
            if iid == image_id:
                return description
        raise KeyError(f"image {image_id!r} is not a logged creative of product {product_id!r} in this world")

    @property
    def description_keys(self) -> tuple[str, ...]:
        return tuple(S.AXES) if self.space.name == "vocabulary" else tuple(self.world["beta"])


def load_truth(root: str) -> Truth:
    store = open_store(root)
    world = json.loads(store.read_bytes(World.WORLD))
    users = read_parquet(store, Dataset.table_file(Dataset.USERS), columns=["user_id", *world["attributes"]])
    noise = read_parquet(store, World.USER_NOISE)
    return Truth(world, users.set_index("user_id"), dict(zip(noise["user_id"], noise["noise"].astype(float))), store)


def segment_of(truth: Truth, who: Any, product_id: str) -> int:
    """The true segment of a user (id or attribute dict) for the product's category."""
    if isinstance(who, (int, np.integer)):
        return int(who)
    cat = truth.world["categories"][truth.category(product_id)]
    attrs = truth.users.loc[who].to_dict() if isinstance(who, str) else dict(who)
    index = []
    for name in cat["attributes"]:
        levels = truth.world["attributes"][name]
        if name not in attrs:
            raise KeyError(f"attribute {name!r} is needed for the segment of {product_id!r}")
        index.append(levels.index(attrs[name]))
    return int(np.asarray(cat["segment_table"])[tuple(index)])


def _description(image: Any) -> dict[str, Any]:
    return dataclasses.asdict(image) if isinstance(image, S.Style) else dict(image)


def click_logit(truth: Truth, who: Any, product_id: str, image: Any) -> float:
    """The explainable logit: intercept + product bias + segment bias + the image's style bonus.
    `image` is a Style or a description dict of the world's style space."""
    seg = segment_of(truth, who, product_id)
    return float(truth.base_logits(product_id, np.asarray([seg]))[0]) + truth.bonus(product_id, seg, _description(image))


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)


def expected_probability(logits: np.ndarray, noise: float) -> np.ndarray:
    """E[σ(logit + ε)], ε ~ N(0, noise²): a segment's click probability, averaged over its members' noise."""
    values = 1 / (1 + np.exp(-(np.asarray(logits, dtype=np.float64)[..., None] + noise * _GH_X)))
    return (values * _GH_W).sum(-1) / _GH_W.sum()


def click_probability(truth: Truth, who: Any, product_id: str, image: Any, with_user_noise: bool = False) -> float:
    logit = click_logit(truth, who, product_id, image)
    if isinstance(who, str):
        if with_user_noise:
            logit += truth.user_noise[who]
        return float(1 / (1 + np.exp(-logit)))
    return float(expected_probability(np.asarray(logit), truth.world["noise"]))
