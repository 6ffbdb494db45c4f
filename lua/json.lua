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

function json.encode(value)
  local ok, text = pcall(cjson.encode, value)
  if not ok then
    error("json.encode: " .. tostring(text), 2)
  end
  return text
end

return json
