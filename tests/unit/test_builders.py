"""Builders: every kind and step variant → manifests of the right shape that validate strictly.

Built-in objects are checked with kubernetes-validate in strict mode (unknown fields are errors)
against the oldest Kubernetes minor the operator supports and the newest one the package ships;
InferenceServices against KServe's v1beta1 CRD schema kept in tests/data/.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from osmf_core.api import INVALID_INPUT_EXIT_CODE, JobConfig, parse_resource
from osmf_operator.builders import (
    BuildError,
    build_inference_service,
    build_job_objects,
    owner_of,
    rendezvous_service_name,
    spec_problems,
)
from osmf_operator.reconcile import Observed, ObservedJob, ObservedService, decide, plan_run, references
from osmf_operator.settings import parse_settings
from tests.factories import body, resource, reward_body, succeeded

NOW = "2026-06-01T12:00:00Z"
ROOT = "s3://osmf-artifacts/prod"
KSERVE_CRD = Path(__file__).resolve().parents[1] / "data" / "serving.kserve.io_inferenceservices.yaml"
# backoffLimitPerIndex is GA from 1.33; podFailurePolicy from 1.31.
KUBERNETES_MINORS = ("1.33", kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()))

DEFAULT = parse_settings({})
PLATFORM = parse_settings({
    "nodePools": {
        "h100": {"nodeSelector": {"karpenter.k8s.aws/instance-gpu-name": "h100"},
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "l4": {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}, "gpuResource": "nvidia.com/gpu"},
        "cpu-large": {"nodeSelector": {"pool": "cpu-large"}},
    },
    "defaultGpuPool": "h100",
    "cpuNodeSelector": {"pool": "cpu"},
    "artifacts": {"rootUri": ROOT, "endpointUrl": "http://minio.storage:9000", "region": "eu-west-1",
                  "credentialsSecret": "osmf-s3", "serviceAccount": "osmf-jobs"},
    "kueue": {"enabled": True, "defaultQueue": "gpu-team"},
    "shmSize": "32Gi",
    "runAsUser": 4242,
})

# The parent carries GitOps and kubectl metadata that must never reach its children.
PARENT_METADATA = {
    "labels": {"app.kubernetes.io/instance": "ads", "argocd.argoproj.io/instance": "ads-prod", "team": "growth"},
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "argocd.argoproj.io/tracking-id": "x"},
}


# ---- factories of requests ----------------------------------------------------------------------


def with_parent_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    doc["metadata"].update(json.loads(json.dumps(PARENT_METADATA)))
    return doc


def dependency(kind: str, name: str, requires_task: str | None):
    dep = parse_resource(reward_body(name)) if requires_task == "reward" else resource(kind, name)
    inputs = [
        {"name": "data", "kind": "Dataset", "uri": "file:///data/world", "digest": "sha256:data"},
        {"name": "grouping", "kind": "AudienceGrouping", "uri": f"{ROOT}/default/audiencegrouping/grouping/0123", "digest": "sha256:g"},
        {"name": "policy", "kind": "GMLLMTraining", "uri": f"{ROOT}/default/gmllmtraining/gmllm/4567", "digest": "sha256:p"},
    ]
    return succeeded(dep, uri=f"{ROOT}/default/{kind.lower()}/{name}/89ab", digest=f"sha256:{name}", inputs=inputs)


def parsed(kind: str, name: str | None = None, **spec: Any):
    doc = reward_body(name or "grm", **spec) if kind == "GMLLMTraining:reward" else body(kind, name, **spec)
    return parse_resource(with_parent_metadata(doc))


def plan_for(res):
    found = {ref.role: dependency(ref.kind, ref.name, ref.requires_task) for ref in references(res)}
    return plan_run(res, found, ROOT, data_fingerprint="sha256:data")


def request_for(res, step: str):
    """The JobRequest the core makes for `step`, after every earlier step's Job succeeded."""
    plan = plan_for(res)
    jobs = []
    for s in res.info.steps:
        if s.name == step:
            break
        jobs.append(ObservedJob(name=f"{res.name}-{s.name}", step=s.name, input_hash=plan.input_hash, phase="Succeeded"))
    (request,) = decide(Observed(resource=res, plan=plan, jobs=jobs), NOW).create_jobs
    assert request.step.name == step
    return request


