-- tests/lua/test_flow.lua: tasks, parallel, timeout, retry, sleep and the
-- places where waiting is not allowed.
local t = require "tests.lua.testing"

t.test("spawn and wait return every result", function()
  local h = flow.spawn(function(a, b) flow.sleep(0.01) return a + b, nil, "x" end, 1, 2)
  local a, b, c = h:wait()
  t.eq(a, 3); t.eq(b, nil); t.eq(c, "x")
  t.eq(h:status(), "done")
  t.eq(select("#", h:wait()), 3, "results can be taken twice")
  t.match(tostring(h), "^task %d+ %(done%)$")
end)

t.test("wait re-raises the task's error object", function()
  local h = flow.spawn(function() flow.sleep(0.01) error(flow.error("custom", "went wrong", {code = 7})) end)
  local err = t.raises(h.wait, h)
  t.eq(err.kind, "custom"); t.eq(err.code, 7)
  t.match(tostring(err), "test_flow.lua:%d+: went wrong")
  t.eq(h:status(), "failed")
end)

t.test("cancel stops a waiting task", function()
  local reached = false
  local h = flow.spawn(function() flow.sleep(10) reached = true end)
  flow.sleep(0.01)
  h:cancel()
  local err = t.raises(h.wait, h)
  t.eq(err.kind, "canceled"); t.eq(h:status(), "canceled")
  t.eq(reached, false, "the wait ended before the sleep")
end)

t.test("cancel before the task starts", function()
  local ran = false
  local h = flow.spawn(function() ran = true end)
  h:cancel()
  t.eq(t.raises(h.wait, h).kind, "canceled")
  t.eq(ran, false)
end)

t.test("a cancelled task can clean up after the cancel", function()
  local cleaned = false
  local h = flow.spawn(function()
    local ok, err = pcall(flow.sleep, 10)
    flow.sleep(0.01) -- waiting again works: cancellation is delivered once
    cleaned = true
    error(err, 0)
  end)
  flow.sleep(0)
  h:cancel()
  t.raises(h.wait, h)
  t.eq(cleaned, true)
end)

t.test("1000 tasks sleeping 0.1 s finish together", function()
  local hs, sleeping, sleeping_at_first_wake = {}, 0, nil
  for i = 1, 1000 do
    hs[i] = flow.spawn(function()
      sleeping = sleeping + 1
      flow.sleep(0.1)
      sleeping_at_first_wake = sleeping_at_first_wake or sleeping
      return i
    end)
  end
  local sum = 0
  for i = 1, 1000 do sum = sum + hs[i]:wait() end
  t.eq(sum, 500500)
  t.eq(sleeping_at_first_wake, 1000, "every sleep began before the first ended")
end)

