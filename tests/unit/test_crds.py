"""The generated CRDs: no drift from the models, structural schemas, defaults, CEL rules, examples.

CEL rules run here in a Python CEL implementation (`common-expression-language`); it covers the
ordinary rules these CRDs use. The real kube-apiserver (cluster tier) stays the authority: it also
checks rule cost and the Kubernetes-only functions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from tests.factories import body, deep_merge, reward_body

from osmf_core.api import KINDS, SpecError, parse_resource
from osmf_operator import crdgen
from osmf_operator.validate import to_json_schema

try:
    import cel
except ImportError:  # only the CEL tests need it; drift and schema tests run regardless
    cel = None

needs_cel = pytest.mark.skipif(cel is None, reason="CEL tests need common-expression-language (the dev extra)")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STRUCTURAL_KEYS = crdgen.ALLOWED_KEYS


def checked_in(kind: str) -> dict[str, Any]:
    info = KINDS[kind]
    return yaml.safe_load((REPO / "crds" / crdgen.crd_filename(info)).read_text(encoding="utf-8"))


def open_api(kind: str) -> dict[str, Any]:
    return checked_in(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its field path."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


ALL_KINDS = pytest.mark.parametrize("kind", list(KINDS))


# ---- drift ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_dir", crdgen.DEFAULT_OUT_DIRS)
def test_checked_in_crds_match_the_models(out_dir):
    drift = crdgen.check(REPO / out_dir)
    assert drift == [], "\n".join(drift) + "\nrun `make generate` (osmf crds) and commit the result"


def test_generation_is_deterministic():
    assert crdgen.render_crds() == crdgen.render_crds()


def test_check_reports_changed_missing_and_stale_files(tmp_path):
    crdgen.generate(tmp_path)
    assert crdgen.check(tmp_path) == []
    changed = tmp_path / crdgen.crd_filename(KINDS["AudienceGrouping"])
    changed.write_text(changed.read_text().replace("maximum: 5", "maximum: 6", 1))
    (tmp_path / crdgen.crd_filename(KINDS["GAIPDataset"])).unlink()
    (tmp_path / "oldkinds.osmf.dev.yaml").write_text("stale")
    drift = crdgen.check(tmp_path)
    assert len(drift) == 3, drift
    assert "audiencegroupings" in drift[0] and "differs" in drift[0] and "maximum: 6" in drift[0]
    assert "gaipdatasets" in drift[1] and "missing" in drift[1]
    assert "oldkinds" in drift[2]


# ---- CRD shape --------------------------------------------------------------------------------------


@ALL_KINDS
def test_names_scope_version_and_subresources(kind):
    info = KINDS[kind]
    crd = checked_in(kind)
    assert crd["metadata"]["name"] == f"{info.plural}.osmf.dev"
    spec = crd["spec"]
    assert spec["group"] == "osmf.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind, "listKind": f"{kind}List", "plural": info.plural, "singular": kind.lower(),
        "shortNames": [info.short_name], "categories": ["osmf"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@ALL_KINDS
def test_printer_columns(kind):
    info = KINDS[kind]
    columns = {c["name"]: c for c in checked_in(kind)["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Stage"]["jsonPath"] == ".status.stage"
    assert columns["Succeeded"]["jsonPath"] == '.status.conditions[?(@.type=="Succeeded")].status'
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert (columns["Progress"]["jsonPath"], columns["Progress"]["type"]) == (".status.progress.percent", "number")
    assert any(c["jsonPath"] == ".status.summary" and info.key_metrics[0] in c["description"] for c in columns.values())
    assert (columns["Age"]["jsonPath"], columns["Age"]["type"]) == (".metadata.creationTimestamp", "date")
    for extra in info.extra_columns:
        assert columns[extra.name]["jsonPath"] == extra.json_path
    assert list(columns)[-1] == "Age"


# ---- structural schema rules ------------------------------------------------------------------------


@ALL_KINDS
def test_schema_is_structural(kind):
    for path, node in nodes(open_api(kind)):
        assert set(node) <= STRUCTURAL_KEYS, f"{path}: {set(node) - STRUCTURAL_KEYS}"
        assert isinstance(node.get("type"), str) and node["type"] != "null", f"{path}: needs one non-null type"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: both properties and additionalProperties"
        if node["type"] == "array":
            assert "items" in node, f"{path}: array without items"
        if node.get("x-kubernetes-list-type") == "map":
            assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"].get("required", [])), path
    assert "$ref" not in yaml.safe_dump(open_api(kind))


@ALL_KINDS
def test_every_property_has_a_description(kind):
    missing = [f"{path}.{name}" for path, node in nodes(open_api(kind))
               for name, prop in node.get("properties", {}).items() if not prop.get("description")]
    # The API server rejects anything but `type` on the root metadata (its description is the server's).
    assert missing == [".metadata"]


@ALL_KINDS
def test_strings_and_lists_are_bounded(kind):
    """maxLength/maxItems let the API server bound CEL cost; the envelope (apiVersion, kind) is the server's."""
    schema = open_api(kind)
    unbounded = []
    for top in ("spec", "status"):
        for path, node in nodes(schema["properties"][top], f".{top}"):
            if node["type"] == "string" and "maxLength" not in node:
                unbounded.append(path)
            if node["type"] == "array" and "maxItems" not in node:
                unbounded.append(path)
    assert unbounded == []


