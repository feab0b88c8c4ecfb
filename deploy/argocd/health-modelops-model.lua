-- Argo CD health check for modelops.dev/Model (docs/operations.md, "Argo CD").
-- Install it in argocd-cm as resource.customizations.health.modelops.dev_Model.
-- Reads only the status contract of docs/api.md: status.observedGeneration, the Ready,
-- Degraded, Progressing conditions (each with reason and message) and status.phase. Argo CD runs
-- it with gopher-lua (Lua 5.1); tests/unit/test_chart_files.py runs it with Lua 5.1 too.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  if text == "" then
    return fallback
  end
  return text
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelops operator to reconcile the Model"
  return hs
end

-- A status about an older spec says nothing about this one.
local generation = (obj.metadata and obj.metadata.generation) or 0
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local progressing = condition(status, "Progressing")

-- Still serving, but a newer version failed or a pinned version is unusable: needs a person.
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end
-- Nothing to serve: training failed or was rejected by its quality gates.
if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Training failed")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing, "Progressing")
  return hs
end
-- Not ready and nothing in progress: stuck (e.g. serving.version pins a version that cannot serve).
if ready ~= nil and ready.status == "False" and progressing ~= nil then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Model to become Ready")
return hs
