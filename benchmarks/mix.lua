-- The fixed mix of the server benchmark: /cpu and /wait in turn, and at most MAX_REQUESTS
-- responses per wrk thread (wrk's -d bounds the time).
local paths = {"/cpu", "/wait"}
local sent = 0
local received = 0
local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "100000")

request = function()
  sent = sent + 1
  return wrk.format("GET", paths[(sent % #paths) + 1])
end

response = function(status, headers, body)
  received = received + 1
  if received >= max_requests then
    wrk.thread:stop()
  end
end
