"""Model URIs → local directories: the one resolver of every job that loads a model by URI (the PAAG
encoders, the captioner, the renderer's diffusion models, the G-MLLM, its GRM and LoRA adapters).

    path = model_dir(uri, what="spec.model.textEncoder", marker="config.json", fix="save it with save_pretrained()")
    path = cached_dir("builtin/tiny-sd-…", build)       # a consumer's built-in model, built once per node

- A local path or `file://` URI is used in place (checked to be a directory holding `marker`).
- `s3://` is downloaded once per node into the cache directory (`$OSMF_MODEL_CACHE`, default
  `~/.cache/osmf/models`), keyed by the URI and the listing's fingerprint (a re-uploaded model is a
  new entry). Every process of the node (torchrun ranks, shards, jobs) goes through `cached_dir`:
  one inter-process file lock per entry, so one process downloads while the others wait; the entry's
  completion marker is written last, so a download that was killed half-way (no marker) is removed
  and redone by the next process that takes the lock, and no process ever deletes files another
  is still writing.
- `builtin:` URIs are each consumer's business; a consumer that saves a built-in model to disk
  does it through `cached_dir` too (same cache, same lock).

Problems raise `InvalidInput`, one line: `<what>: <uri> <problem>; <fix>`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from osmf_core.store import ArtifactStore, open_store
from osmf_jobs.runtime import InvalidInput

MODEL_CACHE_ENV = "OSMF_MODEL_CACHE"
HF_CONFIG = "config.json"  # the marker of a Hugging Face model directory
COMPLETE_SUFFIX = ".complete"  # <entry>.complete beside the entry: written last
LOCK_SUFFIX = ".lock"  # <entry>.lock beside the entry: held while the entry is checked or filled


def cache_root() -> Path:
    """This node's model cache: `$OSMF_MODEL_CACHE`, else `~/.cache/osmf/models`."""
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path.home() / ".cache" / "osmf" / "models")


def cached_dir(key: str, fill: Callable[[Path], Any]) -> Path:
    """`<cache>/<key>`, filled by `fill(path)` (which writes into an empty directory) unless a
    complete copy is there. Safe across processes: see the module docstring."""
    # filelock (fcntl.flock on Linux) rather than a hand-written lock: the kernel drops the lock when
    # its holder dies, so a killed download never blocks the node.
    from filelock import FileLock

    path = cache_root() / key
    complete = path.with_name(path.name + COMPLETE_SUFFIX)
    if complete.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + LOCK_SUFFIX)):
        if complete.exists():  # another process filled it while this one waited
            return path
        if path.exists():  # a fill that died half-way: its files are nobody's now
            shutil.rmtree(path)
        path.mkdir()
        fill(path)
        complete.write_text(key)
    return path


def _store(source: str | Path | ArtifactStore, what: str) -> ArtifactStore:
    if not isinstance(source, (str, Path)):
        return source
    try:
        return open_store(source)
    except ValueError as error:
        raise InvalidInput(f"{what}: {error}") from None


def model_dir(source: str | Path | ArtifactStore, what: str, marker: str, fix: str = "point it at a model directory") -> Path:
    """A local directory holding the model `source` names (a URI, a path or an artifact store),
    checked to contain `marker` (a file that makes it a model directory, e.g. config.json)."""
    store = _store(source, what)
    uri = str(source) if isinstance(source, (str, Path)) else store.uri  # as the user wrote it
    local = store.local_path("")
    if local is not None:
        problem = ("does not exist" if not local.exists() else "is not a directory" if not local.is_dir()
                   else f"has no {marker}" if not (local / marker).is_file() else None)
        if problem:
            raise InvalidInput(f"{what}: {uri} {problem}; {fix}")
        return local
    if not store.exists(marker):
        raise InvalidInput(f"{what}: {uri} has no {marker}; {fix}")
    key = hashlib.sha256(f"{store.uri}\n{store.fingerprint()}".encode()).hexdigest()[:24]

    def download(dest: Path) -> None:
        print(f"osmf: downloading {uri} into {dest}", file=sys.stderr, flush=True)
        store.download("", dest)

    return cached_dir(f"s3/{key}", download)
