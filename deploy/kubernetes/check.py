#!/usr/bin/env python3
"""Checks the manifests in deploy/kubernetes/ (scripts/test.sh runs it).

1. Each manifest validates, strictly (no unknown field), against the Kubernetes JSON schemas
   that the PyPI package kubernetes-validate ships (offline), for each version in VERSIONS.
2. The manifests agree with each other and with the gateway's configuration:
   - the probes are native gRPC probes (grpc.health.v1) on the gRPC port: readiness asks
     billpay.v1.PaymentService, liveness and startup the overall status "";
   - terminationGracePeriodSeconds exceeds shutdown_grace_ms + 2 x drain_timeout_ms of the
     ConfigMap's config.toml (the server drain, then detached payment calls get as long again);
   - the ports of config.toml (listen, metrics_listen), the container, the Service and the
     Prometheus annotations are the same;
   - resources are set; the Service and the PodDisruptionBudget select the Deployment's pods;
   - the example Secret holds placeholders only.
3. With --binary PATH: `billpay-gateway check-config` accepts the ConfigMap's config.toml with
   the example Secret's variables.

Usage: check.py [--binary target/debug/billpay-gateway]
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
# Native gRPC probes are GA from 1.27; the newest schemas the package ships.
VERSIONS = ["1.29.0", "1.37.0"]


def fail(message):
    print(f"check.py: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", help="billpay-gateway binary for check-config")
    args = parser.parse_args()

    docs = {}
    for path in sorted(HERE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    fail(f"{path.name} ({version}): {where}: {e.message}")
                except kubernetes_validate.utils.VersionNotSupportedError:
                    fail(f"kubernetes-validate has no schemas for {version}")
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
            print(f"check.py: {path.name}: {doc['kind']} valid for {', '.join(VERSIONS)}")

    deployment = docs[("Deployment", "billpay-gateway")]
    config_map = docs[("ConfigMap", "billpay-gateway")]
    service = docs[("Service", "billpay-gateway")]
    pdb = docs[("PodDisruptionBudget", "billpay-gateway")]
    secret = docs[("Secret", "billpay-gateway-secrets")]
    config = tomllib.loads(config_map["data"]["config.toml"])
    server = config["server"]

    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports["grpc"] != port_of(server["listen"]):
        fail(f"container port grpc {ports['grpc']} is not config listen {server['listen']}")
    if ports["metrics"] != port_of(server["metrics_listen"]):
        fail(f"container port metrics is not config metrics_listen {server['metrics_listen']}")
    if pod["metadata"]["annotations"]["prometheus.io/port"] != str(ports["metrics"]):
        fail("the prometheus.io/port annotation is not the metrics port")

    expected_service = {"readinessProbe": "billpay.v1.PaymentService",
                        "livenessProbe": "", "startupProbe": ""}
    for probe, service_name in expected_service.items():
        grpc = container[probe].get("grpc")
        if grpc is None:
            fail(f"{probe} is not a gRPC probe")
        if grpc["port"] != ports["grpc"]:
            fail(f"{probe} asks port {grpc['port']}, not the gRPC port {ports['grpc']}")
        if grpc.get("service", "") != service_name:
            fail(f"{probe} asks service {grpc.get('service')!r}, not {service_name!r}")

    shutdown_ms = server["shutdown_grace_ms"] + 2 * server["drain_timeout_ms"]
    grace_ms = pod["spec"]["terminationGracePeriodSeconds"] * 1000
    if grace_ms <= shutdown_ms:
        fail(f"terminationGracePeriodSeconds ({grace_ms} ms) must exceed shutdown_grace_ms + "
             f"2 x drain_timeout_ms ({shutdown_ms} ms)")

    for kind in ("requests", "limits"):
        if "memory" not in container["resources"].get(kind, {}):
            fail(f"no memory {kind}")

    labels = pod["metadata"]["labels"]
    for name, selector in (("Service", service["spec"]["selector"]),
                           ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"]),
                           ("Deployment", deployment["spec"]["selector"]["matchLabels"])):
        if any(labels.get(k) != v for k, v in selector.items()):
            fail(f"the {name} selector {selector} does not select the pods {labels}")
    service_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    if set(service_ports.values()) - set(ports):
        fail(f"Service targets ports the container does not name: {service_ports}")

    if container["envFrom"][0]["secretRef"]["name"] != secret["metadata"]["name"]:
        fail("the Deployment does not read the Secret")
    for key, value in secret["stringData"].items():
        if "REPLACE" not in value:
            fail(f"the example Secret's {key} is not a placeholder")

    if args.binary:
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(config_map["data"]["config.toml"])
            f.flush()
            env = {k: v for k, v in os.environ.items()
                   if k not in ("REDIS_URL", "REDIS_CLUSTER_URLS", "DATABASE_URL")}
            env.update(secret["stringData"])
            result = subprocess.run([args.binary, "check-config", "--config", f.name],
                                    env=env, capture_output=True, text=True)
            if result.returncode != 0:
                fail(f"check-config refused the ConfigMap's config.toml: {result.stderr}")
            print(f"check.py: {result.stdout.strip()}")
    print("check.py: ok")


if __name__ == "__main__":
    main()
