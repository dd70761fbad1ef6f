#!/usr/bin/env bash
# The benchmark run behind BENCHMARKS.md's release-build tables (issue 11). Bounded: every
# scenario stops at --requests or --max-seconds. Needs redis-server; starts its own on a free
# loopback port and stops it by pid. Output goes to stdout (and $OUT/*.txt when OUT is set).
#
#   scripts/bench.sh              # release build, all parts
#   PARTS=ratios scripts/bench.sh # only the floor ratios (parts: ratios, pay-rate, commands, posture)
#
# Parts:
#   ratios    closed loop, then an open loop at half of the calls/s each scenario reached
#             (p99 at half of saturation), for the Redis store and the memory store
#   pay-rate  CreatePayment at a fixed arrival rate (RATE, default 500/s) with the simulators
#             answering PROVIDER_MS (default 100) late: the gateway's added latency
#   commands  Redis commands per payment (INFO commandstats over 1,000 payments)
#   posture   CreatePayment, closed loop (32 callers), on each accepted Redis posture, each
#             with its own redis-server: appendfsync always; everysec with a replica and
#             min_replica_acks = 1 (WAIT); everysec (the opt-in window, no wait) for comparison.
#             WAITAOF (everysec on Redis >= 7.2) is measured only where redis-server is 7.2+.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS=${PARTS:-ratios pay-rate commands posture}
RATE=${RATE:-500}
PROVIDER_MS=${PROVIDER_MS:-100}
REQUESTS=${REQUESTS:-60000}
PROFILE=${PROFILE:-release}

cargo build --profile "$PROFILE" --bin billpay-load --bin billpay-gateway
dir=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
load=$dir/billpay-load
gateway=$dir/billpay-gateway

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
work=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" >/dev/null
trap 'kill "$(cat "$work/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url=redis://127.0.0.1:$port
REDIS_URL=$url "$gateway" store init >/dev/null

run() { # name, then billpay-load arguments
  local name=$1; shift
  echo "== $name: billpay-load $*"
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"; "$@" | tee "$OUT/$name.txt"
  else
    "$@"
  fi
  echo
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), build $PROFILE, $(git rev-parse --short HEAD)"
for part in $PARTS; do
  case $part in
    ratios)
      for store in redis memory; do
        if [ $store = redis ]; then env=(env REDIS_URL="$url"); else env=(env -u REDIS_URL); fi
        run "ratios-$store" "${env[@]}" "$load" --scenario list-billers,list-products,pay-same-key,pay \
          --concurrency 32 --requests "$REQUESTS" --max-seconds 20 --rate-fraction 0.5
      done ;;
    pay-rate)
      run pay-rate env REDIS_URL="$url" "$load" --scenario pay --provider-latency-ms "$PROVIDER_MS" \
        --provider-concurrency 1024 --rate "$RATE" --concurrency 2000 --requests $((RATE * 20)) --max-seconds 20 ;;
    commands)
      redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
      run commands env REDIS_URL="$url" "$load" --scenario pay --concurrency 16 --requests 1000 --max-seconds 60
      redis-cli -p "$port" INFO commandstats | grep -v '^#' ;;
    posture)
      version=$(redis-server --version | sed -E 's/.*v=([0-9]+\.[0-9]+).*/\1/')
      postures="always replicas everysec"
      if [ "$(printf '%s\n7.2\n' "$version" | sort -V | head -1)" = 7.2 ]; then postures="$postures waitaof"; fi
      for posture in $postures; do
        pdir=$work/posture-$posture; mkdir -p "$pdir"
        pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
        fsync=$([ $posture = always ] && echo always || echo everysec)
        redis-server --port "$pport" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$fsync" \
          --dir "$pdir" --daemonize yes --pidfile "$pdir/redis.pid" >/dev/null
        penv=(env REDIS_URL=redis://127.0.0.1:$pport)
        if [ $posture = replicas ]; then
          rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
          mkdir -p "$pdir/replica"
          redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
            --replicaof 127.0.0.1 "$pport" --dir "$pdir/replica" --daemonize yes \
            --pidfile "$pdir/replica/redis.pid" >/dev/null
          penv+=(BILLPAY__STORE__MIN_REPLICA_ACKS=1)
        fi
        [ $posture = everysec ] && penv+=(BILLPAY__STORE__ACCEPT_LOSS_WINDOW=everysec)
        for _ in $(seq 50); do redis-cli -p "$pport" ping >/dev/null 2>&1 && break; sleep 0.1; done
        if [ $posture = replicas ]; then
          for _ in $(seq 100); do redis-cli -p "$pport" INFO replication | grep -q 'state=online' && break; sleep 0.1; done
        fi
        REDIS_URL=redis://127.0.0.1:$pport "$gateway" store init >/dev/null
        run "posture-$posture" "${penv[@]}" "$load" --scenario pay --concurrency 32 \
          --requests "$REQUESTS" --max-seconds 20
        for pid in "$pdir/redis.pid" "$pdir/replica/redis.pid"; do
          [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
        done
      done ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
