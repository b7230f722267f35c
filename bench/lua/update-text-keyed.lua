-- S1K: S1 with an Idempotency-Key on every request (the agent's key shape: 32 characters, a
-- colon, a sequence number).
package.path = package.path .. ";bench/lua/?.lua"
require("keyed")
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/update/gauge/m" .. (counter % 1000) .. "/" .. (counter * 0.25),
    { [key_header] = next_key() })
end
