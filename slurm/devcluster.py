"""A one-host Slurm 22.05 cluster on loopback, for development and tests.

``slurmgate devcluster up`` installs Debian's Slurm packages when they are
missing, writes ``/etc/slurm/slurm.conf`` and ``gres.conf`` for partitions
``cpu`` (default) and ``gpu`` with two fake GPUs, starts munged, slurmctld and
slurmd, and waits until the node is idle. Running it again changes nothing
when the cluster is already up with the same configuration. ``down`` cancels
every job in the queue and stops the daemons by their PID files.

Everything here needs root because it writes system configuration and starts
system daemons. The product itself never needs root.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client", "libpmix-dev"]
REQUIRED_COMMANDS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol"]

# The first line of every file this module writes. Files without it belong to
# a real cluster, and this module refuses to overwrite them.
MARKER = "# Written by slurmgate devcluster."

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
JWT_KEY = Path("/etc/slurm/jwt_hs256.key")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
SLURMCTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
LOG_DIR = Path("/var/log/slurm")
FAKE_GPUS = [Path("/dev/slurmgate-fakegpu0"), Path("/dev/slurmgate-fakegpu1")]


class DevClusterError(RuntimeError):
    """The dev cluster could not be set up, started or stopped."""


@dataclass(frozen=True)
class Layout:
    """The dev cluster's shape: one node, two partitions, two fake GPUs.

    The node declares more CPUs and memory than a small CI machine has
    (``SlurmdParameters=config_overrides``) so that several kernels and the
    jobs that block GPUs in tests can run at once. Nothing is enforced
    without cgroups, so the numbers only feed the scheduler.
    """

    node: str
    cpus: int = 16
    memory_mb: int = 16000
    default_memory_per_cpu_mb: int = 500
    cpu_max_time: str = "01:00:00"
    gpu_max_time: str = "02:00:00"


def render_slurm_conf(layout: Layout) -> str:
    """Render slurm.conf for the one-host cluster.

    >>> "PartitionName=gpu Nodes=vm" in render_slurm_conf(Layout("vm"))
    True
    """
    gpus = len(FAKE_GPUS)
    lines = [
        MARKER,
        "ClusterName=slurmgate-dev",
        f"SlurmctldHost={layout.node}(127.0.0.1)",
        "SlurmUser=slurm",
        "AuthType=auth/munge",
        # slurmrestd authenticates with JWT tokens; munge stays the default.
        "AuthAltTypes=auth/jwt",
        f"AuthAltParameters=jwt_key={JWT_KEY}",
        "StateSaveLocation=/var/spool/slurmctld",
        "SlurmdSpoolDir=/var/spool/slurmd",
        f"SlurmctldPidFile={SLURMCTLD_PID}",
        f"SlurmdPidFile={SLURMD_PID}",
        f"SlurmctldLogFile={LOG_DIR}/slurmctld.log",
        f"SlurmdLogFile={LOG_DIR}/slurmd.log",
        # No cgroups inside containers and CI sandboxes.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        # batch_sched_delay=0 saves about 2 s per batch job start. Both
        # partitions share the one node, so a GPU job pending there blocks
        # CPU jobs in the main scheduler until the next backfill pass: make
        # that pass run every second instead of every 30.
        "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        "MpiDefault=none",
        "ReturnToService=2",
        # A cancelled kernel gets SIGTERM, then SIGKILL this many seconds later.
        "KillWait=5",
        "AccountingStorageType=accounting_storage/none",
        # Finished jobs stay readable with ``sacct -c`` after squeue purges them.
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={LOG_DIR}/jobcomp.log",
        (
            f"NodeName={layout.node} NodeAddr=127.0.0.1 CPUs={layout.cpus} Boards=1"
            f" SocketsPerBoard=1 CoresPerSocket={layout.cpus} ThreadsPerCore=1"
            f" RealMemory={layout.memory_mb} Gres=gpu:{gpus} State=UNKNOWN"
        ),
        (
            f"PartitionName=cpu Nodes={layout.node} Default=YES"
            f" MaxTime={layout.cpu_max_time}"
            f" DefMemPerCPU={layout.default_memory_per_cpu_mb} State=UP"
        ),
        (
            f"PartitionName=gpu Nodes={layout.node} MaxTime={layout.gpu_max_time}"
            f" DefMemPerCPU={layout.default_memory_per_cpu_mb} State=UP"
        ),
    ]
    return "\n".join(lines) + "\n"


def render_gres_conf(layout: Layout) -> str:
    """Render gres.conf with character devices standing in for GPUs.

    Slurm sets ``CUDA_VISIBLE_DEVICES`` only for gres entries that have a
    ``File=``, and it accepts only character devices there.

    >>> render_gres_conf(Layout("vm")).splitlines()[-1]
    'NodeName=vm Name=gpu File=/dev/slurmgate-fakegpu[0-1]'
    """
    last = len(FAKE_GPUS) - 1
    return "\n".join(
        [
            MARKER,
            "AutoDetect=off",
            f"NodeName={layout.node} Name=gpu File=/dev/slurmgate-fakegpu[0-{last}]",
        ]
    ) + "\n"


def _run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    log.debug("running %s", argv)
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise DevClusterError(
            f"command {' '.join(argv)!r} failed with exit code {result.returncode}:"
            f" {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise DevClusterError(f"timed out after {timeout:.0f} s waiting for {what}")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(pid, 0) succeeds for a zombie too, which is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise DevClusterError(
            f"'slurmgate devcluster {action}' needs root, because it installs"
            f" packages, writes {SLURM_CONF} and starts system daemons."
            " Run it as root (for example with sudo), or use an existing cluster."
        )


def missing_commands() -> list[str]:
    """Return the Slurm and munge commands that are not installed."""
    return [name for name in REQUIRED_COMMANDS if shutil.which(name) is None]


def install_packages() -> None:
    """Install Debian's Slurm and munge packages when commands are missing."""
    missing = missing_commands()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise DevClusterError(
            f"commands {', '.join(missing)} are missing and apt-get is not available."
            f" Install the packages {' '.join(PACKAGES)} with this system's package manager."
        )
    log.info("installing %s", " ".join(PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env)


def _ensure_host_resolves(node: str) -> None:
    try:
        socket.gethostbyname(node)
        return
    except OSError:
        pass
    log.info("adding %s to /etc/hosts", node)
    with open("/etc/hosts", "a", encoding="utf-8") as hosts:
        hosts.write(f"127.0.0.1 {node}\n")


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it is already there; return whether it changed."""
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == text:
            return False
        if not current.startswith(MARKER):
            raise DevClusterError(
                f"{path} exists and was not written by slurmgate devcluster."
                " Move it away first: the dev cluster does not overwrite a real"
                " cluster's configuration."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _prepare_files(layout: Layout) -> bool:
    """Create users' directories, keys, devices and configuration; return whether the config changed."""
    _ensure_host_resolves(layout.node)
    for directory, owner in [
        (Path("/var/spool/slurmctld"), "slurm"),
        (LOG_DIR, "slurm"),
        (Path("/var/spool/slurmd"), "root"),
        (Path("/run/munge"), "munge"),
    ]:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, owner, owner)
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(128))
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    if not JWT_KEY.exists():
        JWT_KEY.parent.mkdir(parents=True, exist_ok=True)
        JWT_KEY.write_bytes(os.urandom(32))
    shutil.chown(JWT_KEY, "slurm", "slurm")
    JWT_KEY.chmod(0o600)
    for device in FAKE_GPUS:
        if not device.exists():
            # Major 1, minor 3 is /dev/null: harmless, and a character device.
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
    changed = _write_if_changed(SLURM_CONF, render_slurm_conf(layout))
    changed |= _write_if_changed(GRES_CONF, render_gres_conf(layout))
    return changed


