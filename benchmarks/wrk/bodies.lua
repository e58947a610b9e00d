-- wrk script: POST the request bodies of a file (one JSON body per line) in turn,
-- each thread starting at its own offset. Closed loop: peak throughput.
--   wrk -s bodies.lua URL -- BODIES_FILE PATH
local requests = {}
local i = 0

function setup(thread)
  thread:set("id", (thread_count or 0))
  thread_count = (thread_count or 0) + 1
end

function init(args)
  local path = args[2] or "/v1/decide"
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", path,
      {["Content-Type"] = "application/json"}, line)
  end
  i = (id or 0) * 7
end

function request()
  i = i + 1
  return requests[(i % #requests) + 1]
end
