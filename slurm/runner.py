"""Running Slurm's commands, on this host or on a login node over SSH.

A runner executes one argument vector and returns what it printed. The Slurm
client builds the commands and parses the output; runners only move bytes.
Both runners pass ``env`` to the command without putting any value on a
command line: locally through the process environment, over SSH through the
command's standard input.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(RuntimeError):
    """A Slurm command failed or could not be run.

    The message shows the command, its exit code and what it printed on
    standard error, which is where Slurm explains itself.
    """

    def __init__(self, result: CommandResult, hint: str = ""):
        stderr = result.stderr.strip() or "(nothing on stderr)"
        stdout = result.stdout.strip()
        message = (
            f"command {shlex.join(result.argv)!r} failed with exit code"
            f" {result.returncode}: {stderr}"
        )
        if stdout:
            message += f"; stdout: {stdout[:500]}"
        if hint:
            message += f". {hint}"
        super().__init__(message)
        self.result = result


class CommandRunner(Protocol):
    """Runs a command and returns its result. A non-zero exit is a result, not an exception."""

    key: tuple

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        replace_env: bool = False,
    ) -> CommandResult: ...


class LocalRunner:
    """Runs commands on this host with :mod:`subprocess`."""

    key: tuple = ("local",)
    # The command can run with exactly the environment it is given.
    supports_replace_env = True

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        replace_env: bool = False,
    ) -> CommandResult:
        """Run ``argv`` with ``env`` added to this process's environment, or as all of it.

        With ``replace_env`` the command gets only ``env``; the program is
        still looked up on this process's PATH.
        """
        argv = tuple(argv)
        if replace_env:
            program = shutil.which(argv[0]) or argv[0]
            argv = (program, *argv[1:])
            full_env = dict(env or {})
        else:
            full_env = dict(os.environ, **env) if env else None
        try:
            completed = subprocess.run(
                argv,
                input=input,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except FileNotFoundError:
            return CommandResult(argv, 127, "", f"{argv[0]}: command not found on this host")
        except subprocess.TimeoutExpired as error:
            return CommandResult(argv, 124, _text(error.stdout), f"timed out after {timeout:g} s")
        return CommandResult(argv, completed.returncode, completed.stdout, completed.stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# Reads NAME=value lines from standard input until an empty line, exports
# them, then runs the command with the rest of standard input.
_ENV_FROM_STDIN = (
    'while IFS= read -r line && [ -n "$line" ]; do export "$line" || exit 125; done; exec "$@"'
)


class SSHRunner:
    """Runs commands on a login node over one shared paramiko connection.

    ``connect_kwargs`` go to :meth:`paramiko.SSHClient.connect` (``username``,
    ``port``, ``key_filename``...). Host keys are checked against the user's
    ``known_hosts`` unless ``known_hosts`` names another file. The connection
    opens on first use and reopens after a failure.
    """

    supports_replace_env = False

    def __init__(self, host: str, known_hosts: str | None = None, **connect_kwargs):
        self.host = host
        self.known_hosts = known_hosts
        self.connect_kwargs = connect_kwargs
        self.key = ("ssh", host, connect_kwargs.get("port", 22), connect_kwargs.get("username"))
        self._client = None
        self._lock = threading.Lock()

    def _connection(self):
        import paramiko

        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                client = paramiko.SSHClient()
                if self.known_hosts:
                    client.load_host_keys(self.known_hosts)
                else:
                    client.load_system_host_keys()
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                client.connect(self.host, **self.connect_kwargs)
                self._client = client
            return self._client

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        replace_env: bool = False,
    ) -> CommandResult:
        """Run ``argv`` on the login node; ``env`` travels on standard input.

        ``replace_env`` is not supported over SSH: the login shell's
        environment stays, and ``env`` is added to it.
        """
        import paramiko

        argv = tuple(argv)
        stdin_text = input or ""
        command = shlex.join(argv)
        if env:
            for name, value in env.items():
                if "\n" in value or "\n" in name or "=" in name:
                    raise ValueError(f"environment variable {name!r} cannot be sent over SSH: it contains a line break or '='")
            stdin_text = "".join(f"{name}={value}\n" for name, value in env.items()) + "\n" + stdin_text
            command = shlex.join(["sh", "-c", _ENV_FROM_STDIN, "sh", *argv])
        try:
            client = self._connection()
            stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            if stdin_text:
                stdin.write(stdin_text)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except (OSError, paramiko.SSHException) as error:
            with self._lock:
                self._client = None
            return CommandResult(argv, 255, "", f"SSH to {self.host} failed: {error}")
        return CommandResult(argv, code, out, err)

    def close(self) -> None:
        """Close the SSH connection, if open."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
