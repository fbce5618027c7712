"""Where a G-MLLM, a GRM or a LoRA adapter is inside a run, as a local directory (through the jobs'
one model resolver, `osmf_jobs.model_dirs`: local runs in place, S3 once per node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osmf_core.layout import GModel, GroupDPO
from osmf_core.store import ArtifactStore, open_store
from osmf_jobs.model_dirs import model_dir
from osmf_jobs.runtime import InvalidInput

ADAPTER_CONFIG = "adapter_config.json"  # peft's marker of an adapter directory
MODEL_INFO = f"{GModel.MODEL_DIR}/{GModel.INFO}"  # a GMLLMTraining run's G-MLLM, by its info file


def _store(source: Any) -> ArtifactStore:
    return open_store(source) if isinstance(source, (str, Path)) else source


def _inner(source: Any, directory: str, marker: str) -> ArtifactStore:
    """A run's `directory` when `source` is the run, else `source` itself (the directory)."""
    store = _store(source)
    if not store.exists(marker) and store.exists(f"{directory}/{marker}"):
        return store.child(directory)
    return store


def gmodel_dir(source: Any, what: str = "G-MLLM", fix: str = "point it at a GMLLMTraining run") -> Path:
    """The G-MLLM directory of a GMLLMTraining run or of the model directory itself (a store, a URI
    or a path); InvalidInput "<what>: <uri> has no gmodel.json; <fix>" when there is none."""
    return model_dir(_inner(source, GModel.MODEL_DIR, GModel.INFO), what, GModel.INFO, fix)


def adapter_dir(source: Any, what: str = "LoRA adapter", fix: str = "point it at a GroupDPORun run") -> Path:
    """The LoRA adapter directory of a GroupDPORun run or of the adapter directory itself."""
    return model_dir(_inner(source, GroupDPO.ADAPTER_DIR, ADAPTER_CONFIG), what, ADAPTER_CONFIG, fix)


def model_role(run: ArtifactStore, field: str) -> str:
    """The role (`policy` or `reward`) of the G-MLLM a GMLLMTraining run holds, read from the store
    without downloading the model."""
    if not run.exists(MODEL_INFO):
        raise InvalidInput(f"{field}: {run.uri} holds no G-MLLM ({MODEL_INFO} missing); point it at a GMLLMTraining run")
    return str(run.read_json(MODEL_INFO).get("role"))
