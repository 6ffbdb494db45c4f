-- lua/json.lua: JSON through lua-cjson, with JSON null as the json.null
-- sentinel and integral numbers decoded as Lua integers (cjson reads every
-- number as a float, which would print ids as 1234.0).
local cjson = require("cjson").new()
local errors = require "engine.c.error"
local integers = require("engine.c.json").integers

cjson.encode_number_precision(14) -- the most lua-cjson 2.1 allows
cjson.decode_max_depth(200)
cjson.encode_max_depth(200)

local json = {null = cjson.null}

function json.decode(text)
  if type(text) ~= "string" then
    error("json.decode: expected a string, got " .. type(text), 2)
  end
  local ok, value = pcall(cjson.decode, text)
  if not ok then
    error(errors.error("json", "invalid JSON: " .. tostring(value)), 2)
  end
  if type(value) == "number" then return math.tointeger(value) or value end
  return integers(value)
end

-- lua-cjson writes every number with 14 significant digits: an integer
-- past that (a 15-digit run id) would come out rounded. Such integers go
-- through as marked strings and are written back exactly.
local EXACT = 1e14
local MARK = "\0int:"

local function has_big(v, depth)
  if math.type(v) == "integer" then return v >= EXACT or v <= -EXACT end
  if type(v) ~= "table" or depth > 200 then return false end
  for _, x in next, v do
    if has_big(x, depth + 1) then return true end
  end
  return false
end

local function marked(v, depth, seen)
  if math.type(v) == "integer" and (v >= EXACT or v <= -EXACT) then return MARK .. v .. "\0" end
  if type(v) ~= "table" or depth > 200 then return v end
  if seen[v] then return seen[v] end
  local copy = setmetatable({}, getmetatable(v))
  seen[v] = copy
  for k, x in next, v do copy[k] = marked(x, depth + 1, seen) end
  return copy
end

function json.encode(value)
  local big = has_big(value, 0)
  if big then
    if math.type(value) == "integer" then return tostring(value) end
    value = marked(value, 0, {})
  end
  local ok, text = pcall(cjson.encode, value)
  if not ok then
    error("json.encode: " .. tostring(text), 2)
  end
  if big then text = text:gsub('"\\u0000int:(%-?%d+)\\u0000"', "%1") end
  return text
end

return json
