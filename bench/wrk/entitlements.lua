-- GET /v1/customers/{id}/entitlements for customers read from $CUSTOMERS (one
-- id per line), round robin from a per-thread offset; bearer key from $API_KEY.
local ids = {}
for line in io.lines(os.getenv("CUSTOMERS")) do
  if #line > 0 then ids[#ids + 1] = line end
end
local key = os.getenv("API_KEY")
local counter = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local id = ids[((offset or 0) + counter) % #ids + 1]
  return wrk.format("GET", "/v1/customers/" .. id .. "/entitlements", { ["Authorization"] = "Bearer " .. key })
end
