"""A small client for a Jupyter kernel gateway's REST and WebSocket API.

It speaks to the gateway the way JupyterLab's gateway mode does: REST calls
under ``/api`` to start and stop kernels, and the kernel's channels as JSON
messages over ``/api/kernels/{id}/channels``. The demo and the tests use it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import websocket


class GatewayError(RuntimeError):
    """The gateway responded to a request with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"gateway answered HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass
class ExecutionResult:
    """The output and status of one executed cell."""

    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None

    def text(self) -> str:
        """Return stdout, stderr and results as one text, in that order."""
        return self.stdout + self.stderr + "".join(result + "\n" for result in self.results)


class Gateway:
    """REST access to a gateway at ``url`` (``http://127.0.0.1:8888``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def headers(self) -> dict[str, str]:
        """Return the authorization header, if a token is set."""
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """Send one REST request and return the decoded JSON response."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers())
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = {}
            # Gateways put an exception's text in "message", or only in "reason"
            # when they hide the message ("Unknown server error").
            message = " ".join(part for part in (body.get("reason"), body.get("message")) if part) or text
            raise GatewayError(error.code, message) from None
        return json.loads(payload) if payload else None

    def kernelspecs(self) -> dict[str, Any]:
        """Return the gateway's kernelspecs by name."""
        return self.request("GET", "/api/kernelspecs")["kernelspecs"]

    def start_kernel(self, name: str, env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Start a kernel and return its model.

        Enterprise Gateway responds once the kernel runs. Kernel Gateway with
        pending kernels responds at once (see :meth:`wait_until_started`).
        """
        return self.request("POST", "/api/kernels", {"name": name, "env": env or {}}, timeout=timeout)

    def kernel(self, kernel_id: str) -> dict[str, Any]:
        """Return a kernel's model."""
        return self.request("GET", f"/api/kernels/{kernel_id}")

    def wait_until_started(self, kernel_id: str, timeout: float, on_status=None) -> dict[str, Any]:
        """Poll the kernel's model until its Slurm job reports the kernel; return the model.

        ``on_status`` receives the model's ``slurm`` field whenever it
        changes, for example to show the pending reason. Raises
        :class:`GatewayError` when the launch failed.
        """
        deadline = time.monotonic() + timeout
        last = None
        while True:
            model = self.kernel(kernel_id)
            status = model.get("slurm", {})
            if status != last and on_status is not None:
                on_status(status)
            last = status
            if status.get("kernel_connected"):
                return model
            if status.get("end_reason") or model.get("execution_state") == "dead":
                raise GatewayError(500, status.get("end_reason") or f"kernel {kernel_id} died while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel {kernel_id} did not start within {timeout:g} s; last status {status}")
            time.sleep(0.5)

    def interrupt(self, kernel_id: str) -> None:
        """Interrupt a kernel."""
        self.request("POST", f"/api/kernels/{kernel_id}/interrupt")

    def shutdown(self, kernel_id: str) -> None:
        """Shut a kernel down."""
        self.request("DELETE", f"/api/kernels/{kernel_id}")

    def connect(self, kernel_id: str) -> "KernelChannels":
        """Open the kernel's channels over a WebSocket."""
        ws_url = "ws" + self.url[len("http"):] + f"/api/kernels/{kernel_id}/channels"
        headers = [f"{name}: {value}" for name, value in self.headers().items()]
        return KernelChannels(websocket.create_connection(ws_url, header=headers, timeout=self.timeout))


class KernelChannels:
    """A kernel's shell and iopub channels over one WebSocket, JSON-encoded."""

    def __init__(self, connection: websocket.WebSocket):
        self.connection = connection
        self.session = uuid.uuid4().hex

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        """Send a message and return its id."""
        msg_id = uuid.uuid4().hex
        message = {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "slurmgate",
                "session": self.session,
                "date": datetime.now(timezone.utc).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }
        self.connection.send(json.dumps(message))
        return msg_id

    def receive(self, timeout: float) -> dict[str, Any]:
        """Return the next message, waiting at most ``timeout`` seconds."""
        self.connection.settimeout(timeout)
        return json.loads(self.connection.recv())

    def execute(self, code: str, timeout: float = 120) -> ExecutionResult:
        """Run ``code`` and collect its output until the kernel is idle again."""
        msg_id = self.send("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        result = ExecutionResult(status="unknown")
        deadline = time.monotonic() + timeout
        replied = idle = False
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply to an execute request within {timeout:g} s")
            message = self.receive(remaining)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            self._collect(message, result)
            kind = message["header"]["msg_type"]
            replied = replied or kind == "execute_reply"
            idle = idle or (kind == "status" and message["content"]["execution_state"] == "idle")
        return result

    @staticmethod
    def _collect(message: dict[str, Any], result: ExecutionResult) -> None:
        kind = message["header"]["msg_type"]
        content = message["content"]
        if kind == "stream":
            if content["name"] == "stdout":
                result.stdout += content["text"]
            else:
                result.stderr += content["text"]
        elif kind in ("execute_result", "display_data"):
            result.results.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            result.error = {"ename": content["ename"], "evalue": content["evalue"]}
        elif kind == "execute_reply":
            result.status = content["status"]

    def close(self) -> None:
        """Close the WebSocket."""
        self.connection.close()
