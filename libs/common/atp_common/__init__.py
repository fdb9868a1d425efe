"""What every ATP service shares: server kit, settings, configuration, errors, logging and telemetry."""

from atp_common.config import AtpConfig, load_config
from atp_common.errors import AtpError, from_rpc_error
from atp_common.server import RunningServer, ServiceRegistration, run_service, serve, start_server
from atp_common.settings import ServiceSettings

__all__ = [
    "AtpConfig",
    "AtpError",
    "RunningServer",
    "ServiceRegistration",
    "ServiceSettings",
    "from_rpc_error",
    "load_config",
    "run_service",
    "serve",
    "start_server",
]
