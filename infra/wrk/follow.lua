-- Follows a user picked from IDS (comma-separated) in turn, as TOKEN.
local ids = {}
for id in string.gmatch(os.getenv("IDS") or "", "[^,]+") do
  ids[#ids + 1] = id
end
local i = 0
local headers = { ["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "") }
request = function()
  i = i % #ids + 1
  return wrk.format("PUT", "/v1/following/" .. ids[i], headers, "")
end
