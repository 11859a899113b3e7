-- wrk script: client_credentials token requests (client_secret_post).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=" .. os.getenv("CLIENT_ID")
    .. "&client_secret=" .. os.getenv("CLIENT_SECRET")

function response(status, headers, body)
    if status ~= 200 then error("unexpected status " .. status .. ": " .. body) end
end
