"""The synthetic ad world: users, a catalog, ad creatives, impressions, and the truth behind them.

Generative story (all draws from one seeded generator):

- Users have categorical attributes (`ATTRIBUTES`), plus a `postcode` column no spec should allow.
- Each product category has 3-4 *segments*, a function of two attributes that differ by category
  (`CATEGORIES`): each attribute's levels are cut into two contiguous halves and the 2 x 2 cells
  are the segments (two cells merged for 3-segment categories). So a user's segment depends on
  the product, which is why grouping must be product-aware.
- Each segment has a preference in the world's *style space* (`spaces.py`): in the default
  `vocabulary` space one palette, pattern, lighting and mood (distinct within a category where the
  vocabulary allows); in the `painted` space a target point in (warmth, brightness, colourfulness,
  texture). The true click logit of user u seeing creative c of product p is

      logit = intercept + product_bias[p] + segment_bias[cat, seg] + bonus(describe(pixels_c), pref[cat, seg])
              + user_noise[u]

  The first four terms are the *explainable* logit: what attributes, product and image determine.
  `user_noise ~ N(0, noise)` is per user and invisible to any model of (attributes, product, image).
  The style bonus reads the creative's pixels, so any image (a generated one too) is judged alike.
- Creatives are `style.compose(cutout, space.paint(look, 64, seed))` with a random look each;
  impressions are (user, product) pairs shown a few random creatives.

Output (DESIGN §5 tables, plus truth/ that the pipeline never reads):
    users.parquet, products.parquet, images.parquet, impressions.parquet, products/*.png, images/*.png
    truth/world.json                 parameters (segments, preferences, biases, intercept, noise)
    truth/segments.parquet           user_id, category, segment
    truth/images.parquet             image_id, product_id, the look it was painted from, its description
    truth/impressions.parquet        the logged impressions (same order) + logit, logit_explainable, p_click
    truth/heldout_impressions.parquet  fresh impressions never logged, same columns + clicked
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from osmf_core.layout import Dataset, World
from osmf_jobs import style as S

from .spaces import space_named

ATTRIBUTES: dict[str, tuple[Any, ...]] = {
    "age": ("18-24", "25-34", "35-44", "45-54", "55+"),
    "gender": ("female", "male"),
    "income": ("low", "mid", "high", "top"),
    "device": ("ios", "android", "desktop"),
    "household": (1, 2, 3, 4),  # an integer category
}

# category -> (segment attributes, number of segments, nouns for titles, cut-out shape)
CATEGORIES: dict[str, dict[str, Any]] = {
    "apparel": {"attributes": ("age", "gender"), "segments": 4, "nouns": ("hoodie", "t-shirt", "jacket", "dress", "scarf", "cap"), "shape": "shirt"},
    "electronics": {"attributes": ("income", "device"), "segments": 3, "nouns": ("headphones", "speaker", "tablet", "camera", "charger", "watch"), "shape": "box"},
    "home": {"attributes": ("household", "income"), "segments": 3, "nouns": ("vase", "lamp", "mug", "cushion", "kettle", "clock"), "shape": "vase"},
    "beauty": {"attributes": ("age", "device"), "segments": 4, "nouns": ("serum", "lipstick", "perfume", "lotion", "shampoo", "balm"), "shape": "bottle"},
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "crimson": (190, 30, 50), "navy": (30, 40, 110), "olive": (110, 120, 40), "teal": (20, 130, 130),
    "ivory": (235, 230, 210), "charcoal": (60, 60, 66), "coral": (240, 120, 100), "violet": (130, 70, 180),
    "mustard": (220, 170, 40), "sky": (120, 180, 235),
}
ADJECTIVES = ("classic", "cozy", "sleek", "vintage", "premium", "everyday", "compact", "bold")
IMAGE_SIZE = 64
CUTOUT_SIZE = 48


@dataclasses.dataclass
class SynthConfig:
    users: int = 6000
    products: int = 48
    images_per_product: int = 8
    products_per_user: float = 16.0  # mean number of products a user is shown
    impressions_per_pair: float = 20.0  # mean impressions of one product to one user (ad rotation)
    heldout_fraction: float = 0.1  # held-out impressions, as a share of the logged ones
    ctr: float = 0.04  # target mean click rate
    noise: float = 0.6  # sd of the per-user logit noise
    seed: int = 0
    style_space: str = "vocabulary"  # how creatives are painted and read by the truth (spaces.py)

    @staticmethod
    def tiny(**overrides: Any) -> "SynthConfig":
        base = dict(users=400, products=8, images_per_product=6, products_per_user=6.0, impressions_per_pair=12.0)
        base.update(overrides)
        return SynthConfig(**base)


def _split_levels(levels: int, rng: np.random.Generator) -> np.ndarray:
    """Level index -> 0/1: a contiguous cut of the ordered levels into two non-empty halves."""
    cut = int(rng.integers(levels // 2, (levels + 1) // 2 + 1))
    cut = min(max(cut, 1), levels - 1)
    return (np.arange(levels) >= cut).astype(np.int64)


def _segment_tables(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    tables = {}
    for cat, info in CATEGORIES.items():
        a1, a2 = info["attributes"]
        h1 = _split_levels(len(ATTRIBUTES[a1]), rng)
        h2 = _split_levels(len(ATTRIBUTES[a2]), rng)
        cell = h1[:, None] * 2 + h2[None, :]  # 0..3
        if info["segments"] == 3:
            merged = int(rng.integers(0, 4))  # this cell joins the next one
            cell = np.where(cell == merged, (merged + 1) % 4, cell)
            cell = np.unique(cell, return_inverse=True)[1].reshape(cell.shape)
        tables[cat] = {"attributes": [a1, a2], "table": cell.astype(int).tolist()}
    return tables


def _cutout(shape: str, colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A small RGBA product cut-out: a category shape in the product colour with a shaded band."""
    from PIL import Image, ImageDraw

    n = CUTOUT_SIZE
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    fill = tuple(int(c) for c in colour) + (255,)
    dark = tuple(int(c * 0.6) for c in colour) + (255,)
    j = int(rng.integers(0, 4))
    if shape == "shirt":
        d.polygon([(8, 10), (18, 4 + j), (30, 4 + j), (40, 10), (36, 18), (32, 16), (32, 44), (16, 44), (16, 16), (12, 18)], fill=fill)
        d.line([(16, 30), (32, 30)], fill=dark, width=3)
    elif shape == "box":
        d.rounded_rectangle((8 + j, 10, 40 - j, 40), radius=6, fill=fill)
        d.ellipse((18, 18, 30, 30), fill=dark)
    elif shape == "vase":
        d.ellipse((10, 16 + j, 38, 44), fill=fill)
        d.rectangle((18, 4, 30, 22), fill=fill)
        d.line([(14, 32), (34, 32)], fill=dark, width=2)
    else:  # bottle
        d.rectangle((14, 16, 34, 44), fill=fill)
        d.rectangle((20, 6 + j, 28, 16), fill=dark)
        d.rectangle((16, 26, 32, 34), fill=(240, 240, 240, 255))
    return np.asarray(img)


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=False, compress_level=1)


