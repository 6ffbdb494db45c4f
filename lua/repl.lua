-- lua/repl.lua: the REPL's rules, driven by engine/repl.c: turning input
-- lines into chunks (expressions print their values, unfinished statements
-- continue), running a chunk as the foreground task, printing values
-- readably, completing names, and reporting background tasks.
local errors = require "engine.c.error"

local repl = {}

-- The flow's print, which the REPL guards so output lands above the prompt.
local function print(...) return repl.globals.print(...) end
local pending -- lines of an unfinished chunk, or nil

local function incomplete(err)
  return err and err:find("<eof>$") ~= nil
end

-- Feeds one input line. Returns "empty", "incomplete", "error", message, or
-- "run", function, chunk text (for the history).
function repl.feed(line)
  if not pending and line:match("^%s*$") then return "empty" end
  if not pending and line:match("^%s*:help%s*$") then line = "help()" end
  local text = pending and (pending .. "\n" .. line) or line
  local source = text:gsub("^%s*=", "return ", 1)
  local fn, expr_err = load("return " .. source, "=stdin", "t")
  if fn then
    pending = nil
    return "run", fn, text
  end
  local stat_err
  fn, stat_err = load(source, "=stdin", "t")
  if fn then
    pending = nil
    return "run", fn, text
  end
  if incomplete(stat_err) or incomplete(expr_err) then
    pending = text
    return "incomplete"
  end
  pending = nil
  return "error", stat_err
end

function repl.reset() pending = nil end

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function show(v, depth, seen)
  local t = type(v)
  if t == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if v == require("engine.json").null then return "json.null" end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if seen[v] then return "<cycle>" end
  if depth > 3 then return "{...}" end
  seen[v] = true
  local keys, n = {}, #v
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  local parts, width = {}, 20
  for i = 1, math.min(n, width) do parts[#parts + 1] = show(v[i], depth + 1, seen) end
  for _, k in ipairs(keys) do
    if #parts >= width then break end
    local key = is_identifier(k) and k or ("[" .. show(k, depth + 1, seen) .. "]")
    local value = v[k]
    parts[#parts + 1] = key .. " = " .. (type(value) == "function" and "function" or show(value, depth + 1, seen))
  end
  local total = n + #keys
  if total > #parts then parts[#parts + 1] = string.format("... (%d more)", total - #parts) end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- A readable one-line rendering: tables to depth 3 and 20 items, cycles
-- marked, strings quoted.
function repl.show(v) return show(v, 1, {}) end

local function show_all(r, first)
  local parts = {}
  for i = first, r.n do parts[#parts + 1] = repl.show(r[i]) end
  return table.concat(parts, "\t")
end

local function trim_traceback(tb)
  -- drop the REPL's own frames below the user's chunk
  return (tb:gsub("\n[^\n]*lua/repl%.lua.*$", ""):gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

local function on_error(err)
  if errors.is_error(err, "canceled") then return err end
  return setmetatable({err = err, trace = trim_traceback(debug.traceback("", 2))}, {
    __tostring = function(self) return errors.describe(self.err) .. self.trace end})
end

-- Runs a chunk as the foreground task; prints its values or its error.
function repl.eval(fn)
  local r = table.pack(xpcall(fn, on_error))
  if repl.quitting() then return end
  if r[1] then
    if r.n > 1 then print(show_all(r, 2)) end
  elseif errors.is_error(r[2], "canceled") then
    io.stderr:write("interrupted\n")
  else
    io.stderr:write(tostring(r[2]), "\n")
  end
end

local function short(text)
  text = text:gsub("\n.*", "")
  return #text > 100 and (text:sub(1, 97) .. "...") or text
end

-- Reports a background task that finished, in one short line (its full
-- results stay available through the handle).
function repl.report(handle)
  local r = table.pack(pcall(handle.wait, handle))
  if repl.quitting() then return end
  if r[1] then
    print(string.format("[task %d] done%s", handle.id, r.n > 1 and (": " .. short(show_all(r, 2))) or ""))
  elseif errors.is_error(r[2], "canceled") then
    print(string.format("[task %d] canceled", handle.id))
  else
    print(string.format("[task %d] failed: %s", handle.id, short(errors.describe(r[2]))))
  end
end

local function fields_of(v, out, seen)
  seen = seen or {}
  if seen[v] then return end
  seen[v] = true
  if type(v) == "table" then
    for k in pairs(v) do if is_identifier(k) then out[k] = true end end
  end
  local mt = getmetatable(v)
  if mt and type(mt.__index) == "table" then fields_of(mt.__index, out, seen) end
  if mt and type(mt.methods) == "table" then fields_of(mt.methods, out, seen) end
end

-- Completions for the word being typed: globals, or fields after . and :.
function repl.complete(word)
  local path, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  -- the flow's globals (repl.globals, set by engine/repl.c), not the
  -- engine's private environment
  local scope, prefix = repl.globals, ""
  if path then
    for name in path:gmatch("[^.:]+") do
      if not is_identifier(name) then return {} end
      local ok, next_scope = pcall(function() return scope[name] end)
      if not ok or next_scope == nil then return {} end
      scope = next_scope
    end
    prefix = path .. sep
  else
    partial = word
  end
  local names, out = {}, {}
  fields_of(scope, names)
  for name in pairs(names) do
    if name:sub(1, #partial) == partial then out[#out + 1] = prefix .. name end
  end
  table.sort(out)
  return out
end

return repl
