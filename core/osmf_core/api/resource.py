"""Whole objects (apiVersion, kind, metadata, spec, status) and readable spec errors."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .common import API_VERSION, ApiModel, OsmfStatus
from .kinds import KINDS, KindInfo


class SpecError(ValueError):
    """A resource that does not validate; `problems` are one-line `path: message` strings."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str = "default"
    uid: str = ""
    generation: int = 1
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass
class Resource:
    """A parsed OSMF object: the typed spec plus its status as last written."""

    info: KindInfo
    metadata: Metadata
    spec: ApiModel
    status: OsmfStatus
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


def field_path(prefix: str, loc: tuple[Any, ...]) -> str:
    """`spec.userAttributes[0]`: the Kubernetes field-path spelling of a pydantic location."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def unknown_field(name: str, known: list[str]) -> str:
    """The message for a field the model does not have, with the nearest known name when one is close."""
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f"unknown field; did you mean {close[0]}?" if close else "unknown field; remove it or check its spelling"


def field_names_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The wire names of the model section at `loc` (list indexes skipped); empty when it is not a model."""
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        model = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def format_errors(error: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> list[str]:
    """One `path: message` per error; with `model`, an unknown field names its nearest known one."""
    problems = []
    for item in error.errors():
        path = field_path(prefix, item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown_field(item["loc"][-1], field_names_at(model, tuple(item["loc"][:-1])))
        elif item["type"] == "missing":
            message = "required field is missing; add it"
        elif isinstance(item.get("input"), (str, int, float, bool)) and item["type"] != "value_error":
            got = repr(item["input"])
            message += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
        problems.append(f"{path}: {message}")
    return problems


def kind_info(doc: dict[str, Any]) -> KindInfo:
    if not isinstance(doc, dict):
        raise SpecError(["<document>: not a mapping; each YAML document must be one object"])
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(KINDS)
        raise SpecError([f"kind: unknown kind {kind!r}; use one of {known}"])
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise SpecError([f"apiVersion: {api_version!r} is not served; use {API_VERSION}"])
    return KINDS[kind]


def parse_resource(doc: dict[str, Any], default_namespace: str = "default") -> Resource:
    """Validate a whole object; raise SpecError naming every bad field."""
    info = kind_info(doc)
    problems: list[str] = []
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    problems += [f"{key}: unknown top-level field; remove it" for key in unknown]
    metadata = None
    raw_metadata = doc.get("metadata") or {}
    if not isinstance(raw_metadata, dict):
        problems.append("metadata: must be a mapping with at least a name")
    else:
        try:
            metadata = Metadata.model_validate({"namespace": default_namespace, **raw_metadata})
        except ValidationError as error:
            problems += format_errors(error, "metadata", Metadata)
    spec = None
    if "spec" not in doc:
        problems.append("spec: required field is missing; add it")
    else:
        try:
            spec = info.spec_model.model_validate(doc["spec"])
        except ValidationError as error:
            problems += format_errors(error, "spec", info.spec_model)
    status = None
    try:
        status = OsmfStatus.model_validate(doc.get("status") or {})
    except ValidationError as error:
        problems += format_errors(error, "status")
    if problems:
        raise SpecError(problems)
    return Resource(info=info, metadata=metadata, spec=spec, status=status, body=doc)
