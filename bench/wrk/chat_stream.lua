-- wrk script: the streamed variant of chat.lua ("stream": true, model bench-stream); wrk counts a request
-- when the whole SSE reply has arrived.
BENCH_STREAM = true
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "chat.lua")
