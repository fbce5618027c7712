"""Tenancy (pure parts): per-namespace artifact settings, the URI allow-list check, what pods get.

The operator tier (tests/operator/test_operator.py) shows the check runs before any store read;
the cluster tier (tests/cluster/test_tenancy.py) shows it with two tenant namespaces on the real
control plane, with the reads of a tenant's identity recorded at the S3 endpoint.
"""

from __future__ import annotations

import base64

import pytest
import yaml

from osmf_core.api import KINDS
from osmf_core.api.common import read_uris
from osmf_core.store import S3Credentials, S3Store, open_store
from osmf_operator.builders import build_inference_service, build_job_objects, owner_of
from osmf_operator.reconcile import Observed, decide, plan_run
from osmf_operator.settings import SettingsError, parse_settings
from osmf_operator.tenancy import canonical, credentials_from_secret, under, uri_problems
from osmf_operator.validate import check_paths
from tests.factories import body, resource

PLATFORM = {"rootUri": "s3://osmf-artifacts/runs", "endpointUrl": "http://s3.storage:9000", "region": "eu-west-1",
            "credentialsSecret": "osmf-s3", "allowedUriPrefixes": ["s3://shared-models/"]}
SETTINGS = parse_settings({
    "artifacts": PLATFORM,
    "tenants": {
        "team-a": {"credentialsSecret": "team-a-s3", "rootUri": "s3://team-a-artifacts/osmf",
                   "allowedUriPrefixes": ["s3://team-a-data/", "s3://shared-models/"]},
        "team-b": {"serviceAccount": "team-b-jobs", "allowedUriPrefixes": ["s3://team-b-data"]},
        "team-c": {"region": "us-east-1"},
    },
})


def in_namespace(kind: str, namespace: str, name: str | None = None, **spec):
    from osmf_core.api import parse_resource

    return parse_resource(body(kind, name, namespace=namespace, **spec))


# ---- settings -------------------------------------------------------------------------------------


def test_a_tenant_entry_overrides_the_platform_and_its_identity_replaces_the_platforms_whole():
    a, b, c, other = (SETTINGS.artifacts_for(ns) for ns in ("team-a", "team-b", "team-c", "elsewhere"))
    assert (a.root_uri, a.credentials_secret, a.service_account) == ("s3://team-a-artifacts/osmf", "team-a-s3", None)
    assert (a.endpoint_url, a.region) == ("http://s3.storage:9000", "eu-west-1")  # inherited
    # A ServiceAccount alone is workload identity: the platform's keys must not reach those pods.
    assert (b.root_uri, b.credentials_secret, b.service_account) == ("s3://osmf-artifacts/runs", None, "team-b-jobs")
    assert c.credentials_secret == "osmf-s3" and c.region == "us-east-1" and c.allowed_uri_prefixes == ["s3://shared-models/"]
    assert other == SETTINGS.artifacts


@pytest.mark.parametrize("tenants, words", [
    ({"Team_A": {}}, r"^settings\.tenants\.Team_A"),
    ({"team-a": {"allowedUriPrefixes": ["gs://bucket/"]}}, r"^settings\.tenants\.team-a\.allowedUriPrefixes\.0"),
    ({"team-a": {"credentialSecret": "x"}}, r"settings\.tenants\.team-a\.credentialSecret: unknown setting"),
])
def test_bad_tenant_settings_are_one_line_naming_the_setting(tenants, words):
    with pytest.raises(SettingsError, match=words) as error:
        parse_settings({"tenants": tenants})
    assert "\n" not in str(error.value)


# ---- which fields are checked -----------------------------------------------------------------------


