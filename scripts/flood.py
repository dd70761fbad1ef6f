#!/usr/bin/env python3
"""Half-open stream flood against a running gateway, and its memory while it lasts.

Opens CONNS raw HTTP/2 connections to ADDR and sends STREAMS HEADERS frames in all (a
CreatePayment call without credentials, never ending its request stream), spread over them,
while draining what the server answers. Meanwhile it runs `grpc.health.v1.Health/Check` through
grpcurl and samples the gateway's RSS from /proc/PID/status. Prints one JSON line: streams sent,
health checks answered and failed, peak and final RSS (KiB).

usage: flood.py ADDR PID [STREAMS=50000] [CONNS=4]
       flood.py --silent ADDR PID [CONNS=3000] [WAIT_S=15]
The second form opens CONNS connections that send nothing (half of them 10 bytes of the
preface) and counts how many the server closed within WAIT_S seconds, with health checked once
they are all open.
"""

import json
import socket
import subprocess
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return bytes([n >> 16, (n >> 8) & 0xFF, n & 0xFF, kind, flags]) + stream.to_bytes(4, "big") + payload


def literal(name, value):
    """HPACK literal header field without indexing, new name."""
    name, value = name.encode(), value.encode()
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def headers_block(authority):
    return (
        b"\x83"  # :method POST
        + b"\x86"  # :scheme http
        + b"\x04" + bytes([len("/billpay.v1.PaymentService/CreatePayment")])
        + b"/billpay.v1.PaymentService/CreatePayment"  # :path
        + b"\x01" + bytes([len(authority)]) + authority.encode()  # :authority
        + literal("content-type", "application/grpc")
        + literal("te", "trailers")
    )


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def drain(sock, stop):
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 16):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def silent():
    addr, pid = sys.argv[2], int(sys.argv[3])
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 3000
    wait = float(sys.argv[5]) if len(sys.argv) > 5 else 15.0
    host, port = addr.rsplit(":", 1)
    socks = []
    for i in range(conns):
        s = socket.create_connection((host, int(port)))
        if i % 2:
            s.sendall(PREFACE[:10])
        socks.append(s)
    started = time.time()
    r = subprocess.run(
        ["grpcurl", "-plaintext", "-max-time", "5", addr, "grpc.health.v1.Health/Check"],
        capture_output=True,
    )
    health_ok = r.returncode == 0
    peak = rss_kib(pid)
    closed = 0
    deadline = started + wait
    for s in socks:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            if s.recv(16) == b"":
                closed += 1
        except ConnectionResetError:
            closed += 1
        except (socket.timeout, OSError):
            pass
        peak = max(peak, rss_kib(pid))
    print(json.dumps({"connections": conns, "closed_within_s": wait, "closed": closed,
                      "seconds": round(time.time() - started, 2), "health_ok": health_ok,
                      "peak_rss_kib": peak}))


def main():
    if sys.argv[1] == "--silent":
        return silent()
    addr, pid = sys.argv[1], int(sys.argv[2])
    streams = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    host, port = addr.rsplit(":", 1)
    stop = threading.Event()
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host, int(port)))
        s.sendall(PREFACE + frame(4, 0, 0))
        socks.append(s)
        threading.Thread(target=drain, args=(s, stop), daemon=True).start()

    stats = {"health_ok": 0, "health_failed": 0, "peak_rss_kib": rss_kib(pid), "start_rss_kib": rss_kib(pid)}

    def health():
        while not stop.is_set():
            r = subprocess.run(
                ["grpcurl", "-plaintext", "-max-time", "5", addr, "grpc.health.v1.Health/Check"],
                capture_output=True,
            )
            stats["health_ok" if r.returncode == 0 else "health_failed"] += 1
            stats["peak_rss_kib"] = max(stats["peak_rss_kib"], rss_kib(pid))
            time.sleep(0.2)

    checker = threading.Thread(target=health, daemon=True)
    checker.start()
    block = headers_block(addr)
    sent = 0
    stream_ids = [1] * conns
    started = time.time()
    while sent < streams:
        for i, s in enumerate(socks):
            batch = b"".join(
                frame(1, 0x4, stream_ids[i] + 2 * k, block) for k in range(100)
            )  # END_HEADERS, no END_STREAM: half-open
            stream_ids[i] += 200
            try:
                s.sendall(batch)
            except OSError:
                stats.setdefault("connections_closed_by_server", 0)
                stats["connections_closed_by_server"] += 1
                socks[i] = socket.create_connection((host, int(port)))
                socks[i].sendall(PREFACE + frame(4, 0, 0))
                stream_ids[i] = 1
                threading.Thread(target=drain, args=(socks[i], stop), daemon=True).start()
                continue
            sent += 100
            stats["peak_rss_kib"] = max(stats["peak_rss_kib"], rss_kib(pid))
    stats["send_seconds"] = round(time.time() - started, 2)
    time.sleep(3)  # streams held open
    stats["peak_rss_kib"] = max(stats["peak_rss_kib"], rss_kib(pid))
    stats["held_rss_kib"] = rss_kib(pid)
    stop.set()
    checker.join()
    for s in socks:
        s.close()
    time.sleep(2)
    stats["after_close_rss_kib"] = rss_kib(pid)
    stats["streams_sent"] = sent
    stats["connections"] = conns
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
