-- wrk script: RFC 7662 introspection of one JWT (client_secret_basic).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC_CREDENTIALS")
wrk.body = "token=" .. os.getenv("JWT")

function response(status, headers, body)
    if status ~= 200 or not body:find('"active":true', 1, true) then
        error("unexpected answer " .. status .. ": " .. body)
    end
end
