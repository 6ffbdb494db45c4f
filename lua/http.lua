-- lua/http.lua: the http module. Transfers run in the C core; these are the
-- shorthands around http.request.
local c = require "engine.c.http"

local http = {}

http.request = c.request

local function with(opts, fields)
  local req = {}
  if opts ~= nil then
    if type(opts) ~= "table" then error("expected an options table", 3) end
    for k, v in pairs(opts) do req[k] = v end
  end
  for k, v in pairs(fields) do req[k] = v end
  return req
end

function http.get(url, opts)
  return c.request(with(opts, {method = "GET", url = url}))
end

function http.post(url, body, opts)
  return c.request(with(opts, {method = "POST", url = url, body = body}))
end

return http
