"""Table-driven tests of the reconcile core: every transition of DESIGN §2–§3."""

from __future__ import annotations

import pytest
from tests.factories import body, failed, resource, reward_body, running, succeeded

from osmf_core.api import JobConfig
from osmf_core.api import parse_resource
from osmf_operator.reconcile import Blocked, Observed, ObservedJob, ObservedService, RunPlan, decide, input_hash, job_name, plan_run

NOW = "2026-06-01T12:00:00Z"
ROOT = "s3://bucket/osmf"


def conditions(decision) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in decision.status.conditions}


def grouping_plan(res=None):
    res = res or resource("AudienceGrouping")
    return res, plan_run(res, {}, ROOT, data_fingerprint="sha256:data")


def observe(res, plan, **kw) -> Observed:
    return Observed(resource=res, plan=plan, **kw)


def job(plan, step, phase, **kw) -> ObservedJob:
    return ObservedJob(name=f"j-{step}", step=step, input_hash=plan.input_hash, phase=phase, **kw)


def test_fresh_resource_creates_its_first_step_and_sets_every_condition():
    res, plan = grouping_plan()
    decision = decide(observe(res, plan), NOW)
    assert [r.step.name for r in decision.create_jobs] == ["train"]
    assert conditions(decision) == {
        "Ready": ("False", "CreatingJob"), "Succeeded": ("Unknown", "Running"), "Stalled": ("False", "NotStalled"),
        "Reconciling": ("True", "CreatingJob"), "Queued": ("False", "NotQueued"),
    }
    assert decision.status.observed_generation == 1
    config = JobConfig.model_validate(decision.create_jobs[0].config)
    assert config.step == "train" and config.run.uri == plan.run_uri
    assert config.inputs["data"].digest == "sha256:data"
    assert config.spec == res.spec
    assert decision.status.children.objects[0].name == decision.create_jobs[0].name


@pytest.mark.parametrize("done, running_step, expect_create", [
    ([], "train", None),
    (["train"], "cluster", None),
])
def test_running_step_creates_nothing_and_reports_ready(done, running_step, expect_create):
    res, plan = grouping_plan()
    jobs = [job(plan, s, "Succeeded") for s in done] + [job(plan, running_step, "Running")]
    decision = decide(observe(res, plan, jobs=jobs), NOW)
    assert decision.create_jobs == []
    assert conditions(decision)["Ready"] == ("True", "JobRunning")
    assert conditions(decision)["Succeeded"][0] == "Unknown"
    assert decision.status.stage == f"Running:{running_step}"


def test_succeeded_step_starts_the_next_one_sharded():
    res, plan = grouping_plan(resource("AudienceGrouping", shards=4))
    decision = decide(observe(res, plan, jobs=[job(plan, "train", "Succeeded")]), NOW)
    (request,) = decision.create_jobs
    assert request.step.name == "cluster" and request.shards == 4 and request.config["shards"] == 4
    assert decision.status.run.completed_steps == ["train"]


def test_merge_runs_one_pod_and_is_told_how_many_shards_to_merge():
    res, plan = grouping_plan(resource("AudienceGrouping", shards=4))
    decision = decide(observe(res, plan, jobs=[job(plan, s, "Succeeded") for s in ("train", "cluster")]), NOW)
    (request,) = decision.create_jobs
    assert request.step.name == "merge" and request.shards == 1 and request.config["shards"] == 4


def test_manifest_after_the_last_step_means_succeeded_with_metrics_and_artifacts():
    res, plan = grouping_plan()
    jobs = [job(plan, s, "Succeeded") for s in ("train", "cluster", "merge")]
    manifest = ({"metrics": {"auroc": 0.71, "groups": 12, "note": "text is dropped"}, "endTime": NOW}, "sha256:abc")
    decision = decide(observe(res, plan, jobs=jobs, manifest=manifest), NOW)
    assert conditions(decision)["Succeeded"] == ("True", "Succeeded")
    assert conditions(decision)["Ready"] == ("True", "Succeeded")
    assert decision.status.metrics == {"auroc": 0.71, "groups": 12.0}
    assert decision.status.summary == "auroc=0.710"
    assert decision.status.artifacts.output.uri == plan.run_uri
    assert decision.status.artifacts.output.digest == "sha256:abc"
    assert decision.create_jobs == []


