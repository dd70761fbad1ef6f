#!/usr/bin/env bash
# Store chaos, from outside as a careful client sees it: two gateway replicas (`serve` with a
# real-provider config, so the store posture is enforced) on one redis-server, one
# `billpay-gateway simulate` whose Interswitch counts every payment advice
# (GET /interswitch/_sandbox/advices), and clients sending every payment twice at once (one
# per replica) and retrying on the same request_id until they get an answer. Per scenario it
# prints: paid twice (a request paid under more than one reference), forgotten (paid at the
# provider, but the gateway's final answer is not that payment), reused references (one
# reference sent for two requests). Loopback only, bounded (about 2 minutes).
#
#   scripts/chaos.sh              # every scenario
#   SCENARIOS="kill always-crash" scripts/chaos.sh
#   PAYMENTS=60 scripts/chaos.sh  # payments per scenario (default 40)
#
# Scenarios:
#   kill             appendfsync always; Redis kill -9 mid-run, restarted with its AOF
#   always-crash     appendfsync always; host crash right after a run: Redis killed, its AOF
#                    left as fsynced, which with always is every acknowledged write (nothing
#                    acknowledged is in a tail a crash could cut)
#   everysec-crash   appendfsync everysec, default posture: refused up-front (STORE_POSTURE_REFUSED);
#                    Redis killed and the AOF's tail cut; nothing was acknowledged, nothing lost
#   everysec-opt-in  appendfsync everysec with accept_loss_window = "everysec": what the window
#                    risks when the AOF's last writes are cut (not a default-posture scenario)
#   recover          appendfsync always; Redis restarted empty (its disk lost), clients keep
#                    retrying through STORE_DATA_LOST, an operator runs `store recover`
#
# Needs redis-server, redis-cli and python3. Uses the debug build (built if missing); the
# client is `billpay-chaos-client` (src/bin/chaos_client.rs), one CreatePayment per run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-kill always-crash everysec-crash everysec-opt-in recover}
PAYMENTS=${PAYMENTS:-40}
bin=target/debug/billpay-gateway
export CHAOS_CLIENT=target/debug/billpay-chaos-client
[ -x "$bin" ] && [ -x "$CHAOS_CLIENT" ] || cargo build --bin billpay-gateway --bin billpay-chaos-client
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}" $sim_pid; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill -9 "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

sim_port=$(free_port)
sim_pid=
sim_restart() { # a fresh simulator per scenario: its advice log and references start empty
  if [ -n "$sim_pid" ]; then kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; fi
  "$bin" simulate --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  wait_port "$sim_port"
}

redis_port=$(free_port)
redis_start() { # appendfsync policy
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync "$1" --dir "$work/redis" --daemonize yes --pidfile "$work/redis.pid" \
    --logfile "$work/redis.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis-server did not start" >&2; exit 1
}
redis_kill() { kill -9 "$(cat "$work/redis.pid")"; while redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done; rm -f "$work/redis.pid"; }
aof() { ls "$work"/redis/appendonlydir/*.incr.aof | sort | tail -1; }

gw_ports=()
gateways_start() { # accept_loss_window (may be empty)
  gw_ports=()
  cat >"$work/gw.toml" <<EOF
[store]
redis_url = "redis://127.0.0.1:$redis_port"
posture_recheck_ms = 1000
${1:+accept_loss_window = \"$1\"}
[providers.interswitch]
base_url = "http://127.0.0.1:$sim_port/interswitch"
client_id = "IKIASANDBOX0000000000000000000000000000001"
client_secret = "sandbox-secret-not-for-production"
terminal_id = "3DMO0001"
request_reference_prefix = "1456"
EOF
  for i in 1 2; do
    local port; port=$(free_port)
    "$bin" serve --config "$work/gw.toml" --listen "127.0.0.1:$port" >"$work/gw$i.log" 2>&1 &
    pids+=($!)
    gw_ports+=("$port")
  done
  for p in "${gw_ports[@]}"; do wait_port "$p"; done
}
gateways_stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}


sim_url="http://127.0.0.1:$sim_port"
drive() { # mode, first, count
  local gws; gws=$(printf "127.0.0.1:%s," "${gw_ports[@]}")
  python3 scripts/chaos-drive.py "$1" "$2" "$3" "${gws%,}" "$sim_url" "$work/ids"
}
n=0 # each request of a scenario has its own amount: the advice log is matched by amount
scenario() { echo "== $1"; rm -rf "$work/redis" "$work/ids"; mkdir -p "$work/redis"; sim_restart; }
cut_tail() { # keep the first $1 bytes of the last AOF
  python3 -c "import os,sys; f=sys.argv[1]; os.truncate(f, min(int(sys.argv[2]), os.path.getsize(f)))" "$(aof)" "$1"
}
half=$((PAYMENTS / 2))

for s in $SCENARIOS; do
  case $s in
    kill)
      scenario "Redis kill -9 mid-run (appendfsync always)"
      redis_start always; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store init >/dev/null
      gateways_start ""
      drive pay $n "$half"
      ( sleep 0.5; redis_kill; sleep 1; redis_start always ) & fault=$!
      drive pay $((n + half)) "$half"; wait $fault
      drive check 0 0
      gateways_stop; redis_kill ;;
    always-crash)
      scenario "host crash after a run, AOF as fsynced (appendfsync always, default posture)"
      redis_start always; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store init >/dev/null
      gateways_start ""
      drive pay $n "$PAYMENTS"
      redis_kill
      # always: every acknowledged write was fsynced before its answer, so the crash keeps
      # the whole file; only a torn last record (never acknowledged) could be missing.
      redis_start always
      drive check 0 0
      gateways_stop; redis_kill ;;
    everysec-crash)
      scenario "host crash, AOF tail cut (appendfsync everysec, default posture: refused)"
      redis_start everysec; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store init >/dev/null
      gateways_start ""
      drive refused $n "$PAYMENTS"
      redis_kill; size=$(stat -c %s "$(aof)"); cut_tail $((size * 2 / 3))
      redis_start everysec
      drive check 0 0
      gateways_stop; redis_kill ;;
    everysec-opt-in)
      scenario "host crash, AOF tail cut (appendfsync everysec, accept_loss_window = everysec)"
      redis_start everysec; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store init >/dev/null
      gateways_start everysec
      drive pay $n "$half"
      size=$(stat -c %s "$(aof)")
      drive pay $((n + half)) "$half"
      # The host crashed before the last second reached the disk: the writes of the second
      # half are cut.
      redis_kill; cut_tail "$size"
      redis_start everysec
      drive check 0 0
      gateways_stop; redis_kill ;;
    recover)
      scenario "Redis restarted empty, clients retrying, then store recover (appendfsync always)"
      redis_start always; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store init >/dev/null
      gateways_start ""
      drive pay $n "$half"
      redis_kill; rm -rf "$work/redis"; mkdir -p "$work/redis"; redis_start always
      ( sleep 3; REDIS_URL=redis://127.0.0.1:$redis_port "$bin" store recover >"$work/recover.log" 2>&1 ) & fault=$!
      drive pay $((n + half)) "$half"; wait $fault
      drive check 0 0
      gateways_stop; redis_kill ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  n=$((n + PAYMENTS))
done
