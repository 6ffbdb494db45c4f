-- tests/lua/test_values.lua: lua/values.lua, the JSON the journal keeps a
-- step's results in: every value that round-trips comes back exactly (same
-- math.type, same bits, same bytes, nil kept), everything else is refused,
-- and the decoder never raises.
local t = require "tests.lua.testing"
local values = require "engine.values"

local function bits(x) return string.pack("<d", x) end

-- Encodes v, decodes it and checks the result is the same value, deeply;
-- returns the text and the decoded value.
local function round_trip(v, what)
  local text, why = values.encode(v)
  if not text then error(string.format("%s: encode refused: %s", what or tostring(v), why), 2) end
  local back, err = values.decode(text)
  if err then error(string.format("%s: decode failed: %s (%s)", what or tostring(v), err, text), 2) end
  if not values.same(v, back) then error(string.format("%s: reads back different (%s)", what or tostring(v), text), 2) end
  return text, back
end

local function refused(v, pattern)
  local text, why = values.encode(v)
  t.eq(text, nil, "encode of " .. tostring(v))
  t.match(why, pattern)
end

t.test("the four values of the report come back exactly", function()
  local text, back = round_trip(123456789012345)
  t.eq(text, "123456789012345"); t.eq(back, 123456789012345); t.eq(math.type(back), "integer")

  text, back = round_trip(0.1 + 0.2)
  t.eq(text, "0.30000000000000004"); t.eq(bits(back), bits(0.1 + 0.2)); t.eq(math.type(back), "float")
  t.ok(back ~= 0.3, "0.1 + 0.2 is not 0.3")

  text, back = round_trip(9007199254740993)
  t.eq(text, "9007199254740993"); t.eq(back, 9007199254740993); t.eq(math.type(back), "integer")

  text, back = round_trip({nested = {1, nil, 3}})
  t.eq(text, '{"nested":[1,null,3]}')
  t.eq(back.nested[1], 1); t.eq(back.nested[2], nil); t.eq(back.nested[3], 3)
  t.eq(math.type(back.nested[3]), "integer")
end)

t.test("integers stay integers exactly", function()
  for _, i in ipairs({0, 1, -1, 42, math.maxinteger, math.mininteger, math.maxinteger - 1,
                      math.mininteger + 1, (1 << 53) + 1, -(1 << 53) - 1, 1 << 62}) do
    local text, back = round_trip(i)
    t.eq(text, string.format("%d", i))
    t.eq(back, i); t.eq(math.type(back), "integer", text)
  end
  t.eq(values.encode(math.mininteger), "-9223372036854775808")
  t.eq(values.encode(math.maxinteger), "9223372036854775807")
end)

