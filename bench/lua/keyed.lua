-- Shared by the keyed scenarios: a distinct Idempotency-Key per request, unique across wrk's
-- threads (each thread has its own Lua state; `setup` numbers them). KEY_HEADER renames the
-- header: the control scenarios (S1X, S2X) send the same bytes under a header the server
-- ignores, so that the client's cost of formatting each request is the same on both sides.
key_header = os.getenv("KEY_HEADER") or "Idempotency-Key"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local sent = 0
function next_key()
  sent = sent + 1
  return string.format("bench%02d0123456789abcdef0123456:%d", thread_id or 0, sent)
end
