"""CustomResourceDefinitions generated from the typed API (`osmf_core.api`).

The pydantic models are the source of truth; this module turns their JSON schema into the
structural OpenAPI v3 schema the API server wants:

- every `$ref` inlined, `anyOf: [X, null]` → X with `nullable: true`, titles dropped;
- JSON Schema 2020-12 bounds (`exclusiveMinimum: 0`) → OpenAPI 3.0 (`minimum: 0, exclusiveMinimum: true`);
- `x-kubernetes-validations` (CEL) carried from the models' `json_schema_extra`, model and field level;
- spec defaults from the models, kept minimal: a nested object's default lists only what differs from
  its own fields' defaults (`{}` when nothing does), so the API server fills in the rest;
- status has no defaults (the operator writes it whole); its conditions are a list-map keyed by type.

Output is deterministic (sorted keys, no timestamps): `check()` compares byte for byte.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema

from osmf_core.api import GROUP, KINDS, VERSION, KindInfo, OsmfStatus

CATEGORY = "osmf"
HEADER = "# Generated from osmf_core.api by `osmf crds` (make generate). Do not edit.\n"
# Where `osmf crds` writes by default, relative to the repository root: the CRDs and the chart's copy.
DEFAULT_OUT_DIRS = ("crds", "charts/osmf/files/crds")

# Keywords a structural schema may carry; anything else in the pydantic output is a bug to fix here.
ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "default",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "minProperties", "maxProperties", "format", "nullable",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
}


class CrdSchemaError(ValueError):
    """The models use a construct a structural schema cannot express."""


class _SchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, but defaults made by `default_factory` are shown too."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema)


def model_schema(model: type, *, with_defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_SchemaGenerator)
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs, with_defaults, "")
    if with_defaults:
        _minimise_defaults(schema)
    return schema


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref`, unwrap single `allOf`/`anyOf` and nullable unions; siblings override the target."""
    node = dict(node)
    nullable = False
    if "anyOf" in node:
        union = node.pop("anyOf")
        branches = [b for b in union if b != {"type": "null"}]
        if len(branches) != 1:
            raise CrdSchemaError(f"unions are not structural: {branches}")
        nullable = len(branches) < len(union)
        node = _merge(branches[0], node)
    if "allOf" in node:
        branches = node.pop("allOf")
        if len(branches) != 1:
            raise CrdSchemaError(f"allOf with several schemas is not structural: {branches}")
        node = _merge(branches[0], node)
    if "$ref" in node:
        target = defs[node.pop("$ref").removeprefix("#/$defs/")]
        node = _merge(target, node)
        if "$ref" in node or "anyOf" in node or "allOf" in node:
            node = _resolve(node, defs)
    if nullable:
        node["nullable"] = True
    return node


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Field-level keys win over the referenced model's, except CEL rules, which add up."""
    out = {**base, **override}
    rules = base.get("x-kubernetes-validations", []) + override.get("x-kubernetes-validations", [])
    if rules:
        out["x-kubernetes-validations"] = rules
    return out


