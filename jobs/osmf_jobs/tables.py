"""Reading and checking the input tables of DESIGN §5 (users, products, images, impressions).

A dataset root (file://, a local path or s3://) holds each table as `<table>.parquet` — one file
or a directory of part files. Every problem raises `InvalidInput` with one line that names the
table, the column (or product) and the fix.

    tables = read_tables(store, user_attributes=["age", "gender"])   # -> Tables of pandas frames
    users = read_users(store, ["age"])                                 # only user_id + allowed attributes

Privacy: the users table is always read with a column projection of `user_id` plus the spec's
allow-list, so no other attribute column is ever loaded.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from osmf_core.layout import Dataset, join
from osmf_core.store import ArtifactStore, StoreError, open_store
from osmf_jobs.runtime import InvalidInput

# The schemas are the core's (the contract); this module reads and checks them.
STRING, INTEGER, CATEGORY, FLAG = Dataset.STRING, Dataset.INTEGER, Dataset.CATEGORY, Dataset.FLAG
SCHEMAS, OPTIONAL = Dataset.SCHEMAS, Dataset.OPTIONAL


@dataclasses.dataclass
class Tables:
    users: Any  # pandas frames
    products: Any
    images: Any
    impressions: Any


def _type_ok(arrow_type: Any, expected: str) -> bool:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):  # all values null: the null check reports it (or the table is empty)
        return True
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    is_string = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if expected == STRING:
        return is_string
    if expected == INTEGER:
        return pa.types.is_integer(arrow_type) or pa.types.is_timestamp(arrow_type)
    if expected == CATEGORY:
        return is_string or pa.types.is_integer(arrow_type)
    if expected == FLAG:
        return pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)
    raise ValueError(expected)


def _sources(store: ArtifactStore, name: str) -> list[Any]:
    """Local paths or in-memory buffers of the table's parquet file(s)."""
    import pyarrow as pa

    rel = Dataset.table_file(name)
    local = store.local_path(rel)
    if local is not None:
        if local.is_file():
            return [str(local)]
        if local.is_dir():
            parts = sorted(p for p in local.rglob("*.parquet") if p.is_file())
            if parts:
                return [str(p) for p in parts]
        raise InvalidInput(f"table '{name}': {join(store.uri, rel)} not found; write it as one parquet file or a directory of parquet parts (DESIGN §5)")
    listed = store.list(rel)  # [rel] for one object, the part keys for a prefix
    parts = sorted(p for p in listed if p.endswith(".parquet"))
    if not parts:
        raise InvalidInput(f"table '{name}': {join(store.uri, rel)} not found; write it as one parquet file or a directory of parquet parts (DESIGN §5)")
    return [pa.BufferReader(store.read_bytes(p)) for p in parts]


