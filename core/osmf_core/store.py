"""One artifact store interface over file:// (and plain paths) and s3:// (boto3).

S3 settings come the standard AWS way (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_REGION, …), so any
S3-compatible endpoint works without OSMF-specific variables (botocore addresses a custom endpoint
path-style, `http://host/bucket/key`, so no wildcard DNS is needed).

Per-namespace identities (operator tenancy): `open_store(uri, credentials=S3Credentials(...))` reads
with that identity and endpoint instead of the process-wide environment; one client per identity.

Errors: a missing file or key raises FileNotFoundError; an unreachable or failing store raises
StoreError (retriable for jobs). Files travel by streaming through boto3's managed transfer
(multipart uploads and ranged parallel downloads above a threshold), never whole in memory, so
multi-GB model shards and checkpoints are fine. The threshold and part size come from
`OSMF_S3_MULTIPART_THRESHOLD_MB` / `OSMF_S3_MULTIPART_CHUNK_MB` (the operator sets them from its
settings, `artifacts.multipartThresholdMb` / `multipartChunkMb`): S3 allows 10,000 parts, so the
part size bounds the largest object (64 MiB parts: 640 GiB; boto3's 8 MiB default: 80 GiB).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from .layout import MANIFEST, join


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
    def delete(self, rel: str) -> int: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _JsonMixin:
    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True).encode())


TMP_SUFFIX = ".osmf-tmp"  # FileStore's half-written files; never listed


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; other pods (other uids) read artifacts too
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def list(self, rel: str = "") -> list[str]:
        base = self._path(rel)
        if base.is_file():
            return [rel.strip("/")]
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(TMP_SUFFIX)
        )

    def download(self, rel: str, dest: Path) -> Path:
        src = self._path(rel)
        dest = Path(dest)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(f"*{TMP_SUFFIX}"))
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

    def delete(self, rel: str) -> int:
        """Remove a file or everything under a prefix; returns how many files went (0: nothing there)."""
        if not rel.strip("/"):
            raise ValueError("delete needs a path below the store's root")
        target = self._path(rel)
        if target.is_file():
            target.unlink()
            return 1
        if not target.exists():
            return 0
        count = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target)
        return count

    def fingerprint(self) -> str:
        """Digest of the listing (path, size, mtime): cheap change detection without reading data."""
        entries = []
        for rel in self.list():
            stat = self._path(rel).stat()
            entries.append(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}")
        return "sha256:" + sha256_hex("\n".join(entries).encode())


@dataclass(frozen=True)
class S3Credentials:
    """One S3 identity and where it reaches the store; a None field falls back to boto3's usual chain
    (environment, config files, workload identity). `repr` never shows the secret."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"S3Credentials(endpoint_url={self.endpoint_url!r}, region={self.region!r}, access_key_id={self.access_key_id!r})"


def _client_config() -> Any:
    from botocore.config import Config

    return Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,  # the default (60 s) × 5 attempts would hide an unreachable store for minutes
        read_timeout=120,
    )


@functools.lru_cache(maxsize=8)
def _environment_client(endpoint: str | None, access_key: str | None, region: str | None, pid: int) -> Any:
    """Keyed by the variables that pick the endpoint and identity, so a changed environment gets a new
    client, and by process: clients are thread-safe but not fork-safe (a forked DataLoader worker
    reading through its parent's connection pool got another process's bytes, "Expected checksum …
    did not match"); boto3 reads the rest of the environment itself."""
    import boto3

    return boto3.client("s3", config=_client_config())


MULTIPART_THRESHOLD_ENV = "OSMF_S3_MULTIPART_THRESHOLD_MB"
MULTIPART_CHUNK_ENV = "OSMF_S3_MULTIPART_CHUNK_MB"
DEFAULT_MULTIPART_MB = 64


def _megabytes(name: str) -> float:
    text = os.environ.get(name) or str(DEFAULT_MULTIPART_MB)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: give a number of MiB, e.g. {DEFAULT_MULTIPART_MB}") from None
    if value <= 0:
        raise ValueError(f"{name}={text!r}: must be above 0")
    return value


def transfer_config() -> Any:
    """boto3's managed-transfer settings: multipart above the threshold, in parts of the chunk size
    (S3's minimum part is 5 MiB; SeaweedFS and MinIO accept smaller ones, which the tests use)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=int(_megabytes(MULTIPART_THRESHOLD_ENV) * 2**20),
        multipart_chunksize=int(_megabytes(MULTIPART_CHUNK_ENV) * 2**20),
    )


def default_s3_client() -> Any:
    """The client the standard AWS environment describes (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, …)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return _environment_client(endpoint, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                               os.getpid())


