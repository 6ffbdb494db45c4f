-- lua/values.lua: Lua values as JSON text that gives back exactly the same
-- values: what the journal keeps of a step's results so that --resume hands
-- back what the step returned (docs/state.md). Pure Lua; lua-cjson is not
-- used, as it keeps 14 significant digits and reads every number as a float.
--
-- values.encode(v) -> text | nil, why
-- values.decode(text) -> v | nil, why   (JSON null gives nil with no why)
-- values.same(a, b) -> boolean: a and b are the same value, deeply (same
--   math.type, same sign of zero; tables compared key by key, at most
--   MAX_TABLE_DEPTH deep)
--
-- What is written:
--   nil                 null (in an array: a hole, the index stays nil)
--   boolean             true, false
--   integer             its digits: 9007199254740993, -9223372036854775808
--   float               the shortest of %.15g, %.16g, %.17g that reads back
--                       as the same double, with ".0" when it would look like
--                       an integer: 0.1, 0.30000000000000004, 3.0, -0.0,
--                       1e+308, 4.94065645841247e-324 (the %.17g digits when
--                       fewer do not do)
--   string, UTF-8       a JSON string; control characters escaped (\n,
--                       \u0000, ...), other bytes as they are
--   string, other bytes {"$bytes": "<lowercase hex of every byte>"}
--   json.null           {"$json.null": true}
--   table:
--     keys in 1..m only an array of m, null at the holes: {1, nil, 3} is
--     (m/2 or more)     [1,null,3]
--     string keys only, a JSON object, keys sorted
--     none starting "$"
--     anything else     {"$pairs": [[key, value], ...]}: integer keys
--                       first, ascending, then string keys, sorted; a key is
--                       written as a value is ({"$bytes": ...} included)
--     empty             {}
-- The encoder never writes a plain object with a key starting with "$", so
-- an object whose only key is "$bytes", "$json.null" or "$pairs" is that
-- form. A number literal without ".", "e" or "E" reads as an integer
-- (exactly; out of range is an error), any other as a float, by Lua's own
-- tonumber.
--
-- Refused (encode returns nil and why): functions, userdata (task handles,
-- files; json.null excepted), coroutines, tables with a metatable, cycles, inf and nan, keys that
-- are neither strings nor integers (float keys included), tables nested
-- more than MAX_TABLE_DEPTH deep, and more than MAX_COPIES values written
-- again for tables reached more than once (a table reached twice comes back
-- as two equal tables). Whatever encode writes it decodes again and compares
-- with values.same: a difference is refused, never written.
--
-- The decoder reads any JSON (old journal rows were written by lua-cjson,
-- nil inside tables as null): an array is a table with nil at the nulls, an
-- object a table with string keys (a null member is no key), besides the
-- three forms above. It never raises (nil and why instead), reads at most
-- MAX_JSON_DEPTH nested arrays and objects, and refuses duplicate keys,
-- integers out of range, non-finite numbers and lone surrogates.
local values = {}

local MAX_TABLE_DEPTH = 100  -- nested Lua tables encode writes
local MAX_JSON_DEPTH = 400   -- nested JSON arrays and objects decode reads (3 per table at most, + margin)
local MAX_COPIES = 1000000   -- values written again for shared tables
values.MAX_TABLE_DEPTH = MAX_TABLE_DEPTH

local JSON_NULL
do
  local ok, json = pcall(require, "engine.json")
  if ok and type(json) == "table" then JSON_NULL = json.null end
end

local mtype, format, concat, sort = math.type, string.format, table.concat, table.sort
local find, gsub, sub, byte, match = string.find, string.gsub, string.sub, string.byte, string.match
local utf8len, next, type, tonumber, getmetatable = utf8.len, next, type, tonumber, getmetatable

-- Encoding -------------------------------------------------------------------