def read_table(store: ArtifactStore, name: str, columns: dict[str, str], optional: dict[str, str] | None = None,
               fix: dict[str, str] | None = None) -> Any:
    """Read `columns` (name -> expected kind) of a table, checking presence and type; optional ones if present."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sources = _sources(store, name)
    frames = []
    for source in sources:
        try:
            schema = pq.read_schema(source)
        except (pa.ArrowInvalid, OSError) as error:
            raise InvalidInput(f"table '{name}': {join(store.uri, Dataset.table_file(name))} is not readable parquet ({' '.join(str(error).split())[:160]}); rewrite it") from None
        if isinstance(source, pa.BufferReader):
            source.seek(0)
        wanted = []
        for column, kind in columns.items():
            if column not in schema.names:
                hint = (fix or {}).get(column, f"add column '{column}' ({kind})")
                raise InvalidInput(f"table '{name}': column '{column}' missing; {hint}")
            wanted.append(column)
        for column in (optional or {}):
            if column in schema.names:
                wanted.append(column)
        expected = {**columns, **(optional or {})}
        for column in wanted:
            arrow_type = schema.field(column).type
            if not _type_ok(arrow_type, expected[column]):
                raise InvalidInput(f"table '{name}': column '{column}' has type {arrow_type}, expected {expected[column]}; rewrite the column with that type")
        table = pq.read_table(source, columns=wanted)
        frames.append(table.to_pandas())
    import pandas as pd

    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    for column, kind in {**columns, **(optional or {})}.items():
        if column in frame.columns and frame[column].isna().any():
            raise InvalidInput(f"table '{name}': column '{column}' has {int(frame[column].isna().sum())} null values; fill or drop those rows")
        if column in frame.columns and kind == STRING:
            frame[column] = frame[column].astype(str)
    return frame


def read_users(store: ArtifactStore, user_attributes: list[str]) -> Any:
    columns = {"user_id": STRING, **{a: CATEGORY for a in user_attributes}}
    fixes = {a: f"add it to the users table or drop it from spec.userAttributes" for a in user_attributes}
    users = read_table(store, "users", columns, fix=fixes)
    if users.empty:
        raise InvalidInput("table 'users' is empty; the logs need users")
    if users["user_id"].duplicated().any():
        dup = users["user_id"][users["user_id"].duplicated()].iloc[0]
        raise InvalidInput(f"table 'users': user_id {dup!r} appears more than once; keep one row per user")
    return users


def read_tables(store: ArtifactStore | str, user_attributes: list[str], require_impressions_per_product: bool = True) -> Tables:
    """All four tables, checked against each other."""
    if isinstance(store, str):
        store = open_store(store)
    users = read_users(store, user_attributes)
    products = read_table(store, "products", SCHEMAS["products"], OPTIONAL["products"])
    images = read_table(store, "images", SCHEMAS["images"])
    impressions = read_table(store, "impressions", SCHEMAS["impressions"], OPTIONAL["impressions"])
    if products.empty:
        raise InvalidInput("table 'products' is empty; the catalog needs products")
    if impressions.empty:
        raise InvalidInput("table 'impressions' is empty; the logs need impressions")
    for frame, table, key in ((products, "products", "product_id"), (images, "images", "image_id")):
        if frame[key].duplicated().any():
            dup = frame[key][frame[key].duplicated()].iloc[0]
            raise InvalidInput(f"table '{table}': {key} {dup!r} appears more than once; keep one row per {key.split('_')[0]}")
    clicked = impressions["clicked"].astype("int64")
    if not clicked.isin([0, 1]).all():
        bad = clicked[~clicked.isin([0, 1])].iloc[0]
        raise InvalidInput(f"table 'impressions': column 'clicked' holds {bad}; it must be 0 or 1")
    impressions["clicked"] = clicked.astype("int8")
    _check_refs(images, "images", "product_id", products["product_id"], "products")
    _check_refs(impressions, "impressions", "product_id", products["product_id"], "products")
    _check_refs(impressions, "impressions", "image_id", images["image_id"], "images")
    _check_refs(impressions, "impressions", "user_id", users["user_id"], "users")
    image_product = dict(zip(images["image_id"], images["product_id"]))
    mismatch = impressions["image_id"].map(image_product) != impressions["product_id"]
    if mismatch.any():
        row = impressions[mismatch].iloc[0]
        raise InvalidInput(f"table 'impressions': image_id {row['image_id']!r} belongs to product {image_product[row['image_id']]!r}, not {row['product_id']!r}; fix the product_id of those rows")
    if require_impressions_per_product:
        seen = set(impressions["product_id"].unique())
        unseen = [p for p in products["product_id"] if p not in seen]
        if unseen:
            raise InvalidInput(f"table 'products': product {unseen[0]!r} has no impressions ({len(unseen)} such); drop it from the catalog or add its impressions")
    return Tables(users, products, images, impressions)


def _check_refs(frame: Any, table: str, column: str, keys: Any, target: str) -> None:
    known = set(keys)
    missing = ~frame[column].isin(known)
    if missing.any():
        example = frame[column][missing].iloc[0]
        raise InvalidInput(f"table '{table}': column '{column}' has {int(missing.sum())} rows naming {column} {example!r} absent from table '{target}'; add it there or drop those rows")


def resolve_uri(store: ArtifactStore, uri: str) -> tuple[ArtifactStore, str]:
    """An image_uri (relative to the dataset root, or absolute file:// / s3:// / path) -> (store, rel)."""
    if "://" in uri or uri.startswith("/"):
        parent, _, leaf = uri.rstrip("/").rpartition("/")
        return open_store(parent or "/"), leaf
    return store, uri


def read_image(store: ArtifactStore, uri: str, what: str):
    """A PIL image from an image_uri; unreadable -> InvalidInput naming `what` (e.g. "product 'p1'")."""
    from PIL import Image, UnidentifiedImageError

    owner, rel = resolve_uri(store, uri)
    try:
        data = owner.read_bytes(rel)
    except (FileNotFoundError, KeyError):
        raise InvalidInput(f"{what}: image {uri!r} not found under {store.uri}; fix image_uri") from None
    except StoreError:
        raise
    except OSError as error:
        raise InvalidInput(f"{what}: image {uri!r} cannot be read ({error.__class__.__name__}); fix image_uri") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidInput(f"{what}: image {uri!r} is not a readable image; replace the file") from None
    return image


def read_parquet(store: ArtifactStore, rel: str, columns: list[str] | None = None, what: str | None = None) -> Any:
    """A parquet table of a store: one file or a directory of parts; missing -> InvalidInput naming it."""
    import pandas as pd

    local = store.local_path(rel)
    if local is not None and local.is_file():
        return pd.read_parquet(local, columns=columns)
    parts = sorted(p for p in store.list(rel) if p.endswith(".parquet"))
    if not parts:
        raise InvalidInput(f"{what + ': ' if what else ''}{join(store.uri, rel)} is missing")
    frames = [pd.read_parquet(io.BytesIO(store.read_bytes(p)), columns=columns) for p in parts]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