def test_existing_manifest_on_first_visit_is_a_cache_hit():
    res, plan = grouping_plan()
    decision = decide(observe(res, plan, manifest=({"metrics": {"auroc": 0.7}}, "sha256:1")), NOW)
    assert conditions(decision)["Succeeded"] == ("True", "CacheHit")
    assert decision.create_jobs == []
    assert any(e.reason == "CacheHit" for e in decision.events)


@pytest.mark.parametrize("job_reason, expect_reason", [
    ("PodFailurePolicy", "InvalidInput"),
    ("BackoffLimitExceeded", "BackoffLimitExceeded"),
    ("DeadlineExceeded", "DeadlineExceeded"),
])
def test_failed_job_stalls_with_the_childs_reason(job_reason, expect_reason):
    res, plan = grouping_plan()
    failing = job(plan, "train", "Failed", reason=job_reason, message="table 'users': column 'age_band' missing")
    decision = decide(observe(res, plan, jobs=[failing]), NOW)
    cond = conditions(decision)
    assert cond["Stalled"] == ("True", expect_reason)
    assert cond["Succeeded"] == ("False", expect_reason)
    stalled = next(c for c in decision.status.conditions if c.type == "Stalled")
    assert "column 'age_band' missing" in stalled.message
    assert any(e.type == "Warning" for e in decision.events)


def test_pod_retries_inside_the_job_are_reported_while_it_runs():
    res, plan = grouping_plan()
    retrying = job(plan, "train", "Running", failed_pods=1, message="exit 75: s3 unreachable")
    decision = decide(observe(res, plan, jobs=[retrying]), NOW)
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert ready.status == "True" and "1 failed pod" in ready.message


def test_kueue_suspended_job_is_queued_and_not_blocking():
    res, plan = grouping_plan()
    decision = decide(observe(res, plan, jobs=[job(plan, "train", "Queued", reason="WaitingForQuota")]), NOW)
    assert conditions(decision)["Queued"] == ("True", "WaitingForQuota")
    assert conditions(decision)["Ready"][0] == "True"
    assert decision.status.stage == "Queued"


def test_unschedulable_pods_are_reported_in_a_condition():
    res, plan = grouping_plan()
    pending = job(plan, "train", "Pending", pending_reason="0/3 nodes are available: 3 Insufficient nvidia.com/gpu")
    decision = decide(observe(res, plan, jobs=[pending]), NOW)
    scheduled = next(c for c in decision.status.conditions if c.type == "Scheduled")
    assert scheduled.status == "False" and "Insufficient nvidia.com/gpu" in scheduled.message


def test_missing_dependency_waits_and_names_it():
    gaip = resource("GAIPDataset")
    plan = plan_run(gaip, {"grouping": None}, ROOT)
    assert isinstance(plan, Blocked)
    decision = decide(observe(gaip, plan), NOW)
    cond = conditions(decision)
    assert cond["Ready"] == ("False", "DependencyNotFound") and cond["Stalled"] == ("False", "NotStalled")
    assert "AudienceGrouping/grouping" in next(c.message for c in decision.status.conditions if c.type == "Ready")
    assert set(cond) == {"Ready", "Succeeded", "Stalled", "Reconciling", "Queued"}


def test_dependency_still_running_waits():
    gaip = resource("GAIPDataset")
    plan = plan_run(gaip, {"grouping": running(resource("AudienceGrouping"))}, ROOT)
    decision = decide(observe(gaip, plan), NOW)
    assert conditions(decision)["Ready"] == ("False", "WaitingForDependency")
    assert decision.status.stage == "Waiting"


