"""A Slurm kernel reached through an SSH tunnel to its node, with the connection dropped mid-session."""

from __future__ import annotations

import socket

import pytest

from sshd import start_sshd
from support import run_code, squeue_ids, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def tunnel_config(server) -> dict:
    # The dev cluster's node is this host; its sshd's key is known as 127.0.0.1.
    return {
        "ssh_tunnel": True,
        "ssh_node_host": "127.0.0.1",
        "ssh_port": server.port,
        "ssh_key_file": str(server.client_key),
        "ssh_known_hosts": str(server.known_hosts),
    }


async def test_tunnelled_kernel_survives_ssh_drop(make_manager, ssh_server):
    manager = make_manager("slurm-cpu", tunnel_config(ssh_server))
    await manager.start_kernel()
    provisioner = manager.provisioner
    tunnel = provisioner.tunnel
    remote = provisioner.kernel_job.connection_info
    assert remote["ip"] == "127.0.0.1"
    assert manager.shell_port != remote["shell_port"]
    assert ssh_server.accepted_logins() == 1
    assert await run_code(manager, "x = 41\nprint('before the drop')") == "before the drop\n"

    killed = ssh_server.kill_sessions()
    assert killed
    assert wait_until(lambda: tunnel.reconnect_count >= 1 and tunnel.is_connected, 30)
    assert await manager.is_alive()
    assert await run_code(manager, "print(x + 1)") == "42\n"

    job_id = provisioner.job_id
    local_port = manager.shell_port
    await manager.shutdown_kernel()
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", local_port), timeout=2).close()


async def test_unknown_host_key_fails_launch(make_manager, ssh_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    manager = make_manager("slurm-cpu", {**tunnel_config(ssh_server), "ssh_known_hosts": str(empty)})
    node = socket.gethostname().split(".")[0]
    with pytest.raises(Exception, match=f"SSH tunnel to node {node} failed") as caught:
        await manager.start_kernel()
    assert "127.0.0.1" in str(caught.value)
    job_id = manager.provisioner.job_id
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)
