"""What every ATP service shares: server kit, lifecycle, settings, configuration, errors, logging and telemetry."""

from atp_common.config import AtpConfig, load_config
from atp_common.errors import AtpError, from_rpc_error
from atp_common.lifecycle import Component, Lifecycle, open_lifecycle, run_until_signal
from atp_common.server import RunningServer, ServiceRegistration, run_main, run_service, serve, start_server
from atp_common.settings import ConfigReloadSettings, DirectorySettings, ServiceSettings

__all__ = [
    "AtpConfig",
    "AtpError",
    "Component",
    "ConfigReloadSettings",
    "DirectorySettings",
    "Lifecycle",
    "RunningServer",
    "ServiceRegistration",
    "ServiceSettings",
    "from_rpc_error",
    "load_config",
    "open_lifecycle",
    "run_main",
    "run_service",
    "run_until_signal",
    "serve",
    "start_server",
]
