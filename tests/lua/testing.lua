-- tests/lua/testing.lua: a small test kit for Lua tests run by the engine.
-- Each test runs as its own task; after it, no task or libuv handle it
-- started may be left behind. run() prints "N passed, N failed" and exits
-- non-zero on any failure.
local tasks = require "engine.c.task"

local testing = {}
local tests = {}

function testing.test(name, fn) tests[#tests + 1] = {name = name, fn = fn} end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function testing.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %s, want %s", what or "value", show(got), show(want)), 2)
  end
end

function testing.ok(cond, what)
  if not cond then error((what or "condition") .. " is false", 2) end
end

function testing.match(s, pattern, what)
  if type(s) ~= "string" or not s:find(pattern) then
    error(string.format("%s: %s does not match %q", what or "text", show(s), pattern), 2)
  end
end

-- Runs fn and returns the error it raised; fails when it raises nothing.
function testing.raises(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error, got none", 2) end
  return err
end

-- Runs every test, or only the one named by the script's first argument.
function testing.run()
  local only = arg and arg[1]
  local passed, failed = 0, 0
  local base = tasks.stats()
  local selected = {}
  for _, t in ipairs(tests) do
    if not only or t.name == only then selected[#selected + 1] = t end
  end
  if #selected == 0 then
    print(string.format("no test named %q", tostring(only)))
    os.exit(1)
  end
  for _, t in ipairs(selected) do
    local h = flow.spawn(t.fn)
    local ok, err = pcall(h.wait, h)
    flow.sleep(0) -- let cancelled children finish
    local after = tasks.stats()
    if ok and (after.tasks ~= base.tasks or after.handles ~= base.handles) then
      ok, err = false, string.format("left %d task(s) and %d handle(s) behind",
        after.tasks - base.tasks, after.handles - base.handles)
    end
    if ok then
      passed = passed + 1
      print("ok   " .. t.name)
    else
      failed = failed + 1
      print("FAIL " .. t.name .. ": " .. tostring(err))
    end
  end
  print(string.format("%d passed, %d failed", passed, failed))
  if failed > 0 or passed == 0 then os.exit(1) end
end

return testing
