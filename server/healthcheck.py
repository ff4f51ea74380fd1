"""``python -m server.healthcheck``: exit 0 when the gateway's gRPC health says SERVING.

Used by the Dockerfile's HEALTHCHECK, so it speaks the standard gRPC health protocol
instead of relying on an HTTP port. With TLS on the listener (``server.tls``) give the CA
(and for mutual TLS a client certificate) by flag or by environment, since a HEALTHCHECK
command is fixed in the image: LLMGW_HEALTHCHECK_CACERT, _CERT, _KEY, _SERVER_NAME.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="service name; empty = the whole server")
    parser.add_argument("--timeout", type=float, default=3.0)
    env = os.environ.get
    parser.add_argument("--cacert", default=env("LLMGW_HEALTHCHECK_CACERT"),
                        help="PEM CA of the listener's certificate: connect over TLS")
    parser.add_argument("--cert", default=env("LLMGW_HEALTHCHECK_CERT"),
                        help="client certificate (mutual TLS)")
    parser.add_argument("--key", default=env("LLMGW_HEALTHCHECK_KEY"),
                        help="client certificate's key")
    parser.add_argument("--server-name", default=env("LLMGW_HEALTHCHECK_SERVER_NAME"),
                        help="the name the certificate is for, when not the target host")
    ns = parser.parse_args()
    with _channel(ns) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout)
        except grpc.RpcError as error:
            print(f"unhealthy: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


def _channel(ns: argparse.Namespace) -> grpc.Channel:
    if not ns.cacert:
        return grpc.insecure_channel(ns.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ns.cacert).read_bytes(),
        private_key=Path(ns.key).read_bytes() if ns.key else None,
        certificate_chain=Path(ns.cert).read_bytes() if ns.cert else None)
    options = [("grpc.ssl_target_name_override", ns.server_name)] if ns.server_name else []
    return grpc.secure_channel(ns.target, credentials, options=options)


if __name__ == "__main__":
    sys.exit(main())
