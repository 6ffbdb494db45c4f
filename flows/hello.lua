-- flows/hello.lua: three tasks sleeping 1 s each finish in about 1 s,
-- because each waits as its own task. Run: engine flows/hello.lua [NAME]
local name = arg[1] or "world"
local started = flow.now()

local function step(label, seconds)
  return function()
    log.info("%s: started", label)
    flow.sleep(seconds)
    log.info("%s: done after %.1f s", label, flow.now() - started)
    return label
  end
end

local results = flow.parallel{ step("extract", 1), step("transform", 1), step("load", 1) }
log.info("hello, %s: %s finished in %.2f s", name, table.concat(results, ", "),
  flow.now() - started)
