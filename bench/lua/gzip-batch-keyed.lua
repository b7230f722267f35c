-- S2K: S2 with an Idempotency-Key on every request, as the agent sends its batches.
package.path = package.path .. ";bench/lua/?.lua"
require("keyed")
local dir = os.getenv("BODIES") or error("set BODIES to the directory of body-N.json.gz files")
local f = assert(io.open(dir .. "/body-0.json.gz", "rb"))
local body = f:read("*a")
f:close()
request = function()
  return wrk.format("POST", "/updates/", {
    ["Content-Type"] = "application/json",
    ["Content-Encoding"] = "gzip",
    [key_header] = next_key(),
  }, body)
end
