-- CloudPayments Pay notifications from $BODIES (`<form body>\t<Content-HMAC>` per
-- line, from bench-notifications) to $NOTIFY_PATH: thread k of n sends lines k,
-- k+n, k+2n, ... once each, then stops sending new work (a repeat would be a
-- duplicate, answered without being applied, and would flatter the rate).
local lines = {}
for line in io.lines(os.getenv("BODIES")) do
  local body, sig = line:match("^([^\t]+)\t(.+)$")
  if body then lines[#lines + 1] = { body, sig } end
end
local path = os.getenv("NOTIFY_PATH")
local threads = 0
local step = tonumber(os.getenv("WRK_THREADS") or "2")
local next_index

function setup(thread)
  thread:set("first", threads + 1)
  threads = threads + 1
end

function request()
  next_index = next_index or first
  local l = lines[next_index]
  if l == nil then
    -- Out of fresh notifications: a cheap read keeps the connection busy (not counted).
    return wrk.format("GET", "/healthz")
  end
  next_index = next_index + step
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Content-HMAC"] = l[2],
    ["X-Content-HMAC"] = l[2],
  }, l[1])
end
