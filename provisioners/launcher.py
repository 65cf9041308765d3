"""The job side: start an IPython kernel inside the Slurm job and report where it listens.

The batch script replaces itself with ``python -m slurmgate.provisioners.launcher``,
so this process is the batch step: it receives Slurm's signals, and the job
ends when the kernel exits. The kernel runs in this same process. It binds
its five ZeroMQ ports to one address of this node (never 0.0.0.0), then the
launcher seals the ports with the launch's reply key and stores them as the
job's comment, where the gateway reads them.

Environment (see :mod:`slurmgate.provisioners.protocol`): the kernel id, the
reply key and the HMAC key. The two keys are removed from the environment
before any user code runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .protocol import (
    CONNECTION_KEY_ENV,
    KERNEL_ID_ENV,
    KERNEL_IP_ENV,
    PORT_NAMES,
    REPLY_KEY_ENV,
    seal_reply,
)

log = logging.getLogger("slurmgate.launcher")


class LaunchError(RuntimeError):
    """The job cannot start the kernel; the message goes to the job's output file."""


def resolve_bind_address(choice: str) -> str:
    """Return the IP address the kernel binds to.

    ``loopback`` gives 127.0.0.1, for kernels reached through SSH tunnels.
    ``node`` gives the address this node's host name resolves to, the one
    other hosts use to reach it. Anything else must be an IP address of this
    node and is returned as is.

    >>> resolve_bind_address("loopback")
    '127.0.0.1'
    """
    if choice == "loopback":
        return "127.0.0.1"
    if choice == "node":
        name = socket.gethostname()
        try:
            return socket.gethostbyname(name)
        except OSError as error:
            raise LaunchError(
                f"cannot resolve this node's host name {name!r} to an address: {error}."
                " Set the kernel's bind address in the kernelspec, or fix the node's name resolution."
            ) from error
    return choice


def _pop_required(name: str) -> str:
    value = os.environ.pop(name, "")
    if not value:
        raise LaunchError(
            f"environment variable {name} is missing. This program runs inside a"
            " Slurm job that a slurmgate provisioner submitted; it is not meant to be started by hand."
        )
    return value


def report_connection(job_id: str, sealed_reply: str, attempts: int = 5) -> None:
    """Store the sealed reply as the job's comment, retrying while slurmctld is busy."""
    scontrol = shutil.which("scontrol") or "scontrol"
    argv = [scontrol, "update", f"JobId={job_id}", f"Comment={sealed_reply}"]
    for attempt in range(1, attempts + 1):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            return
        log.warning("scontrol update of job %s failed (attempt %d of %d): %s", job_id, attempt, attempts, result.stderr.strip())
        time.sleep(attempt)
    raise LaunchError(f"could not store the connection reply in job {job_id}'s comment with scontrol")


class WalltimeWarning:
    """Warns the notebook user before Slurm ends the job at its time limit.

    The job is submitted with ``--signal=B:USR1@N``, so Slurm sends SIGUSR1
    to this process N seconds (up to 60 s more) before the limit. The
    warning goes to the output of the cell that is running, or of the next
    cell the user runs when the kernel is idle, as stderr text.
    """

    def __init__(self, shell, job_id: str):
        self.job_id = job_id
        self.running = False
        self.pending: str | None = None
        shell.events.register("pre_run_cell", self._before_cell)
        shell.events.register("post_run_cell", self._after_cell)
        signal.signal(signal.SIGUSR1, self._on_signal)

    def message(self) -> str:
        """Describe when the job ends, asking squeue for the current end time and limit."""
        result = subprocess.run(
            ["squeue", "--noheader", f"--jobs={self.job_id}", "--format=%e|%l"],
            capture_output=True, text=True, timeout=10,
        )
        end, _, limit = result.stdout.strip().partition("|")
        if result.returncode == 0 and "T" in end:
            return (
                f"This kernel's Slurm job {self.job_id} ends at {end.split('T')[1][:5]}"
                f" (time limit {limit}). Save your work."
            )
        return f"This kernel's Slurm job {self.job_id} reaches its time limit soon. Save your work."

    def _on_signal(self, signum, frame) -> None:
        try:
            text = self.message()
        except (OSError, subprocess.SubprocessError):
            text = f"This kernel's Slurm job {self.job_id} reaches its time limit soon. Save your work."
        # No logging here: once the kernel runs, ipykernel forwards this
        # process's stderr to the notebook, so a log line would show twice.
        if self.running:
            self._show(text)
        else:
            self.pending = text

    def _before_cell(self, info=None) -> None:
        self.running = True
        if self.pending:
            self._show(self.pending)
            self.pending = None

    def _after_cell(self, result=None) -> None:
        self.running = False

    @staticmethod
    def _show(text: str) -> None:
        sys.stderr.write(f"\n*** {text} ***\n")
        sys.stderr.flush()


