-- wrk script: POSTs a non-streamed OpenAI chat request (or BENCH_BODY); headers come from BENCH_HEADERS
-- ("Name: value" lines).
-- done() prints one `BENCH_RESULT {json}` line that bench/harness.py parses.

local stream = BENCH_STREAM == true
-- BENCH_BODY, when set, replaces the chat body (bench/dialects.py posts Responses and Messages bodies).
local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  if stream then
    body = '{"model":"bench-stream","messages":[{"role":"user","content":"Say hello to the benchmark."}],"stream":true}'
  else
    body = '{"model":"bench-json","messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
  end
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

-- The request never changes: format it once, not per request.
local request_bytes = nil
function request()
  if request_bytes == nil then
    request_bytes = wrk.format()
  end
  return request_bytes
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
