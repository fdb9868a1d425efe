"""ATP's observer: the telemetry plane that stores observations and feedback and streams rewards."""

from typing import TYPE_CHECKING

from atp_common.surface import lazy_surface

if TYPE_CHECKING:
    from atp_observer.server import build_server as build_server
    from atp_observer.server import make_store as make_store
    from atp_observer.settings import ObserverSettings as ObserverSettings

__all__, __getattr__ = lazy_surface(
    __name__,
    {
        "ObserverSettings": "atp_observer.settings",
        "build_server": "atp_observer.server",
        "make_store": "atp_observer.server",
    },
)
