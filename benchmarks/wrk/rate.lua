-- wrk script: a constant request rate with latency measured from each request's due
-- time (open loop, as wrk2 does; the schedule is schedule.lua's), so a stall is charged
-- for the requests it delays. Run with one connection per thread:
--   wrk -t T -c T -s rate.lua URL -- BODIES_FILE PATH RATE_PER_THREAD OUT_FILE T
-- Thread k's request n is due at t0 + (n + k/T) / RATE_PER_THREAD.
-- OUT_FILE gets one line per thread: "requests errors lat_us,lat_us,...".
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local Schedule = dofile(here .. "schedule.lua")

setup = Schedule.setup
local threads = Schedule.threads

local requests = {}
local schedule
lats, errors = {}, 0  -- globals: done() reads them from every thread
local n = 0

function init(args)
  local path = args[2] or "/v1/decide"
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", path,
      {["Content-Type"] = "application/json"}, line)
  end
  out = args[4]
  schedule = Schedule.new(1.0 / tonumber(args[3]), id, tonumber(args[5] or "1"))
end

function delay()
  return schedule:delay()
end

function request()
  schedule:sent()
  n = n + 1
  return requests[((n + id * 7) % #requests) + 1]
end

function response(status, headers, body)
  lats[#lats + 1] = schedule:latency_us()
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