def service_request_for(res):
    plan = plan_for(res)
    manifest = ({"metrics": {"images": 12}}, "sha256:done")
    decision = decide(Observed(resource=res, plan=plan, manifest=manifest, service=ObservedService(name="x", ready=False)), NOW)
    assert decision.apply_service is not None
    return decision.apply_service


# Every kind × step × shape the operator can produce.
VARIANTS = {
    "grouping-train-1gpu": ("AudienceGrouping", {}, "train"),
    "grouping-cluster-sharded": ("AudienceGrouping", {"shards": 4}, "cluster"),
    "grouping-merge-cpu": ("AudienceGrouping", {"shards": 4}, "merge"),
    "gaip-aggregate-sharded-cpu": ("GAIPDataset", {"shards": 3}, "aggregate"),
    "gaip-aggregate-vlm-sharded": ("GAIPDataset", {"shards": 3, "captioner": {"kind": "vlm", "uri": "s3://m/vlm"},
                                                   "resources": {"gpusPerNode": 1}}, "aggregate"),
    "gaip-merge": ("GAIPDataset", {}, "merge"),
    "gmllm-pretrain-1gpu": ("GMLLMTraining", {"resources": {"gpusPerNode": 1}}, "train"),
    "gmllm-pretrain-8gpu": ("GMLLMTraining", {"resources": {"gpusPerNode": 8, "memory": "256Gi"}}, "train"),
    "gmllm-pretrain-4x8gpu": ("GMLLMTraining", {"resources": {"gpusPerNode": 8, "nodes": 4}}, "train"),
    "gmllm-pretrain-cpu": ("GMLLMTraining", {"resources": {"gpusPerNode": 0}}, "train"),
    "gmllm-reward-8gpu": ("GMLLMTraining:reward", {"resources": {"gpusPerNode": 8}}, "train"),
    "dpo-2x8gpu": ("GroupDPORun", {"resources": {"gpusPerNode": 8, "nodes": 2}}, "train"),
    "campaign-generate-sharded": ("AdImageCampaign", {"shards": 8}, "generate"),
    "campaign-merge": ("AdImageCampaign", {"shards": 8}, "merge"),
}


def built(variant: str, settings=DEFAULT) -> tuple[Any, list[dict[str, Any]]]:
    kind, spec, step = VARIANTS[variant]
    res = parsed(kind, **spec)
    request = request_for(res, step)
    return request, build_job_objects(request, owner_of(res), settings)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def container(job: dict[str, Any]) -> dict[str, Any]:
    (main,) = pod_spec(job)["containers"]
    return main


def env(container_: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_["env"]}


# ---- schema validation ---------------------------------------------------------------------------