def test_every_field_that_names_data_or_a_model_is_marked_and_found():
    grouping = resource("AudienceGrouping", model={"textEncoder": "s3://m/text", "imageEncoder": "s3://m/image"})
    assert read_uris(grouping.spec) == [("spec.data.uri", "file:///data/world"), ("spec.model.textEncoder", "s3://m/text"),
                                        ("spec.model.imageEncoder", "s3://m/image")]
    gaip = resource("GAIPDataset", captioner={"kind": "vlm", "uri": "s3://m/vlm"})
    assert read_uris(gaip.spec) == [("spec.captioner.uri", "s3://m/vlm")]
    assert read_uris(resource("GMLLMTraining", baseModel={"uri": "s3://m/llava"}).spec) == [("spec.baseModel.uri", "s3://m/llava")]
    diffusers = {"backend": "diffusers", "modelUri": "s3://m/sd", "controlnetUri": "s3://m/cn"}
    for kind in ("GroupDPORun", "AdImageCampaign"):
        assert read_uris(resource(kind, rendering=diffusers).spec) == [
            ("spec.rendering.modelUri", "s3://m/sd"), ("spec.rendering.controlnetUri", "s3://m/cn")]
    assert read_uris(resource("GroupDPORun").spec) == []  # procedural: no model to read
    # Every string field whose name says URI is marked (a new one unmarked fails here).
    for info in KINDS.values():
        unmarked = [name for name in _uri_like_fields(info.spec_model) if name not in _marked_fields(info.spec_model)]
        assert not unmarked, (info.kind, unmarked)


def _walk(model, prefix=""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        yield f"{prefix}{name}", field
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _walk(arg, f"{prefix}{name}.")


def _uri_like_fields(model) -> list[str]:
    return [path for path, _ in _walk(model) if path.split(".")[-1] in ("uri", "model_uri", "controlnet_uri", "text_encoder", "image_encoder")]


def _marked_fields(model) -> list[str]:
    from osmf_core.api.common import ReadsUri

    return [path for path, field in _walk(model) if any(isinstance(m, ReadsUri) for m in field.metadata)]


# ---- the check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri, expected", [
    ("s3://b/x/y", "s3://b/x/y"), ("/data/world", "file:///data/world"), ("file:///data//world/", "file:///data/world"),
    ("s3://b/x/../other", None), ("file:///data/./world", None), ("relative/path", None),
])
def test_canonical_uris(uri, expected):
    assert canonical(uri) == expected


def test_a_prefix_covers_only_whole_path_segments():
    assert under("s3://team-b-data/world", "s3://team-b-data") and under("s3://team-b-data", "s3://team-b-data/")
    assert not under("s3://team-b-data-2/world", "s3://team-b-data")
    assert not under("s3://team-a-data-evil/x", "s3://team-a-data/")


def test_a_uri_outside_the_namespaces_prefixes_is_named_by_field():
    mine = in_namespace("AudienceGrouping", "team-a", data={"uri": "s3://team-a-data/world"},
                        model={"textEncoder": "s3://shared-models/minilm", "imageEncoder": "builtin:image-stats"})
    assert uri_problems(mine, SETTINGS.artifacts_for("team-a")) == []
    theirs = in_namespace("AudienceGrouping", "team-a", data={"uri": "s3://team-b-data/world"})
    (problem,) = uri_problems(theirs, SETTINGS.artifacts_for("team-a"))
    assert problem.startswith("spec.data.uri: s3://team-b-data/world is outside what namespace team-a may read "
                              "(s3://team-a-data/, s3://shared-models/, or its own runs under s3://team-a-artifacts/osmf/team-a/)")
    assert "tenants.team-a.allowedUriPrefixes" in problem and "\n" not in problem
    model = in_namespace("GMLLMTraining", "team-b", baseModel={"uri": "s3://team-b-data/../team-a-data/llava"})
    (problem,) = uri_problems(model, SETTINGS.artifacts_for("team-b"))
    assert problem.startswith("spec.baseModel.uri: ") and "'.'/'..'" in problem


def test_the_namespaces_own_runs_and_builtin_models_are_always_allowed_and_no_list_means_any():
    earlier = in_namespace("GMLLMTraining", "team-a", baseModel={"uri": "s3://team-a-artifacts/osmf/team-a/gmllmtraining/old/abc/model"})
    assert uri_problems(earlier, SETTINGS.artifacts_for("team-a")) == []
    neighbour = in_namespace("GMLLMTraining", "team-a", baseModel={"uri": "s3://team-a-artifacts/osmf/team-b/gmllmtraining/x"})
    assert len(uri_problems(neighbour, SETTINGS.artifacts_for("team-a"))) == 1
    anything = in_namespace("AudienceGrouping", "elsewhere", data={"uri": "s3://anything/at/all"})
    assert uri_problems(anything, parse_settings({}).artifacts_for("elsewhere")) == []


