"""SSH tunnels that carry a kernel's five ZeroMQ channels from the gateway to its compute node.

When the gateway cannot reach a node's ports, the kernel binds its ports to
127.0.0.1 on the node and the gateway forwards them over one SSH connection
per kernel, optionally through a jump host such as a login node. A
:class:`KernelTunnel` listens on five random ports of the gateway's own
127.0.0.1 and forwards each accepted connection through a ``direct-tcpip``
channel of that SSH connection to the kernel's address and port on the node.

ZeroMQ keeps its TCP connections open for the life of a client and
reconnects them itself when they drop. So when the SSH connection drops, the
tunnel reconnects it with backoff and keeps its local ports, and the kernel
clients reconnect to the same ports by themselves.

Host keys are checked against a known_hosts file that the caller names;
unknown or changed keys are rejected. This module imports nothing from
Jupyter.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import ipaddress
import logging
import os
import selectors
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import paramiko

from .protocol import PORT_NAMES, ReplyError, validate_connection_info

log = logging.getLogger(__name__)

# The only address the local listeners bind to: the gateway's own kernel
# clients connect there, and no other host may reach the kernel through it.
LOCAL_IP = "127.0.0.1"

_BUFFER_BYTES = 64 * 1024
_LISTEN_BACKLOG = 16
# Seconds between checks of the SSH connection.
_CHECK_INTERVAL = 0.5
# Maximum seconds a forwarding thread blocks before it checks the tunnel's
# state again. close() wakes the threads at once, so this is only a fallback.
_FORWARD_WAKEUP = 5.0


@dataclass(frozen=True)
class SSHHost:
    """An SSH server to connect to: host name or address, port and login user.

    A ``username`` of None means the user this process runs as (paramiko's default).
    """

    host: str
    port: int = 22
    username: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH and paramiko look up in known_hosts: ``host``, or ``[host]:port`` for ports other than 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


class TunnelError(RuntimeError):
    """The SSH tunnel of a kernel cannot be opened or was lost for good."""


class HostKeyError(TunnelError):
    """An SSH server's host key is not in the known_hosts file, or differs from the key there."""


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"host key of {hostname} not found")
        self.hostname = hostname
        self.key = key


class _RejectUnknownHostKey(paramiko.RejectPolicy):
    """Reject like :class:`paramiko.RejectPolicy`, but keep the key so the error can show its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname, key)


def fingerprint(key: paramiko.PKey) -> str:
    """Return a public key's SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _close_quietly(resource: Any) -> None:
    try:
        resource.close()
    except (OSError, paramiko.SSHException, EOFError):
        pass


def _close_client(client: paramiko.SSHClient) -> None:
    """Close an SSH client and wait for its transport thread.

    Paramiko's ``Transport.close()`` (checked in 5.1) stops waiting for the
    thread once the packetizer is closed, which is before the thread ends.
    """
    transport = client.get_transport()
    _close_quietly(client)
    if transport is not None and transport is not threading.current_thread():
        transport.join(10)


