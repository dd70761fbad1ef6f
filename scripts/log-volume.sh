#!/usr/bin/env bash
# Log volume under load (issue 23, item 5; BENCHMARKS.md "Log volume"). Bounded: each scenario is
# an open loop of RATE calls/s (default 1650) for SECONDS_EACH (default 60), after billpay-load's
# baseline pass (Health/Check, same rate and length), against a release
# `serve --sandbox` (memory store, simulators in process) whose stderr goes to a file; prints
# the calls made, the log's bytes and lines, and MB per minute. Default level (RUST_LOG unset:
# info), text lines. Extra gateway environment in GATEWAY_ENV (for example
# GATEWAY_ENV="BILLPAY__TELEMETRY__ACCESS_LOG=all"); GATEWAY_BIN / LOAD_BIN to measure other
# builds (the load generator only needs to speak the contract).
#
#   scripts/log-volume.sh                       # list-billers and pay, default settings
#   SCENARIOS=pay SECONDS_EACH=30 scripts/log-volume.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-1650}
SECONDS_EACH=${SECONDS_EACH:-60}
SCENARIOS=${SCENARIOS:-list-billers pay}
if [ -z "${GATEWAY_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  cargo build --release --bin billpay-gateway --bin billpay-load
fi
gateway=${GATEWAY_BIN:-target/release/billpay-gateway}
load=${LOAD_BIN:-target/release/billpay-load}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

for scenario in $SCENARIOS; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  # shellcheck disable=SC2086 # GATEWAY_ENV is a list of NAME=value words
  env -u RUST_LOG ${GATEWAY_ENV:-} "$gateway" serve --sandbox --listen "127.0.0.1:$port" \
    2>"$work/$scenario.log" &
  pid=$!
  for _ in $(seq 100); do
    grep -q "serving billpay.v1" "$work/$scenario.log" 2>/dev/null && break
    sleep 0.1
  done
  before=$(stat -c %s "$work/$scenario.log")
  "$load" --target "http://127.0.0.1:$port" --scenario "$scenario" --rate "$RATE" \
    --concurrency 2000 --requests $((RATE * SECONDS_EACH)) --max-seconds "$SECONDS_EACH" \
    >"$work/$scenario.load.txt"
  sleep 1 # lines of calls that ended last are written
  after=$(stat -c %s "$work/$scenario.log")
  lines=$(tail -c +$((before + 1)) "$work/$scenario.log" | wc -l)
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "== $scenario at $RATE/s for ${SECONDS_EACH}s ${GATEWAY_ENV:-}"
  grep -E "^(completed|elapsed|calls/s|errors) " "$work/$scenario.load.txt"
  bytes=$((after - before))
  # billpay-load measures its baseline (grpc.health.v1.Health/Check) first, at the same rate
  # and for as long: the log covers both passes.
  elapsed=$(awk '$1 == "elapsed" { s += $2 } END { print s }' "$work/$scenario.load.txt")
  calls=$(awk '$1 == "completed" { s += $2 } END { print s }' "$work/$scenario.load.txt")
  echo "log during the run (baseline and $scenario): $bytes bytes, $lines lines, $calls calls in ${elapsed}s; $(
    awk -v b="$bytes" -v s="$elapsed" -v c="$calls" \
      'BEGIN { printf "%.2f MB/min, %.1f bytes per call", b / 1e6 / s * 60, b / c }')"
  echo "lines by level and message (target: text before the first field):"
  tail -c +$((before + 1)) "$work/$scenario.log" \
    | sed -E 's/^[^ ]+ +([A-Z]+) (rpc\{[^}]*\}: )?([^ ]+) ([^=]*) [A-Za-z_.]+=.*/\1 \3 \4/' \
    | sort | uniq -c | sort -rn | head -8 || true
  echo "first lines of the run:"
  tail -c +$((before + 1)) "$work/$scenario.log" | head -4 || true
  echo
done
