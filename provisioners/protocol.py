"""The authenticated reply that carries a kernel's connection info from its job to the gateway.

For each launch the gateway makes two random secrets: the kernel's HMAC key,
which signs every Jupyter message, and a 256-bit reply key. Both reach the
job through the environment of the ``sbatch`` process, named in
``--export`` without their values, so they appear in no command line, job
script or ``scontrol`` output.

The launcher in the job binds the kernel's ports, seals the connection info
with AES-GCM under the reply key, and stores the sealed text as the job's
Slurm comment (``scontrol update JobId=... Comment=...``). Only the job's
owner and Slurm administrators may change a job's comment, and the gateway
already reads comments in its one squeue call per interval, so no listener
is needed on the gateway or the node. The sealed text is bound to the kernel
id and the job id: a reply copied from another job or another launch fails
to open. The gateway takes the first reply that opens and ignores the rest.

This module imports nothing from Jupyter, so the Kernel Gateway provisioner
and the Enterprise Gateway process proxy share it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Environment variables that carry the launch's values into the job.
KERNEL_ID_ENV = "SLURMGATE_KERNEL_ID"
REPLY_KEY_ENV = "SLURMGATE_REPLY_KEY"
CONNECTION_KEY_ENV = "SLURMGATE_CONNECTION_KEY"
KERNEL_IP_ENV = "SLURMGATE_KERNEL_IP"
SECRET_ENV_NAMES = (REPLY_KEY_ENV, CONNECTION_KEY_ENV)

REPLY_PREFIX = "slurmgate-v1:"
_NONCE_BYTES = 12
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class ReplyError(ValueError):
    """A reply failed to open or does not hold valid connection info."""


def new_reply_key() -> str:
    """Return a new random 256-bit reply key, base64-encoded for the environment."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def new_connection_key() -> str:
    """Return a new random HMAC key for the kernel's message signatures."""
    return binascii.hexlify(os.urandom(32)).decode()


def _associated_data(kernel_id: str, job_id: str) -> bytes:
    return f"slurmgate reply v1\0kernel {kernel_id}\0job {job_id}".encode()


def _decode_key(reply_key: str) -> bytes:
    try:
        key = base64.b64decode(reply_key, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ReplyError("the reply key is not valid base64") from error
    if len(key) != 32:
        raise ReplyError(f"the reply key has {len(key)} bytes, expected 32")
    return key


def seal_reply(reply_key: str, kernel_id: str, job_id: str, connection_info: dict[str, Any]) -> str:
    """Encrypt and authenticate ``connection_info`` for the gateway.

    The result is printable ASCII without spaces, ``|`` or quotes, so it
    survives Slurm's comment field and squeue's ``|``-separated output.
    """
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(connection_info, sort_keys=True).encode()
    sealed = AESGCM(_decode_key(reply_key)).encrypt(nonce, plaintext, _associated_data(kernel_id, job_id))
    return REPLY_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def open_reply(reply_key: str, kernel_id: str, job_id: str, reply: str) -> dict[str, Any]:
    """Decrypt and check a reply; return its validated connection info.

    Raises :class:`ReplyError` when the reply was not sealed with this key
    for this kernel and job, or when its content is not connection info.
    """
    if not reply.startswith(REPLY_PREFIX):
        raise ReplyError(f"the reply does not start with {REPLY_PREFIX!r}")
    encoded = reply[len(REPLY_PREFIX):]
    try:
        blob = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise ReplyError("the reply is not valid base64") from error
    if len(blob) <= _NONCE_BYTES + 16:
        raise ReplyError("the reply is too short to hold connection info")
    nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    try:
        plaintext = AESGCM(_decode_key(reply_key)).decrypt(nonce, sealed, _associated_data(kernel_id, job_id))
    except InvalidTag as error:
        raise ReplyError(
            f"the reply failed authentication for kernel {kernel_id} and job {job_id}:"
            " it was sealed with another key, or for another kernel or job"
        ) from error
    try:
        info = json.loads(plaintext)
    except ValueError as error:
        raise ReplyError("the authenticated reply is not JSON") from error
    return validate_connection_info(info)


def validate_connection_info(info: Any) -> dict[str, Any]:
    """Check the fields the gateway uses: an IP address and five TCP ports.

    >>> validate_connection_info({"ip": "10.1.2.3", "shell_port": 1, "iopub_port": 2,
    ...     "stdin_port": 3, "control_port": 4, "hb_port": 5})["ip"]
    '10.1.2.3'
    """
    if not isinstance(info, dict):
        raise ReplyError("the connection info is not a JSON object")
    try:
        ipaddress.ip_address(info.get("ip", ""))
    except ValueError as error:
        raise ReplyError(f"the connection info has an invalid IP address {info.get('ip')!r}") from error
    for name in PORT_NAMES:
        port = info.get(name)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ReplyError(f"the connection info has an invalid {name} {port!r}")
    return info
