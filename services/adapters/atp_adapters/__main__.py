"""`python -m atp_adapters`: run the adapters service until SIGTERM."""

from __future__ import annotations

from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.logs import configure_logging
from atp_common.server import run_service


def main() -> None:
    """Build settings from the environment and serve."""
    settings = AdaptersSettings()
    configure_logging("adapters", settings.log_level, settings.log_json)
    if settings.tracing or settings.otlp_endpoint:
        from atp_common.telemetry import setup_tracing

        setup_tracing("atp-adapters", settings.otlp_endpoint)
    run_service(settings, build_server)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