@ALL_KINDS
def test_defaults_are_valid_and_only_in_spec(kind):
    schema = open_api(kind)
    for path, node in nodes(schema["properties"]["status"], ".status"):
        assert "default" not in node, f"{path}: status is written whole by the operator"
    for path, node in nodes(schema["properties"]["spec"], ".spec"):
        for name in node.get("required", []):
            assert "default" not in node["properties"][name], f"{path}.{name}: required and defaulted"
        if "default" in node:
            filled = crdgen.apply_defaults(node, copy.deepcopy(node["default"]))
            jsonschema.Draft4Validator(to_json_schema(node)).validate(filled)


MINIMAL = {
    "AudienceGrouping": body("AudienceGrouping")["spec"],
    "GAIPDataset": body("GAIPDataset")["spec"],
    "GMLLMTraining": reward_body()["spec"],
    "GroupDPORun": body("GroupDPORun")["spec"],
    "AdImageCampaign": body("AdImageCampaign")["spec"],
}


@ALL_KINDS
@pytest.mark.parametrize("partial", [{}, {"resources": {"cpu": "3"}, "runPolicy": {"backoffLimit": 1}}])
def test_api_server_defaulting_equals_the_models_defaults(kind, partial):
    """What the API server stores after defaulting is what the operator's typed model means."""
    spec = deep_merge(MINIMAL[kind], partial)
    stored = crdgen.apply_defaults(open_api(kind)["properties"]["spec"], copy.deepcopy(spec))
    assert stored == KINDS[kind].spec_model.model_validate(spec).wire()


# ---- CEL --------------------------------------------------------------------------------------------


