"""`osmf validate` and `osmf render` read their input the same way (resources, `--settings`, `--namespace`),
so they agree on every input: the same problem lines (validate on stdout, render on stderr), a non-zero
exit for errors, and never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml
from tests.factories import body, reward_body

from osmf_operator.cli import main

GPU_POOLS = {"nodePools": {"l4": {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}}, "defaultGpuPool": "l4"}


def write(path: Path, *docs: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def pipeline_head() -> list[dict]:
    return [body("AudienceGrouping"), body("GAIPDataset"), body("GMLLMTraining"), reward_body()]


# (id, builds the arguments in tmp_path, a fragment every run must print, the field path it names or "")
Case = Callable[[Path], list[str]]
BAD: list[tuple[str, Case, str, str]] = [
    ("unknown-node-pool", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping", resources={"nodePool": "a100"})))],
     "unknown node pool 'a100'; the operator's settings define: h100", "spec.resources.nodePool"),
    ("pool-the-settings-lack", lambda d: [str(write(d / "r.yaml", body("GAIPDataset", resources={"nodePool": "h100"}),
                                                    body("AudienceGrouping"))),
                                          "--settings", str(write(d / "s.yaml", GPU_POOLS))],
     "unknown node pool 'h100'; the operator's settings define: l4", "spec.resources.nodePool"),
    ("serving-pool", lambda d: [str(write(d / "r.yaml", *pipeline_head(), body("GroupDPORun"),
                                          body("AdImageCampaign", serving={"enabled": True, "resources": {"nodePool": "cpu"}})))],
     "unknown node pool 'cpu'", "spec.serving.resources.nodePool"),
    ("bad-settings-yaml", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping"))), "--settings",
                                     str(_text(d / "s.yaml", "nodePools: {h100: [\n"))],
     "invalid YAML", ""),
    ("settings-the-model-rejects", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping"))), "--settings",
                                              str(write(d / "s.yaml", {"defaultGpuPool": "a100"}))],
     "defaultGpuPool 'a100' is not in nodePools (h100)", ""),
    ("unknown-setting", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping"))), "--settings",
                                   str(write(d / "s.yaml", {"nodePool": {}}))],
     "unknown setting; remove it or check its spelling", "settings.nodePool"),
    ("missing-settings-file", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping"))), "--settings", str(d / "none.yaml")],
     "no such settings file", ""),
    ("missing-resource-file", lambda d: [str(d / "nope.yaml")], "no such file or directory", ""),
    ("no-resources", lambda d: [str(write(d / "ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}))],
     "no osmf.dev resources found", ""),
    ("spec-the-models-reject", lambda d: [str(write(d / "r.yaml", body("AudienceGrouping", clustering={"minGroups": 4, "maxGroups": 3})))],
     "minGroups must be <= maxGroups", "spec.clustering"),
    ("reference-of-the-wrong-task", lambda d: [str(write(d / "r.yaml", *pipeline_head(),
                                                         body("GroupDPORun", policyRef={"name": "grm"})))],
     "has task 'reward', but this reference needs task 'pretrain'", "spec.policyRef.name"),
]


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("case", "make", "fragment", "path"), BAD, ids=[c[0] for c in BAD])
def test_validate_and_render_reject_the_same_input_with_the_same_lines(tmp_path, capsys, case, make, fragment, path):
    args = make(tmp_path)
    validate_code, validate_out, _ = run(capsys, "validate", *args)
    render_code, render_out, render_err = run(capsys, "render", *args)
    assert validate_code != 0 and render_code != 0
    assert render_out == ""
    lines = validate_out.splitlines()
    assert lines == render_err.splitlines()
    errors = [line for line in lines if "warning:" not in line]
    assert errors and any(fragment in line for line in errors), lines
    if path:
        assert any(f": {path}: " in line for line in errors), lines
    assert "Traceback" not in validate_out + render_err


def test_both_accept_a_valid_pipeline_with_platform_settings(tmp_path, capsys):
    resources = write(tmp_path / "r.yaml", *pipeline_head(), body("GroupDPORun"),
                      body("AdImageCampaign", serving={"enabled": True}))
    settings = write(tmp_path / "s.yaml", {**GPU_POOLS, "nodePools": {**GPU_POOLS["nodePools"], "h100": {}}})
    assert run(capsys, "validate", str(resources), "--settings", str(settings))[:2] == (0, "all resources valid\n")
    code, out, err = run(capsys, "render", str(resources), "--settings", str(settings))
    assert (code, err) == (0, "")
    assert {doc["kind"] for doc in yaml.safe_load_all(out) if doc} == {"ConfigMap", "Job", "InferenceService"}


def test_namespace_is_the_default_for_resources_without_one(tmp_path, capsys):
    grouping = body("AudienceGrouping")
    del grouping["metadata"]["namespace"]
    resources = write(tmp_path / "r.yaml", grouping, body("GAIPDataset", namespace="team-b"))
    code, out, err = run(capsys, "render", str(resources), "--namespace", "team-a")
    assert code == 0
    assert "GAIPDataset 'grouping' is not in these files; it must exist in namespace 'team-b'" not in err
    assert "AudienceGrouping 'grouping' is not in these files; it must exist in namespace 'team-b'" in err
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    grouping_objects = [d for d in docs if d["metadata"]["labels"]["osmf.dev/kind"] == "AudienceGrouping"]
    assert grouping_objects and {d["metadata"]["namespace"] for d in grouping_objects} == {"team-a"}
    assert "# GAIPDataset/gaip: not rendered: grouping AudienceGrouping/grouping does not exist in namespace team-b" in out
    validate_code, validate_out, _ = run(capsys, "validate", str(resources), "--namespace", "team-a")
    assert validate_code == 0 and validate_out.splitlines()[0] == err.splitlines()[0]
