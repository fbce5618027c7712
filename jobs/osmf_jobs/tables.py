"""The jobs' one parquet reader and writer, and the checked input tables of DESIGN §5.

Any table a job reads or writes goes through here: `read_parquet` / `write_parquet` for the tables
stages write (groups, assignments, samples, pairs, shards' parts), `read_table` / `read_tables` for
the input logs (users, products, images, impressions) with their schema checks. A table is one
parquet file or a directory of part files, in a local directory, under file:// or s3://. Every
problem raises `InvalidInput` with one line that names the file or table, the column and the fix.

    groups = read_parquet(grouping, Grouping.GROUPS, columns=["product_id", "centroid"], what="AudienceGrouping")
    write_parquet(ctx.shard_store, GAIP.SAMPLES, frame)
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
PARQUET_SUFFIX = ".parquet"
RERUN = "re-run the stage that writes it"


@dataclasses.dataclass
class Tables:
    users: Any  # pandas frames
    products: Any
    images: Any
    impressions: Any


# ---- any table -----------------------------------------------------------------------------------


def _part_files(store: ArtifactStore, rel: str, what: str, fix: str) -> list[Any]:
    """`pyarrow.parquet.ParquetFile`s of a table: the file itself, or the parts of a directory in
    name order. Local files are opened in place; remote ones are read into memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = join(store.uri, rel)
    local = store.local_path(rel)
    if local is not None:
        if local.is_file():
            sources: list[Any] = [str(local)]
        else:
            sources = [str(p) for p in sorted(local.rglob(f"*{PARQUET_SUFFIX}")) if p.is_file()] if local.is_dir() else []
    else:
        # list() gives [rel] for one object and the part keys for a prefix.
        sources = [pa.BufferReader(store.read_bytes(p)) for p in sorted(store.list(rel)) if p.endswith(PARQUET_SUFFIX)]
    if not sources:
        raise InvalidInput(f"{what}: {where} not found; {fix}")
    try:
        return [pq.ParquetFile(source) for source in sources]
    except (pa.ArrowInvalid, OSError) as error:
        raise InvalidInput(f"{what}: {where} is not readable parquet ({' '.join(str(error).split())[:160]}); rewrite it") from None


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def require_columns(present: Any, columns: tuple[str, ...] | list[str], what: str) -> None:
    """`present`: a frame's columns or a schema's names."""
    missing = [c for c in columns if c not in present]
    if missing:
        raise InvalidInput(f"{what}: column(s) {', '.join(missing)} missing; re-run the producing stage with a current OSMF")


def read_parquet(store: ArtifactStore, rel: str, columns: list[str] | None = None, what: str = "table",
                 fix: str = RERUN) -> Any:
    """The pandas frame of a parquet table of `store` (one file or a directory of parts), with only
    `columns` when given. `what` names the table's owner in messages ("AudienceGrouping 'demo'");
    a missing table, an unreadable one or a missing column raises InvalidInput."""
    frames = []
    for part in _part_files(store, rel, what, fix):
        if columns is not None:
            require_columns(part.schema_arrow.names, columns, f"{what}: {join(store.uri, rel)}")
        frames.append(part.read(columns=columns).to_pandas())
    return _concat(frames)


def write_parquet(store: ArtifactStore, rel: str, frame: Any) -> None:
    """Write a pandas frame as one parquet file (no index) at `rel` of `store`."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.write_bytes(rel, buffer.getvalue())


# ---- the input logs (DESIGN §5) ------------------------------------------------------------------


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


def read_table(store: ArtifactStore, name: str, columns: dict[str, str], optional: dict[str, str] | None = None,
               fix: dict[str, str] | None = None) -> Any:
    """Read `columns` (name -> expected kind) of an input table, checking presence and type; optional ones if present."""
    parts = _part_files(store, Dataset.table_file(name), f"table '{name}'",
                        "write it as one parquet file or a directory of parquet parts (DESIGN §5)")
    expected = {**columns, **(optional or {})}
    frames = []
    for part in parts:
        schema = part.schema_arrow
        for column, kind in columns.items():
            if column not in schema.names:
                hint = (fix or {}).get(column, f"add column '{column}' ({kind})")
                raise InvalidInput(f"table '{name}': column '{column}' missing; {hint}")
        wanted = list(columns) + [c for c in (optional or {}) if c in schema.names]
        for column in wanted:
            arrow_type = schema.field(column).type
            if not _type_ok(arrow_type, expected[column]):
                raise InvalidInput(f"table '{name}': column '{column}' has type {arrow_type}, expected {expected[column]}; rewrite the column with that type")
        frames.append(part.read(columns=wanted).to_pandas())
    frame = _concat(frames)
    for column, kind in expected.items():
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

