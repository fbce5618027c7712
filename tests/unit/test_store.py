"""One test suite over both artifact stores: FileStore and S3Store against a real SeaweedFS server."""

from __future__ import annotations

import hashlib
import json
import random
import stat
import uuid
from pathlib import Path

import pytest

from osmf_core.store import (
    MANIFEST,
    FileStore,
    S3Store,
    StoreError,
    file_digest,
    open_store,
    read_manifest,
)

# Larger than boto3's multipart threshold (8 MiB), so uploads and downloads go through multipart.
LARGE_SIZE = 9 * 1024 * 1024


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """An empty store of each kind; S3 stores get a fresh prefix in the session's bucket."""
    if request.param == "file":
        return open_store(tmp_path / "root")
    server = request.getfixturevalue("s3_server")
    return open_store(f"s3://{server.bucket}/t-{uuid.uuid4().hex[:12]}")


def make_tree(root: Path, large: bool = False) -> dict[str, bytes]:
    """A small directory tree (nested, a dot-file, optionally one multipart-sized file); returns rel → bytes."""
    rng = random.Random(7)
    files = {
        "config.json": b'{"a": 1}',
        "weights/part-0.bin": rng.randbytes(1000),
        "weights/part-1.bin": rng.randbytes(3000),
        "deep/a/b/c.txt": b"c",
        ".keep": b"",
    }
    if large:
        files["weights/large.bin"] = rng.randbytes(LARGE_SIZE)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---- reading and writing ------------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(store):
    store.write_bytes("a/b/data.bin", b"\x00\x01payload")
    assert store.read_bytes("a/b/data.bin") == b"\x00\x01payload"
    store.write_bytes("a/b/data.bin", b"second")
    assert store.read_bytes("a/b/data.bin") == b"second"
    assert store.read_bytes("/a/b/data.bin") == b"second", "leading slashes are ignored"


def test_json_round_trip_is_stable(store):
    store.write_json("doc.json", {"b": [1, 2], "a": {"x": 0.5}})
    assert store.read_json("doc.json") == {"b": [1, 2], "a": {"x": 0.5}}
    assert store.read_bytes("doc.json") == json.dumps({"a": {"x": 0.5}, "b": [1, 2]}, indent=2, sort_keys=True).encode()


def test_missing_keys_raise_file_not_found(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.read_bytes("nope.bin")
    with pytest.raises(FileNotFoundError):
        store.read_json("nope/doc.json")
    with pytest.raises(FileNotFoundError):
        store.download("nope.bin", tmp_path / "out.bin")
    with pytest.raises(FileNotFoundError):
        store.download("nope/", tmp_path / "out")


def test_exists_for_files_prefixes_and_missing(store):
    assert not store.exists("")
    store.write_bytes("run/shards/0/out.parquet", b"x")
    assert store.exists("run/shards/0/out.parquet")
    assert store.exists("run/shards") and store.exists("run/shards/")
    assert store.exists("")
    assert not store.exists("run/shards/1")
    assert not store.exists("run/shard"), "a prefix matches whole path segments only"


# ---- listing and children -----------------------------------------------------------------------


def test_list_is_recursive_sorted_and_relative_to_the_store(store):
    for rel in ("run10/x", "run1/b", "run1/a/deep", ".hidden", "top"):
        store.write_bytes(rel, rel.encode())
    assert store.list() == sorted([".hidden", "run1/a/deep", "run1/b", "run10/x", "top"])
    assert store.list("run1") == ["run1/a/deep", "run1/b"], "run10 is not under run1"
    assert store.list("run1/b") == ["run1/b"], "listing a file gives the file"
    assert store.list("missing") == []


def test_delete_removes_a_prefix_or_a_file_and_nothing_beside_it(store):
    for rel in ("run/checkpoints/a/state.pt", "run/checkpoints/a/done.json", "run/checkpoints/b/state.pt",
                "run/checkpoints10/keep", "run/model.bin"):
        store.write_bytes(rel, b"x")
    assert store.delete("run/checkpoints") == 3
    assert store.list("run") == ["run/checkpoints10/keep", "run/model.bin"], "a prefix is whole path segments"
    assert store.delete("run/model.bin") == 1 and store.delete("run/model.bin") == 0
    assert store.delete("nothing/here") == 0
    with pytest.raises(ValueError, match="below the store's root"):
        store.delete("/")
    assert store.list() == ["run/checkpoints10/keep"]


def test_child_is_rooted_below_its_parent(store):
    child = store.child("runs/abc")
    assert child.uri == store.uri.rstrip("/") + "/runs/abc"
    child.write_bytes("out/model.bin", b"m")
    assert store.read_bytes("runs/abc/out/model.bin") == b"m"
    assert child.list() == ["out/model.bin"]
    assert child.child("out").read_bytes("model.bin") == b"m"


def test_local_path_only_for_files(store):
    store.write_bytes("f.txt", b"1")
    path = store.local_path("f.txt")
    if isinstance(store, FileStore):
        assert path.read_bytes() == b"1"
    else:
        assert path is None


# ---- trees ------------------------------------------------------------------------------------------


def test_upload_and_download_a_tree_round_trip(store, tmp_path):
    files = make_tree(tmp_path / "src", large=True)
    store.upload(tmp_path / "src", "model")
    assert store.list("model") == sorted(f"model/{rel}" for rel in files)
    assert store.download("model", tmp_path / "back") == tmp_path / "back"
    assert read_tree(tmp_path / "back") == files


def test_download_of_the_whole_store(store, tmp_path):
    files = make_tree(tmp_path / "src")
    store.upload(tmp_path / "src", "")
    store.download("", tmp_path / "all")
    assert read_tree(tmp_path / "all") == files


def test_upload_and_download_single_files(store, tmp_path):
    source = tmp_path / "one.bin"
    source.write_bytes(b"single")
    store.upload(source, "dir/one.bin")
    assert store.read_bytes("dir/one.bin") == b"single"
    target = store.download("dir/one.bin", tmp_path / "copy" / "one.bin")
    assert target.read_bytes() == b"single"


def test_upload_of_a_missing_source_raises_file_not_found(store, tmp_path):
    with pytest.raises(FileNotFoundError):
        store.upload(tmp_path / "nothing-here", "x")


# ---- fingerprints, digests, manifests --------------------------------------------------------------


def test_fingerprint_is_stable_and_sees_changes(store):
    store.write_bytes("t/users.parquet", b"u" * 10)
    first = store.fingerprint()
    assert first.startswith("sha256:") and store.fingerprint() == first
    store.write_bytes("t/impressions.parquet", b"i")
    second = store.fingerprint()
    assert second != first
    store.write_bytes("t/users.parquet", b"u" * 11)
    assert store.fingerprint() not in (first, second)


def test_fingerprint_does_not_depend_on_where_the_store_is_rooted(store):
    store.child("a").write_bytes("x.bin", b"same")
    store.child("b").write_bytes("x.bin", b"same")
    if isinstance(store, S3Store):
        assert store.child("a").fingerprint() == store.child("b").fingerprint()
    else:  # mtimes differ between the two writes; what matters is that paths are relative
        assert store.child("a").list() == store.child("b").list() == ["x.bin"]


def test_file_digest_matches_sha256(store):
    data = random.Random(1).randbytes(5000)
    store.write_bytes("blob", data)
    assert file_digest(store, "blob") == (5000, hashlib.sha256(data).hexdigest())


def test_read_manifest_is_none_until_written_then_digests_its_bytes(store):
    assert read_manifest(store) is None
    store.write_json(MANIFEST, {"kind": "AudienceGrouping", "files": []})
    manifest, digest = read_manifest(store)
    assert manifest == {"kind": "AudienceGrouping", "files": []}
    assert digest == "sha256:" + hashlib.sha256(store.read_bytes(MANIFEST)).hexdigest()


# ---- backend specifics ---------------------------------------------------------------------------


def test_file_store_writes_are_atomic_and_world_readable(tmp_path):
    store = FileStore(tmp_path)
    store.write_bytes("out/a.bin", b"1")
    mode = stat.S_IMODE((tmp_path / "out" / "a.bin").stat().st_mode)
    assert mode & 0o044 == 0o044, f"other pods must be able to read artifacts (mode {oct(mode)})"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"], "no temp file left behind"


def test_file_store_never_lists_half_written_files(tmp_path):
    store = FileStore(tmp_path)
    store.write_bytes("a.bin", b"1")
    (tmp_path / ".b.bin.x1y2.osmf-tmp").write_bytes(b"partial")
    assert store.list() == ["a.bin"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/some/prefix/", ("S3Store", "s3://bucket/some/prefix")),
        ("s3://bucket", ("S3Store", "s3://bucket")),
        ("file:///data/world", ("FileStore", "file:///data/world")),
        ("file://localhost/data/world", ("FileStore", "file:///data/world")),
        ("/data/world", ("FileStore", "file:///data/world")),
    ],
)
def test_open_store_by_uri(uri, expected):
    opened = open_store(uri)
    assert (type(opened).__name__, opened.uri) == expected


