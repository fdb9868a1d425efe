"""`python -m atp_adapters`: run the adapters service until SIGTERM, then drain."""

from __future__ import annotations

from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.server import run_main


def main() -> None:
    """Build settings from the environment and serve."""
    run_main("adapters", AdaptersSettings(), build_server)


if __name__ == "__main__":
    main()