def crd_to_json_schema(node: Any) -> Any:
    """A structural CRD schema → JSON schema that rejects unknown fields (the API server would prune them)."""
    if isinstance(node, list):
        return [crd_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_to_json_schema(v) for k, v in node.items()
           if k not in ("nullable", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")
           and not k.startswith("x-kubernetes-list") and k != "x-kubernetes-map-type"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if "properties" in node:
        out["properties"] = {k: crd_to_json_schema(v) for k, v in node["properties"].items()}
    return out


@lru_cache(maxsize=1)
def isvc_validator() -> jsonschema.Validator:
    crd = yaml.safe_load(KSERVE_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = crd_to_json_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] == "serving.kserve.io/v1beta1":
        errors = sorted(isvc_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
        return
    for minor in KUBERNETES_MINORS:
        kubernetes_validate.validate(obj, minor, strict=True)


def test_the_validators_reject_a_typo():
    _, objects = built("grouping-train-1gpu")
    job = json.loads(json.dumps(by_kind(objects)["Job"]))
    job["spec"]["backofLimit"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)
    isvc = build_inference_service(service_request_for(parsed("AdImageCampaign", serving={"enabled": True})),
                                   owner_of(parsed("AdImageCampaign")), DEFAULT)
    isvc["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(AssertionError, match="minReplica"):
        validate(isvc)
    isvc["spec"]["predictor"].pop("minReplica")
    isvc["spec"]["predictor"]["containers"][0]["env"][0]["valeu"] = "x"
    with pytest.raises(AssertionError, match="valeu"):
        validate(isvc)


@pytest.mark.parametrize("settings", [DEFAULT, PLATFORM], ids=["default-settings", "platform-settings"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_validates_strictly_and_keeps_the_invariants(variant, settings):
    request, objects = built(variant, settings)
    res = parsed(VARIANTS[variant][0], **VARIANTS[variant][1])
    for obj in objects:
        validate(obj)
        meta = obj["metadata"]
        assert meta["namespace"] == "default"
        assert meta["ownerReferences"] == [{
            "apiVersion": "osmf.dev/v1alpha1", "kind": res.kind, "name": res.name, "uid": res.metadata.uid,
            "controller": True, "blockOwnerDeletion": True,
        }]
        for key in meta["labels"]:
            assert key.startswith("osmf.dev/") or key in ("app.kubernetes.io/managed-by", "kueue.x-k8s.io/queue-name"), key
        assert set(meta.get("annotations", {})) <= {"osmf.dev/input-hash"}
    job = by_kind(objects)["Job"]
    assert job["metadata"]["name"] == request.name and len(request.name) <= 58
    assert job["metadata"]["labels"]["osmf.dev/step"] == request.step.name
    assert job["metadata"]["annotations"]["osmf.dev/input-hash"] == request.input_hash
    spec = job["spec"]
    assert "suspend" not in spec  # Kueue's alone
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [INVALID_INPUT_EXIT_CODE]}},
    ]
    assert spec["activeDeadlineSeconds"] == 86400 and spec["ttlSecondsAfterFinished"] == 604800
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A UID only when the settings name one (OpenShift's restricted SCC assigns its own).
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert pod["securityContext"].get(key) == settings.run_as_user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(job)
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert main["image"] == settings.images.trainer
    assert main["command"][-4:] == ["-m", res.info.job_module, "--config", "/etc/osmf/config.json"]
    assert env(main)["HF_HUB_OFFLINE"] == "1"
    config_map = by_kind(objects)["ConfigMap"]
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in pod["volumes"]
    assert {"name": "config", "mountPath": "/etc/osmf", "readOnly": True} in main["volumeMounts"]
    config = JobConfig.model_validate(json.loads(config_map["data"]["config.json"]))
    assert config.model_dump(by_alias=True, mode="json", exclude_none=True) == request.config
    assert config.step == request.step.name and config.run.input_hash == request.input_hash
    assert config.spec == res.spec


GPU_SHAPES = {
    # variant: (gpus in limits, pool selector key, command head, Indexed completions, per-index retries)
    "grouping-train-1gpu": (1, "cloud.google.com/gke-accelerator", ["python"], None, False),
    "gaip-aggregate-vlm-sharded": (1, "cloud.google.com/gke-accelerator", ["python"], 3, True),
    "gmllm-pretrain-1gpu": (1, "cloud.google.com/gke-accelerator", ["python"], None, False),
    "gmllm-pretrain-8gpu": (8, "cloud.google.com/gke-accelerator",
                            ["python", "-m", "osmf_jobs.launch", "--standalone", "--nnodes=1", "--nproc-per-node=8"], None, False),
    "gmllm-reward-8gpu": (8, "cloud.google.com/gke-accelerator",
                          ["python", "-m", "osmf_jobs.launch", "--standalone", "--nnodes=1", "--nproc-per-node=8"], None, False),
    "campaign-generate-sharded": (1, "cloud.google.com/gke-accelerator", ["python"], 8, True),
}


@pytest.mark.parametrize("variant", sorted(GPU_SHAPES))
def test_gpu_pods_get_pool_gpus_shared_memory_and_the_right_launcher(variant):
    gpus, selector_key, head, completions, per_index = GPU_SHAPES[variant]
    _, objects = built(variant)
    job = by_kind(objects)["Job"]
    assert "Service" not in by_kind(objects)
    pod, main = pod_spec(job), container(job)
    assert pod["nodeSelector"] == {selector_key: "nvidia-h100-80gb"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    assert main["command"][: len(head)] == head
    spec = job["spec"]
    if completions:
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", completions, completions)
    else:
        assert "completionMode" not in spec and "completions" not in spec
    assert ("backoffLimitPerIndex" in spec) is per_index and ("backoffLimit" in spec) is not per_index


# grouping-cluster: batched K-means in numpy (Step gpu=False) even though the grouping asks for a GPU.
@pytest.mark.parametrize("variant", ["grouping-cluster-sharded", "grouping-merge-cpu", "gaip-aggregate-sharded-cpu", "gaip-merge",
                                     "campaign-merge", "gmllm-pretrain-cpu"])
def test_cpu_steps_get_the_cpu_selector_and_no_gpu(variant):
    _, objects = built(variant, PLATFORM)
    job = by_kind(objects)["Job"]
    pod, main = pod_spec(job), container(job)
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert "tolerations" not in pod
    assert not any("gpu" in key for key in main["resources"]["limits"])
    assert main["resources"]["requests"] == {k: v for k, v in main["resources"]["limits"].items()}
    assert all(v["name"] != "dshm" for v in pod["volumes"])
    assert main["command"][0] == "python"


def test_a_step_may_name_a_pool_from_the_settings():
    res = parsed("GAIPDataset", resources={"nodePool": "cpu-large"})
    job = by_kind(build_job_objects(request_for(res, "aggregate"), owner_of(res), PLATFORM))["Job"]
    assert pod_spec(job)["nodeSelector"] == {"pool": "cpu-large"}
    assert "nvidia.com/gpu" not in container(job)["resources"]["limits"]
    res = parsed("GroupDPORun", resources={"gpusPerNode": 4, "nodePool": "l4"})
    job = by_kind(build_job_objects(request_for(res, "train"), owner_of(res), PLATFORM))["Job"]
    assert pod_spec(job)["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert "tolerations" not in pod_spec(job)
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "4"


@pytest.mark.parametrize("variant, settings, nodes, gpus, selector", [
    ("gmllm-pretrain-4x8gpu", DEFAULT, 4, 8, {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}),
    ("dpo-2x8gpu", PLATFORM, 2, 8, {"karpenter.k8s.aws/instance-gpu-name": "h100"}),
])
def test_multi_node_training_is_an_indexed_gang_behind_a_headless_service(variant, settings, nodes, gpus, selector):
    request, objects = built(variant, settings)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "Job"]
    service, job = by_kind(objects)["Service"], by_kind(objects)["Job"]
    svc = service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": request.name}
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", nodes, nodes)
    assert spec["backoffLimit"] == 3 and "backoffLimitPerIndex" not in spec  # a torchrun gang fails together
    pod, main = pod_spec(job), container(job)
    assert pod["subdomain"] == svc and pod["nodeSelector"] == selector
    assert main["command"][:7] == [
        "python", "-m", "osmf_jobs.launch", f"--nnodes={nodes}", f"--nproc-per-node={gpus}", "--node-rank=$(JOB_COMPLETION_INDEX)",
        f"--master-addr={request.name}-0.{svc}",
    ]
    assert env(main)["JOB_COMPLETION_INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert main["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)


def test_platform_settings_reach_every_pod_but_secrets_only_by_reference():
    _, objects = built("grouping-train-1gpu", PLATFORM)
    job = by_kind(objects)["Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-team"
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    pod, main = pod_spec(job), container(job)
    assert pod["serviceAccountName"] == "osmf-jobs"
    assert pod["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-name": "h100"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}} in pod["volumes"]
    variables = env(main)
    assert variables["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert variables["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "osmf-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert variables["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "osmf-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    default_job = by_kind(built("grouping-train-1gpu")[1])["Job"]
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "serviceAccountName"} & (set(env(container(default_job))) | set(pod_spec(default_job)))
    assert "kueue.x-k8s.io/queue-name" not in default_job["metadata"]["labels"]


def test_an_unknown_node_pool_is_named_by_field():
    res = parsed("GMLLMTraining", resources={"gpusPerNode": 8, "nodePool": "a100"})
    assert spec_problems(res, DEFAULT) == [
        "spec.resources.nodePool: unknown node pool 'a100'; the operator's settings define: h100"]
    with pytest.raises(BuildError, match=r"spec.resources.nodePool: unknown node pool 'a100'"):
        build_job_objects(request_for(res, "train"), owner_of(res), DEFAULT)
    campaign = parsed("AdImageCampaign", serving={"enabled": True, "resources": {"nodePool": "t4"}})
    assert spec_problems(campaign, PLATFORM) == [
        "spec.serving.resources.nodePool: unknown node pool 't4'; the operator's settings define: cpu-large, h100, l4"]
    assert spec_problems(parsed("AudienceGrouping"), DEFAULT) == []


def test_a_spec_too_big_for_a_config_map_is_reported_before_anything_is_built():
    res = parsed("AdImageCampaign", products=[f"product-{i:07d}-{'x' * 200}" for i in range(6000)])
    (problem,) = spec_problems(res, DEFAULT)
    assert problem.startswith("spec: ") and "spec.products" in problem
    with pytest.raises(BuildError, match="1 MiB"):
        build_job_objects(request_for(res, "generate"), owner_of(res), DEFAULT)


def test_long_names_still_give_valid_labels_job_names_and_service_names():
    name = "a" * 40 + "." + "b" * 80
    res = parsed("GMLLMTraining", name=name, resources={"gpusPerNode": 8, "nodes": 2})
    request = request_for(res, "train")
    objects = build_job_objects(request, owner_of(res), DEFAULT)
    for obj in objects:
        validate(obj)
        label = obj["metadata"]["labels"]["osmf.dev/name"]
        assert len(label) <= 63 and label != name
    assert len(request.name) <= 58  # pod hostnames <job>-<index> stay DNS labels
    assert by_kind(objects)["Service"]["metadata"]["name"][0].isalpha()
    assert rendezvous_service_name("7up-train-01234567") == "j7up-train-01234567"


@pytest.mark.parametrize("settings", [DEFAULT, PLATFORM], ids=["default-settings", "platform-settings"])
@pytest.mark.parametrize("serving, gpu", [
    ({"enabled": True}, False),
    ({"enabled": True, "protocol": "v2", "minReplicas": 2, "maxReplicas": 6,
      "resources": {"gpusPerNode": 1, "cpu": "4", "memory": "16Gi"}}, True),
], ids=["cpu-predictor", "gpu-predictor"])
def test_inference_service_has_a_custom_predictor_that_validates_against_kserve(serving, gpu, settings):
    res = parsed("AdImageCampaign", name="spring-sale", serving=serving)
    request = service_request_for(res)
    isvc = build_inference_service(request, owner_of(res), settings)
    validate(isvc)
    assert isvc["metadata"]["name"] == "spring-sale"
    assert isvc["metadata"]["ownerReferences"][0]["controller"] is True
    assert set(isvc["metadata"]["labels"]) == {"osmf.dev/kind", "osmf.dev/name", "app.kubernetes.io/managed-by"}
    assert "annotations" not in isvc["metadata"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == res.spec.serving.min_replicas
    assert predictor["maxReplicas"] == res.spec.serving.max_replicas
    (main,) = predictor["containers"]
    assert main["name"] == "kserve-container" and main["image"] == settings.images.predictor
    variables = env(main)
    assert variables["STORAGE_URI"] == plan_for(res).run_uri + "/serving" and variables["STORAGE_URI"].startswith("s3://")
    assert variables["OSMF_GROUPING_URI"] == f"{ROOT}/default/audiencegrouping/grouping/89ab"
    assert variables["PROTOCOL"] == res.spec.serving.protocol
    limits = main["resources"]["limits"]
    if gpu:
        assert limits["nvidia.com/gpu"] == "1" and limits["cpu"] == "4"
        assert "tolerations" in predictor and predictor["nodeSelector"] != settings.cpu_node_selector
    else:
        assert "nvidia.com/gpu" not in limits and "tolerations" not in predictor
        assert predictor.get("nodeSelector", {}) == settings.cpu_node_selector
    assert predictor["securityContext"]["runAsNonRoot"] is True
    if settings is PLATFORM:
        assert predictor["serviceAccountName"] == "osmf-jobs"
        assert variables["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "osmf-s3", "key": "AWS_SECRET_ACCESS_KEY"}}


def test_inference_service_names_are_dns_1035_labels():
    res = parsed("AdImageCampaign", name="2026-spring.sale", serving={"enabled": True})
    isvc = build_inference_service(service_request_for(res), owner_of(res), DEFAULT)
    assert isvc["metadata"]["name"] == "aic-2026-spring-sale"
    validate(isvc)


def test_the_kserve_schema_in_tests_data_is_what_its_generator_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_kserve_crd", KSERVE_CRD.with_name("build_kserve_crd.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert yaml.safe_load(KSERVE_CRD.read_text()) == module.crd()
