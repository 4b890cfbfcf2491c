-- Paces each connection: after every response it waits DELAY_MS before the next request,
-- so -c C gives about C * 1000 / DELAY_MS requests per second whatever the server could do.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "4")
function delay()
  return delay_ms
end