def typed(node: dict[str, Any], value: Any) -> Any:
    """The value as CEL sees it under this schema (a `number` is a double even when written 2)."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and "properties" in node:
        return {k: typed(node["properties"].get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list) and "items" in node:
        return [typed(node["items"], v) for v in value]
    return value


MISSING = object()


def cel_violations(schema: dict[str, Any], new: Any, old: Any = MISSING, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule the way the API server does (no cost limits)."""
    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is MISSING:
            continue  # transition rules run on updates, where the old value exists
        context = {"self": typed(schema, new)}
        if transition:
            context["oldSelf"] = typed(schema, old)
        if not cel.evaluate(rule["rule"], context):
            out.append(f"{path or '<root>'}{rule.get('fieldPath', '')}: {rule['message']}")
    if isinstance(new, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in new and new[name] is not None:
                old_value = old.get(name, MISSING) if isinstance(old, dict) else MISSING
                out += cel_violations(prop, new[name], old_value, f"{path}.{name}")
    return out


def admit(kind: str, spec: dict[str, Any], old_spec: dict[str, Any] | None = None) -> list[str]:
    """CEL violations of a create (or an update from old_spec), after defaulting as the API server does."""
    schema = open_api(kind)["properties"]["spec"]
    new = crdgen.apply_defaults(schema, copy.deepcopy(spec))
    old = crdgen.apply_defaults(schema, copy.deepcopy(old_spec)) if old_spec is not None else MISSING
    return cel_violations(schema, new, old, ".spec")


@needs_cel
@ALL_KINDS
def test_every_rule_compiles_and_its_field_path_exists(kind):
    for path, node in nodes(open_api(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            cel.compile(rule["rule"])
            assert rule["message"]
            if "fieldPath" in rule:
                assert rule["fieldPath"].lstrip(".").split(".")[0] in node["properties"], f"{path}: {rule}"


@needs_cel
@ALL_KINDS
def test_factory_specs_pass_every_rule(kind):
    assert admit(kind, MINIMAL[kind]) == []
    assert admit(kind, MINIMAL[kind], old_spec=MINIMAL[kind]) == [], "an unchanged update passes"


# (kind, spec override, message): each is rejected by CEL at admission and by the typed models.
CROSS_FIELD = [
    ("AudienceGrouping", {"clustering": {"minGroups": 4, "maxGroups": 3}}, ".spec.clustering.minGroups: minGroups must be <= maxGroups"),
    ("GAIPDataset", {"pairs": {"minCtrRatio": 2, "maxCtrRatio": 1.5}}, ".spec.pairs.minCtrRatio: minCtrRatio must be <= maxCtrRatio"),
    ("GAIPDataset", {"captioner": {"kind": "vlm"}}, ".spec.captioner.uri: a vlm captioner needs uri"),
    ("GMLLMTraining", {"initFromRef": None}, ".spec.initFromRef: task reward needs initFromRef"),
    ("AdImageCampaign", {"serving": {"minReplicas": 3, "maxReplicas": 2}}, ".spec.serving.minReplicas: minReplicas must be <= maxReplicas"),
    ("GroupDPORun", {"rendering": {"cannyLow": 220, "cannyHigh": 100}}, ".spec.rendering.cannyLow: cannyLow must be <= cannyHigh"),
    ("GroupDPORun", {"rendering": {"backend": "diffusers"}}, ".spec.rendering.modelUri: the diffusers backend needs modelUri and controlnetUri"),
]


@needs_cel
@pytest.mark.parametrize(("kind", "override", "message"), CROSS_FIELD, ids=[c[2].split(":")[0] for c in CROSS_FIELD])
def test_cross_field_rules_reject_at_admission_and_in_the_models(kind, override, message):
    spec = deep_merge(MINIMAL[kind], override)
    spec = {k: v for k, v in spec.items() if v is not None}
    violations = admit(kind, spec)
    assert any(v.startswith(message) for v in violations), violations
    with pytest.raises(SpecError):
        parse_resource({**body(kind), "spec": spec})


@needs_cel
def test_pretrain_needs_a_base_model():
    spec = {k: v for k, v in body("GMLLMTraining")["spec"].items() if k != "baseModel"}
    assert admit("GMLLMTraining", spec) == [".spec.baseModel: task pretrain needs baseModel"]


# (kind, old spec, change, message) for updates: references and the task are immutable.
IMMUTABLE = [
    ("GAIPDataset", {"groupingRef": {"name": "other"}}, ".spec.groupingRef: is immutable"),
    ("GMLLMTraining", {"datasetRef": {"name": "other"}}, ".spec.datasetRef: is immutable"),
    ("GMLLMTraining", {"initFromRef": {"name": "other"}}, ".spec.initFromRef: is immutable"),
    ("GMLLMTraining", {"task": "pretrain", "baseModel": {"uri": "builtin:tiny-llava"}}, ".spec.task: task is immutable"),
    ("GroupDPORun", {"policyRef": {"name": "other"}}, ".spec.policyRef: is immutable"),
    ("AdImageCampaign", {"generatorRef": {"kind": "GMLLMTraining", "name": "gmllm"}}, ".spec.generatorRef: is immutable"),
    ("AdImageCampaign", {"rewardModelRef": None}, ".spec.rewardModelRef: rewardModelRef cannot be added or removed"),
]


@needs_cel
@pytest.mark.parametrize(("kind", "change", "message"), IMMUTABLE, ids=[c[2].split(":")[0] for c in IMMUTABLE])
def test_transition_rules_make_references_immutable(kind, change, message):
    old = MINIMAL[kind]
    new = {k: v for k, v in deep_merge(old, change).items() if v is not None}
    assert admit(kind, new) == [], "the new spec is fine on its own: only the update is refused"
    violations = admit(kind, new, old_spec=old)
    assert any(v.startswith(message) for v in violations), violations


@needs_cel
def test_tuning_fields_stay_mutable():
    old = MINIMAL["GMLLMTraining"]
    new = deep_merge(old, {"training": {"epochs": 2}, "resources": {"gpusPerNode": 4}})
    assert admit("GMLLMTraining", new, old_spec=old) == []


# ---- examples ---------------------------------------------------------------------------------------


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8")), start=1):
            if isinstance(doc, dict) and doc.get("kind") in KINDS:
                docs.append((f"{path.relative_to(REPO)}#{index}", doc))
    return docs


EXAMPLE_DOCS = example_documents()


def test_examples_exist():
    assert EXAMPLE_DOCS, "examples/ holds runnable YAML (STYLE §10)"


@pytest.mark.parametrize(("where", "doc"), EXAMPLE_DOCS, ids=[w for w, _ in EXAMPLE_DOCS])
def test_example_passes_its_crd_schema(where, doc):
    jsonschema.Draft4Validator(to_json_schema(open_api(doc["kind"]))).validate(doc)


@needs_cel
@pytest.mark.parametrize(("where", "doc"), EXAMPLE_DOCS, ids=[w for w, _ in EXAMPLE_DOCS])
def test_example_passes_its_crd_rules(where, doc):
    assert admit(doc["kind"], doc["spec"]) == []
