-- S1LAT: S1's requests, but each connection waits 1 ms after every response before sending its
-- next request, so the load (about 25 000 req/s from 32 connections) stays below saturation and
-- the latency shows the server rather than the two cores' run queue.
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/update/gauge/m" .. (counter % 1000) .. "/" .. (counter * 0.25))
end
delay = function()
  return 1
end
