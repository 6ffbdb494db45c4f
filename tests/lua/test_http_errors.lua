-- tests/lua/test_http_errors.lua: what http.request reports without a server: a
-- request that never left this machine says so, misuse raises a plain
-- error, and -v logs each transfer once.
local t = require "tests.lua.testing"

-- The engine binary running this file (lua's convention: the lowest arg).
local function engine()
  local i = 0
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

-- Port 1 on the loopback: nothing listens there, the connection is refused.
local CLOSED = "http://127.0.0.1:1/x"

t.test("a request refused before it was sent says sent = false", function()
  local err = t.raises(http.get, CLOSED)
  t.eq(flow.is_error(err, "network"), true, "a network error object")
  t.eq(err.sent, false)
  t.eq(err.url, CLOSED)
  t.match(tostring(err), "GET http://127%.0%.0%.1:1/x: ")
end)

t.test("misuse raises a plain error", function()
  t.match(t.raises(http.request, {url = "ftp://x"}), "url must be a string starting with http")
  t.match(t.raises(http.request, {url = CLOSED, headers = {["a\nb"] = "c"}}), "line break")
  t.match(t.raises(http.request, {url = CLOSED, bogus = 1}), "unknown option 'bogus'")
end)

-- The engine's log (stderr) from running code with a log option; read on
-- stdout, so this run does not log it as warnings.
local function log_of(code, option)
  return flow.exec{"sh", "-c", 'exec "$@" 2>&1', "sh", engine(), "--no-state", option,
                   "-e", code}.stdout
end

t.test("with -v each transfer is one debug line", function()
  local code = "pcall(http.get, '" .. CLOSED .. "') pcall(http.post, '" .. CLOSED .. "', 'x')"
  local log = log_of(code, "-v")
  t.match(log, "DEBUG http: GET http://127%.0%.0%.1:1/x: [^\n]- in %d+ ms\n")
  t.match(log, "DEBUG http: POST http://127%.0%.0%.1:1/x: [^\n]- in %d+ ms\n")
  t.eq(log_of(code, "-q"):find("http: GET", 1, true), nil, "nothing without -v")
end)

t.run()
