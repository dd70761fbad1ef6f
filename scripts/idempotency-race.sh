#!/usr/bin/env bash
# Runs the cross-replica idempotency scenario and prints its counts: 500 concurrent
# CreatePayment calls with one request_id over two `billpay-gateway serve` processes sharing one
# redis-server and one `billpay-gateway simulate`. Needs redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test idempotency_race -- --nocapture 2>&1 | grep -E "callers|distinct|ABORTED|simulator calls|test result"
