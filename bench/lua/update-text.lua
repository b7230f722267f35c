-- S1: one gauge update per request, POST /update/gauge/m{0..999}/{float}, keep-alive.
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/update/gauge/m" .. (counter % 1000) .. "/" .. (counter * 0.25))
end
