-- Generated from osmf_operator/healthgen.py by `osmf health-checks` (make generate). Do not edit.
-- Argo CD health check for the osmf.dev batch kinds, one identical file per kind:
-- AudienceGrouping, GAIPDataset, GMLLMTraining, GroupDPORun. Register it as
-- resource.customizations.health.osmf.dev_<Kind> in argocd-cm (charts/osmf/README.md).
-- Order: an outdated status says nothing yet (Progressing); Stalled=True or Succeeded=False is
-- Degraded; Succeeded=True is Healthy; Queued=True (waiting for Kueue quota) is Suspended.
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
if succeeded ~= nil and succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(succeeded, "Succeeded")
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
