#!/usr/bin/env bash
# The Node.js client's CI step (scripts/test.sh): installs the packages of
# clients/node/package-lock.json exactly (`npm ci`, into clients/node/node_modules, git-ignored;
# no install scripts run; skipped when node_modules was installed from this very lockfile) and
# runs clients/node/check.mjs against the gateway binary
# (BILLPAY_BIN, default target/debug/billpay-gateway, built first when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/clients/node"

for tool in node npm; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "node-client: $tool not found (install Node.js 18 or newer)" >&2
        exit 1
    }
done

if [[ -z "${BILLPAY_BIN:-}" ]]; then
    cargo build --bin billpay-gateway
    export BILLPAY_BIN="$ROOT/target/debug/billpay-gateway"
fi

# node_modules/.lockfile-sha256 records the lockfile it was installed from.
STAMP="$HERE/node_modules/.lockfile-sha256"
LOCK_SHA="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK_SHA" ]]; then
    (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null)
    echo "$LOCK_SHA" >"$STAMP"
fi
exec node "$HERE/check.mjs" </dev/null
