-- flows/census_eu_v2.lua: the same sync through an EU workspace (API v1,
-- workspace key) and through API v2 (personal access token).
--   CENSUS_API_KEY=secret-token:... CENSUS_PAT=... engine flows/census_eu_v2.lua SYNC_ID
local id = tonumber(arg[1] or 1)

-- EU workspace: region = "eu" picks app-eu.getcensus.com (a trigger URL on
-- app-eu.getcensus.com does the same).
census.sync({sync_id = id, region = "eu"})

-- API v2: same flow code, /api/v2 paths; or set CENSUS_API_VERSION=2.
census.sync({sync_id = id, api_version = 2, token = os.getenv("CENSUS_PAT") or os.getenv("CENSUS_API_KEY")})
