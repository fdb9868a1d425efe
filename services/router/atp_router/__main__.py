"""`python -m atp_router`: run the router until SIGTERM, then drain."""

from __future__ import annotations

from atp_common.server import run_main
from atp_router.server import build_server
from atp_router.settings import RouterSettings


def main() -> None:
    """Build settings from the environment and serve."""
    run_main("router", RouterSettings(), build_server)


if __name__ == "__main__":
    main()
