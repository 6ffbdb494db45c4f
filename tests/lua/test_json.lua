-- tests/lua/test_json.lua: json.encode/decode over lua-cjson.
local t = require "tests.lua.testing"

t.test("decode maps null to json.null and integers to integers", function()
  local v = json.decode('{"id": 1234, "ratio": 0.5, "gone": null, "list": [1, 2.0, null]}')
  t.eq(v.id, 1234); t.eq(math.type(v.id), "integer"); t.eq(tostring(v.id), "1234")
  t.eq(v.ratio, 0.5)
  t.eq(v.gone, json.null)
  t.eq(v.list[2], 2); t.eq(v.list[3], json.null)
  t.eq(json.decode("7"), 7); t.eq(math.type(json.decode("7")), "integer")
  t.eq(json.decode('"s"'), "s")
end)

t.test("encode", function()
  t.eq(json.encode({1, 2, "x"}), '[1,2,"x"]')
  t.eq(json.encode({a = json.null}), '{"a":null}')
  t.eq(json.encode("q\"uote"), '"q\\"uote"')
  t.match(t.raises(json.encode, {f = print}), "json.encode: .*function")
end)

t.test("integers past 14 digits are written exactly", function()
  local doc = {id = 123456789012345, runs = {70000000000, -123456789012345678}, name = "x", ratio = 0.25}
  t.eq(json.encode(123456789012345), "123456789012345")
  t.match(json.encode(doc), "%[70000000000,%-123456789012345678%]")
  local back = json.decode(json.encode(doc)) -- (exact when read back up to 2^53)
  t.eq(back.id, 123456789012345); t.eq(back.runs[1], 70000000000)
  t.eq(back.name, "x"); t.eq(back.ratio, 0.25)
  t.eq(doc.id, 123456789012345, "the value encoded is left as it was")
  t.eq(json.encode({"\0int:5\0"}), '["\\u0000int:5\\u0000"]', "a string like the mark stays a string")
end)

t.test("invalid JSON raises kind json", function()
  local err = t.raises(json.decode, "<html>oops</html>")
  t.eq(err.kind, "json"); t.match(tostring(err), "invalid JSON")
  t.match(t.raises(json.decode, nil), "expected a string")
end)

t.run()
