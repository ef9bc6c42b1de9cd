-- Argo CD health check for alertops.io PipelineStep and TrainingSetBuild.
-- Install it for both kinds (see argocd-cm-health.yaml). It reads only what the operator
-- writes: status.observedGeneration, status.phase and the kstatus conditions
-- Ready / Reconciling / Stalled.
--   Progressing  while the operator has not observed the current generation, or is reconciling
--   Degraded     when Stalled=True or the phase is Failed (the message says what to fix)
--   Suspended    when spec.suspend is true and the operator reports phase Suspended
--   Healthy      when Ready=True (a PipelineStep runs, a TrainingSetBuild succeeded)
local hs = { status = "Progressing", message = "Waiting for the alertops operator to report status" }

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata and obj.metadata.generation or 0
local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.message = "Generation " .. tostring(generation) .. " not yet observed by the operator"
  return hs
end

local stalled = condition("Stalled")
if (stalled ~= nil and stalled.status == "True") or obj.status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (stalled ~= nil and stalled.message ~= "" and stalled.message) or obj.status.lastError or "Failed"
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true and obj.status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend is true)"
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message or reconciling.reason or "Reconciling"
elseif ready ~= nil then
  hs.message = ready.message or ready.reason or hs.message
end
return hs