def generate(out: Path, cfg: SynthConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the world under `out` (a local directory); returns a summary."""
    import pandas as pd

    say = progress or (lambda _msg: None)
    out = Path(out)
    (out / World.TRUTH).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    space = space_named(cfg.style_space)

    # Users.
    n_users = cfg.users
    user_ids = np.array([f"u{i:06d}" for i in range(n_users)])
    levels = {a: rng.integers(0, len(v), n_users) for a, v in ATTRIBUTES.items()}
    users = pd.DataFrame({"user_id": user_ids})
    for a, values in ATTRIBUTES.items():
        col = np.asarray(values, dtype=object)[levels[a]]
        users[a] = col.astype(np.int64) if isinstance(values[0], int) else col.astype(str)
    users["postcode"] = [f"P{int(x):05d}" for x in rng.integers(0, 100000, n_users)]
    user_noise = rng.normal(0.0, cfg.noise, n_users)

    # Segments and preferences per category.
    cats = list(CATEGORIES)
    seg_tables = _segment_tables(rng)
    seg_of_user = np.zeros((n_users, len(cats)), dtype=np.int64)
    for ci, cat in enumerate(cats):
        a1, a2 = seg_tables[cat]["attributes"]
        table = np.asarray(seg_tables[cat]["table"])
        seg_of_user[:, ci] = table[levels[a1], levels[a2]]
    prefs = {cat: space.preferences(rng, CATEGORIES[cat]["segments"]) for cat in cats}
    seg_bias = {cat: rng.normal(0.0, 0.3, CATEGORIES[cat]["segments"]).round(4).tolist() for cat in cats}
    beta = dict(space.BETA)
    max_seg = max(info["segments"] for info in CATEGORIES.values())

    # Products and creatives.
    n_prod = cfg.products
    product_ids = [f"p{i:04d}" for i in range(n_prod)]
    prod_cat = np.array([i % len(cats) for i in range(n_prod)])
    prod_bias = rng.normal(0.0, 0.3, n_prod)
    colour_names = list(COLOURS)
    products, images, image_truth = [], [], []
    # bonus[p, j, s]: the style bonus of creative j of product p for segment s of the product's category.
    bonus = np.zeros((n_prod, cfg.images_per_product, max_seg))
    for p, pid in enumerate(product_ids):
        cat = cats[prod_cat[p]]
        colour = colour_names[int(rng.integers(len(colour_names)))]
        noun = CATEGORIES[cat]["nouns"][int(rng.integers(len(CATEGORIES[cat]["nouns"])))]
        adjective = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
        title = f"{adjective} {colour} {noun}"
        cutout = _cutout(CATEGORIES[cat]["shape"], COLOURS[colour], rng)
        _save_png(out / World.product_image(pid), cutout)
        products.append({"product_id": pid, "title": title, "image_uri": World.product_image(pid), "category": cat})
        for j, look in enumerate(space.sample_looks(rng, cfg.images_per_product)):
            iid = f"{pid}-c{j}"
            pixels, _ = S.compose(cutout, space.paint(look, IMAGE_SIZE, seed=cfg.seed * 100003 + p * 101 + j))
            _save_png(out / World.creative_image(iid), pixels)
            images.append({"image_id": iid, "product_id": pid, "image_uri": World.creative_image(iid)})
            description = space.describe(pixels)
            image_truth.append({"image_id": iid, "product_id": pid, **look, **description})
            for seg, pref in enumerate(prefs[cat]):
                bonus[p, j, seg] = space.bonus(description, pref, beta)
    say(f"catalog: {n_prod} products, {len(images)} creatives")

    def draw_impressions(pairs_per_user: float, rng_: np.random.Generator):
        counts = np.minimum(rng_.poisson(pairs_per_user, n_users), n_prod)
        u_idx = np.repeat(np.arange(n_users), counts)
        # Distinct products per user: a random permutation prefix per user.
        keys = rng_.random((n_users, n_prod))
        order = np.argsort(keys, axis=1)
        pos = np.arange(len(u_idx)) - np.repeat(np.cumsum(counts) - counts, counts)
        p_idx = order[u_idx, pos]
        reps = 1 + rng_.poisson(max(cfg.impressions_per_pair - 1.0, 0.0), len(u_idx))
        u_imp = np.repeat(u_idx, reps)
        p_imp = np.repeat(p_idx, reps)
        j_imp = rng_.integers(0, cfg.images_per_product, len(u_imp))
        return u_imp, p_imp, j_imp

    seg_bias_arr = np.zeros((len(cats), max_seg))
    for ci, cat in enumerate(cats):
        seg_bias_arr[ci, : len(seg_bias[cat])] = seg_bias[cat]

    def explainable(u, p, j, intercept):
        c = prod_cat[p]
        seg = seg_of_user[u, c]
        return intercept + prod_bias[p] + seg_bias_arr[c, seg] + bonus[p, j, seg]

    u_imp, p_imp, j_imp = draw_impressions(cfg.products_per_user, rng)
    # Intercept: match the target CTR on the logged impressions (averaging over user noise).
    base = explainable(u_imp, p_imp, j_imp, 0.0) + user_noise[u_imp]
    lo, hi = -12.0, 4.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(base + mid)))).mean() > cfg.ctr:
            hi = mid
        else:
            lo = mid
    intercept = round((lo + hi) / 2, 4)

    def table(u, p, j, rng_):
        expl = explainable(u, p, j, intercept)
        logit = expl + user_noise[u]
        prob = 1 / (1 + np.exp(-logit))
        clicked = (rng_.random(len(u)) < prob).astype(np.int8)
        image_ids = np.array([f"{product_ids[pp]}-c{jj}" for pp, jj in zip(p, j)]) if len(u) else np.array([], dtype=str)
        return expl, logit, prob, clicked, image_ids

    expl, logit, prob, clicked, image_ids = table(u_imp, p_imp, j_imp, rng)
    pid_arr = np.asarray(product_ids)
    impressions = pd.DataFrame({
        "user_id": user_ids[u_imp], "product_id": pid_arr[p_imp], "image_id": image_ids,
        "clicked": clicked, "ts": np.sort(rng.integers(1_700_000_000, 1_700_000_000 + 30 * 86400, len(u_imp))),
    })
    truth_imp = impressions[["user_id", "product_id", "image_id", "clicked"]].copy()
    truth_imp["logit"], truth_imp["logit_explainable"], truth_imp["p_click"] = logit, expl, prob
    say(f"impressions: {len(impressions)} logged, CTR {clicked.mean():.4f}")

    hu, hp, hj = draw_impressions(cfg.products_per_user * cfg.heldout_fraction, np.random.default_rng([cfg.seed, 1]))
    hexpl, hlogit, hprob, hclicked, himage_ids = table(hu, hp, hj, np.random.default_rng([cfg.seed, 2]))
    heldout = pd.DataFrame({
        "user_id": user_ids[hu], "product_id": pid_arr[hp], "image_id": himage_ids, "clicked": hclicked,
        "logit": hlogit, "logit_explainable": hexpl, "p_click": hprob,
    })

    users.to_parquet(out / Dataset.table_file(Dataset.USERS), index=False)
    pd.DataFrame(products).to_parquet(out / Dataset.table_file(Dataset.PRODUCTS), index=False)
    pd.DataFrame(images).to_parquet(out / Dataset.table_file(Dataset.IMAGES), index=False)
    impressions.to_parquet(out / Dataset.table_file(Dataset.IMPRESSIONS), index=False)

    segments = pd.DataFrame({
        "user_id": np.repeat(user_ids, len(cats)),
        "category": np.tile(np.asarray(cats), n_users),
        "segment": seg_of_user.reshape(-1),
    })
    segments.to_parquet(out / World.SEGMENTS, index=False)
    pd.DataFrame(image_truth).to_parquet(out / World.IMAGE_STYLES, index=False)
    truth_imp.to_parquet(out / World.IMPRESSIONS, index=False)
    heldout.to_parquet(out / World.HELDOUT_IMPRESSIONS, index=False)
    pd.DataFrame({"user_id": user_ids, "noise": user_noise}).to_parquet(out / World.USER_NOISE, index=False)

    world = {
        "config": dataclasses.asdict(cfg),
        "attributes": {a: list(v) for a, v in ATTRIBUTES.items()},
        "categories": {
            cat: {
                "attributes": seg_tables[cat]["attributes"],
                "segment_table": seg_tables[cat]["table"],
                "preferences": prefs[cat],
                "segment_bias": seg_bias[cat],
            }
            for cat in cats
        },
        "style_space": space.name,
        "beta": beta,
        "intercept": intercept,
        "noise": cfg.noise,
        "products": {pid: {"category": cats[prod_cat[p]], "bias": float(prod_bias[p])} for p, pid in enumerate(product_ids)},
        "image_size": IMAGE_SIZE,
        "summary": {
            "impressions": int(len(impressions)), "heldout_impressions": int(len(heldout)),
            "ctr": float(clicked.mean()), "heldout_ctr": float(hclicked.mean()) if len(hclicked) else 0.0,
        },
    }
    (out / World.WORLD).write_text(json.dumps(world, indent=2))
    return world["summary"]
