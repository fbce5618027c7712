"""The campaign job's typed configuration is the AdImageCampaign spec (`osmf_core.api`); what it
writes is `osmf_core.layout.Campaign`. Here: the decisions the spec does not expose (no heavy imports).
"""

from __future__ import annotations

import hashlib

# The report embeds its images, so it is bounded: the first products by id, thumbnails at most this big.
REPORT_MAX_PRODUCTS = 100
REPORT_THUMBNAIL = 256
# An attribute value "defines" a group when its share there is at least this many times its share
# among all the product's users, and at least REPORT_MIN_SHARE of the group has it.
REPORT_MIN_LIFT = 1.25
REPORT_MIN_SHARE = 0.2
REPORT_MAX_ATTRIBUTES = 3


def stable_seed(*parts: object) -> int:
    """A seed in [0, 2^31) from the parts: independent of sharding, batch order and Python's hash salt."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

