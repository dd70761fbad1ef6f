#!/usr/bin/env bash
# Start-up time and RSS of `billpay-gateway serve --sandbox`: time from exec until
# grpc.health.v1.Health/Check answers SERVING (polled with grpcurl, so an upper bound), VmRSS
# idle, and VmRSS after a bounded billpay-load run. Loopback only; stops what it started by pid.
set -u
# exec -> SERVING of `billpay-gateway serve --sandbox` (debug build), RSS idle and after load.
B=${BILLPAY_GATEWAY:-target/debug/billpay-gateway}
L=${BILLPAY_LOAD:-target/debug/billpay-load}
for i in 1 2; do
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  t0=$(date +%s%N)
  RUST_LOG=warn $B serve --sandbox --listen 127.0.0.1:$PORT >${OUT:-/tmp}/serve-$i.log 2>&1 &
  pid=$!
  until grpcurl -plaintext -max-time 1 127.0.0.1:$PORT grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING; do sleep 0.005; done
  t1=$(date +%s%N)
  echo "run $i: exec -> SERVING $(( (t1-t0)/1000000 )) ms (grpcurl polling, each poll ~ a process start), load $(cut -d' ' -f1-3 /proc/loadavg)"
  sleep 2
  echo "run $i: idle      $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \n' ' ')"
  timeout 100 $L --target http://127.0.0.1:$PORT --scenario list-billers,pay --concurrency 32 --requests 5000 --max-seconds 20 > ${OUT:-/tmp}/serve-load-$i.txt 2>&1
  echo "run $i: after list-billers+pay load ($(grep -E '^(pay|list-billers) ' ${OUT:-/tmp}/serve-load-$i.txt | awk '{print $1"="$2"/s"}' | tr '\n' ' ')) $(grep -E 'VmRSS|VmHWM' /proc/$pid/status | tr -s ' \n' ' ')"
  kill $pid; wait $pid 2>/dev/null
done