def test_osmf_validate_with_the_settings_reports_a_forbidden_uri_as_an_error(tmp_path):
    doc = body("AudienceGrouping", namespace="team-a", data={"uri": "s3://team-b-data/world"})
    (tmp_path / "ag.yaml").write_text(yaml.safe_dump(doc))
    _, problems = check_paths([tmp_path], settings=SETTINGS)
    (problem,) = [p for p in problems if p.severity == "error"]
    assert problem.path == "spec.data.uri" and "outside what namespace team-a may read" in problem.message


# ---- what the pods and the operator's own reads get -----------------------------------------------------


def job_of(namespace: str):
    res = in_namespace("AudienceGrouping", namespace, data={"uri": "s3://team-a-data/world"})
    res.metadata.uid = "uid-1"
    plan = plan_run(res, {}, SETTINGS.artifacts_for(namespace).root_uri, "sha256:data")
    (request,) = decide(Observed(resource=res, plan=plan), "2026-01-01T00:00:00Z").create_jobs
    objects = build_job_objects(request, owner_of(res), SETTINGS)
    return request, next(o for o in objects if o["kind"] == "Job")


def env_of(pod: dict) -> dict:
    (main,) = pod["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in main["env"]}


def test_job_pods_get_their_namespaces_secret_or_service_account_and_their_runs_live_under_its_root():
    request, job = job_of("team-a")
    assert request.config["run"]["uri"].startswith("s3://team-a-artifacts/osmf/team-a/audiencegrouping/")
    pod = job["spec"]["template"]["spec"]
    assert env_of(pod)["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "team-a-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert "serviceAccountName" not in pod
    _, job = job_of("team-b")
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "team-b-jobs"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env_of(pod))
    assert env_of(pod)["AWS_ENDPOINT_URL"] == "http://s3.storage:9000"
    _, job = job_of("elsewhere")
    assert env_of(job["spec"]["template"]["spec"])["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "osmf-s3"


def test_the_predictor_gets_its_namespaces_identity_too():
    from osmf_operator.reconcile import ServiceRequest

    campaign = in_namespace("AdImageCampaign", "team-b", serving={"enabled": True})
    campaign.metadata.uid = "uid-c"
    isvc = build_inference_service(ServiceRequest("campaign", "s3://x/serving", "s3://x/grouping", campaign.spec.serving),
                                   owner_of(campaign), SETTINGS)
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "team-b-jobs" and "AWS_ACCESS_KEY_ID" not in env_of(predictor)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_tenant_secret_becomes_the_operators_identity_for_that_namespace():
    artifacts = SETTINGS.artifacts_for("team-a")
    found = credentials_from_secret({"AWS_ACCESS_KEY_ID": b64("team-a"), "AWS_SECRET_ACCESS_KEY": b64("s3cret\n")}, artifacts, "team-a/team-a-s3")
    assert found == S3Credentials(endpoint_url="http://s3.storage:9000", region="eu-west-1", access_key_id="team-a", secret_access_key="s3cret")
    assert "s3cret" not in repr(found)
    with pytest.raises(LookupError, match=r"^Secret team-a/team-a-s3 with the namespace's artifact credentials does not exist; create it"):
        credentials_from_secret(None, artifacts, "team-a/team-a-s3")
    with pytest.raises(LookupError, match=r"^Secret team-a/team-a-s3 lacks AWS_SECRET_ACCESS_KEY; add it$"):
        credentials_from_secret({"AWS_ACCESS_KEY_ID": b64("team-a")}, artifacts, "team-a/team-a-s3")


def test_a_store_opened_with_credentials_reads_as_that_identity_and_its_children_too():
    credentials = S3Credentials(endpoint_url="http://127.0.0.1:1", region="eu-west-1", access_key_id="team-a", secret_access_key="x")
    store = open_store("s3://team-a-data/world", credentials)
    assert isinstance(store, S3Store)
    child = store.child("users.parquet")
    for s in (store, child):
        assert s.client.meta.endpoint_url == "http://127.0.0.1:1" and s.client.meta.region_name == "eu-west-1"
        assert s.client._request_signer._credentials.access_key == "team-a"
    assert open_store("s3://team-a-data/world", credentials).client is store.client  # one client per identity
    assert open_store("/tmp/x", credentials).local_path() is not None  # file stores ignore it
