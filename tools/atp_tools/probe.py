"""gRPC health probe CLI for container health checks: exit 0 iff the server reports SERVING."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1


def _channel(target: str, ca: str, cert: str, key: str, server_name: str) -> grpc.Channel:
    if not (ca or cert or key):
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    # Probes dial 127.0.0.1, which a service certificate rarely names: let the caller say which name to verify.
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def check(
    target: str,
    service: str = "",
    timeout_s: float = 2.0,
    *,
    ca: str = "",
    cert: str = "",
    key: str = "",
    server_name: str = "",
) -> tuple[bool, str]:
    """Ask `target`'s grpc.health.v1 service about `service` ("" is the whole server): (serving, detail)."""
    with _channel(target, ca, cert, key, server_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            name = code.name if code is not None else "UNKNOWN"
            return False, f"{name}: {exc.details() if isinstance(exc, grpc.Call) else exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atp_tools.probe",
        description="Exit 0 when the gRPC server at HOST:PORT reports SERVING, else 1.",
    )
    parser.add_argument("target", metavar="HOST:PORT")
    parser.add_argument("--service", default="", help='health service name; "" (default) is the server')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    parser.add_argument("--ca", default="", help="CA bundle (PEM) to verify the server; enables TLS")
    parser.add_argument("--cert", default="", help="client certificate (PEM) for mTLS")
    parser.add_argument("--key", default="", help="client private key (PEM) for mTLS")
    parser.add_argument("--server-name", default="", help="name to verify in the server certificate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe; print the status on one line and return the exit code."""
    args = _parser().parse_args(argv)
    if args.timeout <= 0:
        print("--timeout must be positive", file=sys.stderr)
        return 2
    try:
        serving, detail = check(
            args.target,
            args.service,
            args.timeout,
            ca=args.ca,
            cert=args.cert,
            key=args.key,
            server_name=args.server_name,
        )
    except OSError as exc:
        print(f"cannot read TLS material: {exc}", file=sys.stderr)
        return EXIT_NOT_SERVING
    print(f"{args.target} {args.service or '<server>'}: {detail}", file=sys.stdout if serving else sys.stderr)
    return EXIT_SERVING if serving else EXIT_NOT_SERVING


if __name__ == "__main__":
    sys.exit(main())
