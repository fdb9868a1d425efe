"""`python -m atp_router`: run the router until SIGTERM, then drain."""

from __future__ import annotations

from atp_common.logs import configure_logging
from atp_common.server import run_service
from atp_router.server import build_server
from atp_router.settings import RouterSettings


def main() -> None:
    """Build settings from the environment, set up logging and tracing, and serve."""
    settings = RouterSettings()
    configure_logging("router", settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("router", settings.otlp_endpoint)
    run_service(settings, build_server)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
