"""The JupyterLab side of slurmgate: a Jupyter Server extension for Lab in gateway mode.

Installing slurmgate enables the extension (``jupyter_server_config.d``).
It only acts when the server runs with ``--gateway-url``: it installs a
kernel WebSocket connection that speaks the browser's preferred protocol, so
the first kernel connection from JupyterLab succeeds.
"""

from __future__ import annotations

from typing import Any

from .gateway_websocket import V1GatewayWebSocketConnection

CONNECTION_CLASS_SETTING = "kernel_websocket_connection_class"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "slurmgate.lab_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Use the translating gateway connection when the server relays kernels to a gateway."""
    gateway = getattr(serverapp, "gateway_config", None)
    if gateway is None or not gateway.gateway_enabled:
        return
    settings = serverapp.web_app.settings
    current = settings.get(CONNECTION_CLASS_SETTING)
    if current is not None and not issubclass(V1GatewayWebSocketConnection, current):
        serverapp.log.warning(
            "slurmgate: kernel_websocket_connection_class is set to %s; not replacing it. Kernel"
            " WebSockets from browsers may fail their first handshake in gateway mode.", current,
        )
        return
    settings[CONNECTION_CLASS_SETTING] = V1GatewayWebSocketConnection
    serverapp.log.info("slurmgate: kernel WebSockets to the gateway accept the v1 protocol from browsers")
