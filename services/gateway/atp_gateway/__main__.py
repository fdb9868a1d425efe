"""`python -m atp_gateway`: settings, logging and tracing, then serve until SIGTERM and drain."""

from __future__ import annotations

import uvloop

from atp_common.lifecycle import exit_when_unable_to_start
from atp_common.logs import configure_logging
from atp_gateway.settings import GatewaySettings


def main() -> None:
    """Entry point: a service that cannot start says why in one line and exits 1."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    with exit_when_unable_to_start("gateway"):
        _serve(settings)


def _serve(settings: GatewaySettings) -> None:
    if settings.workers > 1:
        # The supervisor never imports the app: only its workers serve requests.
        from atp_gateway.supervisor import supervise

        uvloop.run(supervise(settings))
        return
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("gateway", settings.otlp_endpoint)
    from atp_gateway.serve import serve

    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
