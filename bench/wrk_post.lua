-- wrk script for bench/model_server.py: POSTs the body in the file named by WRK_BODY_FILE
-- (GETs when it is unset) and prints one machine-readable summary line at the end.

local request_bytes

init = function(args)
  local path = os.getenv("WRK_BODY_FILE")
  if path then
    local f = assert(io.open(path, "rb"))
    local body = f:read("*a")
    f:close()
    request_bytes = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
  else
    request_bytes = wrk.format("GET")
  end
end

request = function()
  return request_bytes
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"connect_errors\":%d,\"read_errors\":%d," ..
    "\"write_errors\":%d,\"status_errors\":%d,\"timeouts\":%d,\"p50_us\":%d,\"p90_us\":%d," ..
    "\"p99_us\":%d,\"mean_us\":%.1f,\"max_us\":%d}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
