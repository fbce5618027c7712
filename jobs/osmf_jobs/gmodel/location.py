"""Where models live: URIs and artifact stores → local directories (S3 is downloaded once to a cache)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from osmf_core.layout import GModel, GroupDPO

ADAPTER_CONFIG = "adapter_config.json"  # peft's marker of an adapter directory
HF_CONFIG = "config.json"  # a Hugging Face model directory's marker


def cache_root() -> Path:
    return Path(os.environ.get("OSMF_MODEL_CACHE") or Path.home() / ".cache" / "osmf" / "models")


def _store(source: Any):
    from osmf_core.store import open_store

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
    if not store.exists(GModel.INFO) and store.exists(f"{GModel.MODEL_DIR}/{GModel.INFO}"):
        store = store.child(GModel.MODEL_DIR)
    return local_dir(store, marker=GModel.INFO)


def adapter_dir(source: Any) -> Path:
    """The LoRA adapter directory of an adapter directory or of a GroupDPORun run directory."""
    store = _store(source)
    if not store.exists(ADAPTER_CONFIG) and store.exists(f"{GroupDPO.ADAPTER_DIR}/{ADAPTER_CONFIG}"):
        store = store.child(GroupDPO.ADAPTER_DIR)
    return local_dir(store, marker=ADAPTER_CONFIG)


def hf_model_dir(uri: str) -> Path:
    """A Hugging Face model directory (LLaVA-class) named by s3://, file:// or a local path."""
    return local_dir(uri, marker=HF_CONFIG)
