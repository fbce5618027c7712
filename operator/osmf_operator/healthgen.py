"""The chart's Argo CD health checks (`charts/osmf/health/<Kind>.lua`), generated from one template.

Argo CD shows no health for unknown kinds; each kind gets a Lua check registered as
`resource.customizations.health.osmf.dev_<Kind>`. They all read the conditions the reconcile core
writes (kstatus: Stalled, Succeeded, Queued, Ready). What differs per kind comes from its
declaration: a kind that serves (`KindInfo.can_serve`) is Healthy only when Ready=True as well, so a
finished campaign whose InferenceService still rolls out stays Progressing.

`osmf health-checks --out DIR` writes them (make generate); `--check` reports drift (make verify).
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from osmf_core.api import GROUP, KINDS, KindInfo

HEADER = "-- Generated from osmf_operator/healthgen.py by `osmf health-checks` (make generate). Do not edit.\n"
DEFAULT_OUT_DIR = "charts/osmf/health"

BATCH_ABOUT = Template("""\
-- Argo CD health check for the $group batch kinds, one identical file per kind:
-- $kinds. Register it as
-- resource.customizations.health.${group}_<Kind> in argocd-cm (charts/osmf/README.md).
-- Order: an outdated status says nothing yet (Progressing); Stalled=True or Succeeded=False is
-- Degraded; Succeeded=True is Healthy; Queued=True (waiting for Kueue quota) is Suspended.
""")
SERVING_ABOUT = Template("""\
-- Argo CD health check for $group $kind. Register it as
-- resource.customizations.health.${group}_$kind in argocd-cm (charts/osmf/README.md).
-- As for the batch kinds, except that Healthy needs Ready=True too (outputs complete and serving
-- ready); Succeeded=True with Ready not True is still Progressing (e.g. the InferenceService rolls out).
""")

BODY = Template("""\
local hs = {}
local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end
local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
local succeeded = condition(conditions, "Succeeded")
local queued = condition(conditions, "Queued")
local ready = condition(conditions, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end
if succeeded ~= nil and succeeded.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(succeeded, "Failed")
  return hs
end
if $healthy_when then
  hs.status = "Healthy"
  hs.message = $healthy_message
  return hs
end
if queued ~= nil and queued.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(queued, "Queued")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, obj.status.stage or "Progressing")
return hs
""")

SUCCEEDED = 'succeeded ~= nil and succeeded.status == "True"'


def health_check(info: KindInfo) -> str:
    """The Lua health check of one kind."""
    if info.can_serve:
        about = SERVING_ABOUT.substitute(group=GROUP, kind=info.kind)
        body = BODY.substitute(healthy_when=f'{SUCCEEDED} and ready ~= nil and ready.status == "True"',
                               healthy_message='describe(ready, "Ready")')
    else:
        batch = ", ".join(kind for kind, other in KINDS.items() if not other.can_serve)
        about = BATCH_ABOUT.substitute(group=GROUP, kinds=batch)
        body = BODY.substitute(healthy_when=SUCCEEDED, healthy_message='describe(succeeded, "Succeeded")')
    return HEADER + about + body


def render_health_checks() -> dict[str, str]:
    """File name → Lua text, one per kind."""
    return {f"{info.kind}.lua": health_check(info) for info in KINDS.values()}


def generate(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_health_checks().items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def check(out_dir: str | Path) -> list[str]:
    """One line per file in out_dir that differs from the template (missing, changed or stale)."""
    out = Path(out_dir)
    expected = render_health_checks()
    drift = []
    for name, text in expected.items():
        path = out / name
        if not path.is_file():
            drift.append(f"{path}: missing; run `make generate`")
        elif path.read_text(encoding="utf-8") != text:
            drift.append(f"{path}: differs from the template in osmf_operator/healthgen.py; run `make generate`")
    if out.is_dir():
        drift += [f"{path}: no such kind; delete it" for path in sorted(out.glob("*.lua")) if path.name not in expected]
    return drift
