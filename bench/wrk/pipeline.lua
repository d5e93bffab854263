-- pipeline.lua: HTTP/1.1 pipelining for wrk, DEPTH requests per write.
--
--   wrk -t1 -c64 -d5s -s bench/wrk/pipeline.lua http://127.0.0.1:PORT/ -- 16
--
-- (wrk passes the arguments after "--" to init(); they must come after the URL.)
-- wrk counts every response as a request, but records one latency sample per
-- batch: the time until the last of the DEPTH responses arrived.

-- Load the done() reporter that sits next to this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, "/")
   end
   req = table.concat(r)
end

request = function()
   return req
end
