-- Signs up a new user per request: handles are unique per run (RUN) and request.
local n = 0
local run = os.getenv("RUN") or "r"
request = function()
  n = n + 1
  local body = string.format('{"handle":"b%s_%d","password":"password1"}', run, n)
  return wrk.format("POST", "/v1/users", { ["Content-Type"] = "application/json" }, body)
end