t.test("floats round-trip bit for bit and stay floats", function()
  local cases = {-0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, 0.1, 0.2,
                 0.1 + 0.2, 1 / 3, math.pi, -1.5, 3.0, 1e15, 1e16, 2.0 ^ 53, 2.0 ^ 63, -2.0 ^ 63, 2.0 ^ 64,
                 123456789012345.0, 9007199254740993.0, 1.7976931348623157e308, 4.9406564584124654e-324}
  -- and random doubles, every bit pattern that is finite
  local seed = 12345
  local function rand32()
    seed = (seed * 1103515245 + 12345) & 0xffffffff
    return seed
  end
  for _ = 1, 2000 do
    local x = string.unpack("<d", string.pack("<I4I4", rand32(), rand32()))
    if x == x and x ~= math.huge and x ~= -math.huge then cases[#cases + 1] = x end
  end
  for _, x in ipairs(cases) do
    local text, back = round_trip(x, string.format("%.17g", x))
    t.eq(math.type(back), "float", text)
    t.eq(bits(back), bits(x), text)
    t.ok(text:find("[.eE]"), text .. " reads as a float")
  end
  t.eq(values.encode(-0.0), "-0.0")
  t.eq(values.encode(3.0), "3.0")
  t.eq(values.encode(0.1), "0.1")
  t.eq(values.encode(1e308), "1e+308")
  t.eq(values.encode(123456789012345.0), "123456789012345.0")
  local _, back = round_trip(-0.0)
  t.eq(1 / back, -math.huge, "the sign of zero")
  _, back = round_trip({3.0, 3})
  t.eq(math.type(back[1]), "float"); t.eq(math.type(back[2]), "integer")
end)

t.test("strings are byte-exact", function()
  local all = {}
  for b = 0, 255 do all[#all + 1] = string.char(b) end
  all = table.concat(all)
  local cases = {"", "plain", "a\0b", "\0", "\0\0\0", 'quote " backslash \\ slash /', "tab\tnew\nline\r",
                 "\1\2\31\127", "é😀 ünïcödé", "\255\254", "ok\200", "\xed\xa0\x80", -- a surrogate
                 "\xc0\x80", -- overlong NUL
                 all, string.rep("x\0y\255", 10000), "$bytes", "null", "[1,2]"}
  for _, s in ipairs(cases) do
    local text, back = round_trip(s, string.format("%q", s))
    t.eq(back, s); t.eq(#back, #s)
    if utf8.len(s) then t.eq(text:sub(1, 1), '"', "valid UTF-8 is a JSON string") end
  end
  t.eq(values.encode("a\0b"), '"a\\u0000b"')
  t.eq(values.encode("é"), '"é"')
  t.eq(values.encode("\255\0"), '{"$bytes":"ff00"}')
  t.eq(values.encode('"\\'), '"\\"\\\\"')
end)

t.test("booleans and nil", function()
  t.eq(values.encode(true), "true"); t.eq(values.encode(false), "false")
  t.eq(values.encode(nil), "null")
  local v, why = values.decode("null")
  t.eq(v, nil); t.eq(why, nil)
  t.eq(values.decode("true"), true); t.eq(values.decode("false"), false)
  local _, back = round_trip({a = true, b = false, [1] = false})
  t.eq(back.a, true); t.eq(back.b, false); t.eq(back[1], false)
end)

t.test("nil inside tables stays nil at the same indexes", function()
  local cases = {{1, nil, 3}, {nil, nil, 3}, {nil, 2}, {1, nil, nil, 4, nil, 6}, {[2] = "b", [4] = "d"},
                 {[1] = 1, [100] = 100}, {[1000000] = true}, {x = {nil, {nil, "deep"}}}}
  for i, v in ipairs(cases) do
    local _, back = round_trip(v, "case " .. i)
    for k = 1, 10 do t.eq(back[k], v[k], "case " .. i .. " index " .. k) end
  end
  local _, back = round_trip({nil, nil, 3})
  t.eq(rawget(back, 1), nil); t.eq(rawget(back, 2), nil); t.eq(back[3], 3)
  t.eq(values.encode({1, nil, 3}), "[1,null,3]")
  t.eq(values.encode({[1] = 1, [100] = 100}), '{"$pairs":[[1,1],[100,100]]}')
  t.eq(values.decode("[null]")[1], nil)
  t.eq(next(values.decode("[null,null]")), nil)
end)

t.test("string-keyed, integer-keyed and mixed tables", function()
  local cases = {
    {}, {1, 2, 3}, {a = 1, b = "two", c = {d = 4.5}},
    {[0] = "zero", [-1] = "minus one", [1] = "one"},
    {[math.mininteger] = "min", [math.maxinteger] = "max"},
    {1, 2, x = "mixed", [10] = 10},
    {["$pairs"] = {1}, ["$bytes"] = "x", ["$json.null"] = true, ["$"] = 0, plain = 1},
    {["\255"] = "a key that is not UTF-8", ["é"] = "é"},
    {["1"] = "string one", [1] = "integer one"},
    {[""] = "empty key", ["a\0b"] = "NUL in a key"},
    {list = {{id = 1}, {id = 2}}, empty = {}},
  }
  for i, v in ipairs(cases) do round_trip(v, "case " .. i) end
  t.eq(values.encode({b = 1, a = 2}), '{"a":2,"b":1}')
  t.eq(values.encode({[-1] = "x", a = true}), '{"$pairs":[[-1,"x"],["a",true]]}')
  t.eq(values.encode({["$x"] = 1}), '{"$pairs":[["$x",1]]}')
  local _, back = round_trip({["1"] = "s", [1] = "i"})
  t.eq(back["1"], "s"); t.eq(back[1], "i")
  _, back = round_trip({["$bytes"] = "ff"})
  t.eq(back["$bytes"], "ff")
end)

t.test("json.null round-trips as itself", function()
  local text, back = round_trip(json.null)
  t.eq(text, '{"$json.null":true}'); t.eq(back, json.null)
  _, back = round_trip({a = json.null, list = {1, json.null, 3}})
  t.eq(back.a, json.null); t.eq(back.list[2], json.null)
end)

t.test("deep nesting round-trips up to the limit and is refused beyond", function()
  local function nest(depth, make)
    local v = "bottom"
    for _ = 1, depth do v = make(v) end
    return v
  end
  local limit = values.MAX_TABLE_DEPTH
  for _, make in ipairs({function(v) return {v} end, function(v) return {k = v} end,
                         function(v) return {[-5] = v, ["\255"] = "x"} end}) do
    local _, back = round_trip(nest(limit, make), "nested " .. limit)
    local depth, v = 0, back
    while type(v) == "table" do
      depth, v = depth + 1, v[1] or v.k or v[-5]
    end
    t.eq(depth, limit, "the nesting is kept"); t.eq(v, "bottom")
    refused(nest(limit + 1, make), "nested more than " .. limit)
  end
  -- the decoder bounds its own depth
  local v, why = values.decode(string.rep("[", 100000) .. string.rep("]", 100000))
  t.eq(v, nil); t.match(why, "nested")
  v, why = values.decode(string.rep('{"a":', 500) .. "1" .. string.rep("}", 500))
  t.eq(v, nil); t.match(why, "nested")
  t.ok(values.decode(string.rep("[", 300) .. string.rep("]", 300)), "300 levels read")
end)

t.test("what cannot round-trip is refused", function()
  refused(print, "function")
  refused(function() end, "function")
  refused({f = print}, "function")
  refused({1, 2, {3, coroutine.create(print)}}, "thread")
  refused(io.stdout, "userdata")
  local h = flow.spawn(function() end)
  h:wait()
  refused(h, "userdata")
  refused({task = h}, "userdata")
  refused(setmetatable({}, {}), "metatable")
  refused({inner = setmetatable({1}, {__index = print})}, "metatable")
  refused(setmetatable({}, {__metatable = false}), "metatable")
  local cycle = {}
  cycle.self = cycle
  refused(cycle, "cycle")
  local a, b = {}, {}
  a.b, b.a = b, a
  refused({a}, "cycle")
  refused(math.huge, "non%-finite"); refused(-math.huge, "non%-finite"); refused(0 / 0, "non%-finite")
  refused({1, math.huge}, "non%-finite")
  refused({[1.5] = "float key"}, "float 1.5")
  refused({[0.5] = 1, a = 2}, "float")
  refused({[true] = 1}, "boolean")
  refused({[{}] = 1}, "table")
  refused({[print] = 1}, "function")
  -- a float key that is integral is an integer key in Lua
  local _, back = round_trip({[2.0] = "two"})
  t.eq(back[2], "two")
end)

t.test("shared tables come back as equal copies, exponential sharing is refused", function()
  local shared = {1, 2, {x = "y"}}
  local _, back = round_trip({a = shared, b = shared})
  t.ok(back.a ~= back.b, "two tables"); t.ok(values.same(back.a, back.b), "equal")
  local v = {"leaf"}
  for _ = 1, 40 do v = {v, v} end -- 2^40 leaves
  refused(v, "more than once")
end)

t.test("decode reads old lua-cjson rows", function()
  -- what journal.lua stored before lua/values.lua
  local r = values.decode('{"n":3,"v":[1.2345678901234e+14,{"nested":[1,null,3],"s":"a\\/b"},null]}')
  t.eq(r.n, 3); t.eq(r.v[1], 1.2345678901234e+14); t.eq(r.v[2].nested[2], nil); t.eq(r.v[2].nested[3], 3)
  t.eq(r.v[2].s, "a/b"); t.eq(r.v[3], nil)
  r = values.decode('{"n":0,"v":{}}')
  t.eq(r.n, 0); t.eq(next(r.v), nil)
  r = values.decode('{"v":[[]],"n":1}')
  t.eq(r.n, 1); t.eq(type(r.v[1]), "table")
  r = values.decode('{"$other":1,"x":2}')
  t.eq(r["$other"], 1); t.eq(r.x, 2)
  t.eq(values.decode(' "\\ud83d\\ude00 \\u00e9\\b\\f\\n\\r\\t\\"\\\\" '), "😀 é\b\f\n\r\t\"\\")
end)

t.test("numbers: integer or float by the literal, Lua's rules", function()
  local cases = {["1"] = {1, "integer"}, ["-0"] = {0, "integer"}, ["1.0"] = {1.0, "float"},
                 ["1e2"] = {100.0, "float"}, ["1E2"] = {100.0, "float"}, ["-2.5e-3"] = {-0.0025, "float"},
                 ["9223372036854775807"] = {math.maxinteger, "integer"},
                 ["-9223372036854775808"] = {math.mininteger, "integer"},
                 ["9007199254740993"] = {9007199254740993, "integer"}}
  for text, want in pairs(cases) do
    local v = values.decode(text)
    t.eq(v, want[1], text); t.eq(math.type(v), want[2], text)
  end
  t.eq(1 / values.decode("-0.0"), -math.huge)
  for _, text in ipairs({"9223372036854775808", "-9223372036854775809", "1e999", "-1e400", "01", "-01",
                         "0x10", "1.", ".5", "+1", "1e", "1.5e+", "inf", "nan", "-", "- 1", "Infinity"}) do
    local v, why = values.decode(text)
    t.eq(v, nil, text); t.ok(why, text .. " has a reason")
  end
end)

t.test("decode never raises on bad input", function()
  local bad = {"", " ", "[", "]", "{", "}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{1:2}",
               '"unterminated', '"\\x"', '"\\u12"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"',
               '"tab\there"', "tru", "nul", "[1 2]", "1 2", '{"a":1,"a":2}',
               '{"$bytes":"f"}', '{"$bytes":"FF"}', '{"$bytes":"zz"}', '{"$bytes":1}',
               '{"$pairs":1}', '{"$pairs":[[1]]}', '{"$pairs":[[1,2,3]]}', '{"$pairs":[[1.5,2]]}',
               '{"$pairs":[[null,2]]}', '{"$pairs":[[1,null]]}', '{"$pairs":[[1,2],[1,3]]}',
               '{"$pairs":[null]}', '{"$pairs":{"a":1}}', '{"$json.null":false}', "\0", "[1]\0"}
  for _, text in ipairs(bad) do
    local ok, v, why = pcall(values.decode, text)
    t.ok(ok, string.format("decode %q raised", text))
    t.eq(v, nil, string.format("%q", text)); t.eq(type(why), "string", string.format("%q", text))
  end
  t.eq(select(2, values.decode(nil)), "expected a string, got nil")
  -- truncations and byte flips of good encodings, and random bytes
  local good = assert(values.encode({1, -0.0, "s\0\255", {a = {nil, 2}, [-1] = json.null}, 1e-300}))
  local seed = 7
  local function rand(n)
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  end
  for i = 0, #good do
    local ok = pcall(values.decode, good:sub(1, i))
    t.ok(ok, "truncation at " .. i)
  end
  for _ = 1, 3000 do
    local i = rand(#good) + 1
    local text = good:sub(1, i - 1) .. string.char(rand(256)) .. good:sub(i + 1)
    local ok, v, why = pcall(values.decode, text)
    t.ok(ok, string.format("decode %q raised", text))
    t.ok(why == nil or v == nil, "either a value or a reason")
    local chars = {}
    for j = 1, rand(40) do chars[j] = string.char(rand(256)) end
    t.ok(pcall(values.decode, table.concat(chars)), "random bytes")
  end
end)

t.test("same compares kinds and the sign of zero", function()
  t.ok(values.same(1, 1)); t.ok(not values.same(1, 1.0)); t.ok(not values.same(0.0, -0.0))
  t.ok(values.same(-0.0, -0.0)); t.ok(values.same(0, 0)); t.ok(not values.same("1", 1))
  t.ok(values.same({1, {a = 2}}, {1, {a = 2}})); t.ok(not values.same({1, {a = 2}}, {1, {a = 2.0}}))
  t.ok(not values.same({1, 2}, {1, 2, 3})); t.ok(not values.same({1, 2, 3}, {1, 2}))
  t.ok(not values.same({1, nil, 3}, {1, json.null, 3}))
end)

t.run()
