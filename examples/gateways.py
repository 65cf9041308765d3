"""Start and stop Jupyter gateway processes on loopback, for the demo and the tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway_client import Gateway, GatewayError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "gateway_config"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GatewayProcess:
    """A gateway started as a child process; stop it with :meth:`stop`."""

    def __init__(self, process: subprocess.Popen, gateway: Gateway, log_path: Path):
        self.process = process
        self.gateway = gateway
        self.log_path = log_path

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the gateway lists kernelspecs; raise with its log if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with code {self.process.returncode}; its log:\n{self.log()}")
            try:
                self.gateway.kernelspecs()
                return
            except (OSError, GatewayError):
                time.sleep(0.2)
        raise TimeoutError(f"the gateway did not respond within {timeout:g} s; its log:\n{self.log()}")

    def log(self) -> str:
        """Return the gateway's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        """Stop the gateway with SIGTERM (SIGKILL after ``timeout`` seconds); it shuts its kernels down."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_server(argv: list[str], env: dict[str, str], port: int, token: str, log_path: Path) -> GatewayProcess:
    """Start a server process with its output in ``log_path`` and wait until it responds."""
    log_file = open(log_path, "w")
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log_file.close()
    server = GatewayProcess(process, Gateway(f"http://127.0.0.1:{port}", token=token), log_path)
    server.wait_ready()
    return server


def start_kernel_gateway(
    jupyter_path: Path, log_path: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None
) -> GatewayProcess:
    """Start Kernel Gateway 3 on a free loopback port with kernelspecs from ``jupyter_path``."""
    port = free_port()
    token = secrets.token_hex(16)
    argv = [
        sys.executable, "-m", "kernel_gateway",
        f"--config={CONFIG_DIR / 'jupyter_kernel_gateway_config.py'}",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        *(extra_args or []),
    ]
    process_env = dict(os.environ, JUPYTER_PATH=str(jupyter_path), KG_AUTH_TOKEN=token, **(env or {}))
    return spawn_server(argv, process_env, port, token, log_path)


def start_enterprise_gateway(
    python: str | Path,
    jupyter_path: Path,
    log_path: Path,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> GatewayProcess:
    """Start Enterprise Gateway 3 on a free loopback port with kernelspecs from ``jupyter_path``.

    ``python`` is the interpreter of Enterprise Gateway's own environment,
    which cannot be this one: Enterprise Gateway 3 needs jupyter_client 6.
    """
    port = free_port()
    token = secrets.token_hex(16)
    argv = [
        str(python), "-m", "slurmgate.provisioners.eg3_app",
        f"--config={CONFIG_DIR / 'jupyter_enterprise_gateway_config.py'}",
        "--EnterpriseGatewayApp.ip=127.0.0.1",
        f"--EnterpriseGatewayApp.port={port}",
        *(extra_args or []),
    ]
    process_env = dict(os.environ, JUPYTER_PATH=str(jupyter_path), EG_AUTH_TOKEN=token, **(env or {}))
    return spawn_server(argv, process_env, port, token, log_path)


def start_jupyterlab(gateway: Gateway, root_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> GatewayProcess:
    """Start JupyterLab in gateway mode (``--gateway-url``) on a free loopback port.

    The returned process's ``gateway`` talks to Lab itself, with Lab's own
    token. Lab sends its own KERNEL_USERNAME to the gateway, so ``env`` may set it.
    """
    port = free_port()
    token = secrets.token_hex(16)
    argv = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={token}",
        f"--gateway-url={gateway.url}", f"--GatewayClient.auth_token={gateway.token}",
        # A Slurm kernel may wait in the queue: the start request must outlast the launch.
        "--GatewayClient.request_timeout=320", "--GatewayClient.connect_timeout=320",
    ]
    return spawn_server(argv, dict(os.environ, KERNEL_LAUNCH_TIMEOUT="300", **(env or {})), port, token, log_path)