def test_failed_dependency_stalls():
    gaip = resource("GAIPDataset")
    plan = plan_run(gaip, {"grouping": failed(resource("AudienceGrouping"))}, ROOT)
    decision = decide(observe(gaip, plan), NOW)
    assert conditions(decision)["Stalled"] == ("True", "DependencyFailed")


def test_succeeded_dependency_starts_with_inherited_inputs():
    grouping = succeeded(resource("AudienceGrouping"), inputs=[{"name": "data", "uri": "file:///data/world", "digest": "sha256:d"}])
    gaip = resource("GAIPDataset")
    plan = plan_run(gaip, {"grouping": grouping}, ROOT)
    assert isinstance(plan, RunPlan)
    assert set(plan.inputs) == {"grouping", "data"}
    decision = decide(observe(gaip, plan), NOW)
    assert [r.step.name for r in decision.create_jobs] == ["aggregate"]


def test_reward_initialised_from_a_non_pretrain_run_is_an_invalid_reference():
    grm = parse_resource(reward_body(init="other-grm"))
    other = parse_resource(reward_body(name="other-grm"))
    plan = plan_run(grm, {"dataset": succeeded(resource("GAIPDataset")), "init": succeeded(other)}, ROOT)
    decision = decide(observe(grm, plan), NOW)
    assert conditions(decision)["Stalled"] == ("True", "InvalidReference")


def test_campaign_with_a_reward_model_as_generator_is_an_invalid_reference():
    campaign = resource("AdImageCampaign", generatorRef={"kind": "GMLLMTraining", "name": "grm"})
    plan = plan_run(campaign, {
        "grouping": succeeded(resource("AudienceGrouping")),
        "generator": succeeded(parse_resource(reward_body())),
        "reward": succeeded(parse_resource(reward_body())),
    }, ROOT)
    assert isinstance(plan, Blocked) and plan.stalled and plan.reason == "InvalidReference"


def test_spec_change_makes_a_new_run_and_removes_the_old_running_job():
    res, old_plan = grouping_plan()
    first = decide(observe(res, old_plan, jobs=[job(old_plan, "train", "Running")]), NOW)
    changed = parse_resource({**body("AudienceGrouping", generation=2, clustering={"maxGroups": 3}),
                              "status": first.status.wire()})
    new_plan = plan_run(changed, {}, ROOT, data_fingerprint="sha256:data")
    assert new_plan.input_hash != old_plan.input_hash and new_plan.run_uri != old_plan.run_uri
    decision = decide(observe(changed, new_plan, jobs=[job(old_plan, "train", "Running")]), NOW)
    assert decision.delete_jobs == ["j-train"]
    assert [r.input_hash for r in decision.create_jobs] == [new_plan.input_hash]
    assert decision.status.run.input_hash == new_plan.input_hash and decision.status.run.completed_steps == []
    assert decision.status.observed_generation == 2


def test_invalid_spec_stalls_naming_the_field():
    res, plan = grouping_plan()
    decision = decide(observe(res, plan, invalid_spec="spec.clustering.maxGroups: Input should be <= 5"), NOW)
    cond = conditions(decision)
    assert cond["Stalled"] == ("True", "InvalidSpec") and cond["Succeeded"] == ("False", "InvalidSpec")
    assert "spec.clustering.maxGroups" in next(c.message for c in decision.status.conditions if c.type == "Stalled")


def test_progress_is_merged_across_shards_and_throttled_to_30_seconds():
    res, plan = grouping_plan(resource("AudienceGrouping", shards=2))
    jobs = [job(plan, "train", "Succeeded"), job(plan, "cluster", "Running")]
    docs = [{"step": "cluster", "percent": 50.0, "current": 5, "total": 10, "updated": NOW},
            {"step": "cluster", "percent": 100.0, "current": 10, "total": 10, "updated": NOW}]
    first = decide(observe(res, plan, jobs=jobs, progress=docs), NOW)
    assert first.status.progress.percent == pytest.approx(100 * (1 + 0.75) / 3, abs=0.1)
    assert (first.status.progress.current, first.status.progress.total) == (15, 20)
    later = parse_resource({**res.body, "status": first.status.wire()})
    docs2 = [dict(d, percent=100.0) for d in docs]
    soon = decide(observe(later, plan, jobs=jobs, progress=docs2), "2026-06-01T12:00:10Z")
    assert soon.status.progress.percent == first.status.progress.percent
    after = decide(observe(later, plan, jobs=jobs, progress=docs2), "2026-06-01T12:00:31Z")
    assert after.status.progress.percent > first.status.progress.percent


