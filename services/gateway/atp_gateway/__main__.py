"""`python -m atp_gateway`: settings, logging and tracing, then serve until SIGTERM and drain."""

from __future__ import annotations

import uvloop

from atp_common.logs import configure_logging
from atp_gateway.serve import serve
from atp_gateway.settings import GatewaySettings


def main() -> None:
    """Entry point."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("gateway", settings.otlp_endpoint)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
