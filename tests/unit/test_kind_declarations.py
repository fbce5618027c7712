"""What each kind references, inherits and requires is declared once, on its spec model (KindSpec);
the model check, the CRD's CEL rules, the operator's plan and the job config's input check follow it."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError
from tests.factories import body, resource, reward_body, succeeded

from osmf_core.api import KINDS, JobConfig, Kind, Role, parse_resource
from osmf_core.api.common import ObjectRef
from osmf_core.api.kinds import GeneratorRef
from osmf_operator import crdgen
from osmf_operator.reconcile import Observed, decide, plan_run, references

NOW = "2026-06-01T12:00:00Z"
ROOT = "s3://bucket/osmf"
ROLES = {value for name, value in vars(Role).items() if name.isupper()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_declaration_names_a_real_field_role_and_kind(kind):
    model = KINDS[kind].spec_model
    for ref in model.references:
        assert ref.role in ROLES
        annotation = model.model_fields[ref.field].annotation
        assert ObjectRef in getattr(annotation, "__args__", (annotation,)) or annotation is GeneratorRef, ref
        assert ref.kind in KINDS if ref.kind else annotation is GeneratorRef
        assert not (ref.task and ref.kind and not KINDS[ref.kind].has_task), f"{ref.kind} has no task"
    roles = [ref.role for ref in model.references]
    assert len(roles) == len(set(roles)), "one reference per role"
    for inherit in model.inherits:
        assert inherit.role in ROLES and inherit.via in roles, inherit
    if model.raw_data:
        assert model.raw_data.split(".")[0] in model.model_fields


def test_the_reward_task_rule_is_one_declaration_behind_the_model_and_the_cel_rule():
    (rule, pretrain_rule) = KINDS[Kind.GMLLM_TRAINING].spec_model.cross_field_rules()
    assert rule.message == "task reward needs initFromRef (a pretrain run)"
    crd = yaml.safe_load(crdgen.render_crds()[crdgen.crd_filename(KINDS[Kind.GMLLM_TRAINING])])
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    assert rule.cel() in rules and pretrain_rule.cel() in rules
    assert rule.cel()["rule"] == "self.task != 'reward' || has(self.initFromRef)"
    doc = reward_body()
    del doc["spec"]["initFromRef"]
    with pytest.raises(ValidationError, match=r"task reward needs initFromRef \(a pretrain run\)"):
        KINDS[Kind.GMLLM_TRAINING].spec_model.model_validate(doc["spec"])


@pytest.mark.parametrize("make, expected", [
    (lambda: resource("GAIPDataset"), [("grouping", "AudienceGrouping", None, "spec.groupingRef.name")]),
    (lambda: resource("GMLLMTraining", initFromRef={"name": "ignored"}),  # a pretrain run has no init
     [("dataset", "GAIPDataset", None, "spec.datasetRef.name")]),
    (lambda: parse_resource(reward_body()), [("dataset", "GAIPDataset", None, "spec.datasetRef.name"),
                                             ("init", "GMLLMTraining", "pretrain", "spec.initFromRef.name")]),
    (lambda: resource("AdImageCampaign"), [("grouping", "AudienceGrouping", None, "spec.groupingRef.name"),
                                           ("generator", "GroupDPORun", None, "spec.generatorRef.name"),
                                           ("reward", "GMLLMTraining", "reward", "spec.rewardModelRef.name")]),
    (lambda: resource("AdImageCampaign", generatorRef={"kind": "GMLLMTraining", "name": "gmllm"}, rewardModelRef=None),
     [("grouping", "AudienceGrouping", None, "spec.groupingRef.name"),
      ("generator", "GMLLMTraining", "pretrain", "spec.generatorRef.name")]),
], ids=["gaip", "pretrain", "reward", "campaign-over-dpo", "campaign-over-pretrain-without-grm"])
def test_references_follow_the_declarations(make, expected):
    assert [(r.role, r.kind, r.requires_task, r.path) for r in references(make())] == expected


def job_config_for(res) -> dict:
    """The first step's job config the reconcile core writes, every dependency succeeded."""
    found = {}
    for ref in references(res):
        dep = parse_resource(reward_body(ref.name)) if ref.requires_task == "reward" else resource(ref.kind, ref.name)
        recorded = [{"name": "data", "kind": "Dataset", "uri": "s3://w", "digest": "sha256:d"},
                    {"name": "grouping", "kind": "AudienceGrouping", "uri": f"{ROOT}/g", "digest": "sha256:g"}]
        if ref.kind == Kind.GROUP_DPO_RUN:
            recorded.append({"name": "policy", "kind": "GMLLMTraining", "uri": f"{ROOT}/p", "digest": "sha256:p"})
        found[ref.role] = succeeded(dep, uri=f"{ROOT}/{ref.name}", inputs=recorded)
    plan = plan_run(res, found, ROOT, data_fingerprint="sha256:data")
    (request,) = decide(Observed(resource=res, plan=plan), NOW).create_jobs
    return request.config


CONFIGS = {
    "grouping": lambda: resource("AudienceGrouping"),
    "gaip": lambda: resource("GAIPDataset"),
    "pretrain": lambda: resource("GMLLMTraining"),
    "reward": lambda: parse_resource(reward_body()),
    "dpo": lambda: resource("GroupDPORun"),
    "campaign": lambda: resource("AdImageCampaign"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_job_config_needs_an_input_for_every_reference(name):
    res = CONFIGS[name]()
    config = job_config_for(res)
    JobConfig.model_validate(config)
    for ref in references(res):
        broken = {**config, "inputs": {role: art for role, art in config["inputs"].items() if role != ref.role}}
        with pytest.raises(ValidationError) as raised:
            JobConfig.model_validate(broken)
        (error,) = raised.value.errors()
        assert f"inputs has no {ref.role!r} artifact for {ref.path}" in error["msg"] and "\n" not in error["msg"]


def test_inherited_and_unreferenced_inputs_are_not_required():
    config = job_config_for(resource("AdImageCampaign", rewardModelRef=None))
    assert {"grouping", "generator", "data", "policy"} <= set(config["inputs"]) and "reward" not in config["inputs"]
    config["inputs"] = {role: art for role, art in config["inputs"].items() if role in ("grouping", "generator")}
    JobConfig.model_validate(config)


def test_campaign_inherits_policy_only_from_a_group_dpo_generator():
    over_pretrain = job_config_for(resource("AdImageCampaign", generatorRef={"kind": "GMLLMTraining", "name": "gmllm"}))
    assert "policy" not in over_pretrain["inputs"] and over_pretrain["inputs"]["data"]["uri"] == "s3://w"
    over_dpo = job_config_for(resource("AdImageCampaign"))
    assert over_dpo["inputs"]["policy"]["uri"] == f"{ROOT}/p"


def test_serving_is_the_declared_section():
    campaign = resource("AdImageCampaign", serving={"enabled": True})
    assert campaign.info.serving(campaign.spec) is campaign.spec.serving
    assert campaign.info.serves_wire(body("AdImageCampaign", serving={"enabled": True})["spec"])
    assert not campaign.info.serves_wire(body("AdImageCampaign")["spec"])
    grouping = resource("AudienceGrouping")
    assert grouping.info.serving(grouping.spec) is None and not grouping.info.serves_wire({"serving": {"enabled": True}})
