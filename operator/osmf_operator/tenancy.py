"""Tenancy: what a namespace's specs may read, and with which identity (pure; docs/operator.md, "Tenancy").

Every spec field marked `READS` on the API models (data, encoder, base-model, captioner and
rendering model URIs) must lie under one of the namespace's `allowedUriPrefixes` (operator
settings, per tenant or the platform's), or under the namespace's own run directories
(`<root>/<namespace>/`). `builtin:` models ship in the images and are always allowed. The check
runs before the operator reads anything for the resource: a URI outside the list is never listed,
fingerprinted or read.
"""

from __future__ import annotations

import base64
import posixpath
from typing import Any
from urllib.parse import urlparse

from osmf_core.api import Resource
from osmf_core.api.common import read_uris
from osmf_core.layout import join
from osmf_core.store import S3Credentials

from .settings import ArtifactSettings

URI_NOT_ALLOWED = "UriNotAllowed"
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def canonical(uri: str) -> str | None:
    """The URI with a plain absolute path as file://; None when a `.`/`..` segment (or a relative path)
    could make a prefix test lie."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:
        if not uri.startswith("/"):
            return None
        uri, parsed = f"file://{uri}", urlparse(f"file://{uri}")
    segments = parsed.path.split("/")
    if any(part in (".", "..") for part in segments):
        return None
    if parsed.scheme == "file":
        return "file://" + posixpath.normpath(parsed.path or "/")
    return uri


def under(uri: str, prefix: str) -> bool:
    """`uri` is `prefix` or inside it, at a path boundary (s3://data does not cover s3://data-2)."""
    base = prefix.rstrip("/")
    return uri == base or uri.startswith(base + "/")


def own_runs(artifacts: ArtifactSettings, namespace: str) -> str:
    return join(artifacts.root_uri, namespace) + "/"


def uri_problems(resource: Resource, artifacts: ArtifactSettings) -> list[str]:
    """One `spec.path: message` per URI the namespace may not read; empty when the allow-list is empty."""
    prefixes = artifacts.allowed_uri_prefixes
    if not prefixes or resource.spec is None:
        return []
    namespace = resource.namespace
    own = own_runs(artifacts, namespace)
    problems = []
    for path, uri in read_uris(resource.spec):
        if uri.startswith("builtin:"):
            continue
        found = canonical(uri)
        if found is None:
            problems.append(f"{path}: {uri} is relative or has '.'/'..' segments; write it as an absolute URI without them")
        elif not any(under(found, p) for p in (*prefixes, own)):
            problems.append(
                f"{path}: {uri} is outside what namespace {namespace} may read ({', '.join(prefixes)}, or its own runs "
                f"under {own}); use a URI there, or ask the platform team to allow it (operator settings "
                f"tenants.{namespace}.allowedUriPrefixes)")
    return problems


def credentials_from_secret(data: dict[str, Any] | None, artifacts: ArtifactSettings, where: str) -> S3Credentials:
    """The S3 identity a tenant's credentials Secret holds (its `data`, base64 as the API returns it)."""
    if data is None:
        raise LookupError(f"Secret {where} with the namespace's artifact credentials does not exist; create it "
                          f"with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    values = {}
    for key in SECRET_KEYS:
        if key in data:
            values[key] = base64.b64decode(data[key]).decode().strip()
    missing = [key for key in SECRET_KEYS[:2] if not values.get(key)]
    if missing:
        raise LookupError(f"Secret {where} lacks {', '.join(missing)}; add it")
    return S3Credentials(endpoint_url=artifacts.endpoint_url, region=artifacts.region,
                         access_key_id=values["AWS_ACCESS_KEY_ID"], secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
                         session_token=values.get("AWS_SESSION_TOKEN") or None)
