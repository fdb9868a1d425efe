"""`python -m atp_observer`: run the observer until SIGTERM, then drain."""

from __future__ import annotations

from atp_common.server import run_main
from atp_observer.server import build_server
from atp_observer.settings import ObserverSettings


def main() -> None:
    """Build settings from the environment and serve."""
    run_main("observer", ObserverSettings(), build_server)


if __name__ == "__main__":
    main()
