-- wrk cross-check of benchmark (a): distinct payment.failed events, one id per request.
-- wrk -t2 -c16 -d10s -s benchmarks/wrk_events.lua http://127.0.0.1:PORT  (key: WRK_KEY env)
local threads = {}
local key = os.getenv("WRK_KEY") or "bench-key-0123456789"
local run = os.getenv("WRK_RUN") or tostring(os.time())

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  prefix = run .. "_" .. tid
end

function request()
  n = n + 1
  local id = prefix .. "_" .. n
  local body = string.format([[{"id":"evt_%s","type":"payment.failed","occurred_at":"2026-11-22T02:00:00+00:00","customer":{"id":"cus_%s","country":"DE","timezone":"Europe/Berlin"},"subscription":{"id":"sub_%s","plan":"pro","storefront":"web"},"invoice":{"id":"in_%s","amount":1999,"currency":"EUR"},"payment":{"provider":"stripe","payment_method":{"token":"pm_%s","brand":"visa","fingerprint":"fp_%s"}},"decline":{"provider_code":"insufficient_funds"}}]], id, id, id, id, id, id)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

function done(summary, latency, requests)
  local codes = summary.errors.status
  io.write(string.format("non-2xx: %d, errors: %d\n", codes, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
