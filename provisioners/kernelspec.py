"""``jupyter slurm-spec install``: write a kernelspec whose kernels run as Slurm jobs."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from jupyter_core.paths import ENV_JUPYTER_PATH, SYSTEM_JUPYTER_PATH, jupyter_data_dir

from slurmgate.slurm.request import RequestError, request_from_settings

PROVISIONER_NAME = "slurm-provisioner"
PROCESS_PROXY_CLASS = "slurmgate.provisioners.eg3.SlurmProcessProxy"
LAUNCHER_MODULE = "slurmgate.provisioners.launcher"
_KERNEL_NAME = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)

# Command-line option, setting name in the kernelspec's config.
_RESOURCE_OPTIONS = (
    ("partition", "partition"),
    ("gpus", "gpus"),
    ("gpu_type", "gpu_type"),
    ("cpus", "cpus"),
    ("memory", "memory"),
    ("walltime", "walltime"),
    ("account", "account"),
    ("qos", "qos"),
    ("reservation", "reservation"),
    ("constraint", "constraint"),
)


class SpecError(ValueError):
    """The kernelspec settings are invalid; nothing was written."""


def build_kernelspec(args: argparse.Namespace) -> dict[str, Any]:
    """Build the kernel.json content for the given options; raise SpecError on bad input."""
    config: dict[str, Any] = {}
    for option, setting in _RESOURCE_OPTIONS:
        value = getattr(args, option)
        if value is not None and value != "":
            config[setting] = value
    request_settings = {key: value for key, value in config.items()}
    if args.extra_directive:
        config["extra_directives"] = list(args.extra_directive)
        request_settings["extra_directives"] = list(args.extra_directive)
    try:
        request_from_settings("jupyter-kernel-check", request_settings)
    except RequestError as error:
        raise SpecError(f"kernelspec {args.name!r}: {error}") from error
    if args.prologue:
        config["script_prologue"] = list(args.prologue)
    if args.kernel_ip:
        config["kernel_ip"] = args.kernel_ip
    if args.launch_timeout is not None:
        config["launch_timeout"] = args.launch_timeout
    if args.job_output:
        config["job_output"] = args.job_output
    config.update(_ssh_settings(args))
    _check_with_traits(args.name, config)
    if args.gateway == "eg3":
        # Enterprise Gateway 3 has no kernel provisioners; it reads the same
        # settings from its process proxy stanza.
        metadata = {"process_proxy": {"class_name": PROCESS_PROXY_CLASS, "config": config}, "debugger": False}
    else:
        metadata = {"kernel_provisioner": {"provisioner_name": PROVISIONER_NAME, "config": config}, "debugger": False}
    return {
        "argv": [args.python, "-m", LAUNCHER_MODULE],
        "display_name": args.display_name or f"Python 3 (Slurm {args.partition or 'default partition'})",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": metadata,
    }


def _check_with_traits(name: str, config: dict[str, Any]) -> None:
    """Validate the settings as the gateway will at kernel start; raise SpecError on the first bad one."""
    from traitlets import TraitError

    from .config import SlurmKernelConfig

    try:
        SlurmKernelConfig(**config)
    except TraitError as error:
        raise SpecError(f"kernelspec {name!r}: {error}") from error


def _ssh_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the SSH tunnel settings; raise SpecError when they are given without --ssh-tunnel."""
    settings: dict[str, Any] = {}
    for option in ("ssh_node_host", "ssh_port", "ssh_user", "ssh_key_file", "ssh_known_hosts", "ssh_jump_host"):
        value = getattr(args, option)
        if value not in (None, ""):
            settings[option] = value
    if settings and not args.ssh_tunnel:
        names = ", ".join("--" + name.replace("_", "-") for name in settings)
        raise SpecError(f"kernelspec {args.name!r}: {names} apply only with --ssh-tunnel; add it or drop them")
    if args.ssh_tunnel:
        settings["ssh_tunnel"] = True
    if "ssh_port" in settings and not 0 < settings["ssh_port"] < 65536:
        raise SpecError(f"kernelspec {args.name!r}: invalid --ssh-port {settings['ssh_port']}; expected 1 to 65535")
    return settings


def kernels_dir(args: argparse.Namespace) -> Path:
    """Return the kernels directory that the install options select."""
    if args.prefix:
        return Path(args.prefix) / "share" / "jupyter" / "kernels"
    if args.sys_prefix:
        return Path(ENV_JUPYTER_PATH[0]) / "kernels"
    if args.user:
        return Path(jupyter_data_dir()) / "kernels"
    return Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"


