# Shared by the benchmark scripts (sourced): keyward's setup through its own
# API and one wrk run with its figures.

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

wait_for() {
    for _ in $(seq 100); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done
    echo "bench: $1 never answered" >&2
    return 1
}

# keyward at $1 (admin password $2): sets API_TOKEN (the admin's API access
# token), KW_ID / KW_SECRET / KW_BASIC (an M2M client) and KW_JWT (its token).
keyward_setup() {
    local base=$1 password=$2 refresh client
    refresh=$(curl -fs "$base/integration/v1/createRefreshToken/" -d username=admin -d "password=$password" -d name=bench)
    API_TOKEN=$(curl -fs "$base/integration/v1/createAPIAccessToken/" -d "refresh_token=$(echo "$refresh" | json '["refresh_token"]')" \
        -d "user_id=$(echo "$refresh" | json '["user_id"]')" | json '["api_access_token"]')
    client=$(curl -fs "$base/admin/api/m2m_clients/" -H "TOKEN: $API_TOKEN" -H 'content-type: application/json' \
        -d '{"name": "bench", "access_token_duration": 3600, "role": "viewer"}')
    KW_ID=$(echo "$client" | json '["client_id"]'); KW_SECRET=$(echo "$client" | json '["client_secret"]')
    KW_BASIC=$(printf '%s:%s' "$KW_ID" "$KW_SECRET" | base64 -w0)
    KW_JWT=$(curl -fs "$base/oauth/v2/token/" -d grant_type=client_credentials -d "client_id=$KW_ID" \
        -d "client_secret=$KW_SECRET" | json '["access_token"]')
}

# One run: wrk_run URL METHOD BODY BASIC BEARER TOKEN EXPECT [wrk's own prefix,
# e.g. "taskset -c 1"]. Sets RPS, P50, P99 and ERRORS (wrk's complaints).
# Every answer must be a 200, or the status WRK_STATUS names (then wrk's
# count of non-2xx answers is no complaint: request.lua checks each one).
wrk_run() {
    local out
    out=$(WRK_METHOD=$2 WRK_BODY=$3 WRK_BASIC=$4 WRK_BEARER=$5 WRK_TOKEN=$6 WRK_EXPECT=$7 \
        ${8:-} wrk -t2 -c16 -d"${DURATION}s" --latency -s bench/request.lua "$1")
    RPS=$(echo "$out" | awk '/^Requests\/sec/ {print int($2)}')
    P50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    P99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    local complaints='Non-2xx|Socket errors'
    [ "${WRK_STATUS:-200}" = 200 ] || complaints='Socket errors'
    ERRORS=$(echo "$out" | awk "/$complaints/ {print}" | tr '\n' ' ')
}
