"""The ATP gateway: the OpenAI-compatible HTTP, SSE and WebSocket edge in front of the adapters."""

from typing import TYPE_CHECKING

from atp_common.surface import lazy_surface

if TYPE_CHECKING:
    from atp_gateway.app import create_app as create_app
    from atp_gateway.serve import GatewayServer as GatewayServer
    from atp_gateway.serve import serve as serve
    from atp_gateway.settings import GatewaySettings as GatewaySettings

__all__, __getattr__ = lazy_surface(
    __name__,
    {
        "GatewayServer": "atp_gateway.serve",
        "GatewaySettings": "atp_gateway.settings",
        "create_app": "atp_gateway.app",
        "serve": "atp_gateway.serve",
    },
)
