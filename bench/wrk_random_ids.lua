-- wrk script: GET <BENCH_PATH_PREFIX><id> with ids drawn at random from BENCH_IDS_FILE, and a JSON
-- summary with the latency distribution at the end (wrk's own report has only four percentiles).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wrk_report.lua")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  ids[#ids + 1] = line
end
local prefix = os.getenv("BENCH_PATH_PREFIX") or "/order/"

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end

function done(summary, latency, requests)
  bench_report(summary.requests, summary.duration, summary.errors, summary.errors.status, latency)
end
