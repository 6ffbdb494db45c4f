-- lua/events.lua: what the library's layers tell observers. A producer
-- (the remote-job machinery) emits named events; observers (the run report,
-- its log lines, the journal) subscribe, so the producer never calls
-- them. Observers run at once, in the order they subscribed.
local events = {}
local observers = {}

function events.on(name, fn)
  local list = observers[name]
  if not list then
    list = {}
    observers[name] = list
  end
  list[#list + 1] = fn
end

function events.emit(name, ...)
  local list = observers[name]
  if not list then return end
  for i = 1, #list do list[i](...) end
end

return events
