#!/usr/bin/env bash
# How keyward's cost grows: client credentials, introspection and
# TOKEN-header validation with 10, 10,000 and 1,000,000 stored M2M clients,
# refresh tokens and API access tokens, on 1 core (keyward pinned to core 0,
# wrk to core 1) and on 2 cores (both unpinned). SQLite, release build.
# Prints a table and writes a plot (PNG) to the path given.
#
#   bench/scaling.sh [seconds per run] [plot.png]      (default 8 s, docs/scaling.png)
#   SIZES="10 10000" bench/scaling.sh 5                 (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DURATION="${1:-8}"
PLOT="${2:-docs/scaling.png}"
SIZES="${SIZES:-10 10000 1000000}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
python3 -c 'import matplotlib' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'matplotlib>=3.8,<4'
cargo build --release --locked -q
BIN="$PWD/target/release/keyward"
WORK=$(mktemp -d)
KW_PID=
cleanup() {
    [ -n "$KW_PID" ] && kill "$KW_PID" 2>/dev/null && wait "$KW_PID" 2>/dev/null
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
PORT=18761 KW="http://127.0.0.1:18761" ADMIN_PASSWORD="bench-admin-password"
RESULTS="$WORK/results.csv"

serve() { # data dir, taskset cpu list
    KEYWARD_ADMIN_PASSWORD="$ADMIN_PASSWORD" RUST_LOG=warn \
        taskset -c "$2" "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$1" >>"$WORK/kw.out" 2>&1 &
    KW_PID=$!
    wait_for "$KW/healthz"
}
stop() { kill "$KW_PID"; wait "$KW_PID" 2>/dev/null || true; KW_PID=; }

# N rows in each growing table: clients that are not the bench's, revoked
# refresh tokens (so no limit on active ones is reached) with an access token each.
fill() {
    python3 - "$1/keyward.db" "$2" <<'PY'
import secrets, sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
now = int(time.time() * 1_000_000)
c = sqlite3.connect(db)
with c:
    c.executemany(
        "INSERT INTO m2m_clients (client_id, name, role, access_token_duration, secret_hash, created_at, updated_at) "
        "VALUES (?, ?, 'viewer', 3600, ?, ?, ?)",
        ((f"m2m_fill{i:08x}", f"fill {i}", secrets.token_urlsafe(32), now, now) for i in range(n)))
    c.executemany(
        "INSERT INTO refresh_tokens (id, user_id, name, token_hash, created_at, expires_at, revoked_at) "
        "VALUES (?, 1, 'fill', ?, ?, ?, ?)",
        ((1_000_000_000 + i, secrets.token_urlsafe(32), now, now + 86_400_000_000, now) for i in range(n)))
    c.executemany(
        "INSERT INTO api_access_tokens (refresh_token_id, user_id, token_hash, created_at, expires_at, revoked_at) "
        "VALUES (?, 1, ?, ?, ?, ?)",
        ((1_000_000_000 + i, secrets.token_urlsafe(32), now, now + 3_600_000_000, now) for i in range(n)))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); keyward $(git rev-parse --short HEAD); wrk -t2 -c16 -d${DURATION}s"
echo "size,cores,figure,rps,p50,p99" >"$RESULTS"
for n in $SIZES; do
    data="$WORK/data-$n"
    serve "$data" 0,1 && stop
    fill "$data" "$n"
    for cores in 1 2; do
        if [ "$cores" = 1 ]; then serve "$data" 0; load="taskset -c 1"; else serve "$data" 0,1; load=""; fi
        keyward_setup "$KW" "$ADMIN_PASSWORD"
        for figure in token introspect token-header; do
            case $figure in
                token) wrk_run "$KW/oauth/v2/token/" POST "grant_type=client_credentials&client_id=$KW_ID&client_secret=$KW_SECRET" "" "" "" access_token "$load" ;;
                introspect) wrk_run "$KW/oauth/v2/introspect/" POST "token=$KW_JWT" "$KW_BASIC" "" "" '"active":true' "$load" ;;
                token-header) wrk_run "$KW/api/v2/oauth/consents/" GET "" "" "" "$API_TOKEN" "" "$load" ;;
            esac
            printf '%9s rows, %s core(s), %-13s %7s req/s  p50 %-9s p99 %-9s %s\n' "$n" "$cores" "$figure" "$RPS" "$P50" "$P99" "$ERRORS"
            echo "$n,$cores,$figure,$RPS,$P50,$P99" >>"$RESULTS"
        done
        stop
    done
done

python3 - "$RESULTS" "$PLOT" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
print("\n| stored rows | cores | figure | requests/s | p50 | p99 |\n|---|---|---|---|---|---|")
for r in rows:
    print(f"| {int(r['size']):,} | {r['cores']} | {r['figure']} | {int(r['rps']):,} | {r['p50']} | {r['p99']} |")
fig, ax = plt.subplots(figsize=(8, 4.5))
for figure in ["token", "introspect", "token-header"]:
    for cores, style in [("1", "--"), ("2", "-")]:
        points = [(int(r["size"]), int(r["rps"])) for r in rows if r["figure"] == figure and r["cores"] == cores]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, marker="o", label=f"{figure}, {cores} core{'s' if cores == '2' else ''}")
ax.set_xscale("log")
ax.set_xlabel("stored clients, refresh tokens and API access tokens (each)")
ax.set_ylabel("requests/s")
ax.set_title("keyward on SQLite: throughput as the store grows")
ax.legend(fontsize=8)
ax.grid(True, alpha=0.3)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
print(f"\nplot: {sys.argv[2]}")
PY
