# Sourced by scripts/test: a PostgreSQL cluster on a free loopback port in a
# temp dir, removed on exit. Installs Debian's `postgresql` package if its
# server binaries are missing. initdb/postgres refuse to run as root, so as
# root they run as the `postgres` user.

pg_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_throwaway_postgres() {
    PG_BIN=$(pg_bin_dir)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "scripts/test: installing PostgreSQL (Debian package postgresql)" >&2
        if [ "$(id -u)" != 0 ]; then
            echo "scripts/test: PostgreSQL is missing and this user cannot apt-get install it;" \
                 "install the postgresql package or set KEYWARD_TEST_POSTGRES_URL" >&2
            return 1
        fi
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(pg_bin_dir)
    fi
    PG_DIR=$(mktemp -d /tmp/keyward-pg.XXXXXX)
    PG_AS=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_DIR"
        PG_AS=(runuser -u postgres --)
    fi
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
    # The harness's superuser connects without a password; every other role
    # (the warehouses of the vault tests) must give its own.
    cat > "$PG_DIR/data/pg_hba.conf" <<'HBA'
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
HBA
    # fsync off: the cluster is thrown away; the tests measure behaviour, not durability.
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" \
        start >/dev/null
    trap stop_throwaway_postgres EXIT
    export KEYWARD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "scripts/test: throwaway PostgreSQL at $KEYWARD_TEST_POSTGRES_URL" >&2
}

stop_throwaway_postgres() {
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