def test_last_transition_time_changes_only_with_the_status():
    res, plan = grouping_plan()
    first = decide(observe(res, plan, jobs=[job(plan, "train", "Running")]), NOW)
    again = decide(observe(parse_resource({**res.body, "status": first.status.wire()}), plan,
                           jobs=[job(plan, "train", "Running")]), "2026-06-01T13:00:00Z")
    assert [c.last_transition_time for c in again.status.conditions] == [c.last_transition_time for c in first.status.conditions]


def campaign_done(service=None, serving=True):
    campaign = resource("AdImageCampaign", serving={"enabled": serving})
    deps = {"grouping": succeeded(resource("AudienceGrouping")), "generator": succeeded(resource("GroupDPORun")),
            "reward": succeeded(parse_resource(reward_body()))}
    plan = plan_run(campaign, deps, ROOT)
    jobs = [job(plan, s, "Succeeded") for s in ("generate", "merge")]
    return decide(observe(campaign, plan, jobs=jobs, manifest=({"metrics": {"images": 8}}, "sha256:c"), service=service), NOW)


def test_campaign_serving_waits_for_the_inference_service():
    decision = campaign_done()
    assert decision.apply_service is not None and decision.apply_service.storage_uri.endswith(decision.status.artifacts.input_hash[:16] + "/serving")
    assert conditions(decision)["Succeeded"][0] == "True"
    assert conditions(decision)["Ready"] == ("False", "InferenceServiceNotReady")


def test_campaign_mirrors_ready_and_url():
    decision = campaign_done(ObservedService(name="campaign", ready=True, url="http://campaign.default.example.com"))
    assert conditions(decision)["Ready"] == ("True", "Serving")
    assert decision.status.children.url == "http://campaign.default.example.com"


def test_campaign_surfaces_a_crash_looping_predictor():
    svc = ObservedService(name="campaign", ready=True, url="http://x", pod_failure_reason="CrashLoopBackOff",
                          pod_failure_message="back-off 5m0s restarting failed container")
    decision = campaign_done(svc)
    assert conditions(decision)["Ready"] == ("False", "CrashLoopBackOff")
    assert conditions(decision)["ServingReady"] == ("False", "CrashLoopBackOff")
    assert any(e.reason == "CrashLoopBackOff" and e.type == "Warning" for e in decision.events)


def test_campaign_without_serving_is_ready_when_images_are_done():
    decision = campaign_done(serving=False)
    assert decision.apply_service is None and conditions(decision)["Ready"] == ("True", "Succeeded")


def test_input_hash_ignores_resources_and_follows_result_fields_and_inputs():
    base = resource("AudienceGrouping")
    bigger = resource("AudienceGrouping", resources={"gpusPerNode": 8, "memory": "64Gi"}, shards=8)
    other = resource("AudienceGrouping", clustering={"maxGroups": 4})
    plan = lambda r, fp="sha256:a": plan_run(r, {}, ROOT, fp).input_hash  # noqa: E731
    assert plan(base) == plan(bigger)
    assert plan(base) != plan(other)
    assert plan(base) != plan(base, "sha256:b")


def test_job_names_are_dns_labels_even_for_long_resource_names():
    long = resource("AudienceGrouping", name="a" * 200)
    name = job_name(long, "cluster", "f" * 64)
    assert len(name) <= 63 and name.endswith("-cluster-ffffffff")
    assert job_name(resource("AudienceGrouping", name="b" * 200), "cluster", "f" * 64) != name
