"""Reading the campaign's inputs: the grouping's groups, the catalog's cut-outs, the generator and GRM runs.

Every problem with an input becomes `InvalidInput` with one line that names the product, file or
reference and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from osmf_core.api import Kind, Role
from osmf_core.layout import MANIFEST, Dataset, Grouping, join
from osmf_core.store import ArtifactStore
from osmf_jobs import tables
from osmf_jobs.runs import recorded_input
from osmf_jobs.runtime import InvalidInput, JobContext

GROUP_COLUMNS = ("product_id", "group_id", "size", "representatives")


@dataclass(frozen=True)
class Group:
    group_id: int
    size: int
    representatives: np.ndarray  # (n_vectors, dim) float32


def load_groups(grouping: ArtifactStore) -> dict[str, list[Group]]:
    """product id → its groups, sorted by group id, from the grouping's groups.parquet."""
    where = join(grouping.uri, Grouping.GROUPS)
    frame = tables.read_parquet(grouping, Grouping.GROUPS, list(GROUP_COLUMNS), f"AudienceGrouping {grouping.uri}")
    out: dict[str, list[Group]] = {}
    shapes = set()
    for product, group, size, reps in zip(frame["product_id"], frame["group_id"], frame["size"], frame["representatives"]):
        matrix = np.stack([np.asarray(v, dtype=np.float32) for v in reps]) if len(reps) else np.zeros((0, 0), np.float32)
        shapes.add(matrix.shape)
        out.setdefault(str(product), []).append(Group(int(group), int(size), matrix))
    if len(shapes) > 1:
        raise InvalidInput(f"{where}: representatives have mixed shapes {sorted(shapes)}; re-run the AudienceGrouping")
    if shapes and 0 in next(iter(shapes)):
        raise InvalidInput(f"{where}: groups have no representatives; re-run the AudienceGrouping")
    return {p: sorted(gs, key=lambda g: g.group_id) for p, gs in out.items()}


def resolve_products(requested: list[str], groups: dict[str, list[Group]], grouping_label: str) -> list[str]:
    """The campaign's products, sorted: spec.products (each must have groups), else all the grouping's."""
    if not requested:
        if not groups:
            raise InvalidInput(
                f"spec.products is empty and {grouping_label} has no products; list product ids in spec.products "
                "or use a grouping whose logs cover products"
            )
        return sorted(groups)
    unknown = [p for p in dict.fromkeys(requested) if p not in groups]
    if unknown:
        raise InvalidInput(
            f"spec.products: {len(unknown)} product(s) have no groups in {grouping_label}, e.g. {unknown[0]!r}; "
            "remove them or re-run the grouping on logs that include them"
        )
    return sorted(set(requested))


@dataclass(frozen=True)
class CatalogEntry:
    product_id: str
    title: str
    image_uri: str  # as the products table says: relative to the data root, or absolute


def load_catalog(data: ArtifactStore, products: list[str]) -> dict[str, CatalogEntry]:
    frame = tables.read_table(data, Dataset.PRODUCTS, Dataset.SCHEMAS[Dataset.PRODUCTS])
    rows = {pid: CatalogEntry(pid, title, uri) for pid, title, uri in zip(frame["product_id"], frame["title"], frame["image_uri"])}
    missing = [p for p in products if p not in rows]
    if missing:
        raise InvalidInput(f"table 'products' of {data.uri} lacks {len(missing)} campaign product(s), e.g. {missing[0]!r}; add them or drop them from spec.products")
    return {p: rows[p] for p in products}


@dataclass(frozen=True)
class LoggedCreative:
    image_id: str
    image_uri: str  # absolute
    image: Any  # PIL image


def load_logged(data: ArtifactStore, products: list[str]) -> dict[str, list[LoggedCreative]]:
    """Each product's logged creatives (the images table of the data root), read and checked."""
    frame = tables.read_table(data, Dataset.IMAGES, Dataset.SCHEMAS[Dataset.IMAGES])
    frame = frame[frame["product_id"].isin(set(products))].sort_values("image_id")
    out: dict[str, list[LoggedCreative]] = {pid: [] for pid in products}
    for image_id, pid, uri in zip(frame["image_id"], frame["product_id"], frame["image_uri"]):
        image = tables.read_image(data, uri, f"table 'images': image {image_id!r}").convert("RGB")
        out[pid].append(LoggedCreative(image_id, absolute_uri(data, uri), image))
    return out


def absolute_uri(data: ArtifactStore, uri: str) -> str:
    store, rel = tables.resolve_uri(data, uri)
    return join(store.uri, rel)


def load_cutout(data: ArtifactStore, entry: CatalogEntry):
    """The product's image as a PIL image, checked to be a usable cut-out."""
    from osmf_jobs.render import product_cutout

    what = f"product {entry.product_id!r}"
    if not entry.image_uri.strip():
        raise InvalidInput(f"{what}: the products table gives no image_uri; add its cut-out")
    image = tables.read_image(data, entry.image_uri, what)
    try:
        product_cutout(image)
    except InvalidInput as error:
        raise InvalidInput(f"{what}: image {entry.image_uri!r}: {error}") from None
    return image


def generator_stores(ctx: JobContext) -> tuple[ArtifactStore, ArtifactStore | None]:
    """(pretrain run, LoRA adapter run or None) of spec.generatorRef.

    A GroupDPORun generator is an adapter over its policy: the `policy` input names that policy; a
    config without it falls back to the `policy` input recorded in the GroupDPORun's manifest.
    """
    ref = ctx.spec.generator_ref
    generator = ctx.input_store(Role.GENERATOR)
    if ref.kind == Kind.GMLLM_TRAINING:
        return generator, None
    if ctx.has_input(Role.POLICY):
        return ctx.input_store(Role.POLICY), generator
    policy = recorded_input(generator, Role.POLICY)
    if policy is not None:
        return policy, generator
    raise InvalidInput(
        f"generator GroupDPORun/{ref.name}: no 'policy' input in the job config and none recorded in {join(generator.uri, MANIFEST)}; "
        "re-run the GroupDPORun"
    )


def label(ctx: JobContext, role: str) -> str:
    """'AudienceGrouping/demo (file:///…)' for messages."""
    art = ctx.config.inputs.get(role)
    if art is None:
        return role
    kind = art.kind or role
    return f"{kind}/{art.name} ({art.uri})" if art.name else f"{kind} {art.uri}"


