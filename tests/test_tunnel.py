"""Tests of the SSH tunnel against a real sshd and a real ipykernel on loopback. They need no Slurm.

The kernel listens on 127.0.0.1 as it would on a compute node, and the
tunnel reaches it through an OpenSSH server that the tests start on a free
port. Dropping a connection means killing sshd's per-connection process.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient, KernelManager

from slurmgate.provisioners.protocol import PORT_NAMES
from slurmgate.provisioners.tunnel import LOCAL_IP, HostKeyError, KernelTunnel, SSHHost, TunnelError

from sshd import SSHServer, generate_key, public_key_line, start_sshd
from support import wait_until

pytestmark = pytest.mark.timeout(120)

KERNEL_ID = "tunnel-test-kernel"
# Upper bound in seconds for each wait. Tests poll for a state and never assert on a duration.
WAIT = 60
_READ_BYTES = 4096


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory) -> SSHServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> KernelManager:
    """An ipykernel bound to 127.0.0.1, as the launcher binds it on a node when tunnelling is on."""
    manager = KernelManager(kernel_name="python3", ip="127.0.0.1")
    manager.connection_file = str(tmp_path_factory.mktemp("kernel") / "kernel.json")
    manager.start_kernel()
    # start_kernel() returns before the kernel listens, so wait for its kernel_info reply.
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=WAIT)
    client.stop_channels()
    yield manager
    manager.shutdown_kernel(now=True)


@pytest.fixture
def make_tunnel(ssh_server, kernel):
    """Build tunnels to the test kernel through the test sshd. Teardown closes them."""
    tunnels: list[KernelTunnel] = []

    def make(**options) -> KernelTunnel:
        node = SSHHost(ssh_server.host, ssh_server.port, ssh_server.username)
        options.setdefault("known_hosts", ssh_server.known_hosts)
        options.setdefault("key_filename", ssh_server.client_key)
        tunnels.append(KernelTunnel(KERNEL_ID, node, kernel.get_connection_info(), **options))
        return tunnels[-1]

    yield make
    for tunnel in tunnels:
        tunnel.close()


@pytest.fixture
def connect_client(kernel):
    """Connect kernel clients to a tunnel's local ports. Teardown stops their channels."""
    clients: list[BlockingKernelClient] = []

    def connect(local_info: dict) -> BlockingKernelClient:
        client = BlockingKernelClient()
        client.load_connection_info({**local_info, "key": kernel.session.key})
        client.start_channels()
        clients.append(client)
        client.wait_for_ready(timeout=WAIT)
        return client

    yield connect
    for client in clients:
        client.stop_channels()


def run_cell(client: BlockingKernelClient, code: str) -> str:
    """Execute ``code`` and return what it printed on stdout."""
    chunks: list[str] = []

    def collect(message: dict) -> None:
        if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
            chunks.append(message["content"]["text"])

    reply = client.execute_interactive(code, output_hook=collect, timeout=WAIT)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(chunks)


def wait_for_reconnect(tunnel: KernelTunnel, count: int) -> None:
    reconnected = wait_until(lambda: tunnel.reconnect_count >= count, WAIT)
    assert reconnected, f"tunnel did not reconnect: reconnect_count {tunnel.reconnect_count}, failure {tunnel.failure}"
    assert wait_until(lambda: tunnel.is_connected, WAIT), f"tunnel is not connected after reconnecting: failure {tunnel.failure}"


def listening_addresses(port: int) -> set[str]:
    """Return the addresses that sockets in LISTEN state on ``port`` are bound to, from /proc/net."""
    addresses = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address_hex, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:
                continue
            # Linux prints each 32-bit word of the address in host (little-endian) byte order.
            packed = b"".join(bytes.fromhex(address_hex[i:i + 8])[::-1] for i in range(0, len(address_hex), 8))
            addresses.add(socket.inet_ntop(family, packed))
    return addresses