t.test("parallel returns results in order", function()
  local r = flow.parallel{
    function() flow.sleep(0.03) return "a" end,
    function() return "b" end,
    function() flow.sleep(0.01) return "c" end,
  }
  t.eq(r[1], "a"); t.eq(r[2], "b"); t.eq(r[3], "c"); t.eq(r.n, 3)
  t.eq(#flow.parallel{}, 0)
end)

t.test("parallel limit bounds concurrency", function()
  local running, peak, fns = 0, 0, {}
  for i = 1, 10 do
    fns[i] = function()
      running = running + 1
      if running > peak then peak = running end
      flow.sleep(0.01)
      running = running - 1
      return i
    end
  end
  local r = flow.parallel(fns, {limit = 2})
  t.eq(peak, 2, "peak concurrency")
  for i = 1, 10 do t.eq(r[i], i) end
end)

t.test("parallel reports every failure after all finish", function()
  local slow_done = false
  local err = t.raises(flow.parallel, {
    function() error("first") end,
    function() flow.sleep(0.05) slow_done = true return 1 end,
    function() flow.sleep(0.01) error(flow.error("custom", "third")) end,
  })
  t.eq(slow_done, true, "siblings ran to the end")
  t.eq(err.kind, "parallel")
  t.eq(#err.errors, 2)
  t.eq(err.errors[1].index, 1); t.match(err.errors[1].message, "first")
  t.eq(err.errors[2].index, 3); t.eq(err.errors[2].error.kind, "custom")
  t.match(tostring(err), "2 of 3 branches failed: %[branch 1%] .*first; %[branch 3%] .*third")
end)

t.test("parallel rejects bad arguments", function()
  t.match(t.raises(flow.parallel, "x"), "expected a list of functions")
  t.match(t.raises(flow.parallel, {function() end, 5}), "item 2 is a number")
  t.match(t.raises(flow.parallel, {}, {limit = 0}), "limit must be")
end)

t.test("cancelling a parallel cancels its branches", function()
  local finished = 0
  local h = flow.spawn(flow.parallel, {
    function() flow.sleep(5) finished = finished + 1 end,
    function() flow.sleep(5) finished = finished + 1 end,
  })
  flow.sleep(0.01)
  h:cancel()
  t.eq(t.raises(h.wait, h).kind, "canceled")
  t.eq(finished, 0)
end)

t.test("a cancelled parallel starts no further items", function()
  local started = 0
  local fns = {}
  for i = 1, 6 do fns[i] = function() started = started + 1 flow.sleep(5) end end
  local h = flow.spawn(flow.parallel, fns, {limit = 2})
  flow.sleep(0.01)
  h:cancel()
  t.eq(t.raises(h.wait, h).kind, "canceled")
  flow.sleep(0.02)
  t.eq(started, 2)
end)

t.test("timeout returns results when in time", function()
  local a, b = flow.timeout(1, function(x) flow.sleep(0.01) return x, "y" end, "x")
  t.eq(a, "x"); t.eq(b, "y")
end)

t.test("timeout raises and cancels what it waited on", function()
  local reached = false
  local err = t.raises(flow.timeout, 0.05, function() flow.sleep(0.3) reached = true end)
  t.eq(err.kind, "timeout"); t.eq(err.seconds, 0.05)
  t.match(tostring(err), "timed out after 0.05 s")
  t.eq(reached, false, "raised before the inner sleep ended")
  flow.sleep(0.4)
  t.eq(reached, false, "the inner sleep was cancelled")
end)

t.test("timeout passes the inner error through", function()
  t.eq(t.raises(flow.timeout, 1, function() error(flow.error("inner", "x")) end).kind, "inner")
  t.match(t.raises(flow.timeout, -1, function() end), "seconds must be")
end)

t.test("retry retries then succeeds", function()
  local calls = 0
  local v = flow.retry({attempts = 5, delay = 0.01, jitter = 0}, function(x)
    calls = calls + 1
    if calls < 3 then error("flaky") end
    return x * 2
  end, 21)
  t.eq(v, 42); t.eq(calls, 3)
end)

t.test("retry backs off and reports attempts", function()
  local calls, t0 = 0, flow.now()
  local err = t.raises(flow.retry, {attempts = 4, delay = 0.02, backoff = 2, jitter = 0},
    function() calls = calls + 1 error(flow.error("network", "down")) end)
  local wall = flow.now() - t0
  t.eq(calls, 4); t.eq(err.attempts, 4); t.eq(err.kind, "network")
  t.ok(wall >= 0.02 + 0.04 + 0.08 - 0.005, string.format("backoff waited %.3f s", wall))
  local serr = t.raises(flow.retry, {attempts = 2, delay = 0}, function() error("plain") end)
  t.eq(serr.attempts, 2); t.match(tostring(serr), "plain")
end)

t.test("retry caps the delay and honours retry_if", function()
  local calls = 0
  -- uncapped, the waits would take hours: the retry gives up long before the deadline
  local capped = t.raises(flow.timeout, 30, flow.retry,
    {attempts = 4, delay = 3600, max_delay = 0.01, jitter = 0},
    function() calls = calls + 1 error("x") end)
  t.eq(capped.attempts, 4, "max_delay caps the wait")
  calls = 0
  local err = t.raises(flow.retry, {attempts = 5, delay = 0,
    retry_if = function(e) return e.kind ~= "auth" end},
    function() calls = calls + 1 error(flow.error("auth", "401")) end)
  t.eq(calls, 1); t.eq(err.attempts, 1)
  t.match(t.raises(flow.retry, {atempts = 3}, function() end), "unknown option 'atempts'")
  t.match(t.raises(flow.retry, {jitter = 2}, function() end), "jitter must be")
end)

t.test("retry never retries a cancellation", function()
  local calls = 0
  local err = t.raises(flow.timeout, 0.05, flow.retry, {attempts = 5, delay = 0},
    function() calls = calls + 1 flow.sleep(1) end)
  t.eq(err.kind, "timeout"); t.eq(calls, 1)
end)

t.test("sleep and now", function()
  local t0 = flow.now()
  flow.sleep(0)
  flow.sleep(0.02)
  t.ok(flow.now() - t0 >= 0.019, "slept")
  t.match(t.raises(flow.sleep, -1), "seconds must be a number")
  t.match(t.raises(flow.sleep, 0/0), "seconds must be a number")
  t.match(t.raises(flow.sleep, "x"), "number expected")
end)

t.test("waiting where it cannot yield is a clear error", function()
  t.match(t.raises(table.sort, {3, 1, 2}, function(a, b) flow.sleep(0) return a < b end),
    "flow.sleep cannot wait here")
  t.match(t.raises(table.sort, {3, 1, 2}, function(a, b)
    coroutine.wrap(function() flow.sleep(0.01) end)()
    return a < b
  end), "cannot wait inside a coroutine resumed from a metamethod")
  package.preload["sleepy"] = function() flow.sleep(0) end
  t.match(t.raises(require, "sleepy"), "require'd module's top level")
  local h = flow.spawn(function() return 1 end)
  local self_wait
  self_wait = flow.spawn(function() flow.sleep(0) return self_wait:wait() end)
  t.match(t.raises(self_wait.wait, self_wait), "cannot wait for itself")
  h:wait()
end)

t.test("coroutines inside tasks can wait", function()
  local pages = coroutine.wrap(function()
    for i = 1, 3 do flow.sleep(0.02) coroutine.yield(i) end
  end)
  local other = flow.spawn(function() flow.sleep(0.03) return "other" end)
  t.eq(pages() + pages() + pages(), 6)
  t.eq(other:status(), "done", "other tasks ran meanwhile")
  local co = coroutine.create(function(a)
    local b = coroutine.yield(a + 1)
    flow.sleep(0.01)
    return b * 2
  end)
  local ok, v = coroutine.resume(co, 1)
  t.eq(v, 2)
  ok, v = coroutine.resume(co, 10)
  t.eq(v, 20); t.eq(coroutine.status(co), "dead")
  local outer = coroutine.wrap(function()
    local inner = coroutine.wrap(function() flow.sleep(0.01) coroutine.yield("inner") end)
    coroutine.yield(inner())
  end)
  t.eq(outer(), "inner", "nested coroutines")
  t.match(t.raises(coroutine.wrap(function() flow.sleep(0) error("in co") end)), "in co")
end)

t.test("cancelling a task cancels the wait inside its coroutine", function()
  local reached = false
  local h = flow.spawn(function()
    coroutine.wrap(function() flow.sleep(10) reached = true end)()
  end)
  flow.sleep(0.01)
  h:cancel()
  t.eq(t.raises(h.wait, h).kind, "canceled")
  t.eq(reached, false)
end)

t.test("modules are globals and require-able", function()
  t.eq(require "engine.flow", flow)
  t.eq(require "engine.http", http)
  t.eq(require "engine.json", json)
  t.eq(require "engine.log", log)
end)

t.test("an options check takes any number of names", function()
  local options = require "engine.c.options"
  local names = {}
  for i = 1, 40 do names[i] = "name" .. i end
  t.eq(options.check_options("f", {name40 = 1}, names).name40, 1)
  t.match(t.raises(options.check_options, "f", {other = 1}, names), "expected name1, .*, name40%)")
end)

t.test("a cancel that arrives while a task is shielded reaches its own code after the shield", function()
  -- (a flow that waits only inside the engine's shielded work, as steps in
  -- a loop do on their journal writes, must still be stoppable)
  local tasks = require "engine.c.task"
  local turns = 0
  local h = flow.spawn(function()
    while true do
      tasks.shield(flow.sleep, 0.001)
      turns = turns + 1
    end
  end)
  while turns < 3 do flow.sleep(0.001) end
  h:cancel()
  local ok, err = pcall(h.wait, h)
  t.eq(ok, false)
  t.eq(err.kind, "canceled")
end)

t.run()
