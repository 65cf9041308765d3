"""A real OpenSSH server on a free loopback port, with its own host key, client key and configuration.

Tests import :func:`start_sshd` to get a server that accepts only a freshly
generated client key and allows TCP forwarding. Keys live in the test's
temporary directory; nothing is read from or written to ``~/.ssh`` or
``/etc/ssh``. When the tests run as root, sshd also needs ``/run/sshd``,
its empty privilege separation directory, which is created if missing.
Otherwise sshd runs as the current user and accepts only that user.

NOTE: only the root path has been run; the non-root path follows sshd's
documented behaviour but is untested.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")

# StrictModes is off because the authorized_keys file lives under /tmp, and
# sshd's ownership checks reject a file whose parent directories are
# world-writable.
_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {directory}/ssh_host_ed25519_key
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
UsePAM no
StrictModes no
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
"""


def generate_key(path: Path) -> Path:
    """Write a new passphrase-less ed25519 key pair to ``path`` and ``path.pub``, and return ``path``."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "slurmgate-test", "-f", str(path)], check=True)
    return path


def public_key_line(path: Path) -> str:
    """Return the key type and base64 key of ``path.pub``, without the comment."""
    key_type, key, *_ = Path(f"{path}.pub").read_text().split()
    return f"{key_type} {key}"


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _child_pids() -> dict[int, list[int]]:
    """Map each process id to its children's ids, read from /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so the fields count from the last ')'.
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


@dataclass
class SSHServer:
    """A running sshd: its port, the client's key file and known_hosts file, and its process."""

    directory: Path
    port: int
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen
    host: str = "127.0.0.1"
    username: str = field(default_factory=getpass.getuser)

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    def session_pids(self) -> list[int]:
        """Return the processes that this sshd forked for its connections, children before grandchildren."""
        children = _child_pids()
        found: list[int] = []
        queue = list(children.get(self.process.pid, []))
        while queue:
            pid = queue.pop(0)
            found.append(pid)
            queue.extend(children.get(pid, []))
        return found

    def kill_sessions(self) -> list[int]:
        """Kill every connection of this sshd from the server side, as an administrator would.

        Returns the ids of the processes that were sent SIGKILL.
        """
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def accepted_logins(self) -> int:
        """Count the successful public-key logins in this sshd's log."""
        return self.log_path.read_text(errors="replace").count("Accepted publickey")

    def stop(self) -> None:
        """Kill the connections, then stop the listener and wait for it."""
        self.kill_sessions()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _write_files(directory: Path, port: int) -> tuple[Path, Path, Path]:
    host_key = directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        generate_key(host_key)
        client_key = generate_key(directory / "client_key")
        (directory / "authorized_keys").write_text(public_key_line(client_key) + "\n")
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {public_key_line(host_key)}\n")
    config = directory / "sshd_config"
    config.write_text(_CONFIG.format(port=port, directory=directory))
    return config, directory / "client_key", known_hosts


def _wait_until_listening(process: subprocess.Popen, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_sshd(directory: Path, attempts: int = 3) -> SSHServer:
    """Start ``sshd -D -e`` on a free 127.0.0.1 port with its files in ``directory``. The caller stops it.

    Another process can take the free port before sshd binds it, so a start
    that fails is retried on a new port, up to ``attempts`` times.
    """
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} not found. Install Debian's openssh-server package: apt-get install openssh-server")
    if os.geteuid() == 0:
        PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        port = free_port()
        config, client_key, known_hosts = _write_files(directory, port)
        with open(directory / "sshd.log", "ab") as log_file:
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
        if _wait_until_listening(process, port, timeout=15):
            return SSHServer(directory, port, client_key, known_hosts, process)
        process.kill()
        process.wait()
    log_text = (directory / "sshd.log").read_text(errors="replace")
    raise RuntimeError(f"sshd failed to start listening in {attempts} attempts. Its log:\n{log_text}")
