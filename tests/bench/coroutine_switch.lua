-- tests/bench/coroutine_switch.lua: the cost of a coroutine switch, 10^6
-- resume/yield pairs through coroutine.resume and through coroutine.wrap.
-- Runs under stock Lua and under the engine, for the ratio:
--   lua5.4 tests/bench/coroutine_switch.lua
--   build/engine tests/bench/coroutine_switch.lua
-- Times are noisy on a shared machine; instruction counts are not:
--   valgrind --tool=callgrind lua5.4 tests/bench/coroutine_switch.lua 100000 resume
local N = tonumber(arg and arg[1]) or 1000000
local only = arg and arg[2] -- "resume" or "wrap": run just that one
local clock = os.clock

local function bench(name, fn)
  if only and only ~= name then return end
  local best = math.huge
  for _ = 1, 5 do
    local t0 = clock()
    fn()
    best = math.min(best, clock() - t0)
  end
  print(string.format("%-7s %d switches: %.3f s (%.0f ns each)", name, N, best, best / N * 1e9))
end

bench("resume", function()
  local co = coroutine.create(function() while true do coroutine.yield() end end)
  local resume = coroutine.resume
  for _ = 1, N do resume(co) end
end)

bench("wrap", function()
  local step = coroutine.wrap(function() while true do coroutine.yield() end end)
  for _ = 1, N do step() end
end)
