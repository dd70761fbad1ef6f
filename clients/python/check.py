"""CI check of the Python client (billpay_client.py) against real gateways, as another team's
service would call them: stubs generated from proto/, grpcio, and the gateway binary.

Starts, on free loopback ports: `billpay-gateway simulate` (the provider simulators, whose
`GET /_sandbox/calls` counts what reached each provider); a plaintext `serve --sandbox` using
them; and an mTLS `serve --sandbox` (`[server.tls]` and `[auth] mode = "mtls"` with the test
certificates of tests/certs). Then checks paying, replaying, refused calls' ErrorInfo and
BadRequest, and mutual TLS. Prints one line per check and exits 1 if any failed.

    BILLPAY_BIN=target/debug/billpay-gateway python clients/python/check.py
(clients/python/check.sh installs the packages, generates the stubs and runs this.)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import billpay_client as client
from billpay.v1 import common_pb2, payment_pb2, payment_pb2_grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("BILLPAY_BIN", os.path.join(ROOT, "target", "debug", "billpay-gateway"))
CERTS = os.path.join(ROOT, "tests", "certs")
SUCCEEDED = payment_pb2.PAYMENT_STATE_SUCCEEDED

# The mTLS gateway's only caller: the SPIFFE id in tests/certs/client.pem, Interswitch only.
MTLS_CONFIG = """\
[server.tls]
cert_file = "{certs}/server.pem"
key_file = "{certs}/server-key.pem"
client_ca_file = "{certs}/ca.pem"

[auth]
mode = "mtls"
payment_id_key = "python-check-payment-id-key"

