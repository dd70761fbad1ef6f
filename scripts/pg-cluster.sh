# Sourced by scripts/bench.sh and scripts/pg-chaos.sh: a throwaway PostgreSQL 15 cluster of
# their own (initdb and pg_ctl in a temporary directory on a free loopback port, trust auth),
# never the system's. As root, the cluster runs as the `postgres` user (PostgreSQL refuses
# root). Functions:
#
#   pg_cluster_init DIR PORT [postgres -c options...]   initdb in DIR/data, remembers the options
#   pg_cluster_start                                     pg_ctl start, waits until it accepts
#   pg_cluster_kill9                                     kill -9 of the postmaster and every
#                                                        process it started (a crash: no shutdown)
#   pg_cluster_stop                                      pg_ctl stop -m fast (quiet if not running)
#   pg_psql SQL [DB]                                     psql -Atc as the superuser
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
pg_as_owner() { # command... (run as postgres when we are root)
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}
pg_cluster_init() {
  PG_DIR=$1; PG_PORT=$2; shift 2
  PG_OPTS="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR"
  for o in "$@"; do PG_OPTS="$PG_OPTS -c $o"; done
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
  pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1
}
pg_cluster_start() {
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "$PG_OPTS" -l "$PG_DIR/log" -w -t 60 start >/dev/null
}
pg_cluster_kill9() {
  local pid children
  pid=$(head -1 "$PG_DIR/data/postmaster.pid")
  children=$(pgrep -P "$pid" || true)
  # shellcheck disable=SC2086
  kill -9 "$pid" $children 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  for c in $children; do while kill -0 "$c" 2>/dev/null; do sleep 0.05; done; done
}
pg_cluster_stop() {
  [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}
pg_psql() { # SQL [database]
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "${2:-postgres}" -Atc "$1"
}
