"""The campaign job's fixed names: input roles, output layout, report limits (no heavy imports).

The job's typed configuration is the AdImageCampaign spec itself (`osmf_operator.api.kinds`); what
is here are the decisions the spec does not expose.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from osmf_operator.store import CAMPAIGN_SERVING_DIR

# Input roles of the job config (docs/contracts.md).
GROUPING, DATA, GENERATOR, POLICY, REWARD = "grouping", "data", "generator", "policy", "reward"

# Output layout (DESIGN §5). Images go straight to their final place: products partition across
# shards, so no two shards write the same file, and copying them in `merge` would only double I/O.
CAMPAIGN_JSON = "campaign.json"
# What the predictor needs, alone in a folder the operator points the InferenceService at.
SERVING_DIR = CAMPAIGN_SERVING_DIR
REPORT_HTML = "report.html"
SHARD_RECORDS = "records.json"  # shards/<i>/records.json: the products shard i finished
IMAGES = "images"
ONESIZE = "onesize"

# The report embeds its images, so it is bounded: the first products by id, thumbnails at most this big.
REPORT_MAX_PRODUCTS = 100
REPORT_THUMBNAIL = 256
# An attribute value "defines" a group when its share there is at least this many times its share
# among all the product's users, and at least REPORT_MIN_SHARE of the group has it.
REPORT_MIN_LIFT = 1.25
REPORT_MIN_SHARE = 0.2
REPORT_MAX_ATTRIBUTES = 3


def path_component(product_id: str) -> str:
    """A product id as one path segment (ids may hold '/' or spaces); campaign.json records the result."""
    return quote(product_id, safe="-_.") or "_"


def group_image_path(product_id: str, group_id: int, n: int) -> str:
    return f"{IMAGES}/{path_component(product_id)}/{int(group_id)}/{int(n)}.png"


def onesize_image_path(product_id: str) -> str:
    return f"{IMAGES}/{path_component(product_id)}/{ONESIZE}.png"


def stable_seed(*parts: object) -> int:
    """A seed in [0, 2^31) from the parts: independent of sharding, batch order and Python's hash salt."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def shard_products(products: list[str], index: int, count: int) -> list[str]:
    """Shard `index` of `count` takes every count-th product of the sorted list."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return sorted(products)[index::count]
