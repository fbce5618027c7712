"""The chart's Argo CD health checks (charts/osmf/health/*.lua) run in a real Lua 5.1 interpreter.

Argo CD executes them with gopher-lua (Lua 5.1) and `obj` as a global; lupa's Lua 5.1 does the
same here. Statuses are built with the operator's own status models, so the scripts are checked
against the shape the operator writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from osmf_core.api import KINDS
from osmf_core.api.common import Condition, OsmfStatus
from osmf_operator import healthgen

lupa = pytest.importorskip("lupa.lua51", reason="lupa (PyPI) provides the Lua interpreter")

HEALTH_DIR = Path(__file__).resolve().parents[2] / "charts" / "osmf" / "health"
BATCH_KINDS = ("AudienceGrouping", "GAIPDataset", "GMLLMTraining", "GroupDPORun")
ALL_KINDS = (*BATCH_KINDS, "AdImageCampaign")
NOW = "2026-01-01T00:00:00Z"


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run the kind's health script the way Argo CD does: `obj` global, the script returns hs."""
    runtime = lupa.LuaRuntime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((HEALTH_DIR / f"{kind}.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


def cond(type_: str, status: str, reason: str, message: str = "", generation: int = 1) -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message,
                     last_transition_time=NOW, observed_generation=generation)


def resource(kind: str, *conditions: Condition, generation: int = 1,
             observed_generation: int | None = None, stage: str = "Running") -> dict[str, Any]:
    status = OsmfStatus(observed_generation=generation if observed_generation is None
                        else observed_generation, conditions=list(conditions), stage=stage)
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "demo", "namespace": "default", "generation": generation},
            "spec": {}, "status": status.model_dump(by_alias=True, exclude_none=True)}


def test_every_kind_has_a_health_check_and_the_batch_ones_agree():
    assert sorted(p.stem for p in HEALTH_DIR.glob("*.lua")) == sorted(ALL_KINDS)
    texts = {(HEALTH_DIR / f"{k}.lua").read_text() for k in BATCH_KINDS}
    assert len(texts) == 1, "the four batch-kind health checks must stay identical"


def test_checked_in_health_checks_match_the_template():
    drift = healthgen.check(HEALTH_DIR)
    assert drift == [], "\n".join(drift) + "\nrun `make generate` (osmf health-checks) and commit the result"


def test_check_reports_changed_missing_and_stale_files(tmp_path):
    healthgen.generate(tmp_path)
    assert healthgen.check(tmp_path) == []
    (tmp_path / "GroupDPORun.lua").write_text((tmp_path / "GroupDPORun.lua").read_text().replace("Degraded", "Healthy", 1))
    (tmp_path / "GAIPDataset.lua").unlink()
    (tmp_path / "OldKind.lua").write_text("return {}")
    drift = healthgen.check(tmp_path)
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in drift] == ["GAIPDataset.lua", "GroupDPORun.lua", "OldKind.lua"]
    assert "missing" in drift[0] and "differs" in drift[1] and "no such kind" in drift[2]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_only_a_kind_that_serves_waits_for_ready(kind):
    serves = KINDS[kind].can_serve
    assert ('ready ~= nil and ready.status == "True" then' in healthgen.health_check(KINDS[kind])) == serves
    assert serves == (kind == "AdImageCampaign")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_no_status_yet_is_progressing(kind):
    obj = {"apiVersion": "osmf.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "demo", "generation": 1}, "spec": {}}
    assert run_health(kind, obj)["status"] == "Progressing"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_status_of_an_older_generation_is_progressing_even_if_it_succeeded(kind):
    obj = resource(kind, cond("Succeeded", "True", "Succeeded"), cond("Ready", "True", "Ready"),
                   generation=2, observed_generation=1)
    health = run_health(kind, obj)
    assert health == {"status": "Progressing",
                      "message": "Waiting for the operator to observe generation 2"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_stalled_is_degraded_with_its_message(kind):
    obj = resource(kind, cond("Stalled", "True", "InvalidSpec", "spec.data.uri: unsupported scheme"),
                   cond("Succeeded", "Unknown", "Pending"), cond("Queued", "True", "WaitingForQuota"))
    assert run_health(kind, obj) == {"status": "Degraded",
                                     "message": "spec.data.uri: unsupported scheme"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_failed_is_degraded(kind):
    obj = resource(kind, cond("Succeeded", "False", "BackoffLimitExceeded", "train failed 3 times"),
                   cond("Stalled", "False", "Failed"))
    assert run_health(kind, obj) == {"status": "Degraded", "message": "train failed 3 times"}


@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_batch_kind_succeeded_is_healthy(kind):
    obj = resource(kind, cond("Succeeded", "True", "Succeeded", "manifest written"),
                   cond("Ready", "True", "Succeeded"), cond("Stalled", "False", "Succeeded"))
    assert run_health(kind, obj) == {"status": "Healthy", "message": "manifest written"}


def test_campaign_needs_ready_as_well_as_succeeded():
    images_done = cond("Succeeded", "True", "Succeeded", "images complete")
    rolling_out = resource("AdImageCampaign", images_done,
                           cond("Ready", "False", "ServingNotReady", "InferenceService not ready"))
    assert run_health("AdImageCampaign", rolling_out) == {
        "status": "Progressing", "message": "InferenceService not ready"}
    serving = resource("AdImageCampaign", images_done,
                       cond("Ready", "True", "Serving", "serving at http://demo.default"))
    assert run_health("AdImageCampaign", serving) == {
        "status": "Healthy", "message": "serving at http://demo.default"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_queued_is_suspended(kind):
    obj = resource(kind, cond("Queued", "True", "WaitingForQuota", "ClusterQueue osmf is full"),
                   cond("Succeeded", "Unknown", "Queued"), cond("Ready", "False", "Queued"))
    assert run_health(kind, obj) == {"status": "Suspended", "message": "ClusterQueue osmf is full"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_waiting_or_running_is_progressing_with_the_ready_message(kind):
    waiting = resource(kind, cond("Ready", "False", "WaitingForDependency",
                                  "waiting for AudienceGrouping demo to succeed"),
                       cond("Succeeded", "Unknown", "Pending"), cond("Queued", "False", "Admitted"))
    assert run_health(kind, waiting) == {
        "status": "Progressing", "message": "waiting for AudienceGrouping demo to succeed"}
    running = resource(kind, cond("Ready", "True", "Running", ""),
                       cond("Succeeded", "Unknown", "Running"), cond("Reconciling", "False", "Running"))
    assert run_health(kind, running) == {"status": "Progressing", "message": "Running"}
