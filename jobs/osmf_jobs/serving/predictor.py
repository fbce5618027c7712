"""`GroupImagePredictor`: (product, viewer attributes) → (group, image URI), as a KServe custom model.

`load()` reads the grouping artifact (through `osmf_jobs.paag.Assigner`) and the campaign manifest
once; `predict` only computes. Both KServe protocols:

- v1 `POST /v1/models/<name>:predict`
  `{"instances": [{"product_id": "p1", "user": {"age": "25-34", "region": "north"}}]}` →
  `{"predictions": [{"group_id": 2, "image_uri": "s3://…/images/p1/2/0.png", "fallback": false}]}`
- v2 `POST /v2/models/<name>/infer`: a BYTES input `product_id` of shape [N] and one input per user
  attribute (BYTES or INT64, shape [N]) → outputs `group_id` (INT64), `image_uri` (BYTES) and
  `fallback` (BOOL), each of shape [N].

A product the campaign does not cover is the caller's error: kserve's `InvalidInput`, HTTP 400, naming
the product. A viewer whose group has no image (the campaign skipped it, or the grouping no longer
matches) gets the product's one-size image with `fallback: true`.

Latency: a viewer's group depends only on the product and the values of the grouping's allowed
attributes (unknown values count as "unknown"). When every combination of those values for every
campaign product fits in PRECOMPUTE_LIMIT, `load()` computes all their groups in one batched pass, and
`predict` is dictionary lookups; otherwise groups are computed on first sight and cached by the
Assigner (a miss costs one preference embedding, ~0.3 ms in numpy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from .catalog import CampaignImages, campaign_store, read_campaign

PRODUCT_INPUT = "product_id"
# (product, attribute combination) groups computed at load: ~7,000 embeddings per CPU-second in numpy,
# so at most ~15 s of start-up on one core; past it, groups are computed on first sight.
PRECOMPUTE_LIMIT = 100_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _attribute(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


class GroupImagePredictor(Model):
    """Maps viewers to their group's image for the products of one campaign."""

    def __init__(self, name: str, campaign_uri: str | None = None, grouping_uri: str | None = None,
                 storage_uri: str | None = None, image_base_url: str | None = None):
        super().__init__(name)
        self.campaign_uri, self.grouping_uri, self.storage_uri = campaign_uri, grouping_uri, storage_uri
        self.image_base_url = image_base_url
        self.images: CampaignImages | None = None
        self.assigner: Any = None
        self.groups: dict[tuple[str, tuple[int, ...]], int] = {}

    def load(self) -> bool:
        from osmf_jobs.paag import Assigner

        store = campaign_store(self.campaign_uri, self.storage_uri)
        self.images = CampaignImages.from_manifest(read_campaign(store), self.image_base_url)
        grouping = self.grouping_uri or self.images.grouping_uri
        if not grouping:
            raise RuntimeError(f"{store.uri}/campaign.json names no grouping and OSMF_GROUPING_URI is unset; set it to the AudienceGrouping run")
        self.assigner = Assigner.load(grouping)
        known = set(self.assigner.products())
        missing = sorted(p for p in self.images.products if p not in known)
        if missing:
            raise RuntimeError(f"grouping {grouping} has no groups for {len(missing)} campaign product(s), e.g. {missing[0]!r}; "
                               "OSMF_GROUPING_URI must be the campaign's AudienceGrouping")
        self.groups = self._precompute()
        self.ready = True
        return self.ready

    def _precompute(self) -> dict[tuple[str, tuple[int, ...]], int]:
        """Groups of every (campaign product, attribute-value combination), when they fit the limit."""
        sizes = [len(self.assigner.config["vocab"][a]) + 1 for a in self.assigner.attributes]  # + "unknown"
        combinations = int(np.prod(sizes)) if sizes else 1
        products = sorted(self.images.products)
        if not products or combinations * len(products) > PRECOMPUTE_LIMIT:
            return {}
        grid = np.indices(sizes).reshape(len(sizes), -1).T if sizes else np.zeros((1, 0), np.int64)
        table: dict[tuple[str, tuple[int, ...]], int] = {}
        keys = [tuple(int(v) for v in row) for row in grid]
        for product in products:
            groups = self.assigner.assign_many([product] * len(grid), grid)
            table.update({(product, key): int(g) for key, g in zip(keys, groups)})
        return table

    # ---- the computation ---------------------------------------------------------------------

    def group_of(self, product_id: str, user: dict[str, Any]) -> int:
        found = self.groups.get((product_id, self.assigner.attr_index(user)))
        return int(self.assigner.assign(product_id, user)) if found is None else found

    def assign(self, product_id: str, user: dict[str, Any]) -> tuple[int, str, bool]:
        """(group id, image URI, fallback) for one viewer; InvalidInput for a product outside the campaign."""
        if product_id not in self.images.products:
            raise InvalidInput(f"product {product_id!r} is not in campaign {self.images.name!r}; it has no images to serve")
        group = self.group_of(product_id, user)
        uri, fallback = self.images.image(product_id, group)
        return group, uri, fallback

    def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> dict | InferResponse:
        if isinstance(payload, InferRequest):
            return self._predict_v2(payload)
        return {"predictions": [
            {"group_id": group, "image_uri": uri, "fallback": fallback}
            for group, uri, fallback in (self.assign(pid, user) for pid, user in self._v1_instances(payload))
        ]}

    @staticmethod
    def _v1_instances(payload: Any) -> list[tuple[str, dict[str, Any]]]:
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('expected {"instances": [{"product_id": "…", "user": {"attribute": value}}, …]}')
        out = []
        for i, item in enumerate(instances):
            if not isinstance(item, dict) or not isinstance(item.get("product_id"), str):
                raise InvalidInput(f"instances[{i}]: needs a string product_id")
            user = item.get("user", {})
            if not isinstance(user, dict):
                raise InvalidInput(f"instances[{i}].user: must be an object of attribute → value")
            out.append((item["product_id"], user))
        return out

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        columns: dict[str, list[Any]] = {}
        for tensor in request.inputs:
            values = tensor.as_numpy().reshape(-1).tolist() if tensor.datatype != "BYTES" else list(np.asarray(tensor.data, dtype=object).reshape(-1))
            columns[tensor.name] = values
        if PRODUCT_INPUT not in columns:
            raise InvalidInput(f"inputs: a BYTES tensor named {PRODUCT_INPUT!r} is required, plus one tensor per user attribute")
        n = len(columns[PRODUCT_INPUT])
        uneven = [name for name, values in columns.items() if len(values) != n]
        if uneven:
            raise InvalidInput(f"inputs {uneven} have a different length than {PRODUCT_INPUT!r} ({n}); every input needs one value per viewer")
        attributes = [name for name in columns if name != PRODUCT_INPUT]
        results = [
            self.assign(_text(columns[PRODUCT_INPUT][i]), {a: _attribute(columns[a][i]) for a in attributes})
            for i in range(n)
        ]
        return InferResponse(
            model_name=self.name, response_id=request.id,
            infer_outputs=[
                InferOutput("group_id", [n], "INT64", [r[0] for r in results]),
                InferOutput("image_uri", [n], "BYTES", [r[1] for r in results]),
                InferOutput("fallback", [n], "BOOL", [r[2] for r in results]),
            ],
        )
