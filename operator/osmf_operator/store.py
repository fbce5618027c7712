"""One artifact store interface over file:// (and plain paths) and s3:// (boto3).

S3 settings come the standard AWS way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_REGION, …), so any
S3-compatible endpoint works without OSMF-specific variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse


class StoreError(OSError):
    """Storage unreachable or misbehaving (retriable for jobs)."""


class ArtifactStore(Protocol):
    uri: str

    def child(self, rel: str) -> "ArtifactStore": ...
    def exists(self, rel: str) -> bool: ...
    def read_bytes(self, rel: str) -> bytes: ...
    def write_bytes(self, rel: str, data: bytes) -> None: ...
    def list(self, rel: str = "") -> list[str]: ...
    def download(self, rel: str, dest: Path) -> Path: ...
    def upload(self, src: Path, rel: str) -> None: ...
    def local_path(self, rel: str = "") -> Path | None: ...
    def read_json(self, rel: str) -> Any: ...
    def write_json(self, rel: str, obj: Any) -> None: ...
    def fingerprint(self) -> str: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def join(base: str, rel: str) -> str:
    rel = rel.strip("/")
    return f"{base.rstrip('/')}/{rel}" if rel else base.rstrip("/")


class _JsonMixin:
    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True).encode())


class FileStore(_JsonMixin):
    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = self.root.resolve().as_uri() if self.root.is_absolute() else self.root.absolute().as_uri()

    def _path(self, rel: str) -> Path:
        return self.root / rel.strip("/") if rel.strip("/") else self.root

    def child(self, rel: str) -> "FileStore":
        return FileStore(self._path(rel))

    def exists(self, rel: str) -> bool:
        return self._path(rel).exists()

    def read_bytes(self, rel: str) -> bytes:
        return self._path(rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file and rename so readers never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def list(self, rel: str = "") -> list[str]:
        base = self._path(rel)
        if base.is_file():
            return [rel.strip("/")]
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def download(self, rel: str, dest: Path) -> Path:
        src = self._path(rel)
        dest = Path(dest)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        return dest

    def upload(self, src: Path, rel: str) -> None:
        src = Path(src)
        target = self._path(rel)
        if src.resolve() == target.resolve():
            return
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)

    def local_path(self, rel: str = "") -> Path:
        return self._path(rel)

    def fingerprint(self) -> str:
        """Digest of the listing (path, size, mtime): cheap change detection without reading data."""
        entries = []
        for rel in self.list():
            stat = self._path(rel).stat()
            entries.append(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}")
        return "sha256:" + sha256_hex("\n".join(entries).encode())


class S3Store(_JsonMixin):
    def __init__(self, bucket: str, prefix: str, client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        return self._client

    def _key(self, rel: str) -> str:
        return join(self.prefix, rel).lstrip("/")

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{self.uri}: {kwargs.get('Key', '')} not found") from None
            raise StoreError(f"s3 {method} on {self.bucket}: {code or error}") from None
        except BotoCoreError as error:
            raise StoreError(f"s3 {method} on {self.bucket}: {error}") from None

    def child(self, rel: str) -> "S3Store":
        return S3Store(self.bucket, self._key(rel), self._client)

    def exists(self, rel: str) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self._key(rel))
            return True
        except FileNotFoundError:
            return bool(self._list_keys(self._key(rel).rstrip("/") + "/", limit=1))

    def read_bytes(self, rel: str) -> bytes:
        return self._call("get_object", Bucket=self.bucket, Key=self._key(rel))["Body"].read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._call("put_object", Bucket=self.bucket, Key=self._key(rel), Body=data)

    def _list_keys(self, prefix: str, limit: int | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            out += page.get("Contents", [])
            if limit and len(out) >= limit:
                return out[:limit]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def _listing(self, rel: str = "") -> list[dict[str, Any]]:
        base = self._key(rel)
        prefix = f"{base}/" if base else ""
        return [o for o in self._list_keys(prefix) if not o["Key"].endswith("/")]

    def list(self, rel: str = "") -> list[str]:
        strip = f"{self.prefix}/" if self.prefix else ""
        keys = [o["Key"].removeprefix(strip) for o in self._listing(rel)]
        if not keys and rel and self.exists(rel):
            return [rel.strip("/")]
        return sorted(keys)

    def download(self, rel: str, dest: Path) -> Path:
        dest = Path(dest)
        files = self.list(rel)
        single = len(files) == 1 and files[0] == rel.strip("/")
        for file_rel in files:
            target = dest if single else dest / Path(file_rel).relative_to(rel.strip("/") or ".")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(file_rel))
        if not files:
            raise FileNotFoundError(f"{join(self.uri, rel)}: nothing stored there")
        return dest

    def upload(self, src: Path, rel: str) -> None:
        src = Path(src)
        if src.is_dir():
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                self.write_bytes(join(rel, path.relative_to(src).as_posix()), path.read_bytes())
        else:
            self.write_bytes(rel, src.read_bytes())

    def local_path(self, rel: str = "") -> None:
        return None

    def fingerprint(self) -> str:
        entries = [f"{o['Key']}\t{o['Size']}\t{o.get('ETag', '')}" for o in self._listing()]
        return "sha256:" + sha256_hex("\n".join(sorted(entries)).encode())


def open_store(uri: str | Path) -> ArtifactStore:
    """A store rooted at `uri`: s3://bucket/prefix, file:///path, or a plain path."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{text}: an s3 URI needs a bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return FileStore(Path(unquote(parsed.path)))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a Windows drive letter)
        return FileStore(Path(text))
    raise ValueError(f"{text}: unsupported URI scheme '{parsed.scheme}:'; use s3://, file:// or a local path")


def file_digest(store: ArtifactStore, rel: str) -> tuple[int, str]:
    """(size, sha256) of one stored file."""
    path = store.local_path(rel)
    digest = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return path.stat().st_size, digest.hexdigest()
    data = store.read_bytes(rel)
    return len(data), sha256_hex(data)


MANIFEST = "manifest.json"
PROGRESS = "progress.json"


def manifest_digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def read_manifest(store: ArtifactStore) -> tuple[dict[str, Any], str] | None:
    """The run's manifest and its digest, or None when the run is not complete."""
    try:
        data = store.read_bytes(MANIFEST)
    except FileNotFoundError:
        return None
    return json.loads(data), manifest_digest(data)
