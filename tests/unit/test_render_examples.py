"""`osmf render` of every example: strictly valid objects, GPU pods shaped right, and job configs that
each job's own config model (`<Kind>Config` in its `config.py`) and argument parser accept (the
operator ↔ job contract)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.unit.test_builders import validate

from osmf_core.api import INVALID_INPUT_EXIT_CODE, KINDS
from osmf_jobs.runtime import argument_parser, build_context, load_config
from tests.factories import job_config_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def render(path: Path, *extra: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "render", str(path), *extra],
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {p.name: render(p) for p in sorted(EXAMPLES.iterdir()) if p.is_dir()}


def test_every_rendered_object_validates_strictly(rendered):
    objects = [obj for docs in rendered.values() for obj in docs]
    assert {o["kind"] for o in objects} == {"ConfigMap", "Job", "Service", "InferenceService"}
    for obj in objects:
        validate(obj)


# The steps of the H100 example whose code puts work on a GPU (the example's GAIPDataset captions with
# a VLM): PAAG encoders + preference model, the VLM captioner, training, Group-DPO, policy + rendering.
GPU_STEPS = {
    ("AudienceGrouping", "train"), ("GAIPDataset", "aggregate"), ("GMLLMTraining", "train"),
    ("GroupDPORun", "train"), ("AdImageCampaign", "generate"),
}


def _gpus(job: dict) -> int:
    return int(job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))


def test_the_h100_example_asks_for_gpus_only_where_the_code_uses_them(rendered):
    jobs = [o for o in rendered["h100-pipeline"] if o["kind"] == "Job"]
    steps = {(j["metadata"]["labels"]["osmf.dev/kind"], j["metadata"]["labels"]["osmf.dev/step"]): _gpus(j) for j in jobs}
    assert {k for k, gpus in steps.items() if gpus} == GPU_STEPS
    # CPU steps (PAAG clustering in numpy, merges) render with zero GPUs and no GPU toleration.
    assert {k for k, gpus in steps.items() if not gpus} == {
        ("AudienceGrouping", "cluster"), ("AudienceGrouping", "merge"), ("GAIPDataset", "merge"), ("AdImageCampaign", "merge")}
    for job in jobs:
        if not _gpus(job):
            assert not any(v.get("emptyDir", {}).get("medium") == "Memory" for v in job["spec"]["template"]["spec"]["volumes"])


def test_a_probe_captioner_renders_the_gaip_shards_without_gpus(tmp_path):
    source = yaml.safe_load((EXAMPLES / "h100-pipeline" / "02-gaip.yaml").read_text())
    source["spec"]["captioner"] = {"kind": "probe"}
    (tmp_path / "02-gaip.yaml").write_text(yaml.safe_dump(source))
    (tmp_path / "01-grouping.yaml").write_text((EXAMPLES / "h100-pipeline" / "01-grouping.yaml").read_text())
    jobs = [o for o in render(tmp_path) if o["kind"] == "Job" and o["metadata"]["labels"]["osmf.dev/kind"] == "GAIPDataset"]
    assert len(jobs) == 2 and all(_gpus(job) == 0 for job in jobs)


def test_gpu_stages_show_node_selection_tolerations_gpus_shm_and_failure_policy(rendered):
    jobs = [o for o in rendered["h100-pipeline"] if o["kind"] == "Job" and _gpus(o)]
    assert jobs
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, job["metadata"]["name"]
        assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])
        rules = job["spec"]["podFailurePolicy"]["rules"]
        assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
        assert any(r["action"] == "FailJob" and INVALID_INPUT_EXIT_CODE in r["onExitCodes"]["values"] for r in rules)


def test_every_job_command_and_config_is_accepted_by_its_job(rendered, tmp_path):
    for docs in rendered.values():
        configs = {o["metadata"]["name"]: o for o in docs if o["kind"] == "ConfigMap"}
        for job in (o for o in docs if o["kind"] == "Job"):
            container = job["spec"]["template"]["spec"]["containers"][0]
            command = container["command"] + container.get("args", [])
            if command[0] in ("bash", "sh"):  # multi-node launcher script: the job command is inside it
                command = shlex.split(command[-1].split("exec ", 1)[-1])
            module_at = len(command) - command[::-1].index("-m")  # the job's, after the torchrun launcher's
            kind = job["metadata"]["labels"]["osmf.dev/kind"]
            assert command[module_at] == KINDS[kind].job_module
            args = argument_parser().parse_args(command[module_at + 1:])
            config_map = next(c for n, c in configs.items() if job["metadata"]["name"] in n)
            (text,) = config_map["data"].values()
            config = load_config(text, job_config_model(kind))  # the model the job's entry point loads with
            assert args.config.endswith(next(iter(config_map["data"])))
            assert config.kind == kind and config.step == job["metadata"]["labels"]["osmf.dev/step"]
            ctx = build_context(config)
            assert isinstance(ctx.spec, KINDS[kind].spec_model)
            assert ctx.spec == KINDS[kind].spec_model.model_validate(json.loads(text)["spec"])


def test_render_with_platform_settings(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({
        "nodePools": {"h100": {"nodeSelector": {"karpenter.k8s.aws/instance-gpu-name": "h100"}}},
        "kueue": {"enabled": True, "defaultQueue": "ml"},
        "artifacts": {"rootUri": "s3://company-ml/osmf"},
    }))
    docs = render(EXAMPLES / "h100-pipeline", "--settings", str(settings))
    jobs = [o for o in docs if o["kind"] == "Job"]
    assert all(j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "ml" for j in jobs)
    assert all("suspend" not in j["spec"] for j in jobs)
    configs = [json.loads(next(iter(o["data"].values()))) for o in docs if o["kind"] == "ConfigMap"]
    assert all(c["run"]["uri"].startswith("s3://company-ml/osmf/default/") for c in configs)


def test_render_reports_bad_settings_in_one_line(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("defaultGpuPool: a100\n")
    proc = subprocess.run([sys.executable, "-m", "osmf_operator.cli", "render", str(EXAMPLES), "--settings", str(settings)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "defaultGpuPool" in proc.stderr and "Traceback" not in proc.stderr