def _munge_works() -> bool:
    encoded = subprocess.run(["munge", "-n"], capture_output=True)
    if encoded.returncode != 0:
        return False
    decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True)
    return decoded.returncode == 0


def _controller_up() -> bool:
    result = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return result.returncode == 0 and "UP" in result.stdout


def node_state(node: str) -> str:
    """Return the node's state as ``sinfo`` prints it (``idle``, ``mix``, ``down*``…)."""
    result = subprocess.run(
        ["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True
    )
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""


def _start_daemons(layout: Layout) -> None:
    if not _pid_alive(_read_pid(MUNGE_PID)):
        MUNGE_PID.unlink(missing_ok=True)
        _run(["runuser", "-u", "munge", "--", "munged"])
    _wait_until(_munge_works, 15, "munged to encode and decode credentials")

    if not _pid_alive(_read_pid(SLURMCTLD_PID)):
        SLURMCTLD_PID.unlink(missing_ok=True)
        _run(["slurmctld"])
    _wait_until(_controller_up, 30, "slurmctld to answer 'scontrol ping'")

    if not _pid_alive(_read_pid(SLURMD_PID)):
        SLURMD_PID.unlink(missing_ok=True)
        _run(["slurmd"])

    def node_ready() -> bool:
        state = node_state(layout.node)
        if state.startswith(("down", "drain")):
            # A restart can leave the node down with "Node unexpectedly rebooted".
            subprocess.run(
                ["scontrol", "update", f"nodename={layout.node}", "state=resume"],
                capture_output=True,
            )
        return state in ("idle", "mix", "alloc")

    _wait_until(node_ready, 60, f"node {layout.node} to become idle")


def _stop_slurm_daemons() -> None:
    pids = [_read_pid(SLURMCTLD_PID), _read_pid(SLURMD_PID)]
    if _controller_up():
        subprocess.run(["scontrol", "shutdown"], capture_output=True)
    deadline = time.monotonic() + 30
    for pid in pids:
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in pids:
        if _pid_alive(pid):
            log.warning("process %d did not stop after 'scontrol shutdown'; sending SIGTERM", pid)
            os.kill(pid, signal.SIGTERM)
    SLURMCTLD_PID.unlink(missing_ok=True)
    SLURMD_PID.unlink(missing_ok=True)


def up(layout: Layout | None = None) -> Layout:
    """Install, configure and start the dev cluster; return its layout."""
    _require_root("up")
    install_packages()
    layout = layout or Layout(node=socket.gethostname().split(".")[0])
    changed = _prepare_files(layout)
    running = _pid_alive(_read_pid(SLURMCTLD_PID)) or _pid_alive(_read_pid(SLURMD_PID))
    if changed and running:
        log.info("configuration changed; restarting slurmctld and slurmd")
        _stop_slurm_daemons()
    _start_daemons(layout)
    log.info("dev cluster is up: node %s, partitions cpu and gpu", layout.node)
    return layout


def cancel_all_jobs(timeout: float = 30) -> list[str]:
    """Cancel every job in the queue and wait until none is left."""
    listed = _run(["squeue", "-h", "-o", "%i"])
    job_ids = listed.stdout.split()
    if job_ids:
        log.info("cancelling jobs %s", " ".join(job_ids))
        _run(["scancel", *job_ids], check=False)
        _wait_until(
            lambda: not _run(["squeue", "-h", "-o", "%i"]).stdout.split(),
            timeout,
            f"jobs {' '.join(job_ids)} to end",
        )
    return job_ids


def down() -> None:
    """Cancel all jobs and stop slurmd, slurmctld and munged by their PID files."""
    _require_root("down")
    if _controller_up():
        cancel_all_jobs()
    _stop_slurm_daemons()
    munge_pid = _read_pid(MUNGE_PID)
    if _pid_alive(munge_pid):
        os.kill(munge_pid, signal.SIGTERM)
        _wait_until(lambda: not _pid_alive(munge_pid), 10, "munged to stop")
    MUNGE_PID.unlink(missing_ok=True)
    log.info("dev cluster is down")


def status() -> dict[str, str]:
    """Describe each daemon and the node, for ``slurmgate devcluster status``."""
    report = {
        "munged": "running" if _pid_alive(_read_pid(MUNGE_PID)) else "stopped",
        "slurmctld": "running" if _pid_alive(_read_pid(SLURMCTLD_PID)) else "stopped",
        "slurmd": "running" if _pid_alive(_read_pid(SLURMD_PID)) else "stopped",
    }
    if report["slurmctld"] == "running" and shutil.which("sinfo"):
        node = socket.gethostname().split(".")[0]
        report["node"] = f"{node} {node_state(node) or 'unknown'}"
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        report["jobs"] = str(len(jobs.stdout.split()))
    return report
