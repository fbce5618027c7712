"""Admission on the real kube-apiserver with the generated CRDs (crds/): structural schema, CEL,
field validation, printer columns and `kubectl explain`.

The same rules are unit-tested with a Python CEL (tests/unit/test_crds.py); here the API server
itself decides, and the user sees its message through kubectl. Apply checks use
`--dry-run=server` (the whole admission chain, nothing persisted) unless an update needs a stored
object.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import REPO
from tests.factories import body, deep_merge, reward_body

pytestmark = pytest.mark.cluster

EXAMPLES = REPO / "examples"
CRDS = {doc["spec"]["names"]["kind"]: doc
        for path in sorted((REPO / "crds").glob("*.yaml"))
        for doc in [yaml.safe_load(path.read_text())]}


def for_apiserver(doc: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A factory body as a user writes it: no uid/generation/namespace (the server sets those)."""
    meta = {"name": name or doc["metadata"]["name"]}
    return {"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": meta,
            "spec": doc["spec"]}


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()), start=1):
            if isinstance(doc, dict) and doc.get("apiVersion", "").startswith("osmf.dev/"):
                out.append((f"{path.relative_to(REPO)}#{i}", doc))
    return out


EXAMPLE_DOCS = example_docs()


@pytest.fixture(scope="module")
def ns(osmf_crds, control_plane):
    name = f"admission-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def dry_run_apply(cp, ns: str, doc: dict[str, Any]):
    return cp.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-",
                      input=yaml.safe_dump(doc), check=False)


def test_examples_were_found():
    kinds = {doc["kind"] for _, doc in EXAMPLE_DOCS}
    assert kinds == set(CRDS), f"examples cover {sorted(kinds)}; CRDs are {sorted(CRDS)}"


@pytest.mark.parametrize("where, doc", EXAMPLE_DOCS, ids=[w for w, _ in EXAMPLE_DOCS])
def test_every_example_is_admitted(control_plane, ns, where, doc):
    result = dry_run_apply(control_plane, ns, doc)
    assert result.returncode == 0, f"{where}: {result.stderr.strip()}"
    assert "(server dry run)" in result.stdout


def cel_message(kind: str, field: str) -> str:
    """The message of the kind's CEL rule that reports on `field` (e.g. `.spec.initFromRef`)."""
    found = []

    def walk(node: dict[str, Any], at: str) -> None:
        for rule in node.get("x-kubernetes-validations", []):
            if at + rule.get("fieldPath", "") == field:
                found.append(rule["message"])
        for name, child in node.get("properties", {}).items():
            walk(child, f"{at}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{at}[*]")

    walk(CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    assert found, f"no CEL rule reports on {field} in the {kind} CRD"
    return found[0]


@dataclasses.dataclass(frozen=True)
class Cel:
    """The message of the CRD's CEL rule on `field`, looked up when the test runs."""

    kind: str
    field: str

    def __str__(self) -> str:
        return cel_message(self.kind, self.field)


# (id, document, words the API server's message must contain: the field, then the reason)
INVALID = [
    ("unknown-field", body("AudienceGrouping", clustering={"maxGroupz": 4}),
     ['unknown field "spec.clustering.maxGroupz"']),
    ("wrong-type", body("AudienceGrouping", shards="eight"),
     ["spec.shards", "must be of type integer"]),
    ("out-of-range", body("AudienceGrouping", clustering={"maxGroups": 10_000}),
     ["spec.clustering.maxGroups", "should be less than or equal to"]),
    ("min-over-max", body("AudienceGrouping", clustering={"minGroups": 5, "maxGroups": 3}),
     ["spec.clustering.minGroups", Cel("AudienceGrouping", ".spec.clustering.minGroups")]),
    ("bad-enum", body("GMLLMTraining", task="finetune"),
     ["spec.task", 'Unsupported value: "finetune"', '"pretrain"', '"reward"']),
]


def reward_without_init() -> dict[str, Any]:
    doc = reward_body()
    doc["spec"].pop("initFromRef")
    return doc


INVALID.append(("reward-without-initFromRef", reward_without_init(),
                ["spec.initFromRef", Cel("GMLLMTraining", ".spec.initFromRef")]))


@pytest.mark.parametrize("doc, words", [(d, w) for _, d, w in INVALID],
                         ids=[i for i, _, _ in INVALID])
def test_invalid_specs_are_rejected_naming_the_field(control_plane, ns, doc, words):
    result = dry_run_apply(control_plane, ns, for_apiserver(doc))
    assert result.returncode != 0, "the API server admitted an invalid spec"
    error = result.stderr.strip()
    assert len(error.splitlines()) <= 3, f"expected a short error, got:\n{error}"
    for word in map(str, words):
        assert word in error, f"{word!r} not in: {error}"


def test_changing_an_immutable_reference_is_rejected(control_plane, ns):
    cp = control_plane
    name = f"gaip-{uuid.uuid4().hex[:6]}"
    original = for_apiserver(body("GAIPDataset"), name)
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(original))
    try:
        changed = deep_merge(original, {"spec": {"groupingRef": {"name": "another-grouping"}}})
        result = cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(changed),
                            check=False)
        assert result.returncode != 0
        assert "spec.groupingRef" in result.stderr
        assert cel_message_for_transition("GAIPDataset", "groupingRef") in result.stderr
        tuned = deep_merge(original, {"spec": {"minImpressions": 50}})
        cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(tuned))  # still mutable
    finally:
        cp.kubectl("delete", "gaipdataset", name, "-n", ns, "--wait=false")


