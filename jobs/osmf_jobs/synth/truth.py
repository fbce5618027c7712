"""The synthetic world's true click model, for evaluation code (never for the pipeline's jobs).

    from osmf_jobs.synth.truth import load_truth, click_probability, segment_of
    truth = load_truth("file:///…/world")              # or a local path; reads truth/world.json + users
    seg = segment_of(truth, {"age": "25-34", "gender": "female"}, "p0003")   # the product's category decides
    p = click_probability(truth, seg, "p0003", Style("warm", "striped", "bright", "calm"))
    p_user = click_probability(truth, "u000042", "p0003", style, with_user_noise=True)

`who` is a segment id (int, of the product's category), a user id (str) or a dict of attributes
(only the product's category's segment attributes are needed). For a segment or an attribute dict
the result is the expected click probability of a member, averaged over the per-user noise
(Gauss-Hermite quadrature); for a user id it is that user's probability without the noise unless
`with_user_noise=True`. `click_logit(...)` gives the explainable logit.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import numpy as np

from osmf_core.layout import Dataset, World
from osmf_jobs import style as S


@dataclasses.dataclass
class Truth:
    world: dict[str, Any]
    users: Any  # pandas DataFrame: user_id + attribute columns, indexed by user_id
    user_noise: dict[str, float]

    @property
    def intercept(self) -> float:
        return float(self.world["intercept"])

    def category(self, product_id: str) -> str:
        try:
            return self.world["products"][product_id]["category"]
        except KeyError:
            raise KeyError(f"product {product_id!r} is not in this synthetic world") from None

    def segments(self, product_id: str) -> int:
        return len(self.world["categories"][self.category(product_id)]["preferences"])

    def preferences(self, product_id: str, segment: int) -> S.Style:
        return S.Style(**self.world["categories"][self.category(product_id)]["preferences"][segment])


def load_truth(root: str) -> Truth:
    import pandas as pd
    from osmf_core.store import open_store

    store = open_store(root)
    world = json.loads(store.read_bytes(World.WORLD))
    users = pd.read_parquet(io.BytesIO(store.read_bytes(Dataset.table_file(Dataset.USERS))), columns=["user_id", *world["attributes"]])
    noise = pd.read_parquet(io.BytesIO(store.read_bytes(World.USER_NOISE)))
    return Truth(world, users.set_index("user_id"), dict(zip(noise["user_id"], noise["noise"].astype(float))))


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


def click_logit(truth: Truth, who: Any, product_id: str, style: S.Style) -> float:
    """The explainable logit: intercept + product bias + segment bias + matched style preferences."""
    seg = segment_of(truth, who, product_id)
    cat = truth.world["categories"][truth.category(product_id)]
    pref = cat["preferences"][seg]
    bonus = sum(float(truth.world["beta"][ax]) for ax in S.AXES if getattr(style, ax) == pref[ax])
    return truth.intercept + float(truth.world["products"][product_id]["bias"]) + float(cat["segment_bias"][seg]) + bonus


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)


def click_probability(truth: Truth, who: Any, product_id: str, style: S.Style, with_user_noise: bool = False) -> float:
    logit = click_logit(truth, who, product_id, style)
    if isinstance(who, str):
        if with_user_noise:
            logit += truth.user_noise[who]
        return float(1 / (1 + np.exp(-logit)))
    # Expected over the per-user noise N(0, noise^2).
    values = 1 / (1 + np.exp(-(logit + truth.world["noise"] * _GH_X)))
    return float(np.sum(_GH_W * values) / np.sum(_GH_W))
