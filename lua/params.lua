-- lua/params.lua: flow.params, a small declarative parser for a flow's
-- arguments (--name=value, --name value, --flag, --no-flag, positional
-- words) and environment variables. `engine FLOW.lua --help` prints the
-- parameters; a bad value is a usage error (exit 2) naming the parameter.
local errors = require "engine.c.error"
local rules = require "engine.c.rules"
local run = require "engine.run"

local params = {}

local TYPES = {string = true, number = true, integer = true, boolean = true, list = true}
local FIELDS = {type = true, default = true, help = true, env = true, required = true, of = true}

local function usage(fmt, ...)
  local e = errors.error("usage", string.format(fmt, ...) .. " (see --help)")
  e.where = ""
  error(e, 0)
end

local BOOLEANS = {["true"] = true, ["1"] = true, yes = true, on = true,
                  ["false"] = false, ["0"] = false, no = false, off = false}

-- text as a value of type t (list items of type of); nil and why not.
local function convert(text, t, of)
  if t == "string" then return text end
  if t == "boolean" then
    local b = BOOLEANS[text:lower()]
    if b == nil then return nil, "true or false" end
    return b
  end
  if t == "number" then
    local n = tonumber(text)
    if not n or n ~= n or n == math.huge or n == -math.huge then return nil, "a number" end
    return n
  end
  if t == "integer" then
    local n = text:match("^%s*[-+]?%d+%s*$") and math.tointeger(tonumber(text))
    if not n then return nil, "a whole number" end
    return n
  end
  local items = {}
  if text == "" then return items end
  for item in (text .. ","):gmatch("([^,]*),") do
    local v, why = convert(item:match("^%s*(.-)%s*$"), of or "string")
    if v == nil then return nil, "a comma-separated list of " .. (why == "a whole number" and "whole numbers" or
      why == "a number" and "numbers" or "true/false values") end
    items[#items + 1] = v
  end
  return items
end

local function option_name(name) return "--" .. name:gsub("_", "-") end

local function check_spec(spec)
  if type(spec) ~= "table" then error("flow.params: expected {name = {type = ..., ...}, ...}", 3) end
  local names = {}
  for name, p in pairs(spec) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      error(string.format("flow.params: parameter names are Lua names, got %s", tostring(name)), 3)
    end
    if type(p) ~= "table" then error(string.format("flow.params: %s: expected a table", name), 3) end
    for k in pairs(p) do
      if not FIELDS[k] then
        error(string.format("flow.params: %s: unknown field '%s' (expected default, env, help, of, " ..
          "required, type)", name, tostring(k)), 3)
      end
    end
    local t = p.type or "string"
    if not TYPES[t] then
      error(string.format("flow.params: %s: type must be string, number, integer, boolean or list", name), 3)
    end
    if p.of ~= nil and (t ~= "list" or not TYPES[p.of] or p.of == "list") then
      error(string.format("flow.params: %s: 'of' is for lists: string, number, integer or boolean", name), 3)
    end
    for _, k in ipairs{"help", "env"} do
      if p[k] ~= nil and type(p[k]) ~= "string" then
        error(string.format("flow.params: %s: %s must be a string", name, k), 3)
      end
    end
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

local function help_text(spec, names, about)
  local out = {string.format("usage: engine %s [PARAMETERS] [ARGS...]", run.flow_label())}
  if about then out[#out + 1] = about end
  out[#out + 1] = ""
  out[#out + 1] = "parameters:"
  for _, name in ipairs(names) do
    local p = spec[name]
    local t = p.type or "string"
    local left = option_name(name) .. (t == "boolean" and "" or ("=" .. (t == "list" and "A,B,..." or t:upper())))
    local notes = {}
    notes[#notes + 1] = t == "list" and ("list of " .. (p.of or "string")) or t
    if p.default ~= nil then
      local d = p.default
      if type(d) == "table" then d = table.concat(d, ",") end
      d = tostring(d)
      -- a default taken from a secret (os.getenv("..._TOKEN")) is not shown
      notes[#notes + 1] = rules.redact(d) == d and ("default " .. d) or "default hidden: it holds a secret"
    end
    if p.required then notes[#notes + 1] = "required" end
    if p.env then notes[#notes + 1] = "env " .. p.env end
    out[#out + 1] = string.format("  %-24s %s(%s)", left, p.help and (p.help .. " ") or "",
      table.concat(notes, "; "))
  end
  out[#out + 1] = "  --help                   show this help and exit"
  return table.concat(out, "\n")
end

-- flow.params(spec[, about]) -> values: values.<name> for each parameter,
-- values[1..n] the words that are not parameters.
function params.parse(spec, about)
  local names = check_spec(spec)
  if about ~= nil and type(about) ~= "string" then error("flow.params: the description must be a string", 2) end
  local by_option = {}
  for _, name in ipairs(names) do by_option[option_name(name)] = name end
  local values, given, args = {}, {}, run.args()
  local i = 1
  local function set(name, text, from)
    local p = spec[name]
    local v, why = convert(text, p.type or "string", p.of)
    if v == nil then usage("%s: expected %s, got %q", from, why, text) end
    values[name], given[name] = v, true
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for k = i + 1, #args do values[#values + 1] = args[k] end
      break
    elseif a == "--help" or a == "-h" then
      io.stdout:write(rules.redact(help_text(spec, names, about)), "\n")
      io.stdout:flush()
      os.exit(0)
    elseif a:sub(1, 2) == "--" then
      local opt, text = a:match("^(%-%-[^=]+)=(.*)$")
      opt = opt or a
      local name = by_option[opt]
      local negated = not name and opt:sub(1, 5) == "--no-" and by_option["--" .. opt:sub(6)]
      if negated and (spec[negated].type == "boolean") and not text then
        values[negated], given[negated] = false, true
      elseif not name then
        usage("unknown parameter %s", opt)
      elseif text then
        set(name, text, opt)
      elseif (spec[name].type or "string") == "boolean" then
        values[name], given[name] = true, true
      elseif i < #args then
        i = i + 1
        set(name, args[i], opt)
      else
        usage("%s needs a value", opt)
      end
    else
      values[#values + 1] = a
    end
    i = i + 1
  end
  for _, name in ipairs(names) do
    local p = spec[name]
    if not given[name] and p.env then
      local text = os.getenv(p.env)
      if text and text ~= "" then set(name, text, p.env) end
    end
    if not given[name] then
      if p.required then usage("%s is required", option_name(name)) end
      values[name] = p.default
    end
  end
  -- the run is this flow with these parameters, however they were written
  -- (--x=v or --x v, a default or the same value given)
  local named, words = {}, {}
  for _, name in ipairs(names) do named[name] = values[name] end
  for i = 1, #values do words[i] = values[i] end
  run.fix_identity(require("engine.values").encode({params = named, args = words}))
  return values
end

return params