local ESCAPES = {['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                 ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}
for b = 0, 31 do
  local c = string.char(b)
  ESCAPES[c] = ESCAPES[c] or format("\\u%04x", b)
end
ESCAPES["\127"] = "\\u007f"

local HEX = {}
for b = 0, 255 do HEX[string.char(b)] = format("%02x", b) end

local function json_string(s)
  if not find(s, '[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. gsub(s, '[%c"\\]', ESCAPES) .. '"'
end

local function float_text(x)
  if x ~= x or x == math.huge or x == -math.huge then
    error({why = "a non-finite number (" .. tostring(x) .. ")"}, 0)
  end
  local s = format("%.15g", x)
  if tonumber(s) ~= x then
    s = format("%.16g", x)
    if tonumber(s) ~= x then s = format("%.17g", x) end
  end
  if find(s, ",", 1, true) then s = gsub(s, ",", ".") end -- whatever the locale
  if not find(s, "[.eE]") then s = s .. ".0" end
  return s
end

local TYPE_RANK = {number = 1, string = 2}
local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return TYPE_RANK[ta] < TYPE_RANK[tb] end
  return a < b
end

local function refuse(why) error({why = why}, 0) end

-- Writes v as JSON text: the pieces, in order, in a table.
local function write_all(v)
  local out, n = {}, 0
  local path, done = {}, {} -- tables being written; tables written before
  local copying, copies = 0, 0 -- inside a table written before: how deep; values written again
  local key_text = {} -- object keys as written, with their ':'

  local function write(v, depth)
    local tv = type(v)
    if tv == "string" then
      n = n + 1
      if utf8len(v) then out[n] = json_string(v)
      else out[n] = '{"$bytes":"' .. gsub(v, ".", HEX) .. '"}' end
    elseif tv == "number" then
      n = n + 1
      out[n] = mtype(v) == "integer" and format("%d", v) or float_text(v)
    elseif tv == "boolean" then n = n + 1; out[n] = v and "true" or "false"
    elseif tv == "nil" then n = n + 1; out[n] = "null"
    elseif tv == "table" then
      if getmetatable(v) ~= nil then refuse("a table with a metatable") end
      if path[v] then refuse("a table that contains itself (a cycle)") end
      if depth >= MAX_TABLE_DEPTH then refuse(format("tables nested more than %d deep", MAX_TABLE_DEPTH)) end
      local copy = done[v]
      if copy then copying = copying + 1 end
      path[v] = true
      -- what kind of table: its keys, checked
      local keys, count, ints, max, plain = {}, 0, 0, 0, true
      for k in next, v do
        count = count + 1
        keys[count] = k
        local tk = mtype(k) or type(k)
        if tk == "integer" then
          ints = ints + 1
          if k > max then max = k end
          if k < 1 then plain = false end
        elseif tk == "string" then
          if byte(k, 1) == 36 or not utf8len(k) then plain = false end -- "$"
        else
          refuse("a table key that is neither a string nor an integer (" ..
            (tk == "float" and "float " .. tostring(k) or tk) .. ")")
        end
      end
      if copying > 0 then
        copies = copies + count
        if copies > MAX_COPIES then refuse("tables reached more than once, too many times") end
      end
      if count == 0 then
        n = n + 1; out[n] = "{}"
      elseif plain and ints == count and max <= 2 * count then
        n = n + 1; out[n] = "["
        for i = 1, max do
          if i > 1 then n = n + 1; out[n] = "," end
          write(v[i], depth + 1)
        end
        n = n + 1; out[n] = "]"
      elseif plain and ints == 0 then
        sort(keys)
        for i = 1, count do
          local k = keys[i]
          local kt = key_text[k]
          if not kt then kt = json_string(k) .. ":"; key_text[k] = kt end
          n = n + 1; out[n] = i > 1 and "," .. kt or "{" .. kt
          write(v[k], depth + 1)
        end
        n = n + 1; out[n] = "}"
      else
        sort(keys, key_order)
        n = n + 1; out[n] = '{"$pairs":['
        for i = 1, count do
          local k = keys[i]
          n = n + 1; out[n] = i > 1 and ",[" or "["
          write(k, depth + 1)
          n = n + 1; out[n] = ","
          write(v[k], depth + 1)
          n = n + 1; out[n] = "]"
        end
        n = n + 1; out[n] = "]}"
      end
      path[v] = nil
      done[v] = true
      if copy then copying = copying - 1 end
    elseif JSON_NULL ~= nil and v == JSON_NULL then
      n = n + 1; out[n] = '{"$json.null":true}'
    else
      refuse("a " .. tv)
    end
  end

  write(v, 0)
  return concat(out, "", 1, n)
end

-- Decoding -------------------------------------------------------------------

local UNESCAPES = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}

local UNHEX = {}
for b = 0, 255 do UNHEX[format("%02x", b)] = string.char(b) end

local function bad(pos, what)
  error({why = format("%s at byte %d", what, pos)}, 0)
end

-- The position of the first byte at or after pos that is not whitespace.
local function skip(text, pos)
  local b = byte(text, pos)
  if b == 32 or b == 10 or b == 13 or b == 9 then return find(text, "[^ \t\n\r]", pos) or #text + 1 end
  return pos
end

local function read_string(text, pos) -- pos: just after the opening quote
  local at = find(text, '["\\\0-\31]', pos)
  if at and byte(text, at) == 34 then return sub(text, pos, at - 1), at + 1 end -- no escapes
  local parts, n = {}, 0
  while true do
    if not at then bad(pos, "an unterminated string") end
    if at > pos then n = n + 1; parts[n] = sub(text, pos, at - 1) end
    local c = byte(text, at)
    if c == 34 then return concat(parts, "", 1, n), at + 1 end -- '"'
    if c ~= 92 then bad(at, "a control character in a string") end -- '\'
    local e = sub(text, at + 1, at + 1)
    if UNESCAPES[e] then
      n = n + 1; parts[n] = UNESCAPES[e]
      pos = at + 2
    elseif e == "u" then
      local hex = match(text, "^%x%x%x%x", at + 2)
      if not hex then bad(at, "a bad \\u escape") end
      local cp = tonumber(hex, 16)
      pos = at + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = match(text, "^\\u([dD][c-fC-F]%x%x)", pos)
        if not low then bad(at, "a lone surrogate") end
        cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(low, 16) - 0xDC00)
        pos = pos + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        bad(at, "a lone surrogate")
      end
      n = n + 1; parts[n] = utf8.char(cp)
    else
      bad(at, "a bad escape")
    end
    at = find(text, '["\\\0-\31]', pos)
  end
end

-- JSON's number grammar, then Lua's tonumber: no ".", "e" or "E" is an
-- integer (exactly, or an error), else a float.
local function read_number(text, pos)
  local _, e, int, frac, exp = find(text, "^(-?%d+)(%.?%d*)([eE]?[-+]?%d*)", pos)
  if not e then bad(pos, "an unexpected character") end
  if find(int, "^-?0%d") then bad(pos, "a number with a leading zero") end
  if frac == "." or (exp ~= "" and not find(exp, "^[eE][-+]?%d+$")) then bad(pos, "a bad number") end
  local x = tonumber(sub(text, pos, e))
  if frac == "" and exp == "" then
    if mtype(x) ~= "integer" then bad(pos, "an integer out of range") end
  elseif mtype(x) ~= "float" or x ~= x or x == math.huge or x == -math.huge then
    bad(pos, "a number out of range")
  end
  return x, e + 1
end

local TAGS = {}
function TAGS.bytes(v, st, pos)
  if type(v) ~= "string" or #v % 2 ~= 0 or v:find("[^0-9a-f]") then bad(pos, "a bad $bytes") end
  return (v:gsub("..", UNHEX))
end
TAGS["json.null"] = function(v, st, pos)
  if v ~= true or JSON_NULL == nil then bad(pos, "a bad $json.null") end
  return JSON_NULL
end
function TAGS.pairs(v, st, pos)
  if type(v) ~= "table" or not st.length[v] then bad(pos, "a bad $pairs") end
  local t = {}
  for i = 1, st.length[v] do
    local pair = v[i]
    if type(pair) ~= "table" or st.length[pair] ~= 2 then bad(pos, "a bad $pairs entry") end
    local k, x = pair[1], pair[2]
    if not (mtype(k) == "integer" or type(k) == "string") then bad(pos, "a bad $pairs key") end
    if x == nil then bad(pos, "a $pairs entry without a value") end
    if t[k] ~= nil then bad(pos, "a duplicate key in $pairs") end
    t[k] = x
  end
  return t
end

-- Returns the value at pos and the position after it. st.length[t]: the
-- length of each JSON array read (its table has nil at the nulls).
local function read_value(text, pos, st, depth)
  pos = skip(text, pos)
  local c = byte(text, pos)
  if c == 34 then return read_string(text, pos + 1) end -- '"'
  if c == 123 or c == 91 then -- "{" or "["
    if depth >= MAX_JSON_DEPTH then bad(pos, format("more than %d nested arrays and objects", MAX_JSON_DEPTH)) end
    local object = c == 123
    local close = object and 125 or 93
    local t, n, start = {}, 0, pos
    local seen, first_key -- seen: keys whose value is null
    pos = skip(text, pos + 1)
    if byte(text, pos) == close then
      pos = pos + 1
    else
      while true do
        n = n + 1
        if object then
          if byte(text, pos) ~= 34 then bad(pos, "an object key that is not a string") end
          local k
          k, pos = read_string(text, pos + 1)
          if t[k] ~= nil or (seen and seen[k]) then bad(pos, "a duplicate key") end
          first_key = first_key or k
          pos = skip(text, pos)
          if byte(text, pos) ~= 58 then bad(pos, "a missing ':'") end -- ":"
          local v
          v, pos = read_value(text, pos + 1, st, depth + 1)
          if v == nil then -- null: no value, but the key counts for duplicates
            seen = seen or {}
            seen[k] = true
          else
            t[k] = v
          end
        else
          t[n], pos = read_value(text, pos, st, depth + 1)
        end
        pos = skip(text, pos)
        local d = byte(text, pos)
        if d == close then pos = pos + 1 break end
        if d ~= 44 then bad(pos, "a missing ',' or '" .. string.char(close) .. "'") end -- ","
        pos = pos + 1
      end
    end
    if not object then
      st.length[t] = n
      return t, pos
    end
    local tag = n == 1 and byte(first_key, 1) == 36 and TAGS[sub(first_key, 2)] -- "$"
    if tag then return tag(t[first_key], st, start), pos end
    return t, pos
  end
  if c == 45 or (c and c >= 48 and c <= 57) then return read_number(text, pos) end -- "-", digit
  if c == 116 and sub(text, pos, pos + 3) == "true" then return true, pos + 4 end
  if c == 102 and sub(text, pos, pos + 4) == "false" then return false, pos + 5 end
  if c == 110 and sub(text, pos, pos + 3) == "null" then return nil, pos + 4 end
  if not c then bad(pos, "an unexpected end") end
  bad(pos, "an unexpected character")
end

-- Comparing --------------------------------------------------------------------

local function same(a, b, depth)
  if a == b then
    -- 0 == -0.0 and 1 == 1.0: the kind and the sign of zero count too
    if type(a) ~= "number" then return true end
    if mtype(a) ~= mtype(b) then return false end
    return a ~= 0 or mtype(a) == "integer" or 1 / a == 1 / b
  end
  if type(a) ~= "table" or type(b) ~= "table" or depth > MAX_TABLE_DEPTH then return false end
  local count = 0
  for k, v in next, a do
    count = count + 1
    if not same(v, b[k], depth + 1) then return false end
  end
  for _ in next, b do count = count - 1 end
  return count == 0
end

-- API ------------------------------------------------------------------------

function values.same(a, b) return same(a, b, 0) end

function values.decode(text)
  if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
  local ok, v, pos = pcall(read_value, text, 1, {length = {}}, 0)
  if ok then
    pos = skip(text, pos)
    if pos <= #text then return nil, format("unexpected text after the value at byte %d", pos) end
    return v
  end
  if type(v) == "table" and v.why then return nil, v.why end
  return nil, tostring(v)
end

function values.encode(v)
  local ok, text = pcall(write_all, v)
  if not ok then
    if type(text) == "table" and text.why then return nil, "cannot record " .. text.why end
    return nil, "cannot record it: " .. tostring(text)
  end
  local back, why = values.decode(text)
  if why then return nil, "cannot record it: it does not read back (" .. why .. ")" end
  if not same(v, back, 0) then return nil, "cannot record it: it reads back different" end
  return text
end

return values
