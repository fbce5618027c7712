"""`osmf validate FILE|DIR`: every problem in a set of resource files, one line each, never a traceback.

Each YAML document is checked twice, as the cluster would: by the typed models (`parse_resource`,
what the operator runs) and by the generated CRD's openAPIV3Schema through jsonschema (what the API
server's structural validation rejects: wrong JSON types the models would coerce, unknown fields,
bounds). CEL rules are mirrored by the models; transition rules need an old object and are left to
the API server.

Then the set is checked as a whole:
- a reference to a resource that is not in the files is a **warning**: it may already exist in the
  namespace, and a resource whose dependency is missing waits for it instead of failing;
- a reference to a resource in the files that cannot satisfy it (wrong task) is an **error**: the
  files would replace whatever the cluster has under that name;
- the same kind/namespace/name defined twice is an **error** (the second silently replaces the first);
- documents of other API groups (a Namespace, a Secret) are skipped with a warning.

`osmf validate` and `osmf render` also check what depends on the operator settings (node pools,
the job config's size, the namespace's allowed URI prefixes), against `--settings FILE` or the defaults, with the operator's own check
(`builders.spec_problems`); both read their input through `check_for_cluster`, so they agree on
every input. Only errors should make a command fail (`has_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from osmf_core.api import API_VERSION, GROUP, KINDS, SpecError, parse_resource
from osmf_core.api.resource import Resource, field_path, unknown_field

from .builders import spec_problems
from .settings import OperatorSettings, SettingsError, parse_settings
from .tenancy import uri_problems

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding. `doc` is 1-based; `line` is set for YAML syntax errors only."""

    file: str
    message: str
    doc: int | None = None
    line: int | None = None
    column: int | None = None
    obj: str = ""
    path: str = ""
    severity: str = ERROR

    def __str__(self) -> str:
        """`file:doc#N Kind/name: spec.path: message`, or `file:line:col: message` for syntax errors."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        if self.doc is not None:
            where += f":doc#{self.doc}"
        if self.obj:
            where += f" {self.obj}"
        message = f"warning: {self.message}" if self.severity == WARNING else self.message
        return ": ".join([where, *([self.path] if self.path else []), message])

    @property
    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.doc or 0, self.line or 0)


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.severity == ERROR for p in problems)


# ---- reading ------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys (kubectl's strict decoding does too)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark,
            )
        if isinstance(key, (str, int, float, bool)):
            seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    files, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                problems.append(Problem(str(path), "no .yaml or .yml files in this directory", severity=WARNING))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), "no such file or directory"))
    return files, problems


def _load(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """(1-based index, document) for every non-empty document, and the file's syntax problem if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], [Problem(str(path), f"cannot read: {error}")]
    docs: list[tuple[int, Any]] = []
    index = 0
    try:
        for index, body in enumerate(yaml.load_all(text, Loader=_StrictLoader), start=1):
            if body is not None:
                docs.append((index, body))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        if problem.startswith("duplicate key"):
            message = f"invalid YAML: {problem} (keep one of them)"
        else:
            detail = f"{context}: {problem}" if context else problem
            message = f"invalid YAML: {detail} (fix the syntax; documents are separated by ---)"
        return docs, [Problem(
            str(path), message,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        )]
    return docs, []


