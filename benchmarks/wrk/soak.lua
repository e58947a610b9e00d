-- wrk script for the soak: mixed decide/reward traffic at a constant rate, latency
-- measured from each request's due time (open loop; the schedule is schedule.lua's),
-- every decision with an event id of its own. Run with one connection per thread:
--   wrk -t T -c T -s soak.lua URL -- BODIES_FILE RATE_PER_THREAD OUT_FILE T PREFIX EVERY
-- Thread k's request n (from 0) is due at t0 + (n + k/T) / RATE_PER_THREAD. It is a
-- reward (POST /v1/rewards, reward 1 for the thread's request n-1) when n % EVERY is
-- EVERY-1, else a decision (POST /v1/decide, a body of BODIES_FILE in turn, with
-- "event_id": PREFIX..k.."-"..n). One connection per thread and no pipelining, so a
-- response answers the thread's last request sent.
-- OUT_FILE gets five lines per thread: "answered errors last_n last_answered" (the
-- number of the last request sent, and 1 if it was answered), the second (from the
-- thread's first request) each answered request was due in, its latency in µs, the
-- numbers n of the requests answered with another status than their kind's (200 for
-- a decision, 202 for a reward), and those of
-- the requests never answered before the last (lost with a connection; or built and
-- never sent: wrk builds one request to check the script).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local Schedule = dofile(here .. "schedule.lua")

setup = Schedule.setup
local threads = Schedule.threads

local bodies = {}
local schedule
local first, sent_due = nil, 0  -- the due times of the first and the last request sent
local prefix, every = "s", 5
local reward = false  -- the last request sent is a reward
-- globals: done() reads them from every thread
n, got = -1, 1  -- the number of the last request sent, and whether it was answered
secs, lats, failed, unanswered, errors = {}, {}, {}, {}, 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = string.sub(line, 1, -2)  -- without its closing brace
  end
  out = args[3]
  schedule = Schedule.new(1.0 / tonumber(args[2]), id, tonumber(args[4] or "1"))
  prefix = args[5] or "s"
  every = tonumber(args[6] or "5")
end

function delay()
  return schedule:delay()
end

function request()
  sent_due = schedule:sent()
  if first == nil then first = sent_due end
  if got == 0 then unanswered[#unanswered + 1] = n end
  got = 0
  n = n + 1
  local tag = prefix .. id .. "-"
  reward = n % every == every - 1
  if reward then
    return wrk.format("POST", "/v1/rewards", {["Content-Type"] = "application/json"},
      '{"event_id":"' .. tag .. (n - 1) .. '","reward":1.0,"kind":"click"}')
  end
  local body = bodies[(n + id * 7) % #bodies + 1]
  return wrk.format("POST", "/v1/decide", {["Content-Type"] = "application/json"},
    body .. ',"event_id":"' .. tag .. n .. '"}')
end

function response(status, headers, body)
  got = 1
  lats[#lats + 1] = schedule:latency_us()
  secs[#secs + 1] = math.floor(sent_due - first)
  if status ~= (reward and 202 or 200) then
    errors = errors + 1
    failed[#failed + 1] = n
  end
end

function done(summary, latency, reqs)
  local f = io.open(threads[1]:get("out"), "w")
  for _, thread in ipairs(threads) do
    local l = thread:get("lats")
    f:write(string.format("%d %d %d %d\n%s\n%s\n%s\n%s\n", #l, thread:get("errors"),
      thread:get("n"), thread:get("got"), table.concat(thread:get("secs"), ","),
      table.concat(l, ","), table.concat(thread:get("failed"), ","),
      table.concat(thread:get("unanswered"), ",")))
  end
  f:close()
end
