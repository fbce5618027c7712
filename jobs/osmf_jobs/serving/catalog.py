"""Which image each (product, group) gets: the campaign manifest, indexed for serving (no kserve, no torch).

Where things come from (the predictor's configuration, in the order tried):
- the campaign run: an explicit URI, else `/mnt/models` when it holds `campaign.json` (KServe's storage
  initializer copied `STORAGE_URI` there), else `STORAGE_URI` itself read through the artifact store;
- the grouping: an explicit URI (`OSMF_GROUPING_URI`), else the grouping `campaign.json` records.

Image URIs served are the campaign's absolute artifact URIs (`image_uri` in campaign.json), or
`<base_url>/<run-relative path>` when a base URL is given (a CDN or bucket website in front of the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osmf_core.layout import Campaign
from osmf_core.store import ArtifactStore, open_store

KSERVE_MODEL_DIR = Path("/mnt/models")
CAMPAIGN_JSON = Campaign.CAMPAIGN_JSON


class CampaignNotFound(RuntimeError):
    """No campaign manifest where the configuration points; the message says where it looked."""


@dataclass(frozen=True)
class ProductImages:
    groups: dict[int, str]  # group id → image URI
    onesize: str


@dataclass(frozen=True)
class CampaignImages:
    name: str
    products: dict[str, ProductImages]
    grouping_uri: str | None

    @classmethod
    def from_manifest(cls, doc: dict[str, Any], base_url: str | None = None) -> "CampaignImages":
        def uri(entry: dict[str, Any]) -> str:
            return f"{base_url.rstrip('/')}/{entry['image']}" if base_url else entry["image_uri"]

        products = {
            str(p["product_id"]): ProductImages({int(g["group_id"]): uri(g) for g in p["groups"]}, uri(p["onesize"]))
            for p in doc["products"]
        }
        return cls(str(doc.get("name", "")), products, (doc.get("grouping") or {}).get("uri"))

    def image(self, product_id: str, group_id: int | None) -> tuple[str, bool]:
        """(image URI, True when it is the one-size fallback); KeyError for an unknown product."""
        product = self.products[product_id]
        found = product.groups.get(group_id) if group_id is not None else None
        return (found, False) if found is not None else (product.onesize, True)


def campaign_store(explicit: str | None, storage_uri: str | None, model_dir: Path = KSERVE_MODEL_DIR) -> ArtifactStore:
    """The campaign run directory (see the module docstring)."""
    if explicit:
        return open_store(explicit)
    if (model_dir / CAMPAIGN_JSON).is_file():
        return open_store(model_dir)
    if storage_uri:
        return open_store(storage_uri)
    raise CampaignNotFound(f"no campaign: {model_dir} holds no {CAMPAIGN_JSON} and STORAGE_URI is unset; point STORAGE_URI at an AdImageCampaign run")


def read_campaign(store: ArtifactStore) -> dict[str, Any]:
    try:
        return store.read_json(CAMPAIGN_JSON)
    except FileNotFoundError:
        raise CampaignNotFound(f"{store.uri} holds no {CAMPAIGN_JSON}; it must be a finished AdImageCampaign run") from None
