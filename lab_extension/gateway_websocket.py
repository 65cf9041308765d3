"""A gateway WebSocket connection that accepts the v1 kernel protocol from the browser.

In gateway mode, Jupyter Server 2 relays kernel messages unchanged between
the browser and the gateway, so it forces the legacy JSON protocol on the
browser side: it selects no WebSocket subprotocol. JupyterLab requests
``v1.kernel.websocket.jupyter.org``, and Chromium rejects a handshake whose
response lacks the requested subprotocol. Lab's retry then waits for the
gateway request timeout, and the cell stays at ``[*]``.

This connection selects v1 when the browser offers it and converts each
message between v1 framing (browser side) and legacy JSON (gateway side).
Gateways on Jupyter Server 1.x (Enterprise Gateway 3) know only the legacy
protocol, so converting here works with every gateway.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.gateway.connections import GatewayWebSocketConnection
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from traitlets import Unicode

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
_PARTS = ("header", "parent_header", "metadata", "content")


def v1_to_legacy(message: bytes) -> str | bytes:
    """Convert a v1-framed message from the browser into the legacy protocol.

    Messages with binary buffers become legacy binary frames; others JSON text.
    """
    channel, parts = deserialize_msg_from_ws_v1(message)
    legacy: dict[str, Any] = {name: json.loads(part) if part else {} for name, part in zip(_PARTS, parts[:4])}
    legacy["channel"] = channel
    buffers = parts[4:]
    if buffers:
        legacy["buffers"] = buffers
        return serialize_binary_message(legacy)
    legacy["buffers"] = []
    return json.dumps(legacy)


def legacy_to_v1(message: str) -> bytes:
    """Convert a legacy JSON message from the gateway into v1 framing for the browser."""
    legacy = json.loads(message)
    parts = [json.dumps(legacy.get(name, {})).encode() for name in _PARTS]
    return serialize_msg_to_ws_v1(parts, legacy.get("channel", ""))


class V1GatewayWebSocketConnection(GatewayWebSocketConnection):
    """Relays kernel messages to a gateway, speaking v1 to browsers that ask for it."""

    # None lets the handler select v1 when the browser offers it.
    kernel_ws_protocol = Unicode(None, allow_none=True, config=True, help="Kernel WebSocket protocol offered to browsers.")

    @property
    def _speaks_v1(self) -> bool:
        return getattr(self.websocket_handler, "selected_subprotocol", None) == V1_PROTOCOL

    def handle_incoming_message(self, message: Any) -> None:
        """Convert a browser message to the legacy protocol and send it to the gateway."""
        if self._speaks_v1 and isinstance(message, bytes):
            message = v1_to_legacy(message)
        super().handle_incoming_message(message)

    def handle_outgoing_message(self, incoming_msg: str, *args: Any) -> None:
        """Convert a gateway message to v1 framing and send it to the browser."""
        if not self._speaks_v1:
            super().handle_outgoing_message(incoming_msg, *args)
            return
        # TODO: messages with binary buffers (some widget updates) arrive here
        # already decoded as text by the parent class, so they are not converted.
        self.websocket_handler.write_message(legacy_to_v1(incoming_msg), binary=True)
