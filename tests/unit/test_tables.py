"""Input tables: presence, types, references, and the users column projection."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osmf_core.store import open_store
from osmf_jobs import tables as TB
from tests.unit.test_store import store  # noqa: F401 - an empty store, file:// or on the S3 server
from osmf_jobs.runtime import InvalidInput


def _world(root: Path, **override) -> Path:
    frames = {
        "users": pd.DataFrame({"user_id": ["u1", "u2"], "age": ["18-24", "55+"], "household": [1, 3], "postcode": ["P1", "P2"]}),
        "products": pd.DataFrame({"product_id": ["p1"], "title": ["red mug"], "image_uri": ["products/p1.png"]}),
        "images": pd.DataFrame({"image_id": ["i1", "i2"], "product_id": ["p1", "p1"], "image_uri": ["images/i1.png", "images/i2.png"]}),
        "impressions": pd.DataFrame({"user_id": ["u1", "u2", "u2"], "product_id": ["p1"] * 3, "image_id": ["i1", "i2", "i1"], "clicked": [0, 1, 0]}),
    }
    frames.update(override)
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        if frame is not None:
            frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


def test_reads_all_tables_and_only_allowed_user_columns(tmp_path):
    tables = TB.read_tables(open_store(_world(tmp_path)), ["age", "household"])
    assert list(tables.users.columns) == ["user_id", "age", "household"]  # no postcode
    assert tables.impressions["clicked"].tolist() == [0, 1, 0]
    assert len(tables.images) == 2


def test_a_directory_of_parts_is_one_table(tmp_path):
    root = _world(tmp_path, impressions=None)
    parts = root / "impressions.parquet"
    parts.mkdir()
    pd.DataFrame({"user_id": ["u1"], "product_id": ["p1"], "image_id": ["i1"], "clicked": [1]}).to_parquet(parts / "part-0.parquet")
    pd.DataFrame({"user_id": ["u2"], "product_id": ["p1"], "image_id": ["i2"], "clicked": [0]}).to_parquet(parts / "part-1.parquet")
    tables = TB.read_tables(open_store(root), ["age"])
    assert len(tables.impressions) == 2


@pytest.mark.parametrize("override, attrs, message", [
    ({"impressions": None}, ["age"], "table 'impressions': .*impressions.parquet not found"),
    ({}, ["income"], "table 'users': column 'income' missing; add it to the users table or drop it from spec.userAttributes"),
    ({"products": pd.DataFrame({"product_id": ["p1"], "image_uri": ["x.png"]})}, ["age"], "table 'products': column 'title' missing"),
    ({"impressions": pd.DataFrame({"user_id": ["u1"], "product_id": ["p1"], "image_id": ["i1"], "clicked": ["yes"]})}, ["age"],
     "table 'impressions': column 'clicked' has type string, expected integer 0/1 or boolean"),
    ({"users": pd.DataFrame({"user_id": ["u1", "u2"], "age": [1.5, 2.5]})}, ["age"], "table 'users': column 'age' has type double"),
    ({"impressions": pd.DataFrame({"user_id": pd.Series([], dtype=str), "product_id": pd.Series([], dtype=str),
                                   "image_id": pd.Series([], dtype=str), "clicked": pd.Series([], dtype="int64")})}, ["age"],
     "table 'impressions' is empty"),
    ({"impressions": pd.DataFrame({"user_id": ["u9"], "product_id": ["p1"], "image_id": ["i1"], "clicked": [1]})}, ["age"],
     "column 'user_id' has 1 rows naming user_id 'u9' absent from table 'users'"),
    ({"products": pd.DataFrame({"product_id": ["p1", "p2"], "title": ["a", "b"], "image_uri": ["x", "y"]})}, ["age"],
     "table 'products': product 'p2' has no impressions"),
    ({"impressions": pd.DataFrame({"user_id": ["u1"], "product_id": ["p1"], "image_id": ["i1"], "clicked": [3]})}, ["age"],
     "column 'clicked' holds 3; it must be 0 or 1"),
])
def test_bad_input_is_one_line_naming_table_and_column(tmp_path, override, attrs, message):
    with pytest.raises(InvalidInput, match=message) as info:
        TB.read_tables(open_store(_world(tmp_path, **override)), attrs)
    assert "\n" not in str(info.value)


def test_unreadable_image_names_the_owner(tmp_path):
    root = _world(tmp_path)
    (root / "products").mkdir()
    (root / "products" / "p1.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInput, match="product 'p1': image 'products/p1.png' is not a readable image"):
        TB.read_image(open_store(root), "products/p1.png", "product 'p1'")
    with pytest.raises(InvalidInput, match="not found"):
        TB.read_image(open_store(root), "products/missing.png", "product 'p1'")


def test_reads_from_s3(s3_server, tmp_path):
    import boto3

    root = _world(tmp_path / "w")
    client = boto3.client("s3")
    for path in root.glob("*.parquet"):
        client.upload_file(str(path), s3_server.bucket, f"world/{path.name}")
    tables = TB.read_tables(open_store(f"s3://{s3_server.bucket}/world"), ["age"])
    assert len(tables.users) == 2 and list(tables.users.columns) == ["user_id", "age"]


# ---- any table: read_parquet / write_parquet ---------------------------------------------------


def _groups(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "product_id": [f"p{i}" for i in range(start, start + n)], "group_id": list(range(n)),
        "centroid": [[float(i), 0.5] for i in range(n)],
    })


def test_write_then_read_round_trips_a_file_and_selects_columns(store):
    TB.write_parquet(store, "groups.parquet", _groups(3))
    pd.testing.assert_frame_equal(TB.read_parquet(store, "groups.parquet"), _groups(3))
    assert list(TB.read_parquet(store, "groups.parquet", ["group_id", "product_id"]).columns) == ["group_id", "product_id"]


def test_a_directory_of_parts_reads_as_one_table_in_part_order(store):
    TB.write_parquet(store, "groups.parquet/part-1.parquet", _groups(2, start=5))
    TB.write_parquet(store, "groups.parquet/part-0.parquet", _groups(3))
    store.write_bytes("groups.parquet/_SUCCESS", b"")  # not a part: ignored
    frame = TB.read_parquet(store, "groups.parquet", ["product_id"])
    assert frame["product_id"].tolist() == ["p0", "p1", "p2", "p5", "p6"]


def test_missing_table_column_or_bad_file_is_one_line_invalid_input(store):
    with pytest.raises(InvalidInput, match=r"^AudienceGrouping 'g': .*/groups.parquet not found; use a Succeeded one$"):
        TB.read_parquet(store, "groups.parquet", what="AudienceGrouping 'g'", fix="use a Succeeded one")
    TB.write_parquet(store, "groups.parquet", _groups(2))
    with pytest.raises(InvalidInput, match=r"groups.parquet: column\(s\) size, silhouette missing; re-run the producing stage"):
        TB.read_parquet(store, "groups.parquet", ["product_id", "size", "silhouette"], what="grouping")
    store.write_bytes("broken.parquet", b"PAR1 not parquet at all")
    with pytest.raises(InvalidInput, match=r"grouping: .*broken.parquet is not readable parquet \(.*\); rewrite it") as info:
        TB.read_parquet(store, "broken.parquet", what="grouping")
    assert "\n" not in str(info.value)
