#!/usr/bin/env bash
# PostgreSQL failover to a synchronous standby: a primary (scripts/pg-cluster.sh, a cluster of
# this script's own on loopback) with `synchronous_standby_names = '*'`, a standby made from it
# with pg_basebackup and streaming from it on another port, two gateway replicas (`serve` with
# a real-provider config, so the posture is read: `sync-standby`) whose URL names both servers
# (`host=primary,standby target_session_attrs=read-write`: new connections go to whichever
# takes writes), one `billpay-gateway simulate`, and clients (scripts/chaos-drive.py) sending
# every payment twice at once and retrying on the same request_id until answered. Mid-run the
# primary is killed with SIGKILL and the standby promoted; the replicas carry on against it.
# At the end every request is sent once more and the provider's advice log is compared with the
# answers: paid twice, forgotten (paid at the provider, yet the gateway's final answer is not
# that payment), reused references. An acknowledged payment lost in the failover would show as
# forgotten or paid twice. Loopback only, bounded (about a minute).
#
#   scripts/pg-standby.sh                # 100 payments (x2 sends)
#   PAYMENTS=200 scripts/pg-standby.sh
#
# Needs PostgreSQL 15's binaries (PG_BIN, default /usr/lib/postgresql/15/bin), psql and python3.
# Uses the release build (PROFILE=dev for the debug one), built if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PAYMENTS=${PAYMENTS:-100}
PROFILE=${PROFILE:-release}
dir=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
bin=$dir/billpay-gateway
export CHAOS_CLIENT=$dir/billpay-chaos-client
[ -x "$bin" ] && [ -x "$CHAOS_CLIENT" ] ||
  cargo build --profile "$PROFILE" --bin billpay-gateway --bin billpay-chaos-client
work=$(mktemp -d)
chmod 755 "$work" # the clusters run as the postgres user
source scripts/pg-cluster.sh
pids=()
sim_pid=
standby_dir=
cleanup() {
  for p in "${pids[@]}" $sim_pid; do kill "$p" 2>/dev/null || true; done
  pg_cluster_stop
  [ -n "$standby_dir" ] && [ -f "$standby_dir/data/postmaster.pid" ] &&
    pg_as_owner "$PG_BIN/pg_ctl" -D "$standby_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
psql_at() { # PORT SQL [database]
  psql -X -q -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -Atc "$2"
}

sim_port=$(free_port)
"$bin" simulate --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
sim_pid=$!
wait_port "$sim_port"

# The primary; once the standby streams, every commit waits for its flush (below).
pg_cluster_init "$work/primary" "$(free_port)"
pg_cluster_start
primary_port=$PG_PORT
pg_psql "CREATE DATABASE billpay"

# The standby: a base backup streaming from the primary (-R writes primary_conninfo and
# standby.signal). Without synchronous_standby_names of its own: once promoted it has no
# standby, and commits must not wait for one.
standby_dir=$work/standby
standby_port=$(free_port)
mkdir -p "$standby_dir"
[ "$(id -u)" = 0 ] && chown postgres "$standby_dir"
pg_as_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
  -D "$standby_dir/data" -R -X stream >/dev/null
pg_as_owner "$PG_BIN/pg_ctl" -D "$standby_dir/data" -l "$standby_dir/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $standby_port -k $standby_dir -c synchronous_standby_names=" \
  start >/dev/null
pg_psql "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
pg_psql "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 100); do
  [ "$(pg_psql "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
  sleep 0.1
done

dburl="postgres://postgres@127.0.0.1:$primary_port,127.0.0.1:$standby_port/billpay?target_session_attrs=read-write"
DATABASE_URL=$dburl "$bin" store init >/dev/null
echo "postgres: primary on $primary_port, standby on $standby_port ($(pg_psql "SELECT sync_state FROM pg_stat_replication")), synchronous_commit $(pg_psql 'SHOW synchronous_commit')"

gw_ports=()
cat >"$work/gw.toml" <<TOML
[store]
postgres_url = "$dburl"
posture_recheck_ms = 1000
[providers.interswitch]
base_url = "http://127.0.0.1:$sim_port/interswitch"
client_id = "IKIASANDBOX0000000000000000000000000000001"
client_secret = "sandbox-secret-not-for-production"
terminal_id = "3DMO0001"
request_reference_prefix = "1456"
TOML
for i in 1 2; do
  port=$(free_port)
  env -u REDIS_URL -u REDIS_CLUSTER_URLS -u DATABASE_URL \
    "$bin" serve --config "$work/gw.toml" --listen "127.0.0.1:$port" >"$work/gw$i.log" 2>&1 &
  pids+=($!)
  gw_ports+=("$port")
done
for p in "${gw_ports[@]}"; do wait_port "$p"; done

sim_url="http://127.0.0.1:$sim_port"
drive() { # mode, first, count
  local gws; gws=$(printf "127.0.0.1:%s," "${gw_ports[@]}")
  python3 scripts/chaos-drive.py "$1" "$2" "$3" "${gws%,}" "$sim_url" "$work/ids"
}

half=$((PAYMENTS / 2))
echo "== failover to the synchronous standby under load ($PAYMENTS payments, each sent twice at once)"
drive pay 0 "$half"
acknowledged_before=$(pg_psql "SELECT count(*) FROM billpay_kv WHERE key LIKE 'billpay:v1:payment:%'" billpay)
(
  sleep 0.7
  pg_cluster_kill9
  echo "  primary killed -9 at $(date +%T.%3N)"
  pg_as_owner "$PG_BIN/pg_ctl" -D "$standby_dir/data" -w promote >/dev/null
  echo "  standby promoted at $(date +%T.%3N)"
) & fault=$!
echo "  second half starts at $(date +%T.%3N)"
drive pay "$half" $((PAYMENTS - half))
echo "  second half answered by $(date +%T.%3N)"
wait $fault
drive check 0 0
echo "  payment rows before the failover (on the primary): $acknowledged_before; on the promoted standby now: $(psql_at "$standby_port" "SELECT count(*) FROM billpay_kv WHERE key LIKE 'billpay:v1:payment:%'" billpay)"
echo "  promoted standby in recovery: $(psql_at "$standby_port" 'SELECT pg_is_in_recovery()')"
grep -h 'STORE\|store\|posture' "$work"/gw*.log | grep -v '^$' | sed -E 's/.*(WARN|ERROR|INFO)/\1/' | cut -c1-160 | sort | uniq -c | sort -rn | head -8 | sed 's/^/  gateway log: /' || true
