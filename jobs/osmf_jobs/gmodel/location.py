"""Where models live: URIs and artifact stores → local directories (S3 is downloaded once to a cache)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

MODEL_SUBDIR = "model"  # a GMLLMTraining run keeps its model here
ADAPTER_SUBDIR = "adapter"  # a GroupDPORun run keeps its LoRA adapter here
POLICY_REF = "policy.json"  # … and says here which policy the adapter belongs to


def cache_root() -> Path:
    return Path(os.environ.get("OSMF_MODEL_CACHE") or Path.home() / ".cache" / "osmf" / "models")


def _store(source: Any):
    from osmf_operator.store import open_store

    return open_store(source) if isinstance(source, (str, Path)) else source


def local_dir(source: Any, marker: str | None = None) -> Path:
    """A local directory holding `source` (a store, a URI or a path).

    Local stores are used in place; remote ones are downloaded to the cache, keyed by URI, and a
    `.complete` file marks a finished download so an interrupted one is redone. `marker` names a file
    that must exist in the directory (a clear error instead of a confusing one later).
    """
    store = _store(source)
    path = store.local_path("")
    if path is None:
        path = cache_root() / hashlib.sha256(store.uri.encode()).hexdigest()[:24]
        if not (path / ".complete").exists():
            if path.exists():
                shutil.rmtree(path)
            store.download("", path)
            (path / ".complete").write_text(store.uri)
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{store.uri}: no such directory")
    if marker is not None and not (Path(path) / marker).exists():
        raise FileNotFoundError(f"{store.uri}: no {marker} there")
    return Path(path)


def gmodel_dir(source: Any) -> Path:
    """The G-MLLM directory of a model directory or of a GMLLMTraining run directory."""
    store = _store(source)
    if not store.exists("gmodel.json") and store.exists(f"{MODEL_SUBDIR}/gmodel.json"):
        store = store.child(MODEL_SUBDIR)
    return local_dir(store, marker="gmodel.json")


def adapter_dir(source: Any) -> Path:
    """The LoRA adapter directory of an adapter directory or of a GroupDPORun run directory."""
    store = _store(source)
    if not store.exists("adapter_config.json") and store.exists(f"{ADAPTER_SUBDIR}/adapter_config.json"):
        store = store.child(ADAPTER_SUBDIR)
    return local_dir(store, marker="adapter_config.json")


def hf_model_dir(uri: str) -> Path:
    """A Hugging Face model directory (LLaVA-class) named by s3://, file:// or a local path."""
    return local_dir(uri, marker="config.json")
