#!/usr/bin/env bash
# Validates deploy/kubernetes/ with check.py (Kubernetes schemas from the PyPI package
# kubernetes-validate, offline; cross-checks against the gateway's config) in a venv under
# target/ (the system Python is not touched). BILLPAY_BIN: the gateway binary for
# `check-config` (built when unset). Needs Python >= 3.11 (tomllib).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/target/k8s-check/venv"
PY="$VENV/bin/python"

if [[ -z "${BILLPAY_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --bin billpay-gateway)
    BILLPAY_BIN="$ROOT/target/debug/billpay-gateway"
fi

# A venv left by another Python (or half made) is made again.
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "k8s-check: installing python3-venv (apt)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        else
            echo "k8s-check: python3 -m venv failed (install python3-venv)" >&2
            exit 1
        fi
    fi
fi
"$PY" -m pip install -q --disable-pip-version-check --no-input -r "$HERE/requirements.txt"
exec "$PY" "$HERE/check.py" --binary "$BILLPAY_BIN"
