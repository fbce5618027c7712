"""Group assignment and click scoring from a grouping artifact, in numpy (no torch): the serving path.

    assigner = Assigner.load("s3://bucket/…/audiencegrouping/demo/3f2a…")   # or file:// / a path
    assigner.assign("p0003", {"age": "25-34", "gender": "female", …})        # -> group id (int)
    assigner.embed("p0003", attrs)                                           # -> preference embedding [d]
    assigner.p_click("p0003", attrs, "p0003-c2")                              # -> click probability
    assigner.assign_many(product_ids, attr_rows)  /  p_click_many(...)        # batched

The group is the nearest centroid among the product's groups in preference space (DESIGN §5).
Attributes outside the model's allow-list are ignored; a missing or unseen value counts as
"unknown". Results per (product, attribute tuple) are cached, so a repeated assignment is a
dictionary lookup.
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from osmf_core.layout import Grouping

from .inference import NumpyPreferenceModel

CACHE_LIMIT = 1_000_000


class UnknownProduct(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class Assigner:
    def __init__(self, config: dict[str, Any], arrays: Mapping[str, np.ndarray], groups: Any | None = None):
        self.config = config
        self.model = NumpyPreferenceModel(dict(arrays))
        self.attributes: list[str] = list(config["attributes"])
        self._vocab = [{v: i + 1 for i, v in enumerate(config["vocab"][a])} for a in self.attributes]
        self.product_index = {p: i for i, p in enumerate(config["products"])}
        self.creative_index = {c: i for i, c in enumerate(config["creatives"])}
        self.centroids: dict[str, np.ndarray] = {}
        self.group_ids: dict[str, np.ndarray] = {}
        if groups is not None:
            for product, frame in groups.groupby("product_id", sort=False):
                frame = frame.sort_values("group_id")
                self.centroids[str(product)] = np.stack([np.asarray(c, dtype=np.float32) for c in frame["centroid"]])
                self.group_ids[str(product)] = frame["group_id"].to_numpy().astype(np.int64)
        self._cache: dict[tuple[str, tuple[int, ...]], int] = {}

    @classmethod
    def load(cls, artifact_uri: str, with_groups: bool = True) -> "Assigner":
        from osmf_core.store import open_store
        from osmf_jobs.tables import read_parquet

        store = open_store(artifact_uri)
        config = json.loads(store.read_bytes(Grouping.MODEL_CONFIG))
        with np.load(io.BytesIO(store.read_bytes(Grouping.MODEL_WEIGHTS))) as npz:
            arrays = {k: npz[k] for k in npz.files}
        groups = None
        if with_groups:
            groups = read_parquet(store, Grouping.GROUPS, ["product_id", "group_id", "centroid"], f"AudienceGrouping {store.uri}")
        return cls(config, arrays, groups)

    # -- encoding ---------------------------------------------------------------------------------

    def attr_index(self, user_attrs: Mapping[str, Any]) -> tuple[int, ...]:
        out = []
        for name, vocab in zip(self.attributes, self._vocab):
            value = user_attrs.get(name)
            out.append(0 if value is None else vocab.get(str(value), 0))
        return tuple(out)

    def attr_matrix(self, rows: Any) -> np.ndarray:
        """[N, A] attribute indices from a pandas frame (columns = attributes) or a list of dicts."""
        if hasattr(rows, "columns"):
            cols = []
            for name, vocab in zip(self.attributes, self._vocab):
                if name in rows.columns:
                    cols.append(rows[name].astype(str).map(vocab).fillna(0).to_numpy().astype(np.int64))
                else:
                    cols.append(np.zeros(len(rows), dtype=np.int64))
            return np.stack(cols, axis=1) if cols else np.zeros((len(rows), 0), np.int64)
        return np.array([self.attr_index(r) for r in rows], dtype=np.int64).reshape(-1, len(self.attributes))

    def _product(self, product_id: str) -> int:
        try:
            return self.product_index[product_id]
        except KeyError:
            raise UnknownProduct(f"product {product_id!r} is not in this grouping artifact; only products it was trained on can be assigned") from None

    # -- single -----------------------------------------------------------------------------------

    def embed(self, product_id: str, user_attrs: Mapping[str, Any]) -> np.ndarray:
        p = self._product(product_id)
        return self.model.embed(np.array([self.attr_index(user_attrs)]), np.array([p]))[0]

    def assign(self, product_id: str, user_attrs: Mapping[str, Any]) -> int:
        key = (product_id, self.attr_index(user_attrs))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if product_id not in self.centroids:
            self._product(product_id)
            raise UnknownProduct(f"product {product_id!r} has no groups in this artifact")
        e = self.model.embed(np.array([key[1]]), np.array([self._product(product_id)]))
        group = int(self.group_ids[product_id][np.argmin(((self.centroids[product_id] - e) ** 2).sum(1))])
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = group
        return group

    def p_click(self, product_id: str, user_attrs: Mapping[str, Any], image_id: str) -> float:
        return float(self.p_click_many([product_id], [user_attrs], [image_id])[0])

    # -- batched ----------------------------------------------------------------------------------

    def embed_many(self, product_ids: Sequence[str], attrs: Any, batch: int = 8192) -> np.ndarray:
        A = attrs if isinstance(attrs, np.ndarray) else self.attr_matrix(attrs)
        P = np.array([self._product(p) for p in product_ids], dtype=np.int64)
        # Users sharing attribute values share the embedding: compute each (tuple, product) once.
        keys = np.concatenate([A, P[:, None]], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        out = np.zeros((len(uniq), self.model.d), dtype=np.float32)
        for s in range(0, len(uniq), batch):
            out[s:s + batch] = self.model.embed(uniq[s:s + batch, :-1], uniq[s:s + batch, -1])
        return out[inverse.reshape(-1)]

    def assign_many(self, product_ids: Sequence[str], attrs: Any) -> np.ndarray:
        E = self.embed_many(product_ids, attrs)
        out = np.zeros(len(E), dtype=np.int64)
        products = np.asarray(product_ids)
        for product in np.unique(products):
            if product not in self.centroids:
                raise UnknownProduct(f"product {product!r} has no groups in this artifact")
            rows = np.flatnonzero(products == product)
            d = ((E[rows, None, :] - self.centroids[product][None]) ** 2).sum(-1)
            out[rows] = self.group_ids[product][d.argmin(1)]
        return out

    def p_click_many(self, product_ids: Sequence[str], attrs: Any, image_ids: Sequence[str] | None = None,
                     creative_v: np.ndarray | None = None) -> np.ndarray:
        """Click probabilities; creatives by id (known to the model) or as vectors (`creative_vectors`)."""
        E = self.embed_many(product_ids, attrs)
        if creative_v is None:
            missing = [i for i in dict.fromkeys(image_ids) if i not in self.creative_index]
            if missing:
                raise KeyError(f"image {missing[0]!r} is not in this grouping artifact; pass its creative vector (creative_vectors)")
            idx = np.array([self.creative_index[i] for i in image_ids], dtype=np.int64)
            logits = self.model.click_logit(E, idx)
        else:
            logits = self.model.click_logit(E, creative_v=creative_v)
        return 1.0 / (1.0 + np.exp(-logits))

    def creative_vectors(self, stats: np.ndarray) -> np.ndarray:
        return self.model.creative_vectors(stats)

    def products(self) -> Iterable[str]:
        return self.centroids.keys()
