#!/usr/bin/env bash
# The Python client's CI step (scripts/test.sh): installs clients/python/requirements.txt into a
# venv under target/ (the system Python is not touched), generates the stubs from proto/ and
# runs clients/python/check.py against the gateway binary (BILLPAY_BIN, default
# target/debug/billpay-gateway, built first when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/clients/python"
VENV="$ROOT/target/python-client/venv"
PY="$VENV/bin/python"

if [[ -z "${BILLPAY_BIN:-}" ]]; then
    cargo build --bin billpay-gateway
    export BILLPAY_BIN="$ROOT/target/debug/billpay-gateway"
fi

# A venv left by another Python (or half made) is made again.
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "python-client: installing python3-venv (apt)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        else
            echo "python-client: python3 -m venv failed (install python3-venv)" >&2
            exit 1
        fi
    fi
fi
"$PY" -m pip install -q --disable-pip-version-check --no-input -r "$HERE/requirements.txt"

PYTHON="$PY" "$HERE/generate.sh" "$HERE/gen"
exec "$PY" "$HERE/check.py"