def install(args: argparse.Namespace) -> Path:
    """Write the kernelspec and return its directory."""
    if not _KERNEL_NAME.match(args.name):
        raise SpecError(
            f"invalid kernel name {args.name!r}: use letters, digits, '.', '_' and '-' only,"
            " as Jupyter requires for kernelspec directories"
        )
    spec = build_kernelspec(args)
    directory = kernels_dir(args) / args.name.lower()
    if args.dry_run:
        print(json.dumps(spec, indent=2))
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    _copy_logos(directory)
    (directory / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return directory


def _copy_logos(directory: Path) -> None:
    try:
        import ipykernel
    except ImportError:
        return
    resources = Path(ipykernel.__file__).parent / "resources"
    for logo in ("logo-32x32.png", "logo-64x64.png"):
        if (resources / logo).exists():
            shutil.copyfile(resources / logo, directory / logo)


def _add_resource_options(sub: argparse.ArgumentParser) -> None:
    """Add the options that describe the kernel's job."""
    sub.add_argument("--name", required=True, help="kernelspec name, such as slurm-gpu")
    sub.add_argument("--display-name", help="name shown in the launcher, such as 'Python 3 (GPU)'")
    sub.add_argument("--partition", help="Slurm partition; default: the cluster's default partition")
    sub.add_argument("--gpus", type=int, help="GPUs per kernel (--gres=gpu:N)")
    sub.add_argument("--gpu-type", help="GPU type for --gres=gpu:TYPE:N")
    sub.add_argument("--cpus", type=int, help="CPUs per kernel (--cpus-per-task)")
    sub.add_argument("--memory", help="memory per kernel, such as 4G")
    sub.add_argument("--walltime", help="time limit, such as 1:00:00")
    sub.add_argument("--account", help="Slurm account")
    sub.add_argument("--qos", help="Slurm QoS")
    sub.add_argument("--reservation", help="Slurm reservation")
    sub.add_argument("--constraint", help="node features (--constraint)")
    sub.add_argument(
        "--extra-directive", action="append", metavar="OPTION",
        help="another sbatch option, written with '=' because it starts with '-',"
        " such as --extra-directive=--exclusive; repeatable",
    )
    sub.add_argument(
        "--prologue", action="append", metavar="LINE",
        help="shell line run before the kernel, such as 'module load cuda'; repeatable",
    )
    sub.add_argument("--kernel-ip", help="address the kernel binds to: node, loopback or an IP address")
    sub.add_argument("--launch-timeout", type=float, help="seconds to wait for the kernel, queue time included")
    sub.add_argument("--job-output", help="path of the job's output file, with sbatch's %%j-style patterns")
    sub.add_argument(
        "--gateway", choices=("provisioner", "eg3"), default="provisioner",
        help="kind of kernelspec: 'provisioner' for hosts with jupyter_client 8 (Kernel Gateway 3,"
        " Jupyter Server 2, JupyterLab 4), 'eg3' for Enterprise Gateway 3's process proxy (default: provisioner)",
    )


def _add_tunnel_options(sub: argparse.ArgumentParser) -> None:
    """Add the SSH tunnel options."""
    tunnel = sub.add_argument_group("SSH tunnel", "reach the kernel through one SSH connection per kernel")
    tunnel.add_argument("--ssh-tunnel", action="store_true", help="bind the kernel to 127.0.0.1 on the node and tunnel its ports")
    tunnel.add_argument("--ssh-node-host", help="host name for SSH to the node; {node} is the Slurm node name (default {node})")
    tunnel.add_argument("--ssh-port", type=int, help="SSH port on the nodes (default 22)")
    tunnel.add_argument("--ssh-user", help="SSH user (default: the gateway's user)")
    tunnel.add_argument("--ssh-key-file", help="private key file (default: the SSH agent and default keys)")
    tunnel.add_argument("--ssh-known-hosts", help="known_hosts file with the nodes' host keys (default ~/.ssh/known_hosts)")
    tunnel.add_argument("--ssh-jump-host", help="login node to connect through, as HOST or HOST:PORT")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``jupyter slurm-spec`` argument parser."""
    parser = argparse.ArgumentParser(prog="jupyter slurm-spec", description="Manage kernelspecs whose kernels run as Slurm jobs.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "settings", help="list every Slurm kernel setting (kernelspec config, gateway config, SLURMGATE_* variables)"
    )
    sub = commands.add_parser("install", help="write a kernelspec")
    _add_resource_options(sub)
    _add_tunnel_options(sub)
    sub.add_argument("--python", default=sys.executable, help="Python interpreter on the compute nodes (default: this one)")
    where = sub.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into this Python environment")
    where.add_argument("--prefix", help="install under PREFIX/share/jupyter/kernels")
    sub.add_argument("--dry-run", action="store_true", help="print kernel.json instead of writing it")
    return parser


def print_settings() -> None:
    """Print every Slurm kernel setting with its help, unit and environment variable."""
    from .config import SlurmKernelConfig

    SlurmKernelConfig.class_print_help()


def main(argv: list[str] | None = None) -> int:
    """Run ``jupyter slurm-spec`` and return its exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        print_settings()
        return 0
    try:
        directory = install(args)
    except (SpecError, OSError) as error:
        print(f"jupyter slurm-spec: {error}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"Installed kernelspec {args.name.lower()} in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
