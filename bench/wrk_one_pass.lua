-- wrk script: ONE pass over BENCH_IDS_FILE (each id requested once, the ids split between the
-- BENCH_THREADS threads), for the first pass through an empty edge cache. A thread stops when its
-- share is answered and leaves a file in BENCH_DONE_DIR, so that the runner can end wrk (which
-- otherwise sleeps out -d); the pass's own duration (first request to last answer) is reported,
-- since wrk's summary spans the whole run.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

local prefix = os.getenv("BENCH_PATH_PREFIX") or "/order/"
-- Answered by the edge itself (a 404), for connections that ask after their thread's share is out.
local idle_path = "/_edge/not_found"

-- Main state: number the threads.
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("index", #threads)
end

-- Thread state.
share, next_index, answered, failed, first_t, last_t = {}, 1, 0, 0, 0, 0

function init(args)
  local count = tonumber(os.getenv("BENCH_THREADS"))
  local i = 0
  for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
    if i % count == index - 1 then share[#share + 1] = line end
    i = i + 1
  end
end

-- wrk calls request() once on the first thread before any connection opens, only to count the
-- requests in what it returns (script_verify_request): that call must not use up an id.
verified = false

function request()
  if index == 1 and not verified then
    verified = true
    return wrk.format("GET", prefix .. share[1])
  end
  if next_index > #share then
    return wrk.format("GET", idle_path)
  end
  if next_index == 1 then first_t = now() end
  local id = share[next_index]
  next_index = next_index + 1
  return wrk.format("GET", prefix .. id)
end

function response(status, headers, body)
  if status == 404 then return end  -- an idle request; every id of the pass exists
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  last_t = now()
  if answered == #share then
    local done = io.open(os.getenv("BENCH_DONE_DIR") .. "/" .. index, "w")
    done:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, bad, t0, t1 = 0, 0, math.huge, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("answered")
    bad = bad + thread:get("failed")
    t0 = math.min(t0, thread:get("first_t"))
    t1 = math.max(t1, thread:get("last_t"))
  end
  bench_report(total, math.floor((t1 - t0) * 1e6), summary.errors, bad, latency)
end