# ---- one document -------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def json_schema(kind: str) -> dict[str, Any]:
    """The kind's CRD openAPIV3Schema as a strict JSON Schema (draft 4, as OpenAPI 3.0 is)."""
    from .crdgen import crd_for

    crd = crd_for(KINDS[kind])
    return to_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI structural schema → JSON Schema with the API server's strictness.

    nullable → a null type; properties without additionalProperties → closed (like
    `kubectl apply --validate=strict`, the default); list-type set → uniqueItems.
    """
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for name, types in (("boolean", bool), ("integer", int), ("number", float), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, types):
            return name
    return type(value).__name__


def schema_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for everything the CRD's structural schema rejects."""
    validator = jsonschema.Draft4Validator(json_schema(doc["kind"]))
    found: list[tuple[str, str]] = []
    for error in validator.iter_errors(doc):
        loc = tuple(error.absolute_path)
        if error.validator == "required":
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    found.append((field_path("", (*loc, name)), "required field is missing; add it"))
        elif error.validator == "additionalProperties":
            allowed = error.schema.get("properties", {})
            for name in sorted(set(error.instance) - set(allowed), key=str):
                found.append((field_path("", (*loc, str(name))), unknown_field(str(name), sorted(allowed))))
        elif error.validator == "type":
            expected = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
            message = f"must be of type {expected}, got {_json_type(error.instance)} {error.instance!r}"
            if isinstance(error.instance, str) and _json_type(_yaml_scalar(error.instance)) in expected:
                message += " (remove the quotes)"
            found.append((field_path("", loc), message))
        elif error.validator == "enum":
            allowed = ", ".join(repr(v) for v in error.validator_value if v is not None)
            found.append((field_path("", loc), f"must be one of {allowed} (got {error.instance!r})"))
        else:
            found.append((field_path("", loc), f"{error.message} (CRD schema: {error.validator})"))
    return sorted(set(found))


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _object_label(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "?"
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else "?"
    return f"{kind}/{name}"


def _is_foreign(doc: dict[str, Any]) -> bool:
    """Another API group's object (a Namespace, a Secret): not ours to judge."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return False
    return kind not in KINDS and api_version.split("/")[0] != GROUP


def _split(problem: str) -> tuple[str, str]:
    path, _, message = problem.partition(": ")
    return (path, message) if message else ("", problem)


def check_document(file: str, index: int, doc: Any, default_namespace: str = "default") -> tuple[Resource | None, list[Problem]]:
    """The typed resource (when it parses) and every problem of one document."""
    obj = _object_label(doc)

    def problem(path: str, message: str, severity: str = ERROR) -> Problem:
        return Problem(file, message, doc=index, obj=obj, path=path, severity=severity)

    if not isinstance(doc, dict):
        return None, [problem("", f"not a mapping but {_article(_json_type(doc))}; each YAML document must be one object")]
    if _is_foreign(doc):
        return None, [problem("", f"not an {GROUP} resource; skipped", WARNING)]
    resource, problems = None, []
    try:
        resource = parse_resource(doc, default_namespace)
    except SpecError as error:
        problems = [problem(*_split(p)) for p in error.problems]
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS or doc.get("apiVersion") != API_VERSION:
        return resource, problems  # nothing more to say until kind and apiVersion are right
    reported = {p.path for p in problems}
    for path, message in schema_problems(doc):
        if path not in reported and not any(path.startswith(f"{r}.") or path.startswith(f"{r}[") for r in reported):
            problems.append(problem(path, message))
    return resource, problems


# ---- the set ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    file: str
    index: int
    resource: Resource

    @property
    def where(self) -> str:
        return f"{self.file}:doc#{self.index}"


def check_set(entries: list[_Entry]) -> list[Problem]:
    problems: list[Problem] = []
    by_key: dict[tuple[str, str, str], _Entry] = {}
    for entry in entries:
        resource = entry.resource
        obj = f"{resource.kind}/{resource.name}"
        if resource.key in by_key:
            problems.append(Problem(
                entry.file, f"defined again (first at {by_key[resource.key].where}); rename one or delete it",
                doc=entry.index, obj=obj, path="metadata.name",
            ))
            continue
        by_key[resource.key] = entry
    for entry in entries:
        resource = entry.resource
        obj = f"{resource.kind}/{resource.name}"
        for ref in resource.info.references(resource.spec):
            path = ref.path
            target = by_key.get((ref.kind, resource.namespace, ref.name))
            if target is None:
                problems.append(Problem(
                    entry.file,
                    f"{ref.kind} {ref.name!r} is not in these files; it must exist in namespace "
                    f"{resource.namespace!r} (until it does, this resource waits)",
                    doc=entry.index, obj=obj, path=path, severity=WARNING,
                ))
            elif (wrong_task := ref.wrong_task(target.resource.spec)) is not None:
                problems.append(Problem(
                    entry.file,
                    f"{ref.kind} {ref.name!r} ({target.where}) has task {wrong_task!r}, "
                    f"but this reference needs task {ref.requires_task!r}; point it at a {ref.requires_task} run",
                    doc=entry.index, obj=obj, path=path,
                ))
    return problems


def validate_paths(paths: Iterable[str | Path]) -> list[Problem]:
    """Every problem in the files and directories given (recursively, *.yaml and *.yml)."""
    return check_paths(paths)[1]


def check_paths(
    paths: Iterable[str | Path], default_namespace: str = "default", settings: OperatorSettings | None = None,
) -> tuple[list[Resource], list[Problem]]:
    """The resources that validated, and every problem found; with `settings`, what depends on them too."""
    files, problems = _files(paths)
    entries: list[_Entry] = []
    for path in files:
        docs, load_problems = _load(path)
        problems += load_problems
        for index, doc in docs:
            try:
                resource, doc_problems = check_document(str(path), index, doc, default_namespace)
                if resource is not None and settings is not None:
                    found = spec_problems(resource, settings) + uri_problems(resource, settings.artifacts_for(resource.namespace))
                    doc_problems += [Problem(str(path), message, doc=index, obj=_object_label(doc), path=field)
                                     for field, message in map(_split, found)]
            except Exception as error:  # noqa: BLE001 - the command promises one line per problem, never a traceback
                resource, doc_problems = None, [Problem(
                    str(path), f"internal error while validating ({type(error).__name__}: {error}); please report it",
                    doc=index, obj=_object_label(doc),
                )]
            problems += doc_problems
            if resource is not None:
                entries.append(_Entry(str(path), index, resource))
    problems += check_set(entries)
    return [entry.resource for entry in entries], sorted(problems, key=lambda p: p.sort_key)


def read_settings(settings_file: str | Path | None) -> tuple[OperatorSettings | None, list[Problem]]:
    """The operator settings in a YAML file (as the Helm chart renders them), or the defaults without one."""
    if settings_file is None:
        return parse_settings({}), []
    path = Path(settings_file)
    if not path.is_file():
        return None, [Problem(str(path), "no such settings file; pass the operator settings YAML (the chart's `settings` values)")]
    docs, problems = _load(path)
    if problems:
        return None, problems
    if len(docs) > 1:
        return None, [Problem(str(path), "several YAML documents; the settings are one mapping", doc=docs[1][0])]
    try:
        return parse_settings(docs[0][1] if docs else {}), []
    except SettingsError as error:
        return None, [Problem(str(path), message, path=field) for field, message in map(_split, error.problems)]


def check_for_cluster(
    paths: Iterable[str | Path], default_namespace: str = "default", settings_file: str | Path | None = None,
) -> tuple[list[Resource], OperatorSettings | None, list[Problem]]:
    """What `osmf validate` and `osmf render` read: the resources, the settings, and every problem of both."""
    paths = list(paths)
    settings, problems = read_settings(settings_file)
    resources, found = check_paths(paths, default_namespace, settings)
    problems += found
    if not resources and not has_errors(problems):
        problems.append(Problem(" ".join(map(str, paths)), "no osmf.dev resources found; pass YAML files or directories that hold some"))
    return resources, settings, problems
