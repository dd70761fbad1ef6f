#!/usr/bin/env bash
# Runs the cross-replica token scenario and prints its counts: 1,000 concurrent cold
# GetBalance calls (InterIntel biller-float) over two `billpay-gateway serve` processes sharing
# one redis-server and one `billpay-gateway simulate`; the simulator must see exactly one token
# request. Needs redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test interintel_token_race -- --nocapture 2>&1 | grep -E "cold calls|answered|token requests|simulator calls|test result"
