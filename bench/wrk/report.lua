-- report.lua: make wrk print its results as one JSON line (after its usual text).
--
-- Used as `wrk -s bench/wrk/report.lua ...` for the plain HTTP workload, and
-- loaded by pipeline.lua for the pipelined one, so the suite parses numbers
-- instead of wrk's human-readable units.  Latencies are in microseconds.
-- This script defines no request() function, so wrk keeps its fast static
-- request path (a script with request() is called for every request).
--
-- Why the latency percentiles are recomputed here: before calling done(),
-- wrk 4.x "corrects" its latency histogram for coordinated omission
-- (stats_correct in src/stats.c): with expected = duration / (requests /
-- connections), every sample n >= 2*expected adds synthetic samples at
-- n-expected, n-2*expected, ... (while > expected).  For a closed-loop
-- benchmark that inflates the tail, and with pipelining (where wrk counts
-- every response but records one sample per batch) `expected` is DEPTH times
-- too small: the synthetic samples land below the histogram's min, which
-- wrk's own percentile() never visits, so it returns 0 or a wrong value.
-- The correction is deterministic, so it can be undone exactly: walking the
-- values downwards, orig[m] = data[m] - sum(orig[m + k*expected], k >= 1)
-- for m > expected.  The result is the raw, per-request (per-batch when
-- pipelining) latency distribution, comparable with echo_load's.
-- WRK_CONNECTIONS (environment) must hold wrk's -c value; without it, wrk's
-- own (corrected) percentiles are reported and "latency_raw" is false.

local function raw_percentiles(summary, latency, conns)
   local per_conn = math.floor(summary.requests / conns)
   if per_conn <= 0 then return nil end
   local expected = math.floor(summary.duration / per_conn)
   if expected <= 0 then return nil end
   -- latency(i) is the i-th non-empty bucket (value, count), ascending.
   local n = #latency
   local vals, cnts = {}, {}
   for i = 1, n do
      vals[i], cnts[i] = latency(i)
   end
   local acc, orig, total = {}, {}, 0
   for i = n, 1, -1 do
      local v, c = vals[i], cnts[i]
      local o = c
      if v > expected then
         local r = v % expected
         o = c - (acc[r] or 0)
         acc[r] = (acc[r] or 0) + o
      end
      if o < 0 then return nil end -- not the correction we know: give up
      orig[i] = o
      total = total + o
   end
   if total == 0 then return nil end
   local function pct(p)
      local rank = math.max(1, math.ceil(p / 100 * total))
      local seen = 0
      for i = 1, n do
         seen = seen + orig[i]
         if seen >= rank then return vals[i] end
      end
      return vals[n]
   end
   local sum = 0
   for i = 1, n do sum = sum + vals[i] * orig[i] end
   return pct(50), pct(99), sum / total, total
end

function done(summary, latency, requests)
   local e = summary.errors
   local conns = tonumber(os.getenv("WRK_CONNECTIONS") or "")
   local p50, p99, mean, samples
   if conns then p50, p99, mean, samples = raw_percentiles(summary, latency, conns) end
   local raw = p50 ~= nil
   if not raw then
      p50, p99, mean, samples = latency:percentile(50), latency:percentile(99), latency.mean, -1
   end
   io.write(string.format(
      '\n{"requests": %d, "bytes": %d, "duration_us": %d, ' ..
      '"errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
      '"errors_status": %d, "errors_timeout": %d, ' ..
      '"p50_us": %.2f, "p99_us": %.2f, "max_us": %.2f, "mean_us": %.2f, ' ..
      '"latency_samples": %d, "latency_raw": %s}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      p50, p99, latency.max, mean, samples, tostring(raw)))
end
