"""What `osmf status` and `osmf logs` show of a resource on a cluster (pure: bodies in, text out).

The reads are `kube.py`'s; here a resource's status and its children become kubectl-style text,
and the running step's Job is picked for the logs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from osmf_core.api import KINDS, KindInfo


class ViewError(ValueError):
    """One line that says what is wrong and what to do."""


def resolve(target: str) -> tuple[KindInfo, str]:
    """`KIND/NAME` → (kind, name); KIND as kubectl takes it: kind, plural, singular or short name, any case."""
    kind, _, name = target.partition("/")
    if not name or not kind:
        raise ViewError(f"{target!r}: give KIND/NAME, e.g. audiencegrouping/my-grouping or ag/my-grouping")
    wanted = kind.lower().split(".", 1)[0]
    for info in KINDS.values():
        if wanted in (info.kind.lower(), info.plural, info.singular, info.short_name):
            return info, name
    known = ", ".join(f"{i.kind} ({i.short_name})" for i in KINDS.values())
    raise ViewError(f"{kind!r}: not an osmf.dev kind; use one of {known}")


def age(moment: str | None, now: datetime) -> str:
    if not moment:
        return "-"
    try:
        then = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def job_state(job: dict[str, Any] | None) -> str:
    if job is None:
        return "gone"
    status = job.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            return {"Complete": "Succeeded", "Failed": f"Failed ({c.get('reason', '')})", "Suspended": "Suspended"}[c["type"]]
    parts = [f"{status[k]} {k}" for k in ("active", "ready", "succeeded", "failed") if status.get(k)]
    return "Running (" + ", ".join(parts) + ")" if parts else "Pending"


def service_state(isvc: dict[str, Any] | None) -> str:
    if isvc is None:
        return "gone"
    ready = next((c for c in (isvc.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return "Ready" if ready and ready.get("status") == "True" else f"NotReady ({ready.get('reason', '')})" if ready else "NotReady"


def describe(body: dict[str, Any], children: dict[tuple[str, str], dict[str, Any] | None], now: datetime) -> str:
    """kubectl-describe-like text: stage, progress, conditions, children (with their state), artifacts."""
    meta, status = body["metadata"], body.get("status") or {}
    generation, observed = meta.get("generation", 1), status.get("observedGeneration")
    lines = [f"{body['kind']} {meta['namespace']}/{meta['name']}",
             f"Stage:       {status.get('stage', 'Pending')}" + ("" if observed == generation else
                                                                    f"  (generation {generation} not yet observed: status is of {observed})")]
    if status.get("summary"):
        lines.append(f"Summary:     {status['summary']}")
    progress = status.get("progress")
    if progress:
        detail = [f"{progress.get('percent', 0):.1f}%", f"step {progress.get('step', '')}"]
        if progress.get("total"):
            detail.append(f"{progress.get('current', 0)}/{progress['total']}")
        if progress.get("etaSeconds") is not None:
            detail.append(f"ETA {int(progress['etaSeconds'])}s")
        detail += [f"{k}={v:.4g}" for k, v in (progress.get("metrics") or {}).items()]
        lines.append("Progress:    " + "  ".join(detail) + f"  (updated {age(progress.get('updated'), now)} ago)")
    if status.get("metrics"):
        lines.append("Metrics:     " + "  ".join(f"{k}={v:.4g}" for k, v in status["metrics"].items()))
    conditions = status.get("conditions") or []
    lines.append("Conditions:")
    if conditions:
        lines += table([["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]] + [
            [c.get("type", ""), c.get("status", ""), c.get("reason", ""), age(c.get("lastTransitionTime"), now),
             " ".join((c.get("message") or "").split())] for c in conditions])
    else:
        lines.append("  (none yet: the operator has not reconciled it)")
    objects = (status.get("children") or {}).get("objects") or []
    lines.append("Children:")
    if objects:
        rows = [["KIND", "NAME", "STEP", "STATE"]]
        for child in objects:
            found = children.get((child["kind"], child["name"]))
            state = service_state(found) if child["kind"] == "InferenceService" else job_state(found)
            rows.append([child["kind"], child["name"], child.get("step") or "-", state])
        lines += table(rows)
    else:
        lines.append("  (none)")
    url = (status.get("children") or {}).get("url")
    if url:
        lines.append(f"URL:         {url}")
    artifacts = status.get("artifacts") or {}
    if artifacts.get("output") or artifacts.get("inputs"):
        lines.append("Artifacts:")
        output = artifacts.get("output")
        if output:
            lines.append(f"  output  {output['uri']}  {output.get('digest') or ''}".rstrip())
        for ref in artifacts.get("inputs") or []:
            lines.append(f"  {ref['name']:<7} {ref['uri']}  {ref.get('digest') or ''}".rstrip())
    return "\n".join(lines)


def step_job(body: dict[str, Any], step: str | None) -> tuple[str, str]:
    """(step, Job name) whose logs to show: `step`, else the running one, else the last one the run made."""
    info = KINDS[body["kind"]]
    status = body.get("status") or {}
    jobs = [c for c in (status.get("children") or {}).get("objects") or [] if c.get("kind") == "Job"]
    label = f"{body['kind']}/{body['metadata']['name']}"
    steps = [s.name for s in info.steps]
    if step is not None and step not in steps:
        raise ViewError(f"--step {step!r}: {body['kind']} has the steps {', '.join(steps)}")
    if step is None:
        stage = status.get("stage", "")
        step = stage.split(":", 1)[1] if stage.startswith("Running:") else (jobs[-1].get("step") if jobs else None)
    job = next((c["name"] for c in reversed(jobs) if c.get("step") == step), None)
    if step is None or job is None:
        where = f"step {step}" if step else "any step"
        raise ViewError(f"{label} has no Job for {where} in its current run (stage {status.get('stage', 'Pending')}); "
                        f"see osmf status {label}")
    return step, job
