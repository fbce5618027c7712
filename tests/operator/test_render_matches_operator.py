"""`osmf render` prints what the kopf operator creates: the same resources and settings, rendered offline
and run through the operator on the emulator, give the same Jobs, ConfigMaps, Services and
InferenceService.

Offline nothing is listed or run, so render's input hashes (and the Job names, labels and run URIs
made from them) and input digests stand in for the cluster's; they are replaced by per-resource
placeholders on both sides, as are the server-set uids. Everything else must be equal.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.factories import body, reward_body

from osmf_core.api import KINDS
from osmf_operator.builders.pod import CONFIG_FILE
from osmf_operator.kube import SPEC_HASH_ANNOTATION

pytestmark = pytest.mark.asyncio

CHILD_KINDS = ("Job", "ConfigMap", "Service", "InferenceService")
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def pipeline(data_root: Path) -> list[dict[str, Any]]:
    """Every kind, a sharded step, a multi-node training (headless Service) and a served campaign."""
    docs = [
        body("AudienceGrouping", data={"uri": data_root.as_uri()}, shards=2),
        body("GAIPDataset", shards=2),
        body("GMLLMTraining", resources={"gpusPerNode": 8, "nodes": 2}),
        reward_body("grm"),
        body("GroupDPORun"),
        body("AdImageCampaign", shards=2, serving={"enabled": True}),
    ]
    for doc in docs:  # as a user writes them: the server sets the rest
        doc["metadata"] = {"name": doc["metadata"]["name"], "namespace": doc["metadata"]["namespace"]}
    return docs


def normalized(objects: list[dict[str, Any]], uids: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object, with hashes, digests and uids as placeholders and server-set fields dropped."""
    objects = json.loads(json.dumps(objects))
    hashes: dict[str, str] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            config = json.loads(obj["data"][CONFIG_FILE])
            for art in config.get("inputs", {}).values():
                art["digest"] = "<digest>" if art.get("digest") else art.get("digest")
            obj["data"][CONFIG_FILE] = config
            hashes[config["run"]["inputHash"]] = f"<hash of {config['kind']}/{config['metadata']['name']}>"
    text = json.dumps(objects)
    for value, placeholder in {**uids, **hashes}.items():
        text = text.replace(value, placeholder)
    for value, placeholder in hashes.items():  # the 16- and 8-character forms in run URIs, labels and names
        text = text.replace(value[:16], placeholder).replace(value[:8], placeholder)
    out = {}
    for obj in json.loads(text):
        meta = obj["metadata"]
        for key in SERVER_SET:
            meta.pop(key, None)
        annotations = meta.get("annotations") or {}
        annotations.pop(SPEC_HASH_ANNOTATION, None)  # kube.apply's hash of the rest, which is compared anyway
        if not annotations:
            meta.pop("annotations", None)
        obj.pop("status", None)
        out[(obj["kind"], meta["name"])] = obj
    return out


def render(paths: list[Path], settings: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "render", *map(str, paths), "--settings", str(settings)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def first_difference(rendered: dict, created: dict) -> str:
    for key in sorted(set(rendered) | set(created)):
        if rendered.get(key) != created.get(key):
            a = yaml.safe_dump(rendered.get(key), sort_keys=True).splitlines()
            b = yaml.safe_dump(created.get(key), sort_keys=True).splitlines()
            return f"{key}:\n" + "\n".join(difflib.unified_diff(a, b, "osmf render", "operator", lineterm="", n=2))
    return ""


async def test_render_prints_exactly_what_the_operator_creates(cluster, data_root, tmp_path):
    docs = pipeline(data_root)
    files = []
    for index, doc in enumerate(docs):
        files.append(tmp_path / "resources" / f"{index}.yaml")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_text(yaml.safe_dump(doc))
    settings = cluster.settings()
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(by_alias=True, mode="json", exclude_none=True)))
    rendered = await asyncio.to_thread(render, [tmp_path / "resources"], settings_file)

    await cluster.start_operator()
    for doc in docs:
        await cluster.create(doc)
    for doc in docs:
        await cluster.run_steps(doc["kind"], doc["metadata"]["name"])
    await cluster.wait_for("the InferenceService", lambda: cluster.get("InferenceService", "campaign"))
    created = [obj for kind in CHILD_KINDS for obj in cluster.list(kind)]
    uids = {cluster.get(doc["kind"], doc["metadata"]["name"])["metadata"]["uid"]: f"<uid of {doc['kind']}/{doc['metadata']['name']}>"
            for doc in docs}

    ours, theirs = normalized(rendered, {}), normalized(created, uids)
    assert {kind for kind, _ in theirs} == set(CHILD_KINDS)
    jobs = [key for key in theirs if key[0] == "Job"]
    assert len(jobs) == sum(len(KINDS[doc["kind"]].steps) for doc in docs)
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs, first_difference(ours, theirs)
