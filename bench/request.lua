-- wrk script for every side-by-side run, configured by the environment:
--   WRK_METHOD (GET), WRK_BODY (form-encoded), WRK_BASIC (Authorization: Basic …),
--   WRK_BEARER (Authorization: Bearer …), WRK_TOKEN (TOKEN: …),
--   WRK_EXPECT (a substring every answer must contain),
--   WRK_STATUS (the status every answer must have; 200 when unset).
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local basic, bearer, token = os.getenv("WRK_BASIC"), os.getenv("WRK_BEARER"), os.getenv("WRK_TOKEN")
if basic and basic ~= "" then wrk.headers["Authorization"] = "Basic " .. basic end
if bearer and bearer ~= "" then wrk.headers["Authorization"] = "Bearer " .. bearer end
if token and token ~= "" then wrk.headers["TOKEN"] = token end
local expect = os.getenv("WRK_EXPECT") or ""
local want = tonumber(os.getenv("WRK_STATUS") or "") or 200

function response(status, headers, body)
    if status ~= want or (expect ~= "" and not body:find(expect, 1, true)) then
        error("unexpected answer " .. status .. ": " .. body)
    end
end
