-- wrk script: a constant request rate with latency measured from each request's due
-- time (open loop, as wrk2 does), so a stall is charged for the requests it delays.
-- Run with one connection per thread:
--   wrk -t T -c T -s rate.lua URL -- BODIES_FILE PATH RATE_PER_THREAD OUT_FILE T
-- Thread k's request n is due at t0 + (n + k/T) / RATE_PER_THREAD. The latency of a
-- request sent on time is counted from when it was sent (wrk's timer has 1 ms steps,
-- so the loader may fire up to 1 ms early, never late); one that is behind schedule
-- (its connection was still waiting for the previous answer) is counted from its
-- due time. OUT_FILE gets one line per thread: "requests errors lat_us,lat_us,...".
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local requests = {}
local interval, due, start, behind = 0, nil, 0, false
lats, errors = {}, 0  -- globals: done() reads them from every thread
local n = 0

function init(args)
  local path = args[2] or "/v1/decide"
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", path,
      {["Content-Type"] = "application/json"}, line)
  end
  interval = 1.0 / tonumber(args[3])
  out = args[4]
  nthreads = tonumber(args[5] or "1")
end

function delay()
  local t = now()
  if due == nil then
    due = t + interval * (id / nthreads)
  else
    due = due + interval
  end
  local d = due - t
  if d > 0 then
    behind = false
    return math.floor(d * 1000)
  end
  behind = true
  return 0
end

function request()
  local t = now()
  if due == nil then due = t end
  if behind then start = due else start = t end
  n = n + 1
  return requests[((n + id * 7) % #requests) + 1]
end

function response(status, headers, body)
  lats[#lats + 1] = math.floor((now() - start) * 1e6 + 0.5)
  if status ~= 200 then errors = errors + 1 end
end

function done(summary, latency, reqs)
  local out = io.open(threads[1]:get("out"), "w")
  for _, thread in ipairs(threads) do
    local l = thread:get("lats")
    out:write(string.format("%d %d %s\n", #l, thread:get("errors"), table.concat(l, ",")))
  end
  out:close()
end
