"""Calling billpay-gateway from Python: a short example to copy.

It pays, replays the payment with the same `request_id` (the idempotency key: the gateway
answers the first payment again instead of paying twice), and reads the `ErrorInfo` and
`BadRequest` details of a refused call. With `--ca` it connects over TLS, and with `--cert` and
`--key` it presents a client certificate (mutual TLS, `[auth] mode = "mtls"`).

The stubs are generated from `proto/`, never at import time:

    clients/python/generate.sh            # into clients/python/gen (git-ignored)

and found on `sys.path` through `BILLPAY_STUBS` (default: the `gen` folder next to this file).
Packages: clients/python/requirements.txt. Run against `billpay-gateway serve --sandbox`:

    python clients/python/billpay_client.py --address 127.0.0.1:50051
"""

import argparse
import os
import sys
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

sys.path.insert(0, os.environ.get("BILLPAY_STUBS", os.path.join(os.path.dirname(__file__), "gen")))

from billpay.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2  # noqa: E402
from billpay.v1 import payment_pb2, payment_pb2_grpc  # noqa: E402

# Every call carries a deadline: CreatePayment answers PENDING shortly before it rather than
# leave the caller waiting on a slow provider (follow up with GetPayment).
TIMEOUT_S = 10


def connect(address, ca=None, cert=None, key=None):
    """A channel to the gateway: plaintext without `ca`; TLS with it; mutual TLS with a client
    certificate and key as well (PEM file paths)."""
    if ca is None:
        return grpc.insecure_channel(address)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None,
    )
    return grpc.secure_channel(address, credentials)


def payment_request(request_id, customer_id="0000000000", minor_units=150000):
    """An Interswitch payment of `minor_units` kobo to the sandbox's biller 901, product 90101
    (prepaid electricity token). Sandbox customer 0000000000 accepts any amount."""
    return payment_pb2.CreatePaymentRequest(
        request_id=request_id,
        provider=common_pb2.PROVIDER_INTERSWITCH,
        biller_id="901",
        product_id="90101",
        customer_id=customer_id,
        amount=common_pb2.Money(currency_code="NGN", minor_units=minor_units),
    )


def pay(channel, request):
    """CreatePayment; the payment. A declined payment is not an error (state FAILED); a
    refused call raises grpc.RpcError: retry it only with the same request_id."""
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    return stub.CreatePayment(request, timeout=TIMEOUT_S).payment


def list_billers(channel, provider=common_pb2.PROVIDER_INTERSWITCH):
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    return stub.ListBillers(catalog_pb2.ListBillersRequest(provider=provider), timeout=TIMEOUT_S).billers


def error_details(error):
    """The ErrorInfo and BadRequest of a refused call (`grpc.RpcError`), each None if absent.
    Every non-OK status of the gateway has an ErrorInfo: domain "billpay.gateway", a `reason`
    (ErrorReason in proto/billpay/v1/common.proto without its prefix) and `metadata`."""
    status = rpc_status.from_call(error)  # google.rpc.Status from grpc-status-details-bin
    info, bad_request = None, None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return info, bad_request


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--ca", help="CA of the gateway's certificate (PEM); TLS when given")
    parser.add_argument("--cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key", help="client certificate's private key (PEM)")
    args = parser.parse_args()

    with connect(args.address, args.ca, args.cert, args.key) as channel:
        # A new request_id per payment; the same one only to retry that payment.
        request = payment_request(f"py-{uuid.uuid4().hex}")
        payment = pay(channel, request)
        print("paid:", payment.payment_id, payment_pb2.PaymentState.Name(payment.state))

        replay = pay(channel, request)
        print(
            "replayed:",
            replay.payment_id,
            "(same payment)" if replay.payment_id == payment.payment_id else "(DIFFERENT)",
        )

        # Customer 0000000001 must pay at least NGN 1,000.00: refused before anything is paid.
        try:
            pay(channel, payment_request(f"py-{uuid.uuid4().hex}", "0000000001", 50000))
        except grpc.RpcError as e:
            info, bad_request = error_details(e)
            print("refused:", e.code().name, info.reason, dict(info.metadata))
            for violation in bad_request.field_violations if bad_request else []:
                print(f"  {violation.field}: {violation.description}")


if __name__ == "__main__":
    main()
