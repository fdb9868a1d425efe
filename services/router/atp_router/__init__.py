"""ATP's router: the control plane that owns routing policy and learning and publishes policy snapshots."""

from typing import TYPE_CHECKING

from atp_common.surface import lazy_surface

if TYPE_CHECKING:
    from atp_router.server import build_server as build_server
    from atp_router.settings import RouterSettings as RouterSettings

__all__, __getattr__ = lazy_surface(
    __name__,
    {
        "RouterSettings": "atp_router.settings",
        "build_server": "atp_router.server",
    },
)
