#!/usr/bin/env bash
# Load test: client_credentials tokens/s and introspections/s at concurrency 16
# against a release keyward on loopback, on SQLite and on PostgreSQL.
#
#   bench/token-load.sh [seconds]        (default 15 s per run)
#   BACKENDS="sqlite" ENDPOINTS="token" bench/token-load.sh 10   (a subset)
#
# Builds keyward in release, installs wrk (Debian) if missing, starts a
# throwaway PostgreSQL unless KEYWARD_TEST_POSTGRES_URL is set, and prints
# wrk's summary with latency percentiles for each run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
BACKENDS="${BACKENDS:-sqlite postgres}"
ENDPOINTS="${ENDPOINTS:-token introspect}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -q
BIN="$PWD/target/release/keyward"
if [[ " $BACKENDS " == *" postgres "* ]] && [ -z "${KEYWARD_TEST_POSTGRES_URL:-}" ]; then
    . scripts/throwaway-postgres.sh
    start_throwaway_postgres
fi
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
    declare -F stop_throwaway_postgres >/dev/null && stop_throwaway_postgres
    return 0
}
trap cleanup EXIT
export KEYWARD_MASTER_KEY="$(head -c 32 /dev/urandom | base64)"
export RUST_LOG=warn
PORT=18731
BASE="http://127.0.0.1:$PORT"

run_backend() {
    local name=$1 url=$2
    local data="$WORK/$name"
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$data" ${url:+--database-url "$url"} >"$WORK/$name.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -fs "$BASE/healthz" >/dev/null && break; sleep 0.1; done
    local creds
    creds=$("$BIN" client add bench --role viewer --data-dir "$data" ${url:+--database-url "$url"})
    export CLIENT_ID=$(echo "$creds" | sed -n 's/^client_id=//p')
    export CLIENT_SECRET=$(echo "$creds" | sed -n 's/^client_secret=//p')
    export BASIC_CREDENTIALS=$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)
    export JWT=$(curl -fs "$BASE/oauth/v2/token/" -d grant_type=client_credentials \
        -d "client_id=$CLIENT_ID" -d "client_secret=$CLIENT_SECRET" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    if [[ " $ENDPOINTS " == *" token "* ]]; then
        echo "== $name: POST /oauth/v2/token/ (client_credentials, client_secret_post), 16 connections"
        WRK_METHOD=POST WRK_BODY="grant_type=client_credentials&client_id=$CLIENT_ID&client_secret=$CLIENT_SECRET" \
            WRK_EXPECT=access_token wrk -t2 -c16 -d"${DURATION}s" --latency -s bench/request.lua "$BASE/oauth/v2/token/"
    fi
    if [[ " $ENDPOINTS " == *" introspect "* ]]; then
        echo "== $name: POST /oauth/v2/introspect/ (client_secret_basic), 16 connections"
        WRK_METHOD=POST WRK_BODY="token=$JWT" WRK_BASIC="$BASIC_CREDENTIALS" WRK_EXPECT='"active":true' \
            wrk -t2 -c16 -d"${DURATION}s" --latency -s bench/request.lua "$BASE/oauth/v2/introspect/"
    fi
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), keyward $(git rev-parse --short HEAD)"
if [[ " $BACKENDS " == *" sqlite "* ]]; then
    run_backend sqlite ""
fi
if [[ " $BACKENDS " == *" postgres "* ]]; then
    PG_URL="$KEYWARD_TEST_POSTGRES_URL"
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS keyward_bench" -c "CREATE DATABASE keyward_bench"
    run_backend postgres "${PG_URL%/*}/keyward_bench"
fi
