-- wrk script: POST /api/auth/login non-stop, round-robin over BENCH_LOGIN_USERS accounts,
-- with a valid XSRF cookie and header (one token is valid for any number of requests).
local users = tonumber(os.getenv("BENCH_LOGIN_USERS") or "20")
local password = os.getenv("BENCH_PASSWORD")
local xsrf = os.getenv("BENCH_XSRF")
local counter = 0
local headers = {
  ["Cookie"] = "_xsrf=" .. xsrf,
  ["X-XSRFToken"] = xsrf,
  ["Content-Type"] = "application/json",
  ["X-Forwarded-Proto"] = "https",
  ["X-Forwarded-For"] = "127.0.0.3",
  ["User-Agent"] = "plp-bench-login",
}

request = function()
  counter = counter + 1
  local body = string.format('{"username":"login%d","password":"%s"}', counter % users, password)
  return wrk.format("POST", "/api/auth/login", headers, body)
end
