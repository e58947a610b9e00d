-- The open-loop schedule shared by rate.lua and soak.lua (loaded with dofile): a
-- thread's requests are due every `interval` seconds, thread k of T starting k/T of an
-- interval late. A request sent on time is timed from when it was sent (wrk's timer
-- has 1 ms steps, so the loader may fire up to 1 ms early, never late); one behind
-- schedule (its connection was still waiting for the previous answer) from its due
-- time, so a stall is charged for every request it delays.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } schedule_timespec;
int clock_gettime(int clk_id, schedule_timespec *tp);
]]
local ts = ffi.new("schedule_timespec")

local Schedule = {threads = {}}
Schedule.__index = Schedule

-- wrk's setup(), in the main state: number the threads (`id` in each thread's state);
-- done() finds them in Schedule.threads
function Schedule.setup(thread)
  thread:set("id", #Schedule.threads)
  table.insert(Schedule.threads, thread)
end

function Schedule.now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

function Schedule.new(interval, id, nthreads)
  return setmetatable({interval = interval, offset = interval * (id / nthreads),
                       due = nil, start = 0, behind = false}, Schedule)
end

-- wrk's delay(): milliseconds to wait before the next request
function Schedule:delay()
  local t = Schedule.now()
  if self.due == nil then
    self.due = t + self.offset
  else
    self.due = self.due + self.interval
  end
  local d = self.due - t
  if d > 0 then
    self.behind = false
    return math.floor(d * 1000)
  end
  self.behind = true
  return 0
end

-- at wrk's request(): the request goes now; its due time
function Schedule:sent()
  local t = Schedule.now()
  if self.due == nil then self.due = t end
  if self.behind then self.start = self.due else self.start = t end
  return self.due
end

-- at wrk's response(): the request's latency in µs
function Schedule:latency_us()
  return math.floor((Schedule.now() - self.start) * 1e6 + 0.5)
end

return Schedule