def _remove_on_termination(runtime_dir: Path) -> None:
    """Delete the connection file's directory when Slurm ends the job with SIGTERM.

    scancel, the walltime and preemption send SIGTERM before SIGKILL; the
    ``finally`` in :func:`main` does not run then, and the file contains the
    kernel's HMAC key.
    """

    def terminate(signum, frame):
        shutil.rmtree(runtime_dir, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, terminate)


def build_parser() -> argparse.ArgumentParser:
    """Build the launcher's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m slurmgate.provisioners.launcher",
        description="Start an IPython kernel inside a Slurm job submitted by slurmgate.",
    )
    parser.add_argument(
        "--ip",
        default=os.environ.get(KERNEL_IP_ENV, "node"),
        help="address the kernel binds to: 'node' (this node's address), 'loopback'"
        f" (for SSH tunnels), or an IP address (default: ${KERNEL_IP_ENV} or 'node')",
    )
    parser.add_argument("kernel_args", nargs=argparse.REMAINDER, help="extra arguments for IPKernelApp")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the kernel, report its ports, and serve until it shuts down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s slurmgate-launcher %(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        kernel_id = _pop_required(KERNEL_ID_ENV)
        job_id = os.environ.get("SLURM_JOB_ID", "")
        if not job_id:
            raise LaunchError("SLURM_JOB_ID is not set: the launcher must run as a Slurm batch job")
        reply_key = _pop_required(REPLY_KEY_ENV)
        connection_key = _pop_required(CONNECTION_KEY_ENV)
        ip = resolve_bind_address(args.ip)
    except LaunchError as error:
        log.error("%s", error)
        return 2

    from ipykernel.kernelapp import IPKernelApp

    runtime_dir = Path(tempfile.mkdtemp(prefix="slurmgate-kernel-"))
    _remove_on_termination(runtime_dir)
    try:
        # IPKernelApp loads the key from an existing connection file and
        # binds random ports where the file has 0, then writes them back.
        connection_file = runtime_dir / f"kernel-{kernel_id}.json"
        descriptor = os.open(connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            json.dump(
                {"ip": ip, "key": connection_key, "transport": "tcp", "signature_scheme": "hmac-sha256",
                 **{name: 0 for name in PORT_NAMES}},
                stream,
            )
        app = IPKernelApp.instance(connection_file=str(connection_file))
        app.initialize(list(args.kernel_args))
        info = {
            "ip": ip,
            "transport": "tcp",
            "signature_scheme": app.session.signature_scheme,
            "shell_port": app.shell_port,
            "iopub_port": app.iopub_port,
            "stdin_port": app.stdin_port,
            "control_port": app.control_port,
            "hb_port": app.hb_port,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        log.info("kernel %s of job %s listens on %s", kernel_id, job_id, ip)
        WalltimeWarning(app.shell, job_id)
        report_connection(job_id, seal_reply(reply_key, kernel_id, job_id, info))
        app.start()
    except LaunchError as error:
        log.error("%s", error)
        return 2
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
