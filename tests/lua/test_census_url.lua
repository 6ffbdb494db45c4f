-- tests/lua/test_census_url.lua: the Census trigger-URL grammar
-- (lua/provider_census.lua): exactly the form Census shows, case-sensitive,
-- nothing before or after it.
local t = require "tests.lua.testing"
require "engine.census"
local parse = require("engine.jobs").provider("census").parse_trigger

t.test("trigger URLs Census shows are read", function()
  local u = parse("https://bearer:secret-token:abc123@app.getcensus.com/api/v1/syncs/42/trigger")
  t.eq(u.sync_id, 42); t.eq(u.eu, false); t.eq(u.force_full_sync, nil)
  t.eq(u.token, "secret-token:abc123")
  u = parse("https://bearer:secret-token:x@app-eu.getcensus.com/api/v1/syncs/7/trigger?force_full_sync=true")
  t.eq(u.eu, true); t.eq(u.sync_id, 7); t.eq(u.force_full_sync, true)
  u = parse("https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/7/trigger?force_full_sync=false")
  t.eq(u.force_full_sync, false)
  t.eq(parse("https://bearer:secret-token:a-b_c.d~e@app.getcensus.com/api/v1/syncs/007/trigger").sync_id, 7)
end)

t.test("anything else is refused", function()
  local bad = {
    "",
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs//trigger",     -- empty id
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/0/trigger",    -- id 0
    "https://bearer:secret-token:x@evil.com/api/v1/syncs/1/trigger",             -- wrong host
    "https://bearer:secret-token:x@app.getcensus.com.evil.com/api/v1/syncs/1/trigger",
    "https://bearer:secret-token:x@appXgetcensus.com/api/v1/syncs/1/trigger",    -- unescaped dot
    "http://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger",     -- http
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger/x",  -- trailing junk
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/triggerx",
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger?force_full_sync=yes",
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger?x=1",
    "https://Bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger",    -- case
    "https://bearer:secret-token:x@App.GetCensus.com/api/v1/syncs/1/trigger",
    "https://bearer:secret-token:x@app.getcensus.com/API/v1/syncs/1/trigger",
    "https://bearer:secret-token:@app.getcensus.com/api/v1/syncs/1/trigger",     -- empty token
    "https://bearer:token@app.getcensus.com/api/v1/syncs/1/trigger",             -- no prefix
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1a/trigger",
    "https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1234567890123456789/trigger",
    " https://bearer:secret-token:x@app.getcensus.com/api/v1/syncs/1/trigger",
    "https://bearer:secret-token:x/y@app.getcensus.com/api/v1/syncs/1/trigger",  -- '/' in the token
  }
  for _, url in ipairs(bad) do t.eq(parse(url), nil, url) end
  t.eq(parse(nil), nil); t.eq(parse(42), nil)
end)

t.run()
