-- wrk script: POSTs pre-generated gzipped JSON batches to /updates/ (no per-response Lua
-- callback, which would slow wrk down; wrk counts non-2xx answers itself).
-- BODIES names a directory of body-N.json.gz files; each request takes the next one, so with a
-- single file every request is identical (every client writes the same metric names).
local dir = os.getenv("BODIES") or error("set BODIES to the directory of body-N.json.gz files")
local bodies = {}

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

local i = 0
while true do
  local body = read(dir .. "/body-" .. i .. ".json.gz")
  if not body then break end
  bodies[#bodies + 1] = wrk.format("POST", "/updates/", {
    ["Content-Type"] = "application/json",
    ["Content-Encoding"] = "gzip",
  }, body)
  i = i + 1
end
assert(#bodies > 0, "no body-0.json.gz in " .. dir)

local next_body = 0
request = function()
  next_body = next_body % #bodies + 1
  return bodies[next_body]
end
