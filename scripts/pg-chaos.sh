#!/usr/bin/env bash
# PostgreSQL chaos, as scripts/chaos.sh does it for Redis: two gateway replicas (`serve` with a
# real-provider config, so the store posture is enforced) on one PostgreSQL cluster of this
# script's own (scripts/pg-cluster.sh: initdb and pg_ctl in a temporary directory on a free
# loopback port, fsync and synchronous_commit on; never the system's PostgreSQL), one
# `billpay-gateway simulate` whose Interswitch counts every payment advice, and clients
# (scripts/chaos-drive.py) sending every payment twice at once (one per replica) and retrying on
# the same request_id until they get an answer. Mid-run the postmaster and every process it
# started are killed with SIGKILL (no shutdown, no checkpoint), then PostgreSQL is started again
# and recovers from its WAL. At the end every request is sent once more and the provider's
# advice log is compared with the gateway's answers: paid twice (a request paid under more than
# one reference), forgotten (paid at the provider, but the gateway's final answer is not that
# payment), reused references. Loopback only, bounded (about a minute).
#
#   scripts/pg-chaos.sh                 # 100 payments (x2 sends), one kill -9
#   PAYMENTS=200 KILLS=3 scripts/pg-chaos.sh
#
# Needs PostgreSQL 15's binaries (PG_BIN, default /usr/lib/postgresql/15/bin), psql and python3.
# Uses the release build (PROFILE=dev for the debug one), built if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PAYMENTS=${PAYMENTS:-100}
KILLS=${KILLS:-1}
PROFILE=${PROFILE:-release}
dir=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
bin=$dir/billpay-gateway
export CHAOS_CLIENT=$dir/billpay-chaos-client
[ -x "$bin" ] && [ -x "$CHAOS_CLIENT" ] ||
  cargo build --profile "$PROFILE" --bin billpay-gateway --bin billpay-chaos-client
work=$(mktemp -d)
chmod 755 "$work" # the cluster runs as the postgres user
source scripts/pg-cluster.sh
pids=()
sim_pid=
cleanup() {
  for p in "${pids[@]}" $sim_pid; do kill "$p" 2>/dev/null || true; done
  pg_cluster_stop
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

sim_port=$(free_port)
"$bin" simulate --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
sim_pid=$!
wait_port "$sim_port"

pg_cluster_init "$work/pg" "$(free_port)"
pg_cluster_start
pg_psql "CREATE DATABASE billpay"
dburl=postgres://postgres@127.0.0.1:$PG_PORT/billpay
DATABASE_URL=$dburl "$bin" store init >/dev/null
echo "postgres: $(pg_psql 'SELECT version()' | cut -d' ' -f1-2) on port $PG_PORT, fsync $(pg_psql 'SHOW fsync'), synchronous_commit $(pg_psql 'SHOW synchronous_commit')"

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
echo "== PostgreSQL kill -9 under load ($PAYMENTS payments, each sent twice at once; $KILLS kill(s) during the second half)"
drive pay 0 "$half"
(
  for k in $(seq "$KILLS"); do
    sleep 0.7
    pg_cluster_kill9
    echo "  killed -9 at $(date +%T.%3N) (postmaster and its children)"
    sleep 1
    pg_cluster_start
    echo "  restarted at $(date +%T.%3N)"
  done
) & fault=$!
echo "  second half starts at $(date +%T.%3N)"
drive pay "$half" $((PAYMENTS - half))
echo "  second half answered by $(date +%T.%3N)"
wait $fault
drive check 0 0
echo "  crash recovery in the PostgreSQL log: $(grep -c 'database system was interrupted\|redo done\|not properly shut down' "$work/pg/log" || true) lines"
echo "  payment rows in PostgreSQL: $(pg_psql "SELECT count(*) FROM billpay_kv WHERE key LIKE 'billpay:v1:payment:%'" billpay) (the check's replays and the two sends share one row each)"
grep -h 'STORE\|store' "$work"/gw*.log | grep -v '^$' | sed -E 's/.*(WARN|ERROR|INFO)/\1/' | sort | uniq -c | sort -rn | head -8 | sed 's/^/  gateway log: /' || true
