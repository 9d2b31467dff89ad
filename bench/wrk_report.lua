-- A bearer token, when the case needs one, comes from the environment (never wrk's command line).
local bench_authorization = os.getenv("BENCH_AUTHORIZATION")
if bench_authorization then
  wrk.headers["Authorization"] = bench_authorization
end
-- The JSON summary both wrk scripts print at the end (wrk's own report has only four percentiles):
-- loaded with dofile from the script's own folder.
function bench_report(requests, duration_us, errors, status_errors, latency)
  local points = {}
  for _, p in ipairs({1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9}) do
    points[#points + 1] = string.format('"%s": %d', p, latency:percentile(p))
  end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {%s}}\n',
    requests, duration_us, errors.connect, errors.read, errors.write, status_errors, errors.timeout,
    table.concat(points, ", ")))
end
