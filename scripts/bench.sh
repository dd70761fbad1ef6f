#!/usr/bin/env bash
# The benchmark run behind BENCHMARKS.md's release-build tables (issue 11). Bounded: every
# scenario stops at --requests or --max-seconds. Needs redis-server; starts its own on a free
# loopback port and stops it by pid. Output goes to stdout (and $OUT/*.txt when OUT is set).
#
#   scripts/bench.sh              # release build, all parts
#   PARTS=ratios scripts/bench.sh # only the floor ratios (parts: ratios, pay-rate, commands, posture,
#                                 # postgres)
#   PARTS=postgres PG_PAYMENTS=4000 scripts/bench.sh   # the journal on PostgreSQL beside Redis
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
#   postgres  the payment path (PG_PAYMENTS payments, default 4,000, 32 callers) and cached
#             ListBillers (up to 30,000 calls or 10 s) on four stores in one run: Redis; PostgreSQL
#             alone (tokens and catalog copies in it too); mixed (journal in PostgreSQL, caches in
#             Redis); PostgreSQL with caches_in_memory. PostgreSQL is a cluster of the script's own
#             (scripts/pg-cluster.sh: initdb in a temporary directory on disk, fsync and
#             synchronous_commit on, pg_stat_statements loaded), one fresh database per store;
#             SQL statements per call come from pg_stat_statements (BEGIN/COMMIT included), and
#             the statements of the payment run are listed like INFO commandstats.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS=${PARTS:-ratios pay-rate commands posture}
RATE=${RATE:-500}
PROVIDER_MS=${PROVIDER_MS:-100}
REQUESTS=${REQUESTS:-60000}
PROFILE=${PROFILE:-release}
PG_PAYMENTS=${PG_PAYMENTS:-4000}

cargo build --profile "$PROFILE" --bin billpay-load --bin billpay-gateway
dir=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
load=$dir/billpay-load
gateway=$dir/billpay-gateway

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
work=$(mktemp -d)
chmod 755 "$work" # the PostgreSQL cluster of the postgres part runs as the postgres user
source scripts/pg-cluster.sh
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" >/dev/null
trap 'kill "$(cat "$work/redis.pid" 2>/dev/null)" 2>/dev/null || true; pg_cluster_stop; rm -rf "$work"' EXIT
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
    postgres)
      pg_cluster_init "$work/pg" "$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')" \
        shared_preload_libraries=pg_stat_statements
      pg_cluster_start
      echo "postgres: $(pg_psql 'SELECT version()' | cut -d' ' -f1-2), data on $(df --output=source "$work" | tail -1), fsync $(pg_psql 'SHOW fsync'), synchronous_commit $(pg_psql 'SHOW synchronous_commit')"
      redis-cli -p "$port" FLUSHALL >/dev/null
      REDIS_URL=$url "$gateway" store init >/dev/null
      for store in redis postgres mixed postgres-memory; do
        db=bench_${store//-/_}
        pg_psql "CREATE DATABASE $db"
        pg_psql "CREATE EXTENSION pg_stat_statements" "$db"
        dburl=postgres://postgres@127.0.0.1:$PG_PORT/$db
        case $store in
          redis) env=(env -u DATABASE_URL REDIS_URL="$url") ;;
          postgres) env=(env -u REDIS_URL DATABASE_URL="$dburl") ;;
          # the Redis of the other parts, database 1: its own tokens and catalog copies
          mixed) env=(env DATABASE_URL="$dburl" REDIS_URL="$url/1") ;;
          postgres-memory) env=(env -u REDIS_URL DATABASE_URL="$dburl" BILLPAY__STORE__CACHES_IN_MEMORY=true) ;;
        esac
        [ $store = redis ] || "${env[@]}" "$gateway" store init >/dev/null
        run "postgres-$store-list-billers" "${env[@]}" "$load" --scenario list-billers \
          --concurrency 32 --requests 30000 --max-seconds 10
        pg_psql "SELECT pg_stat_statements_reset()" "$db" >/dev/null
        run "postgres-$store-pay" "${env[@]}" "$load" --scenario pay \
          --concurrency 32 --requests "$PG_PAYMENTS" --max-seconds 60
        if [ $store != redis ]; then
          echo "pg_stat_statements of database $db since the payment run began (calls, statement):"
          pg_psql "SELECT calls || '  ' || regexp_replace(query, '\s+', ' ', 'g') FROM pg_stat_statements
                   WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db')
                   ORDER BY calls DESC LIMIT 25" "$db"
          echo "billpay_kv rows in $db by kind (catalog and token rows only where PostgreSQL also holds the caches):"
          pg_psql "SELECT count(*) || '  ' || kind FROM (SELECT split_part(key, ':', 3) AS kind FROM billpay_kv) AS k GROUP BY kind ORDER BY kind" "$db"
          echo "billpay_schedule rows: $(pg_psql 'SELECT count(*) FROM billpay_schedule' "$db")"
          echo
        fi
      done
      pg_cluster_stop ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
