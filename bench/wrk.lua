-- wrk script driven by environment variables:
--   WRK_METHOD (GET), WRK_PATH (/items/1), WRK_TOKEN (bearer token or empty),
--   WRK_BODY (request body or empty)
-- Prints one line: RESULT rps=... p50_ms=... p99_ms=... requests=... status_ge400=... sock_err=...
wrk.method = os.getenv("WRK_METHOD") or "GET"
wrk.path   = os.getenv("WRK_PATH") or "/items/1"
local token = os.getenv("WRK_TOKEN") or ""
local body  = os.getenv("WRK_BODY") or ""
wrk.headers["X-Forwarded-Proto"] = "https"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
if body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d status_ge400=%d sock_err=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