def read_until_closed(sock: socket.socket) -> str:
    """Read until the peer closes; return "closed", or "open" if data still flows after WAIT seconds."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(_READ_BYTES):
            pass
    except ConnectionResetError:
        return "closed"
    except socket.timeout:
        return "open"
    return "closed"


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_tunnel_runs_cell(make_tunnel, connect_client):
    tunnel = make_tunnel()
    local_info = tunnel.open()
    assert local_info["ip"] == LOCAL_IP
    assert tunnel.is_connected
    client = connect_client(local_info)
    assert run_cell(client, "print(6 * 7)") == "42\n"


def test_large_output_passes(make_tunnel, connect_client):
    client = connect_client(make_tunnel().open())
    # About 4 MB of output, far more than one SSH channel window (2 MB in paramiko).
    output = run_cell(client, "print('x' * 4_000_000)")
    assert len(output) == 4_000_001


def test_local_info_replaces_node_ports(make_tunnel, kernel):
    tunnel = make_tunnel()
    local_info = tunnel.open()
    remote_info = kernel.get_connection_info()
    for name in PORT_NAMES:
        assert local_info[name] == tunnel.local_ports[name]
        assert local_info[name] != remote_info[name]
    assert local_info["signature_scheme"] == remote_info["signature_scheme"]
    assert len(set(tunnel.local_ports.values())) == 5


def test_listeners_bind_loopback_only(make_tunnel):
    tunnel = make_tunnel()
    tunnel.open()
    for name, port in tunnel.local_ports.items():
        assert listening_addresses(port) == {"127.0.0.1"}, name


def test_reconnects_after_session_killed(make_tunnel, connect_client, ssh_server):
    tunnel = make_tunnel()
    local_info = tunnel.open()
    client = connect_client(local_info)
    assert run_cell(client, "counter = 40\nprint(counter)") == "40\n"
    fds_connected = open_fd_count()

    for drop in (1, 2):
        killed = ssh_server.kill_sessions()
        assert killed, "the test sshd had no session process to kill"
        wait_for_reconnect(tunnel, drop)
        assert tunnel.local_ports == {name: local_info[name] for name in PORT_NAMES}
        # PUB/SUB drops what the kernel publishes before the client's iopub
        # socket has reconnected, so wait until iopub delivers again, as a
        # frontend does with its kernel_info request.
        client.wait_for_ready(timeout=WAIT)
        assert run_cell(client, "counter += 1\nprint(counter)") == f"{40 + drop}\n"
        assert wait_until(client.is_alive, WAIT), "heartbeat did not resume after the reconnect"
        assert wait_until(lambda: open_fd_count() <= fds_connected, WAIT), "file descriptors leaked on reconnect"

    assert tunnel.failure is None


def test_jump_host_path(make_tunnel, connect_client, ssh_server):
    logins_before = ssh_server.accepted_logins()
    tunnel = make_tunnel(jump_host=SSHHost(ssh_server.host, ssh_server.port, ssh_server.username))
    client = connect_client(tunnel.open())
    assert ssh_server.accepted_logins() - logins_before == 2
    assert run_cell(client, "print('through the jump host')") == "through the jump host\n"

    ssh_server.kill_sessions()
    wait_for_reconnect(tunnel, 1)
    client.wait_for_ready(timeout=WAIT)
    assert run_cell(client, "print('after reconnect')") == "after reconnect\n"


def test_unknown_host_key_rejected(make_tunnel, ssh_server, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    threads_before = set(threading.enumerate())
    tunnel = make_tunnel(known_hosts=empty_known_hosts)
    with pytest.raises(HostKeyError) as caught:
        tunnel.open()
    assert isinstance(caught.value, TunnelError)
    message = str(caught.value)
    assert KERNEL_ID in message
    assert f"[127.0.0.1]:{ssh_server.port}" in message
    assert str(empty_known_hosts) in message
    assert "ssh-keyscan" in message
    assert "SHA256:" in message
    assert tunnel.local_ports == {}
    assert set(threading.enumerate()) - threads_before == set()


def test_unknown_jump_host_key_rejected(make_tunnel, ssh_server, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    tunnel = make_tunnel(known_hosts=empty_known_hosts, jump_host=SSHHost(ssh_server.host, ssh_server.port, ssh_server.username))
    with pytest.raises(HostKeyError, match="jump host"):
        tunnel.open()


def test_changed_host_key_rejected(make_tunnel, ssh_server, tmp_path):
    other_key = generate_key(tmp_path / "other_host_key")
    wrong_known_hosts = tmp_path / "known_hosts"
    wrong_known_hosts.write_text(f"[127.0.0.1]:{ssh_server.port} {public_key_line(other_key)}\n")
    tunnel = make_tunnel(known_hosts=wrong_known_hosts)
    with pytest.raises(HostKeyError) as caught:
        tunnel.open()
    message = str(caught.value)
    assert "differs" in message
    assert str(wrong_known_hosts) in message


def test_missing_known_hosts_file(make_tunnel, tmp_path):
    missing = tmp_path / "no_such_known_hosts"
    tunnel = make_tunnel(known_hosts=missing)
    with pytest.raises(TunnelError, match="does not exist"):
        tunnel.open()


def test_missing_key_file(make_tunnel, tmp_path):
    missing = tmp_path / "no_such_key"
    tunnel = make_tunnel(key_filename=missing)
    with pytest.raises(TunnelError, match="does not exist"):
        tunnel.open()


def test_wrong_client_key_rejected(make_tunnel, tmp_path):
    stranger_key = generate_key(tmp_path / "stranger_key")
    tunnel = make_tunnel(key_filename=stranger_key)
    with pytest.raises(TunnelError) as caught:
        tunnel.open()
    message = str(caught.value)
    assert "authentication" in message
    assert str(stranger_key) in message
    assert not isinstance(caught.value, HostKeyError)


def test_invalid_connection_info_rejected(ssh_server, kernel):
    info = {**kernel.get_connection_info(), "hb_port": 0}
    with pytest.raises(ValueError) as caught:
        KernelTunnel(KERNEL_ID, SSHHost(ssh_server.host, ssh_server.port), info, known_hosts=ssh_server.known_hosts)
    message = str(caught.value)
    assert KERNEL_ID in message
    assert "hb_port" in message


def test_close_releases_ports_threads_and_files(make_tunnel):
    threads_before = set(threading.enumerate())
    fds_before = open_fd_count()
    tunnel = make_tunnel()
    local_info = tunnel.open()
    # A raw TCP connection to the heartbeat port keeps one forwarding thread
    # and channel busy. The first byte of the kernel's ZMTP greeting is 0xff.
    forwarded = socket.create_connection((LOCAL_IP, local_info["hb_port"]), timeout=WAIT)
    assert forwarded.recv(1) == b"\xff"

    tunnel.close()
    tunnel.close()

    assert read_until_closed(forwarded) == "closed"
    forwarded.close()
    for name in PORT_NAMES:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOCAL_IP, local_info[name]), timeout=WAIT)
    # Threads and files of other components (the shared job poller) may end
    # meanwhile, so only what the tunnel added must be gone.
    assert set(threading.enumerate()) - threads_before == set()
    assert open_fd_count() <= fds_before
    assert not tunnel.is_connected


def test_open_after_close_rejected(make_tunnel):
    tunnel = make_tunnel()
    tunnel.open()
    tunnel.close()
    with pytest.raises(TunnelError, match="closed"):
        tunnel.open()


def test_gives_up_when_server_gone(kernel, tmp_path):
    server = start_sshd(tmp_path / "sshd")
    node = SSHHost(server.host, server.port, server.username)
    tunnel = KernelTunnel(
        KERNEL_ID, node, kernel.get_connection_info(),
        known_hosts=server.known_hosts, key_filename=server.client_key,
        max_reconnect_attempts=2, first_reconnect_delay=0.1,
    )
    try:
        local_info = tunnel.open()
        server.stop()
        assert wait_until(lambda: tunnel.failure is not None, WAIT), "the tunnel never gave up"
        message = str(tunnel.failure)
        assert "after 2 attempt(s)" in message
        assert str(node) in message
        assert not tunnel.is_connected
        # The listeners stay, but close each connection at once.
        with socket.create_connection((LOCAL_IP, local_info["shell_port"]), timeout=WAIT) as late:
            assert read_until_closed(late) == "closed"
    finally:
        tunnel.close()
        server.stop()


def test_known_hosts_name_adds_port():
    assert SSHHost("node01").known_hosts_name == "node01"
    assert SSHHost("node01", 2222).known_hosts_name == "[node01]:2222"


def test_close_during_reconnect(kernel, tmp_path):
    threads_before = set(threading.enumerate())
    server = start_sshd(tmp_path / "sshd")
    tunnel = KernelTunnel(
        KERNEL_ID, SSHHost(server.host, server.port, server.username), kernel.get_connection_info(),
        known_hosts=server.known_hosts, key_filename=server.client_key,
        first_reconnect_delay=600.0,
    )
    try:
        tunnel.open()
        server.stop()
        assert wait_until(lambda: not tunnel.is_connected, WAIT), "the tunnel did not notice that sshd stopped"
    finally:
        tunnel.close()
        server.stop()
    assert tunnel.failure is None
    assert set(threading.enumerate()) - threads_before == set()