def _shutdown_quietly(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock``. The thread that owns the socket closes it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class KernelTunnel:
    """The SSH tunnel that carries one kernel's five ZeroMQ channels.

    ``connection_info`` is the kernel's connection info on the node: its
    ``ip`` (usually 127.0.0.1, the node's loopback) and the five ports named
    in :data:`slurmgate.provisioners.protocol.PORT_NAMES`. ``node`` is the
    node's SSH server. With ``jump_host``, the tunnel logs in there first and
    reaches ``node`` through a ``direct-tcpip`` channel of that connection.
    Both servers' host keys must be in the ``known_hosts`` file. With
    ``key_filename``, only that private key is offered. Without it, paramiko
    tries the SSH agent and the user's default keys.

    Call :meth:`open` once, give its result to the kernel manager, and call
    :meth:`close` when the kernel goes away. While the tunnel is open, one
    thread accepts local connections, one thread watches the SSH connection
    and reconnects it, and each forwarded connection has a thread of its own.
    If reconnecting fails ``max_reconnect_attempts`` times in a row, or the
    host key changes, :attr:`failure` is set and local connections are
    closed as soon as they are accepted.

    Times are in seconds. ``connect_timeout`` bounds each TCP connect, SSH
    handshake, login and channel opening. ``keepalive_interval`` is the
    period of SSH keepalive messages (0 turns them off). Between reconnect
    attempts the delay starts at ``first_reconnect_delay`` and doubles up to
    ``max_reconnect_delay``. With the defaults, the 8 attempts span about a
    minute. A local connection accepted while the SSH connection is down
    waits up to ``channel_wait`` for it before it is closed, and ZeroMQ
    then connects again.
    """

    def __init__(
        self,
        kernel_id: str,
        node: SSHHost,
        connection_info: Mapping[str, Any],
        *,
        known_hosts: str | os.PathLike,
        key_filename: str | os.PathLike | None = None,
        jump_host: SSHHost | None = None,
        connect_timeout: float = 15.0,
        keepalive_interval: int = 15,
        max_reconnect_attempts: int = 8,
        first_reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 30.0,
        channel_wait: float = 30.0,
    ):
        try:
            validate_connection_info(dict(connection_info))
        except ReplyError as error:
            raise ValueError(f"kernel {kernel_id}: cannot tunnel to the kernel: {error}") from error
        if max_reconnect_attempts < 1:
            raise ValueError(f"kernel {kernel_id}: max_reconnect_attempts must be at least 1, got {max_reconnect_attempts}")

        self.kernel_id = kernel_id
        self.node = node
        self.jump_host = jump_host
        self.known_hosts = os.fspath(known_hosts)
        self.key_filename = os.fspath(key_filename) if key_filename is not None else None
        self.remote_ip = str(ipaddress.ip_address(connection_info["ip"]))
        self.remote_ports = {name: int(connection_info[name]) for name in PORT_NAMES}
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.max_reconnect_attempts = max_reconnect_attempts
        self.first_reconnect_delay = first_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.channel_wait = channel_wait
        # Number of successful reconnections since open().
        self.reconnect_count = 0
        self.failure: TunnelError | None = None

        self._connection_info = dict(connection_info)
        self._state = threading.Condition()
        self._stop = threading.Event()
        self._opened = False
        self._closed = False
        self._clients: list[paramiko.SSHClient] = []
        self._dialing: set[socket.socket] = set()
        self._listeners: dict[str, socket.socket] = {}
        self._local_ports: dict[str, int] = {}
        self._local_connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._failing_ports: set[str] = set()
        self._wakeup: tuple[socket.socket, socket.socket] | None = None

    @property
    def route(self) -> str:
        """The SSH hops, for messages: ``node`` or ``node through jump host``."""
        return f"{self.node} through jump host {self.jump_host}" if self.jump_host else str(self.node)

    @property
    def local_ports(self) -> dict[str, int]:
        """The local port of each channel, keyed by connection-info name (empty before :meth:`open`)."""
        return dict(self._local_ports)

    @property
    def is_connected(self) -> bool:
        """Whether the SSH connection is up and the tunnel is neither closed nor failed."""
        with self._state:
            return not self._closed and self.failure is None and self._active_transport() is not None

    def local_connection_info(self) -> dict[str, Any]:
        """Return the kernel's connection info with the tunnel's local address and ports in place of the node's."""
        if not self._local_ports:
            raise TunnelError(f"kernel {self.kernel_id}: the SSH tunnel is not open. Call open() first.")
        return {**self._connection_info, "ip": LOCAL_IP, **self.local_ports}

    def open(self) -> dict[str, Any]:
        """Connect over SSH, start listening, and return the local connection info.

        Raises :class:`HostKeyError` when a host key is unknown or changed and
        :class:`TunnelError` for any other failure. In both cases nothing stays open.
        """
        with self._state:
            if self._closed:
                raise TunnelError(f"kernel {self.kernel_id}: the SSH tunnel was closed. Create a new KernelTunnel to connect again.")
            if self._opened:
                return self.local_connection_info()
        self._check_files()
        clients = self._connect()
        try:
            listeners = self._open_listeners()
        except OSError as error:
            self._close_clients(clients)
            raise TunnelError(
                f"kernel {self.kernel_id}: failed to listen on {LOCAL_IP} for the SSH tunnel: {error}."
                " Check the gateway's limit on open files."
            ) from error
        with self._state:
            self._clients = clients
            self._listeners = listeners
            self._local_ports = {name: listener.getsockname()[1] for name, listener in listeners.items()}
            self._wakeup = socket.socketpair()
            self._opened = True
        self._start_thread(self._accept_loop, "accept")
        self._start_thread(self._supervise, "monitor")
        log.info(
            "kernel %s: SSH tunnel to %s is open: local ports %s forward to %s ports %s",
            self.kernel_id, self.route, self.local_ports, self.remote_ip, self.remote_ports,
        )
        return self.local_connection_info()

    def _check_files(self) -> None:
        if not os.path.isfile(self.known_hosts):
            raise TunnelError(
                f"kernel {self.kernel_id}: the known_hosts file {self.known_hosts} does not exist."
                f" Create it with the host keys of {self.route}, or configure another file."
            )
        if self.key_filename is not None and not os.path.isfile(self.key_filename):
            raise TunnelError(
                f"kernel {self.kernel_id}: the SSH key file {self.key_filename} does not exist."
                " Configure the private key that logs in to the cluster's nodes."
            )

    def close(self) -> None:
        """Close the listeners, the forwarded connections and the SSH connection, and join the threads.

        Closing twice does nothing. A reconnect attempt that is still in its
        TCP connect can delay the return by up to ``connect_timeout``.
        """
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._state.notify_all()
            clients, self._clients = self._clients, []
            dialing = list(self._dialing)
            connections = list(self._local_connections)
            threads = list(self._threads)
        if self._wakeup is not None:
            self._wakeup[1].send(b"x")
        for sock in dialing + connections:
            _shutdown_quietly(sock)
        self._close_clients(clients)
        for thread in threads:
            thread.join(self.connect_timeout + 5)
        leftover = [thread.name for thread in threads if thread.is_alive()]
        if leftover:
            log.warning("kernel %s: SSH tunnel threads did not stop within %g s: %s", self.kernel_id, self.connect_timeout + 5, leftover)
        for listener in self._listeners.values():
            _close_quietly(listener)
        if self._wakeup is not None:
            for end in self._wakeup:
                _close_quietly(end)
        if self._opened:
            log.info("kernel %s: SSH tunnel to %s closed", self.kernel_id, self.route)

    def __enter__(self) -> KernelTunnel:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start_thread(self, target: Callable[..., None], role: str, *args: Any) -> bool:
        """Start a daemon thread that close() joins. Return False, starting nothing, once the tunnel is closed."""
        name = f"slurmgate-tunnel-{self.kernel_id}-{role}"
        thread = threading.Thread(target=self._run_thread, args=(target, *args), name=name, daemon=True)
        with self._state:
            if self._closed:
                return False
            self._threads.add(thread)
        thread.start()
        return True

    def _run_thread(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception:
            log.exception("kernel %s: SSH tunnel thread %s failed", self.kernel_id, threading.current_thread().name)
        finally:
            with self._state:
                self._threads.discard(threading.current_thread())

    def _active_transport(self) -> paramiko.Transport | None:
        """Return the node's transport if every hop is up, else None. Call it with ``_state`` locked."""
        transports = [client.get_transport() for client in self._clients]
        if not transports or any(transport is None or not transport.is_active() for transport in transports):
            return None
        return transports[-1]

    @staticmethod
    def _close_clients(clients: list[paramiko.SSHClient]) -> None:
        # The node's connection runs inside the jump host's, so it closes first.
        for client in reversed(clients):
            _close_client(client)

    # The SSH connection.

    def _connect(self) -> list[paramiko.SSHClient]:
        """Log in to the jump host, if any, then to the node. Return the clients in that order."""
        clients: list[paramiko.SSHClient] = []
        first_hop = self.jump_host or self.node
        sock = self._dial(first_hop)
        try:
            if self.jump_host is not None:
                clients.append(self._log_in(self.jump_host, sock, "jump host"))
                node_sock = self._open_jump_channel(clients[0])
            else:
                node_sock = sock
            clients.append(self._log_in(self.node, node_sock, "node"))
        except BaseException:
            self._close_clients(clients)
            _close_quietly(sock)
            raise
        finally:
            with self._state:
                self._dialing.discard(sock)
        return clients

    def _dial(self, target: SSHHost) -> socket.socket:
        """Open the TCP connection to the first SSH hop. close() shuts it down to abort a login in progress."""
        try:
            sock = socket.create_connection((target.host, target.port), timeout=self.connect_timeout)
        except OSError as error:
            raise TunnelError(
                f"kernel {self.kernel_id}: failed to connect to the SSH server {target}: {error}."
                " Check that sshd runs there and that the gateway host can reach that port."
            ) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            # Paramiko's keepalives put data on the wire every keepalive_interval.
            # If data stays unacknowledged for three intervals, Linux aborts the
            # connection (tcp(7)), so a silently lost network also ends in a reconnect.
            # NOTE: the tests drop connections only from the server side, so this path is untested.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.keepalive_interval * 3000))
        with self._state:
            if self._closed:
                sock.close()
                raise TunnelError(f"kernel {self.kernel_id}: the SSH tunnel was closed while connecting")
            self._dialing.add(sock)
        return sock

    def _log_in(self, target: SSHHost, sock: Any, role: str) -> paramiko.SSHClient:
        """Run the SSH handshake on ``sock``, check the host key and authenticate."""
        client = paramiko.SSHClient()
        client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(_RejectUnknownHostKey())
        use_defaults = self.key_filename is None
        try:
            client.connect(
                target.host, port=target.port, username=target.username, key_filename=self.key_filename,
                look_for_keys=use_defaults, allow_agent=use_defaults, sock=sock,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as error:
            _close_client(client)
            raise self._login_error(error, target, role) from error
        client.get_transport().set_keepalive(self.keepalive_interval)
        log.debug("kernel %s: logged in to %s %s", self.kernel_id, role, target)
        return client

    def _login_error(self, error: Exception, target: SSHHost, role: str) -> TunnelError:
        """Turn a paramiko error into a message that names the kernel, the host and the next step."""
        prefix = f"kernel {self.kernel_id}: SSH login to {role} {target}"
        if isinstance(error, _UnknownHostKey):
            return HostKeyError(
                f"{prefix} rejected: its host key ({error.key.get_name()} {fingerprint(error.key)}) for"
                f" {error.hostname} is not in the known_hosts file {self.known_hosts}. Confirm the fingerprint"
                f" with the cluster's administrators, then add the key to that file, for example with"
                f" 'ssh-keyscan -p {target.port} {target.host} >> {self.known_hosts}'."
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return HostKeyError(
                f"{prefix} rejected: its host key ({error.key.get_name()} {fingerprint(error.key)}) differs"
                f" from the key for {target.known_hosts_name} in {self.known_hosts}. Someone may be intercepting"
                " the connection, or the host was reinstalled; ask the administrators before you replace the key."
            )
        if isinstance(error, paramiko.AuthenticationException):
            key = f"key file {self.key_filename}" if self.key_filename else "the SSH agent and default keys"
            return TunnelError(
                f"{prefix} failed authentication with {key}: {error}. Check that the key's public part is in"
                f" the authorized_keys of user {target.username or getpass.getuser()} on {target.host}."
            )
        return TunnelError(f"{prefix} failed: {error!r}. Check that an SSH server runs there and accepts this gateway.")

    def _open_jump_channel(self, jump: paramiko.SSHClient) -> paramiko.Channel:
        """Open a channel from the jump host to the node's SSH port. The node's SSH connection runs over it."""
        try:
            return jump.get_transport().open_channel(
                "direct-tcpip", (self.node.host, self.node.port), (LOCAL_IP, 0), timeout=self.connect_timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise TunnelError(
                f"kernel {self.kernel_id}: jump host {self.jump_host} could not connect to the node's SSH server"
                f" {self.node}: {error!r}. Check that the node's sshd runs and that the jump host allows TCP forwarding."
            ) from error

    # Keeping the SSH connection up.

    def _supervise(self) -> None:
        """Watch the SSH connection and reconnect it when it drops, until close() or a final failure."""
        while not self._stop.wait(_CHECK_INTERVAL):
            with self._state:
                if self._active_transport() is not None:
                    continue
                lost, self._clients = self._clients, []
            self._close_clients(lost)
            log.warning(
                "kernel %s: SSH connection to %s lost. Reconnecting (up to %d attempts) with the same local ports",
                self.kernel_id, self.route, self.max_reconnect_attempts,
            )
            if not self._reconnect():
                return

    def _reconnect(self) -> bool:
        """Reconnect with exponential backoff. Return whether the tunnel is connected again."""
        delay = self.first_reconnect_delay
        error: TunnelError | None = None
        for attempt in range(1, self.max_reconnect_attempts + 1):
            try:
                clients = self._connect()
            except HostKeyError as host_key_error:
                # A host key that changed since open() will not change back by retrying.
                self._give_up(host_key_error, attempt)
                return False
            except TunnelError as attempt_error:
                error = attempt_error
                log.debug("kernel %s: reconnect attempt %d of %d failed: %s", self.kernel_id, attempt, self.max_reconnect_attempts, error)
            else:
                with self._state:
                    if self._closed:
                        self._close_clients(clients)
                        return False
                    self._clients = clients
                    self.reconnect_count += 1
                    self._state.notify_all()
                log.info("kernel %s: SSH connection to %s restored after %d attempt(s)", self.kernel_id, self.route, attempt)
                return True
            if attempt < self.max_reconnect_attempts and self._stop.wait(delay):
                return False
            delay = min(delay * 2, self.max_reconnect_delay)
        if not self._stop.is_set():
            self._give_up(error, self.max_reconnect_attempts)
        return False

    def _give_up(self, error: TunnelError | None, attempts: int) -> None:
        last_error = str(error).removeprefix(f"kernel {self.kernel_id}: ")
        failure = TunnelError(
            f"kernel {self.kernel_id}: gave up reconnecting the SSH tunnel to {self.route} after {attempts}"
            f" attempt(s), so the kernel's channels stay disconnected. Last error: {last_error}"
            " Restart the kernel once the node is reachable."
        )
        with self._state:
            self.failure = failure
            self._state.notify_all()
        log.error("%s", failure)

    # Local listeners and forwarding.

    def _open_listeners(self) -> dict[str, socket.socket]:
        listeners: dict[str, socket.socket] = {}
        try:
            for name in PORT_NAMES:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listeners[name] = listener
                # Port 0 makes the operating system pick a free port. Binding LOCAL_IP keeps it off other interfaces.
                listener.bind((LOCAL_IP, 0))
                listener.listen(_LISTEN_BACKLOG)
                listener.setblocking(False)
        except OSError:
            for listener in listeners.values():
                listener.close()
            raise
        return listeners

    def _accept_loop(self) -> None:
        """Accept local connections on all five listeners and start a forwarding thread for each."""
        with selectors.DefaultSelector() as selector:
            for name, listener in self._listeners.items():
                selector.register(listener, selectors.EVENT_READ, name)
            selector.register(self._wakeup[0], selectors.EVENT_READ, None)
            while not self._stop.is_set():
                for key, _ in selector.select():
                    if key.data is not None:
                        self._accept(key.fileobj, key.data)

    def _accept(self, listener: socket.socket, name: str) -> None:
        try:
            local, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            log.warning("kernel %s: accepting a local connection for %s failed: %s", self.kernel_id, name, error)
            return
        local.setblocking(True)
        local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._state:
            self._local_connections.add(local)
        if not self._start_thread(self._forward, f"forward-{name}", local, name):
            self._drop_local(local)

    def _drop_local(self, local: socket.socket) -> None:
        with self._state:
            self._local_connections.discard(local)
        _close_quietly(local)

    def _forward(self, local: socket.socket, name: str) -> None:
        """Carry one local connection through its own channel until either end closes it."""
        try:
            transport = self._wait_for_transport()
            if transport is None:
                return
            channel = self._open_channel(transport, local, name)
            if channel is None:
                return
            try:
                self._pump(local, channel)
            finally:
                _close_quietly(channel)
        finally:
            self._drop_local(local)

    def _wait_for_transport(self) -> paramiko.Transport | None:
        """Wait up to ``channel_wait`` seconds for the SSH connection and return its transport.

        Returns None when the tunnel is closed, has failed, or is still disconnected.
        """
        with self._state:
            self._state.wait_for(
                lambda: self._closed or self.failure is not None or self._active_transport() is not None,
                self.channel_wait,
            )
            if self._closed or self.failure is not None:
                return None
            return self._active_transport()

    def _open_channel(self, transport: paramiko.Transport, local: socket.socket, name: str) -> paramiko.Channel | None:
        port = self.remote_ports[name]
        try:
            originator = local.getpeername()
        except OSError:
            return None  # The local client has already gone away.
        try:
            channel = transport.open_channel(
                "direct-tcpip", (self.remote_ip, port), originator, timeout=self.connect_timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as error:
            if not transport.is_active():
                # The supervisor reconnects, and ZeroMQ then connects again.
                log.debug("kernel %s: SSH connection dropped while forwarding the %s: %r", self.kernel_id, name, error)
                return None
            # ZeroMQ reconnects every 100 ms by default (ZMQ_RECONNECT_IVL), so
            # only the first failure in a row is a warning.
            with self._state:
                level = logging.DEBUG if name in self._failing_ports else logging.WARNING
                self._failing_ports.add(name)
            log.log(
                level,
                "kernel %s: %s could not forward the %s to %s:%d: %r. If this repeats, the kernel may have exited; check its Slurm job.",
                self.kernel_id, self.node, name.replace("_port", " channel"), self.remote_ip, port, error,
            )
            return None
        with self._state:
            self._failing_ports.discard(name)
        return channel

    def _pump(self, local: socket.socket, channel: paramiko.Channel) -> None:
        """Copy bytes both ways until one side reaches end of file or fails.

        ZeroMQ never half-closes a connection, so end of file on either side ends both directions.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(local, selectors.EVENT_READ, channel)
            selector.register(channel, selectors.EVENT_READ, local)
            while not self._stop.is_set():
                for key, _ in selector.select(_FORWARD_WAKEUP):
                    try:
                        data = key.fileobj.recv(_BUFFER_BYTES)
                        if not data:
                            return
                        key.data.sendall(data)
                    except (OSError, paramiko.SSHException, EOFError) as error:
                        log.debug("kernel %s: forwarded connection ended: %r", self.kernel_id, error)
                        return
