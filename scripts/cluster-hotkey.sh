#!/usr/bin/env bash
# How hot do the single-key sorted sets get on a Redis Cluster? Starts a 3-master cluster
# (appendonly yes), one `billpay-gateway simulate` and two `serve --sandbox` replicas sharing
# the cluster, then records `MONITOR` on every master: 10 s idle, then a burst of payments
# (`billpay-load --scenario pay` against both replicas at once). Prints, per key, the commands
# the gateways sent (round trips; commands run inside a Lua script are counted apart) and
# their rate, plus the identity check's own traffic. Needs redis-server and redis-cli.
# Usage: scripts/cluster-hotkey.sh [requests per replica, default 1500]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-1500}
cargo build -q --bin billpay-gateway --bin billpay-load
G=$PWD/target/debug/billpay-gateway
L=$PWD/target/debug/billpay-load
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

PORTS=()
for _ in 1 2 3; do
  P=$(free_port); B=$(free_port)
  redis-server --port "$P" --cluster-port "$B" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$DIR/nodes-$P.conf" --dir "$DIR" --appendonly yes \
    --appendfilename "aof-$P.aof" --appenddirname "aof-$P" --save "" \
    --logfile "$DIR/redis-$P.log" &
  PIDS+=($!); PORTS+=("$P")
done
for P in "${PORTS[@]}"; do wait_port "$P"; done
redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
for P in "${PORTS[@]}"; do
  until redis-cli -p "$P" CLUSTER INFO | grep -q cluster_state:ok; do sleep 0.1; done
done
URLS=$(printf 'redis://127.0.0.1:%s,' "${PORTS[@]}"); URLS=${URLS%,}

SP=$(free_port); GA=$(free_port); GB=$(free_port)
"$G" simulate --listen 127.0.0.1:"$SP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$SP"
for GP in "$GA" "$GB"; do
  REDIS_CLUSTER_URLS=$URLS RUST_LOG=warn "$G" serve --sandbox --sandbox-url http://127.0.0.1:"$SP" \
    --listen 127.0.0.1:"$GP" >/dev/null 2>&1 &
  PIDS+=($!)
  wait_port "$GP"
done
sleep 2 # both replicas past start-up

owner() { for P in "${PORTS[@]}"; do redis-cli -p "$P" EXISTS "$1" | grep -q MOVED || { echo "$P"; return; }; done; }
echo "masters: ${PORTS[*]}; billpay:v1:reconcile on $(owner billpay:v1:reconcile), billpay:v1:journal on $(owner billpay:v1:journal)"

record() { # record NAME SECONDS-OR-COMMAND...
  local name=$1; shift
  local mons=()
  for P in "${PORTS[@]}"; do redis-cli -p "$P" MONITOR >"$DIR/$name-$P.log" & mons+=($!); done
  sleep 0.5
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  sleep 0.5
  kill "${mons[@]}" 2>/dev/null || true
  wait "${mons[@]}" 2>/dev/null || true
  ELAPSED=$(python3 -c "print(f'{$end-$start:.1f}')")
}

report() { # report NAME
  python3 - "$ELAPSED" "$DIR/$1"-*.log <<'PY'
import re, sys, collections
secs, paths = float(sys.argv[1]), sys.argv[2:]
direct = collections.Counter(); lua = collections.Counter(); per_node = {}
for path in paths:
    node = path.rsplit("-", 1)[1].removesuffix(".log")
    per_node[node] = 0
    for line in open(path, errors="replace"):
        m = re.match(r'^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$', line.strip())
        if not m:
            continue
        origin, args = m.groups()
        words = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
        if not words:
            continue
        cmd = words[0].upper()
        if origin != "lua" and cmd != "MONITOR":
            per_node[node] += 1
        keys = [w for w in words[1:] if w in ("billpay:v1:reconcile", "billpay:v1:journal")]
        identity = any(w.startswith("billpay:v1:store:identity") for w in words[1:])
        if keys:
            tag = keys[0]
        elif identity and cmd in ("EVALSHA", "EVAL"):
            tag = "guarded claims (identity copy + claimed key)"
        elif identity or cmd == "CLUSTER":
            tag = "identity check"
        else:
            continue
        (lua if origin == "lua" else direct)[(tag, cmd)] += 1
payments = direct[("billpay:v1:journal", "ZADD")]
print(f"  window {secs:.1f} s; payments claimed (journal ZADDs): {payments}")
for tag in ("billpay:v1:reconcile", "billpay:v1:journal", "identity check",
            "guarded claims (identity copy + claimed key)"):
    d = {c: n for (t, c), n in direct.items() if t == tag}
    l = {c: n for (t, c), n in lua.items() if t == tag}
    total = sum(d.values())
    per = f", {total / payments:.2f} per payment" if payments else ""
    print(f"  {tag}: {total} commands = {total / secs:.1f}/s{per}; by command {dict(sorted(d.items()))}"
          + (f"; inside scripts {dict(sorted(l.items()))}" if l else ""))
for node, n in per_node.items():
    print(f"  master {node}: {n} commands from clients = {n / secs:.0f}/s")
PY
}

echo "idle, 2 replicas, 10 s:"
record idle sleep 10
report idle

burst() {
  "$L" --target http://127.0.0.1:"$GA" --scenario pay --concurrency 16 --requests "$REQUESTS" --max-seconds 60 >"$DIR/load-a.txt" 2>&1 &
  local a=$!
  "$L" --target http://127.0.0.1:"$GB" --scenario pay --concurrency 16 --requests "$REQUESTS" --max-seconds 60 >"$DIR/load-b.txt" 2>&1
  wait "$a"
}
echo "burst: billpay-load --scenario pay, $REQUESTS payments on each replica at once:"
record burst burst
report burst
grep -E "^ *pay " "$DIR/load-a.txt" "$DIR/load-b.txt" | sed 's/^/  /' || true
