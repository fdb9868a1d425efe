"""ATP adapters: the data plane that routes a request, calls the provider and streams the reply."""

from typing import TYPE_CHECKING

from atp_common.surface import lazy_surface

if TYPE_CHECKING:
    from atp_adapters.server import AdaptersParts as AdaptersParts
    from atp_adapters.server import build_server as build_server
    from atp_adapters.settings import AdaptersSettings as AdaptersSettings

__all__, __getattr__ = lazy_surface(
    __name__,
    {
        "AdaptersParts": "atp_adapters.server",
        "AdaptersSettings": "atp_adapters.settings",
        "build_server": "atp_adapters.server",
    },
)