@functools.lru_cache(maxsize=64)
def s3_client_for(credentials: S3Credentials, pid: int) -> Any:
    """One client per identity and process (clients are thread-safe and slow to build, not fork-safe)."""
    import boto3

    return boto3.client(
        "s3", config=_client_config(), endpoint_url=credentials.endpoint_url, region_name=credentials.region,
        aws_access_key_id=credentials.access_key_id, aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


class S3Store(_JsonMixin):
    def __init__(self, bucket: str, prefix: str, client: Any = None, credentials: S3Credentials | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self.credentials = credentials
        self._owned = client is None  # made here: remade in a forked child
        self._pid = os.getpid()

    @property
    def client(self) -> Any:
        if self._client is None or (self._owned and self._pid != os.getpid()):
            pid = os.getpid()
            self._client = s3_client_for(self.credentials, pid) if self.credentials is not None else default_s3_client()
            self._pid = pid
        return self._client

    def _key(self, rel: str) -> str:
        return join(self.prefix, rel).lstrip("/")

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = ""):
        """botocore's and boto3's exceptions → FileNotFoundError (no such key) or StoreError (the rest)."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as error:
            # boto3's transfer errors wrap the ClientError that says what happened.
            client_error = error if isinstance(error, ClientError) else error.__cause__ or error.__context__
            code = str(client_error.response.get("Error", {}).get("Code", "")) if isinstance(client_error, ClientError) else ""
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{self.uri}: {self._relative(key)} not found") from None
            raise StoreError(f"s3 {action} s3://{self.bucket}/{key}: {code or error}") from None

    def _call(self, method: str, **kwargs: Any) -> Any:
        with self._errors(method, kwargs.get("Key", kwargs.get("Prefix", ""))):
            return getattr(self.client, method)(**kwargs)

    def child(self, rel: str) -> "S3Store":
        return S3Store(self.bucket, self._key(rel), None if self._owned else self._client, self.credentials)

    def exists(self, rel: str) -> bool:
        key = self._key(rel)
        if key:
            try:
                self._call("head_object", Bucket=self.bucket, Key=key)
                return True
            except FileNotFoundError:
                pass
        return bool(self._list_keys(f"{key.rstrip('/')}/" if key else "", limit=1))

    def read_bytes(self, rel: str) -> bytes:
        key = self._key(rel)
        with self._errors("get_object", key):  # the body streams: a dropped connection surfaces on read()
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

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

    def _relative(self, key: str) -> str:
        return key.removeprefix(f"{self.prefix}/") if self.prefix else key

    def list(self, rel: str = "") -> list[str]:
        keys = [self._relative(o["Key"]) for o in self._listing(rel)]
        if not keys and rel.strip("/") and self.exists(rel):
            return [rel.strip("/")]
        return sorted(keys)

    def delete(self, rel: str) -> int:
        """Remove a key or every key under a prefix (batches of 1,000, S3's limit per request)."""
        if not rel.strip("/"):
            raise ValueError("delete needs a path below the store's root")
        key = self._key(rel)
        keys = [o["Key"] for o in self._list_keys(f"{key}/")]
        if not keys and self.exists(rel):
            keys = [key]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def download(self, rel: str, dest: Path) -> Path:
        dest = Path(dest)
        base = rel.strip("/")
        files = self.list(rel)
        if not files:
            raise FileNotFoundError(f"{join(self.uri, rel)}: nothing stored there")
        single = files == [base] and base != ""
        for file_rel in files:
            target = dest if single else dest / (file_rel[len(base) + 1:] if base else file_rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            key = self._key(file_rel)
            with self._errors("download", key):
                self.client.download_file(self.bucket, key, str(target), Config=transfer_config())
        return dest

    def upload(self, src: Path, rel: str) -> None:
        src = Path(src)
        if src.is_dir():
            pairs = [(path, join(rel, path.relative_to(src).as_posix())) for path in sorted(src.rglob("*")) if path.is_file()]
        elif src.is_file():
            pairs = [(src, rel)]
        else:
            raise FileNotFoundError(f"{src}: no such file or directory")
        for path, file_rel in pairs:
            key = self._key(file_rel)
            with self._errors("upload", key):
                self.client.upload_file(str(path), self.bucket, key, Config=transfer_config())

    def local_path(self, rel: str = "") -> None:
        return None

    def fingerprint(self) -> str:
        """Digest of the listing (path relative to this store, size, ETag), like FileStore's."""
        entries = [f"{self._relative(o['Key'])}\t{o['Size']}\t{o.get('ETag', '')}" for o in self._listing()]
        return "sha256:" + sha256_hex("\n".join(sorted(entries)).encode())


def open_store(uri: str | Path, credentials: S3Credentials | None = None) -> ArtifactStore:
    """A store rooted at `uri`: s3://bucket/prefix, file:///path, or a plain path.

    `credentials`: the S3 identity and endpoint to use instead of the environment's (file stores ignore it)."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{text}: an s3 URI needs a bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path, credentials=credentials)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{text}: file URIs are absolute (file:///path); for a relative path drop the scheme")
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


def manifest_digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def read_manifest(store: ArtifactStore) -> tuple[dict[str, Any], str] | None:
    """The run's manifest and its digest, or None when the run is not complete."""
    try:
        data = store.read_bytes(MANIFEST)
    except FileNotFoundError:
        return None
    return json.loads(data), manifest_digest(data)