@pytest.mark.parametrize("uri", ["s3:///no-bucket", "http://example.com/x", "gs://bucket/x", "file://relative/path"])
def test_open_store_rejects_what_it_cannot_serve(uri):
    with pytest.raises(ValueError, match="s3|file"):
        open_store(uri)


def test_unreachable_endpoint_raises_store_error(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    store = open_store("s3://bucket/prefix")
    with pytest.raises(StoreError, match="connect"):
        store.read_bytes("a")
    with pytest.raises(StoreError):
        store.exists("a")  # unreachable is not "absent"


def test_endpoint_by_host_name_works_without_wildcard_dns(s3_server, monkeypatch):
    """In a cluster the endpoint is a Service name: requests must go to host/bucket/key, not bucket.host."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint.replace("127.0.0.1", "localhost"))
    store = open_store(f"s3://{s3_server.bucket}/by-name-{uuid.uuid4().hex[:8]}")
    store.write_bytes("x", b"1")
    assert store.read_bytes("x") == b"1"


def test_store_outage_raises_store_error_and_data_survives_a_restart(s3_server):
    store = open_store(f"s3://{s3_server.bucket}/outage-{uuid.uuid4().hex[:8]}")
    store.write_bytes("kept.bin", b"before")
    s3_server.stop()
    try:
        with pytest.raises(StoreError):
            store.write_bytes("lost.bin", b"during")
        with pytest.raises(StoreError):
            read_manifest(store)
    finally:
        s3_server.start()
    assert store.read_bytes("kept.bin") == b"before"
    assert not store.exists("lost.bin")


def test_missing_bucket_is_a_store_error_not_a_missing_run(s3_server):
    """A wrong bucket is misconfiguration: it must not read as "no manifest yet, run it again"."""
    store = open_store(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        read_manifest(store)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.list()


def test_an_s3_store_makes_its_own_client_in_a_forked_process(monkeypatch):
    """boto3 clients are not fork-safe: a DataLoader worker must not read through its parent's pool."""
    import os

    from osmf_core import store as store_module

    made = []
    monkeypatch.setattr(store_module, "default_s3_client", lambda: made.append(os.getpid()) or object())
    s3 = store_module.S3Store("bucket", "prefix")
    first = s3.client
    assert s3.client is first and s3.child("x").client is not None
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    assert s3.client is not first
