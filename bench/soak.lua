-- wrk script for bench/soak.sh: every request from a new client address
-- (X-Forwarded-For, trusted from 127.0.0.1) with the next of many distinct
-- tokens (SOAK_TOKENS: a file, one per line); one request in ten carries a
-- fresh invalid token instead. Its `done` (the RESULT line) is wrk.lua's.
dofile("bench/wrk.lua")
local tokens = {}
local n = 0
init = function(args)
  for line in io.lines(os.getenv("SOAK_TOKENS")) do tokens[#tokens + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
request = function()
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  local token
  if n % 10 == 0 then
    token = tokens[math.random(1, #tokens)] .. string.format("%08x", math.random(0, 0x7fffffff))
  else
    token = tokens[math.random(1, #tokens)]
  end
  return wrk.format("GET", "/orders/" .. (n % 1000), {
    ["X-Forwarded-Proto"] = "https",
    ["X-Forwarded-For"] = ip,
    ["Authorization"] = "Bearer " .. token,
  })
end
