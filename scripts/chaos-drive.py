#!/usr/bin/env python3
# The chaos client driver of scripts/chaos.sh and scripts/pg-chaos.sh: pays, retries, then
# compares the gateway's answers with the provider's advice log.
#
#   chaos-drive.py pay|refused FIRST COUNT GW1,GW2 SIMULATOR_URL IDS_FILE   (CHAOS_CLIENT set)
#   chaos-drive.py check 0 0 GW1,GW2 SIMULATOR_URL IDS_FILE
#
# pay: requests FIRST..FIRST+COUNT (amount 1000 + n), each sent twice at once (one per replica)
# and retried on the same request_id; check: every request once more, then prints
# "RESULT paid_twice=N forgotten=N reused_references=N".
import json, os, random, subprocess, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

mode, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gws = sys.argv[4].split(",")
sim = sys.argv[5]
ids_file = sys.argv[6]

def uuid7():
    # A UUIDv7 request_id: its creation time is in its first 48 bits.
    ms = int(time.time() * 1000)
    b = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

CLIENT = os.environ["CHAOS_CLIENT"]

def call(addr, rid, amount):
    r = subprocess.run([CLIENT, addr, rid, str(amount)], capture_output=True, text=True)
    try:
        answer = json.loads(r.stdout)
    except ValueError:
        return ("err", {"code": "Unavailable", "reason": "", "message": r.stderr})
    return ("ok" if answer["ok"] else "err", answer)

retries = [0]

def pay(rid, amount, until):
    """Sends until an answer (any state: a PENDING payment is followed by reconciliation, not
    by a new request) or a posture refusal; retries UNAVAILABLE (store down, data lost) and
    ABORTED (in flight) on the same request_id, alternating replicas."""
    i = random.randrange(2)
    last = None
    while time.time() < until:
        kind, got = call(gws[i % 2], rid, amount)
        i += 1
        last = (kind, got)
        if kind == "ok" or got["reason"] == "STORE_POSTURE_REFUSED":
            return last
        if got["code"] not in ("Unavailable", "Aborted"):
            return last
        retries[0] += 1
        time.sleep(0.2)
    return last

if mode in ("pay", "refused"):
    # first..first+count: each request sent twice at once (one per replica), then retried.
    ids = [(uuid7(), 1000 + n) for n in range(first, first + count)]
    with open(ids_file, "a") as f:
        for rid, amount in ids:
            f.write(f"{rid} {amount}\n")
    until = time.time() + 25
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(pay, rid, amount, until) for rid, amount in ids for _ in range(2)]
        answers = [f.result() for f in futures]
    refused = sum(1 for a in answers if a and a[0] == "err" and a[1]["reason"] == "STORE_POSTURE_REFUSED")
    errors = sum(1 for a in answers if not a or a[0] == "err") - refused
    print(f"  sent {len(ids)} requests x2: refused (store posture) {refused}, other errors "
          f"{errors} of {len(answers)}, retried {retries[0]} times (UNAVAILABLE, ABORTED)")
    kinds = {}
    for a in answers:
        if a and a[0] == "err" and a[1]["reason"] != "STORE_POSTURE_REFUSED":
            k = f'{a[1]["code"]} {a[1]["reason"]}'.strip()
            kinds[k] = kinds.get(k, 0) + 1
    if kinds:
        print("  other errors by code: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    sys.exit(0)

# mode == "check": every request once more (a replay, or paid now if the store forgot it),
# then the provider's advice log against the gateway's answers.
ids = [line.split() for line in open(ids_file)]
until = time.time() + 25
with ThreadPoolExecutor(8) as pool:
    finals = list(pool.map(lambda x: pay(x[0], int(x[1]), until), ids))
advices = json.load(urllib.request.urlopen(f"{sim}/interswitch/_sandbox/advices"))["advices"]
by_amount = {}
requests_of_reference = {}
for a in advices:
    if a["code"] == "90000":
        by_amount.setdefault(int(a["amount"]), set()).add(a["requestReference"])
    requests_of_reference.setdefault(a["requestReference"], set()).add(int(a["amount"]))
ours = {int(amount) for _, amount in ids}
paid_twice = sum(1 for amt in ours if len(by_amount.get(amt, ())) > 1)
forgotten = 0
unsettled = 0
for (rid, amount), final in zip(ids, finals):
    refs = by_amount.get(int(amount), set())
    if not refs:
        continue
    if not final or final[0] != "ok":
        forgotten += 1
        continue
    p = final[1]
    if p.get("provider_reference") not in refs:
        forgotten += 1
    elif p.get("state") != "PAYMENT_STATE_SUCCEEDED":
        unsettled += 1
reused = sum(1 for ref, amounts in requests_of_reference.items() if len(amounts & ours) > 1)
paid = sum(1 for amt in ours if by_amount.get(amt))
refused = sum(1 for f in finals if f and f[0] == "err" and f[1]["reason"] == "STORE_POSTURE_REFUSED")
print(f"  requests {len(ids)}, paid at the provider {paid}, refused at the end {refused}, "
      f"not final yet {unsettled}")
finals_by_answer = {}
for f in finals:
    k = "no answer" if not f else (f[1].get("state", "?") if f[0] == "ok" else f'{f[1]["code"]} {f[1]["reason"]}'.strip())
    finals_by_answer[k] = finals_by_answer.get(k, 0) + 1
print("  final answers: " + ", ".join(f"{k} {n}" for k, n in sorted(finals_by_answer.items())))
print(f"  RESULT paid_twice={paid_twice} forgotten={forgotten} reused_references={reused}")
