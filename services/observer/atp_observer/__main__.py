"""`python -m atp_observer`: run the observer until SIGTERM, then drain."""

from __future__ import annotations

from atp_common.logs import configure_logging
from atp_common.server import run_service
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings


def main() -> None:
    """Build settings from the environment, set up logging and tracing, and serve."""
    settings = ObserverSettings()
    configure_logging("observer", settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("observer", settings.otlp_endpoint)
    run_service(settings, build_server)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