def cel_message_for_transition(kind: str, prop: str) -> str:
    spec = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec["properties"][prop].get("x-kubernetes-validations", [])
    assert rules, f"{kind}.spec.{prop} has no transition rule"
    return rules[0]["message"]


def printer_columns(kind: str) -> list[dict[str, Any]]:
    return CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]


def test_kubectl_get_osmf_lists_every_kind_with_its_printer_columns(control_plane, ns):
    cp = control_plane
    docs = [for_apiserver(body(kind), f"cols-{kind.lower()}") for kind in CRDS]
    docs = [d if d["kind"] != "GMLLMTraining" else for_apiserver(reward_body(), d["metadata"]["name"])
            for d in docs]
    cp.apply(docs, namespace=ns)
    try:
        out = cp.kubectl("get", "osmf", "-n", ns).stdout
        for kind in CRDS:
            assert f"cols-{kind.lower()}" in out, out
        headers = cp.kubectl("get", "audiencegroupings", "-n", ns).stdout.splitlines()[0].split()
        assert headers == ["NAME"] + [c["name"].upper() for c in printer_columns("AudienceGrouping")]
        status = {"status": {"observedGeneration": 1, "stage": "Running", "summary": "0.731",
                             "progress": {"step": "train", "percent": 42.5},
                             "conditions": [
                                 {"type": t, "status": v, "reason": "Test", "message": "",
                                  "lastTransitionTime": "2026-01-01T00:00:00Z",
                                  "observedGeneration": 1}
                                 for t, v in (("Succeeded", "Unknown"), ("Ready", "True"))]}}
        for doc in docs:
            cp.kubectl("patch", doc["kind"].lower(), doc["metadata"]["name"], "-n", ns,
                       "--subresource=status", "--type=merge", "-p", json.dumps(status))
        # The server prints the columns: ask for its Table (with each row's object) and check every
        # cell against the object it was printed from.
        for kind in CRDS:
            columns = printer_columns(kind)
            table = server_table(cp, ns, CRDS[kind]["spec"]["names"]["plural"])
            assert [c["name"] for c in table["columnDefinitions"]] == \
                ["Name"] + [c["name"] for c in columns]
            (row,) = table["rows"]
            assert row["cells"][0] == f"cols-{kind.lower()}"
            for column, cell in zip(columns, row["cells"][1:]):
                if column["type"] == "date":
                    continue
                expected = json_path(row["object"], column["jsonPath"])
                assert cell == expected, f"{kind} column {column['name']}: {cell!r} != {expected!r}"
            assert "Running" in row["cells"], row["cells"]
    finally:
        cp.kubectl("delete", "osmf", "--all", "-n", ns, "--wait=false")


def json_path(obj: dict[str, Any], path: str) -> Any:
    """The two JSONPath forms printer columns use: `.a.b` and `.a[?(@.type=="X")].b`."""
    node: Any = obj
    for key, wanted in re.findall(r'\.(\w+)(?:\[\?\(@\.type=="(\w+)"\)\])?', path):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
        if wanted:
            node = next((c for c in node or [] if c.get("type") == wanted), None)
    return node


def server_table(cp, ns: str, plural: str) -> dict[str, Any]:
    """The API server's own Table rendering (what `kubectl get` prints), with each row's object."""
    import ssl
    import urllib.request

    from tests.cluster.controlplane import ADMIN_TOKEN

    req = urllib.request.Request(
        f"{cp.server}/apis/osmf.dev/v1alpha1/namespaces/{ns}/{plural}?includeObject=Object",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                 "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    ctx = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
    with urllib.request.urlopen(req, timeout=30, context=ctx) as response:
        return json.load(response)


def spec_properties(kind: str) -> dict[str, Any]:
    schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_kubectl_explain_shows_the_field_descriptions(control_plane, osmf_crds, kind):
    plural = CRDS[kind]["spec"]["names"]["plural"]
    for prop, schema in spec_properties(kind).items():
        out = control_plane.kubectl("explain", f"{plural}.spec.{prop}").stdout
        first_words = " ".join(schema["description"].split()[:6])
        assert first_words in " ".join(out.split()), f"{kind}.spec.{prop}:\n{out}"

