-- POST a JSON body (BODY) with a bearer token (TOKEN) to PATH; env vars set by bench-api.sh.
wrk.method = os.getenv("METHOD") or "POST"
wrk.path = os.getenv("TARGET_PATH")
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.body = os.getenv("BODY")