[[auth.callers]]
name = "checkout"
identity = "spiffe://example.org/ns/shop/sa/checkout"
providers = ["interswitch"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process with its output in a log file; stopped by pid."""

    def __init__(self, name, args, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        # The in-memory store and the command line's configuration only: no REDIS_URL or
        # BILLPAY__ override from the caller's environment. No shutdown grace: stop at once.
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("BILLPAY__")}
        env["BILLPAY__SERVER__SHUTDOWN_GRACE_MS"] = "0"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines=30):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def wait_until(what, process, ready, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited before {what}:\n{process.tail()}")
        try:
            if ready():
                return
        except (OSError, grpc.RpcError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{process.name}: not {what} within {timeout_s} s:\n{process.tail()}")


def serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def refused(call):
    """The grpc.RpcError `call()` raised; fails if it succeeded."""
    try:
        call()
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded; expected it to be refused")


def expect_error(error, code, reason):
    """Asserts the status code and ErrorInfo of a refused call; its (ErrorInfo, BadRequest)."""
    info, bad_request = client.error_details(error)
    assert error.code() == code, f"code {error.code()}, expected {code}: {error.details()}"
    assert info is not None, f"no ErrorInfo in {error.code()}: {error.details()}"
    assert info.domain == "billpay.gateway", info
    assert info.reason == reason, f"reason {info.reason}, expected {reason}"
    return info, bad_request


class Checks:
    def __init__(self, sim_url, plain_addr, mtls_addr):
        self.sim_url = sim_url
        self.plain = client.connect(plain_addr)
        self.mtls_addr = mtls_addr

    def pay_calls(self):
        """How many payments reached the Interswitch simulator."""
        with urllib.request.urlopen(f"{self.sim_url}/_sandbox/calls", timeout=5) as answer:
            return json.load(answer).get("interswitch", {}).get("pay", 0)

    def mtls(self, cert=None):
        """A TLS channel to the mTLS gateway with tests/certs/<cert>.pem, or no client certificate."""
        if cert is None:
            return client.connect(self.mtls_addr, ca=f"{CERTS}/ca.pem")
        return client.connect(
            self.mtls_addr, ca=f"{CERTS}/ca.pem", cert=f"{CERTS}/{cert}.pem", key=f"{CERTS}/{cert}-key.pem"
        )

    def pay_then_replay_pays_once(self):
        before = self.pay_calls()
        request = client.payment_request(f"py-{uuid.uuid4().hex}")
        payment = client.pay(self.plain, request)
        assert payment.state == SUCCEEDED, payment
        assert payment.payment_id.startswith("pay_"), payment.payment_id
        assert payment.request_id == request.request_id
        assert payment.amount.minor_units == 150000 and payment.amount.currency_code == "NGN"
        assert payment.fulfilment_token, "product 90101 returns a token"
        assert self.pay_calls() == before + 1, "one payment reached the provider"

        replay = client.pay(self.plain, request)
        assert replay.payment_id == payment.payment_id, (replay.payment_id, payment.payment_id)
        assert replay.state == SUCCEEDED and replay.fulfilment_token == payment.fulfilment_token
        stub = payment_pb2_grpc.PaymentServiceStub(self.plain)
        got = stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment.payment_id), timeout=10)
        assert got.payment.payment_id == payment.payment_id and got.payment.state == SUCCEEDED
        assert self.pay_calls() == before + 1, (
            f"the replay reached the provider: {self.pay_calls() - before} calls"
        )

        # The same request_id for another request is refused, and nothing is sent.
        other = client.payment_request(request.request_id, minor_units=160000)
        error = refused(lambda: client.pay(self.plain, other))
        expect_error(error, grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
        assert self.pay_calls() == before + 1

    def invalid_request_lists_every_bad_field(self):
        before = self.pay_calls()
        request = client.payment_request("", minor_units=0)
        request.amount.currency_code = "ngn"
        error = refused(lambda: client.pay(self.plain, request))
        _, bad_request = expect_error(error, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
        assert bad_request is not None, "no BadRequest"
        fields = sorted(v.field for v in bad_request.field_violations)
        assert fields == ["amount.currency_code", "amount.minor_units", "request_id"], fields
        assert all(v.description for v in bad_request.field_violations), bad_request
        assert self.pay_calls() == before, "an invalid request reached the provider"

    def amount_rule_violation_names_the_amount(self):
        before = self.pay_calls()
        # Sandbox customer 0000000001 must pay at least 100000 kobo.
        request = client.payment_request(f"py-{uuid.uuid4().hex}", "0000000001", 50000)
        error = refused(lambda: client.pay(self.plain, request))
        _, bad_request = expect_error(error, grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_RULE_VIOLATED")
        assert [v.field for v in bad_request.field_violations] == ["amount.minor_units"], bad_request
        assert error.details().startswith("amount.minor_units: must be at least"), error.details()
        assert "100000" in bad_request.field_violations[0].description, bad_request
        assert self.pay_calls() == before, "a refused amount reached the provider"

    def mtls_client_certificate_gets_through(self):
        with self.mtls("client") as channel:
            assert [b.biller_id for b in client.list_billers(channel)][:2] == ["901", "902"]
            payment = client.pay(channel, client.payment_request(f"py-{uuid.uuid4().hex}"))
            assert payment.state == SUCCEEDED, payment
            # The caller's permissions apply, and ErrorInfo's metadata says who and what.
            error = refused(lambda: client.list_billers(channel, common_pb2.PROVIDER_ONEPIPE))
            info, _ = expect_error(error, grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
            assert info.metadata["caller"] == "checkout", dict(info.metadata)
            assert info.metadata["provider"] == "PROVIDER_ONEPIPE", dict(info.metadata)
            assert info.metadata["method"] == "billpay.v1.CatalogService/ListBillers", dict(info.metadata)

    def example_runs_over_mtls(self):
        """billpay_client.py as a command, as a team would first try it."""
        certs = [
            "--ca",
            f"{CERTS}/ca.pem",
            "--cert",
            f"{CERTS}/client.pem",
            "--key",
            f"{CERTS}/client-key.pem",
        ]
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "billpay_client.py")
        run = subprocess.run(
            [sys.executable, example, "--address", self.mtls_addr, *certs],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        for line in ["PAYMENT_STATE_SUCCEEDED", "(same payment)", "AMOUNT_RULE_VIOLATED", "amount.minor_units: "]:
            assert line in run.stdout, f"{line!r} not in:\n{run.stdout}"

    def mtls_without_a_certificate_from_the_ca_is_refused(self):
        # gRPC core logs each refused handshake on stderr; say that it is expected.
        print(
            "     (expected on stderr: TLSV1_ALERT_CERTIFICATE_REQUIRED, TLSV1_ALERT_UNKNOWN_CA)", flush=True
        )
        for cert in [None, "stranger"]:  # no client certificate; one from another CA
            with self.mtls(cert) as channel:
                error = refused(lambda: client.list_billers(channel))
                # Refused at the TLS handshake: no gRPC status from the gateway at all.
                assert error.code() == grpc.StatusCode.UNAVAILABLE, (cert, error.code(), error.details())
                assert client.error_details(error) == (None, None), (cert, error.details())
        with self.mtls("client") as channel:
            assert serving(channel), "the gateway still serves certified clients"


CHECKS = [
    "pay_then_replay_pays_once",
    "invalid_request_lists_every_bad_field",
    "amount_rule_violation_names_the_amount",
    "mtls_client_certificate_gets_through",
    "example_runs_over_mtls",
    "mtls_without_a_certificate_from_the_ca_is_refused",
]


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    started = time.monotonic()
    processes = []
    with tempfile.TemporaryDirectory(prefix="billpay-pycheck-") as workdir:
        try:
            sim_port, plain_port, mtls_port = free_port(), free_port(), free_port()
            sim_url = f"http://127.0.0.1:{sim_port}"
            config = os.path.join(workdir, "mtls.toml")
            with open(config, "w") as f:
                f.write(MTLS_CONFIG.format(certs=CERTS))

            sim = Process("simulate", [BIN, "simulate", "--listen", f"127.0.0.1:{sim_port}"], workdir)
            plain = Process(
                "serve-plaintext",
                [BIN, "serve", "--sandbox", "--sandbox-url", sim_url, "--listen", f"127.0.0.1:{plain_port}"],
                workdir,
            )
            mtls = Process(
                "serve-mtls",
                [BIN, "serve", "--sandbox", "--config", config, "--listen", f"127.0.0.1:{mtls_port}"],
                workdir,
            )
            processes = [sim, plain, mtls]

            checks = Checks(sim_url, f"127.0.0.1:{plain_port}", f"127.0.0.1:{mtls_port}")
            wait_until("answering", sim, lambda: checks.pay_calls() >= 0)
            wait_until("SERVING", plain, lambda: serving(checks.plain))
            with checks.mtls("client") as channel:
                wait_until("SERVING over mTLS", mtls, lambda: serving(channel))
            print(f"python-client: gateways up in {time.monotonic() - started:.1f} s ({BIN})")

            failed = 0
            for name in CHECKS:
                try:
                    t = time.monotonic()
                    getattr(checks, name)()
                    print(f"ok   {name} ({time.monotonic() - t:.1f} s)")
                except Exception:  # noqa: BLE001 - report every failed check, then fail
                    failed += 1
                    print(f"FAIL {name}\n{traceback.format_exc()}")
            checks.plain.close()
            if failed:
                for p in processes:
                    print(f"--- {p.name} log (last lines) ---\n{p.tail()}")
        finally:
            for p in processes:
                p.stop()
    print(
        f"python-client: {len(CHECKS) - failed} passed, {failed} failed in {time.monotonic() - started:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
