"""Run examples/digits.ipynb on a Slurm GPU kernel through a Jupyter gateway.

Expects the dev cluster to be up (``slurmgate devcluster up``). Installs the
``slurm-cpu`` and ``slurm-gpu`` kernelspecs into a temporary directory,
starts Kernel Gateway 3 (or, with ``--gateway eg3``, Enterprise Gateway 3.3
with the kernel's channels tunnelled through a loopback sshd) on a free
loopback port, runs each code cell of the
notebook through the gateway's REST and WebSocket API, shows where the kernel
ran, shuts it down, checks that its job left the queue, and stops the
gateway. Exits 0 on success; on failure it names the step that failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from gateway_client import Gateway
from gateways import GatewayProcess, start_enterprise_gateway, start_kernel_gateway
from sshd import start_sshd

HERE = Path(__file__).resolve().parent
PROBE = (
    "import os, socket\n"
    "print(os.environ.get('SLURM_JOB_ID'), socket.gethostname(),"
    " os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)'), os.environ.get('SLURM_JOB_PARTITION'))"
)


class StepFailed(RuntimeError):
    """A demo step failed; the message names the step."""


def install_kernelspecs(prefix: Path, job_output: str, extra: list[str]) -> Path:
    """Install the cpu and gpu kernelspecs under ``prefix``; return the Jupyter data path."""
    specs = [
        ["--name", "slurm-cpu", "--display-name", "Python 3 (Slurm CPU)", "--partition", "cpu"],
        ["--name", "slurm-gpu", "--display-name", "Python 3 (Slurm GPU)", "--partition", "gpu", "--gpus", "1", "--walltime", "30"],
    ]
    for spec in specs:
        subprocess.run(
            [sys.executable, "-m", "slurmgate.provisioners.kernelspec", "install", *spec,
             "--prefix", str(prefix), "--job-output", job_output, *extra],
            check=True,
        )
    return prefix / "share" / "jupyter"


def queued_jobs(job_id: str) -> str:
    """Return squeue's line for the job while it is pending or running, else an empty string."""
    argv = ["squeue", "--noheader", f"--jobs={job_id}", "--format=%i %T %P %b"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def run_notebook(gateway: Gateway, notebook: Path, kernel_name: str, env: dict[str, str]) -> None:
    """Start a kernel, run the notebook's code cells and the probe, then shut the kernel down."""
    print(f"\n== starting a {kernel_name} kernel (it waits in the Slurm queue if the GPUs are busy)")
    model = gateway.start_kernel(kernel_name, env=env, timeout=600)
    kernel_id = model["id"]

    def show(status: dict) -> None:
        details = ", ".join(f"{key} {value}" for key, value in status.items() if value not in (None, "") and key != "user")
        print(f"   slurm: {details}")

    gateway.wait_until_started(kernel_id, timeout=600, on_status=show)
    print(f"kernel {kernel_id} started")
    channels = gateway.connect(kernel_id)
    job_id = ""
    try:
        cells = [cell for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
        for number, cell in enumerate(cells, start=1):
            print(f"\n-- cell {number} of {len(cells)}")
            print(cell.source)
            result = channels.execute(cell.source, timeout=300)
            print(f"-> {result.text().rstrip()}")
            if result.status != "ok":
                raise StepFailed(f"notebook cell {number} failed: {result.error}")
        probe = channels.execute(PROBE).stdout.split()
        job_id, node, cuda, partition = probe
        print(f"\n== the kernel ran in Slurm job {job_id} on node {node}, partition {partition}, CUDA_VISIBLE_DEVICES={cuda}")
        print(f"squeue: {queued_jobs(job_id)}")
    finally:
        channels.close()
        print(f"\n== shutting kernel {kernel_id} down")
        gateway.shutdown(kernel_id)
    deadline = time.monotonic() + 10
    while job_id and queued_jobs(job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    if job_id and queued_jobs(job_id):
        raise StepFailed(f"Slurm job {job_id} is still in squeue 10 s after the kernel shut down")
    print(f"Slurm job {job_id} has left the queue")


def start_gateway(args: argparse.Namespace, workdir: Path) -> tuple[GatewayProcess, dict[str, str], object]:
    """Install the kernelspecs and start the chosen gateway; return it, the start request's env and the sshd."""
    job_output = str(workdir / "kernel-%j.log")
    if args.gateway == "kernelgateway":
        jupyter_path = install_kernelspecs(workdir / "prefix", job_output, [])
        return start_kernel_gateway(jupyter_path, workdir / "gateway.log"), {}, None
    if not args.eg3_python:
        raise StepFailed("--eg3-python is required with --gateway eg3; 'make demo GATEWAY=eg3' sets it")
    # The kernel's channels go through SSH to the node, here this host's own sshd.
    server = start_sshd(workdir / "sshd")
    # The kernel runs this environment's Python (with scikit-learn), not the gateway's.
    tunnel = ["--gateway", "eg3", "--ssh-tunnel", "--ssh-node-host", "127.0.0.1",
              "--ssh-port", str(server.port), "--ssh-key-file", str(server.client_key),
              "--ssh-known-hosts", str(server.known_hosts)]
    jupyter_path = install_kernelspecs(workdir / "prefix", job_output, tunnel)
    gateway = start_enterprise_gateway(args.eg3_python, jupyter_path, workdir / "gateway.log")
    # Enterprise Gateway rejects kernels for root unless the request names a user.
    return gateway, {"KERNEL_USERNAME": "slurmgate-demo"}, server


def main() -> int:
    """Run the demo and return its exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=HERE / "digits.ipynb")
    parser.add_argument("--kernel", default="slurm-gpu")
    parser.add_argument("--gateway", choices=("kernelgateway", "eg3"), default="kernelgateway",
                        help="Kernel Gateway 3, or Enterprise Gateway 3.3 with the kernel's channels tunnelled over SSH")
    parser.add_argument("--eg3-python", help="Python of the Enterprise Gateway 3.3 environment")
    args = parser.parse_args()

    step = "check the dev cluster"
    workdir = Path(tempfile.mkdtemp(prefix="slurmgate-demo-"))
    gateway: GatewayProcess | None = None
    server = None
    try:
        if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
            raise StepFailed("slurmctld does not respond to 'scontrol ping'; run 'slurmgate devcluster up' as root")
        step = f"install the kernelspecs and start {args.gateway}"
        gateway, env, server = start_gateway(args, workdir)
        print(f"{args.gateway} listens on {gateway.gateway.url}; kernelspecs: {', '.join(sorted(gateway.gateway.kernelspecs()))}")
        step = "run the notebook"
        run_notebook(gateway.gateway, args.notebook, args.kernel, env)
        if server is not None:
            logins = server.accepted_logins()
            print(f"the kernel's channels went through SSH to 127.0.0.1:{server.port} ({logins} SSH login{'s' if logins != 1 else ''})")
    except (StepFailed, subprocess.CalledProcessError, OSError, RuntimeError, ValueError) as error:
        print(f"\ndemo failed at step '{step}': {error}", file=sys.stderr)
        if gateway is not None:
            print(f"gateway log:\n{gateway.log()[-4000:]}", file=sys.stderr)
        for kernel_log in sorted(workdir.glob("kernel-*.log")):
            print(f"{kernel_log.name}:\n{kernel_log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None:
            gateway.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ndemo finished: the notebook ran on a Slurm job through {args.gateway}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