def _structural(node: dict[str, Any], defs: dict[str, Any], with_defaults: bool, path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields; `kubectl --validate=strict` rejects them
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key not in ALLOWED_KEYS:
            raise CrdSchemaError(f"{path or '<root>'}: keyword {key!r} has no structural equivalent")
        out[key] = value
    if "default" in out:
        default = _drop_nulls(out["default"])
        if default is None or not with_defaults:
            del out["default"]
        else:
            out["default"] = default
    if "properties" in out:
        out["properties"] = {
            name: _structural(prop, defs, with_defaults, f"{path}.{name}") for name, prop in out["properties"].items()
        }
        out.setdefault("type", "object")
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(out["additionalProperties"], defs, with_defaults, f"{path}.*")
    if "items" in out:
        out["items"] = _structural(out["items"], defs, with_defaults, f"{path}[]")
    if out.get("type") == "string" and "enum" in out and "maxLength" not in out:
        out["maxLength"] = max(len(v) for v in out["enum"])  # bounds CEL cost estimates
    if "type" not in out:
        raise CrdSchemaError(f"{path or '<root>'}: every structural schema node needs a type")
    return out


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Default a value the way the API server does: absent properties get their default, then recurse."""
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
        for name, item in value.items():
            if name in schema["properties"]:
                apply_defaults(schema["properties"][name], item)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for item in value.values():
            apply_defaults(schema["additionalProperties"], item)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def _minimise_defaults(schema: dict[str, Any]) -> None:
    """Drop from object defaults whatever the nested properties' own defaults would fill in (bottom-up)."""
    for prop in schema.get("properties", {}).values():
        _minimise_defaults(prop)
    if "items" in schema:
        _minimise_defaults(schema["items"])
    default = schema.get("default")
    if isinstance(default, dict) and "properties" in schema:
        schema["default"] = _minimal(schema, default)


def _minimal(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, item in value.items():
        prop = schema["properties"].get(name, {})
        if "default" in prop:
            filled = apply_defaults(prop, copy.deepcopy(prop["default"]))
            if filled == apply_defaults(prop, copy.deepcopy(item)):
                continue
        out[name] = _minimal(prop, item) if isinstance(item, dict) and "properties" in prop else item
    return out


def printer_columns(info: KindInfo) -> list[dict[str, Any]]:
    def condition(type_: str) -> str:
        return f'.status.conditions[?(@.type=="{type_}")].status'

    columns = [
        {"name": "Stage", "type": "string", "jsonPath": ".status.stage", "description": "Human-readable stage."},
        {"name": "Succeeded", "type": "string", "jsonPath": condition("Succeeded"), "description": "Outcome of the run: True, False or Unknown while it runs."},
        {"name": "Ready", "type": "string", "jsonPath": condition("Ready"), "description": "Spec reconciled and nothing blocks."},
        {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent", "description": "Completion of the running stage in percent."},
        {
            "name": "Metric", "type": "string", "jsonPath": ".status.summary",
            "description": f"Key metric of the last successful run ({', '.join(info.key_metrics)}).",
        },
    ]
    for column in info.extra_columns:
        entry = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return columns


def open_api_schema(info: KindInfo) -> dict[str, Any]:
    """The whole object's openAPIV3Schema; metadata is left to the API server."""
    spec = model_schema(info.spec_model)
    status = model_schema(OsmfStatus, with_defaults=False)
    return {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: osmf.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of this object: {info.kind}."},
            # The API server refuses anything but the type here (even a description).
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {**status, "description": "Observed state, written by the operator (kstatus conventions)."},
        },
    }


def crd_for(info: KindInfo) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": [info.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns(info),
                "schema": {"openAPIV3Schema": open_api_schema(info)},
            }],
        },
    }


def crd_filename(info: KindInfo) -> str:
    return f"{info.plural}.{GROUP}.yaml"


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors or aliases where the models share a sub-schema."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(crd: dict[str, Any]) -> str:
    body = yaml.dump(crd, Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=120, default_flow_style=False)
    return HEADER + body


def render_crds() -> dict[str, str]:
    """File name → YAML text, one CRD per kind."""
    return {crd_filename(info): render(crd_for(info)) for info in KINDS.values()}


def generate(out_dir: str | Path) -> list[Path]:
    """Write every CRD into out_dir; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(out_dir: str | Path) -> list[str]:
    """One line per file in out_dir that differs from the models (missing, changed or stale)."""
    out = Path(out_dir)
    expected = render_crds()
    drift = []
    for name, text in expected.items():
        path = out / name
        if not path.is_file():
            drift.append(f"{path}: missing; run `make generate`")
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            drift.append(f"{path}: differs from the API models ({_first_difference(current, text)}); run `make generate`")
    if out.is_dir():
        for path in sorted(out.glob(f"*.{GROUP}.yaml")):
            if path.name not in expected:
                drift.append(f"{path}: no such kind in the API models; delete it")
    return drift


def _first_difference(current: str, expected: str) -> str:
    old, new = current.splitlines(), expected.splitlines()
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return f"line {number}: {a.strip()!r} should be {b.strip()!r}"
    return f"{len(old)} lines, expected {len(new)}"
