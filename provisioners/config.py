"""Configuration of Slurm kernels, shared by the provisioner and the Enterprise Gateway process proxy.

Every setting is a configurable trait. Its value comes, in order of
precedence, from the kernelspec (``metadata.kernel_provisioner.config``
or the process proxy's ``config``), from the gateway's configuration file
(``c.SlurmProvisioner.partition = "gpu"``), or from the environment
variable its help names, read when the trait is first used.
"""

from __future__ import annotations

import ipaddress
import os

from traitlets import Bool, Dict, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from slurmgate.slurm.client import SlurmClient
from slurmgate.slurm.policy import CLIENT_FIELDS, Limits, Policy
from slurmgate.slurm.request import RequestError, parse_memory_field, parse_walltime_field
from slurmgate.slurm.runner import SSHRunner

ENV_PREFIX = "SLURMGATE_"

# Slurm clients by access (local, or SSH host, port, user and key), shared by all kernels.
_CLIENTS: dict[tuple, SlurmClient] = {}

# Variables the job gets from the gateway's environment unless the site
# configures another list. Secrets and the gateway's own tokens are never
# among them: a job receives only the names listed here and the launch's own.
DEFAULT_ENV_PASSTHROUGH = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"]

# Request fields clients may set unless the site configures otherwise.
DEFAULT_CLIENT_FIELDS = ("partition", "gpus", "cpus", "memory", "walltime", "constraint")


def _env(name: str, fallback: str = "") -> str:
    return os.environ.get(ENV_PREFIX + name, fallback)


def _env_number(name: str, fallback: str, kind=int):
    value = _env(name, fallback) or fallback
    try:
        return kind(value)
    except ValueError:
        raise TraitError(
            f"environment variable {ENV_PREFIX}{name} is {value!r}; expected a number such as {fallback}"
        ) from None


def _env_list(name: str, fallback: list[str]) -> list[str]:
    value = os.environ.get(ENV_PREFIX + name)
    if value is None:
        return list(fallback)
    return [item.strip() for item in value.split(",") if item.strip()]


class SlurmKernelConfig(LoggingConfigurable):
    """The Slurm settings of one kind of kernel: resources, placement and launch behaviour."""

    partition = Unicode(
        allow_none=True,
        config=True,
        help="Slurm partition for kernel jobs; empty means the cluster's default partition."
        " (SLURMGATE_PARTITION env var)",
    )

    @default("partition")
    def _partition_default(self):
        return _env("PARTITION") or None

    gpus = Integer(
        config=True,
        help="Number of GPUs per kernel, requested as --gres=gpu:N. (SLURMGATE_GPUS env var)",
    )

    @default("gpus")
    def _gpus_default(self):
        return _env_number("GPUS", "0")

    gpu_type = Unicode(
        allow_none=True,
        config=True,
        help="GPU type for --gres=gpu:TYPE:N, such as a100; empty means any type."
        " (SLURMGATE_GPU_TYPE env var)",
    )

    @default("gpu_type")
    def _gpu_type_default(self):
        return _env("GPU_TYPE") or None

    cpus = Integer(
        config=True,
        help="CPUs per kernel, requested as --cpus-per-task. (SLURMGATE_CPUS env var)",
    )

    @default("cpus")
    def _cpus_default(self):
        return _env_number("CPUS", "1")

    memory = Unicode(
        config=True,
        help="Memory per kernel in Slurm's units, such as 4G or 512M; empty means the"
        " partition's default. (SLURMGATE_MEMORY env var)",
    )

    @default("memory")
    def _memory_default(self):
        return _env("MEMORY")

    walltime = Unicode(
        config=True,
        help="Time limit per kernel in Slurm's formats, such as 60, 1:30:00 or"
        " 1-00:00:00; empty means the partition's default. (SLURMGATE_WALLTIME env var)",
    )

    @default("walltime")
    def _walltime_default(self):
        return _env("WALLTIME")

    account = Unicode(
        allow_none=True, config=True,
        help="Slurm account to charge. (SLURMGATE_ACCOUNT env var)",
    )

    @default("account")
    def _account_default(self):
        return _env("ACCOUNT") or None

    qos = Unicode(
        allow_none=True, config=True,
        help="Slurm quality of service (QoS). (SLURMGATE_QOS env var)",
    )

    @default("qos")
    def _qos_default(self):
        return _env("QOS") or None

    reservation = Unicode(
        allow_none=True, config=True,
        help="Slurm reservation to run in. (SLURMGATE_RESERVATION env var)",
    )

    @default("reservation")
    def _reservation_default(self):
        return _env("RESERVATION") or None

    constraint = Unicode(
        allow_none=True, config=True,
        help="Node features the job needs, as for sbatch --constraint. (SLURMGATE_CONSTRAINT env var)",
    )

    @default("constraint")
    def _constraint_default(self):
        return _env("CONSTRAINT") or None

    extra_directives = List(
        Unicode(),
        config=True,
        help="More sbatch options, one per entry, written as #SBATCH lines, such as"
        " --exclusive. (SLURMGATE_EXTRA_DIRECTIVES env var, comma-separated)",
    )

    @default("extra_directives")
    def _extra_directives_default(self):
        return _env_list("EXTRA_DIRECTIVES", [])

    script_prologue = List(
        Unicode(),
        config=True,
        help="Shell lines the job script runs before the kernel starts, such as"
        " 'module load cuda'. They are not quoted. (SLURMGATE_SCRIPT_PROLOGUE env var,"
        " lines separated by ';;')",
    )

    @default("script_prologue")
    def _script_prologue_default(self):
        value = os.environ.get(ENV_PREFIX + "SCRIPT_PROLOGUE", "")
        return [line.strip() for line in value.split(";;") if line.strip()]

    job_output = Unicode(
        config=True,
        help="Path of the job's output file, with sbatch's % patterns, such as"
        " /scratch/%u/jupyter-%j.log; relative paths start in the working directory;"
        " empty means Slurm's default slurm-%j.out. (SLURMGATE_JOB_OUTPUT env var)",
    )

    @default("job_output")
    def _job_output_default(self):
        return _env("JOB_OUTPUT")

    working_dir = Unicode(
        config=True,
        help="Directory the kernel starts in when the client names none (KERNEL_WORKING_DIR)"
        " and the server passes none; empty means the gateway's own working directory."
        " (SLURMGATE_WORKING_DIR env var)",
    )

    @default("working_dir")
    def _working_dir_default(self):
        return _env("WORKING_DIR")

    job_name_prefix = Unicode(
        config=True,
        help="Prefix of the Slurm job name; the kernel id follows it, so that each"
        " kernel's job can be found with squeue --name. (SLURMGATE_JOB_NAME_PREFIX env var)",
    )

    @default("job_name_prefix")
    def _job_name_prefix_default(self):
        return _env("JOB_NAME_PREFIX", "jupyter-kernel-")

    kernel_ip = Unicode(
        config=True,
        help="Address the kernel binds its ports to on the node: 'node' for the node's"
        " own address, 'loopback' for 127.0.0.1 (SSH tunnels), or an IP address."
        " Never 0.0.0.0. (SLURMGATE_KERNEL_IP env var)",
    )

    @default("kernel_ip")
    def _kernel_ip_default(self):
        return _env("KERNEL_IP", "node")

    @validate("kernel_ip")
    def _validate_kernel_ip(self, proposal):
        value = proposal["value"]
        if value in ("node", "loopback"):
            return value
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise TraitError(f"invalid kernel_ip {value!r}; use 'node', 'loopback' or one IP address of the node") from None
        if address.is_unspecified:
            raise TraitError(
                f"kernel_ip {value!r} would expose the kernel on every interface;"
                " use 'node', 'loopback' or one address of the node"
            )
        return value

    env_passthrough = List(
        Unicode(),
        config=True,
        help="Names of the gateway's environment variables that the kernel's job receives;"
        " the launch's own variables and the start request's KERNEL_* variables are always"
        f" added. Default: {','.join(DEFAULT_ENV_PASSTHROUGH)}."
        " (SLURMGATE_ENV_PASSTHROUGH env var, comma-separated)",
    )

    @default("env_passthrough")
    def _env_passthrough_default(self):
        return _env_list("ENV_PASSTHROUGH", DEFAULT_ENV_PASSTHROUGH)

    launch_timeout = Float(
        config=True,
        help="Seconds a launch may take, queue wait included, before the job is cancelled;"
        " a start request's KERNEL_LAUNCH_TIMEOUT replaces it. (SLURMGATE_LAUNCH_TIMEOUT env var)",
    )

    @default("launch_timeout")
    def _launch_timeout_default(self):
        return _env_number("LAUNCH_TIMEOUT", "120", float)

    poll_interval = Float(
        config=True,
        help="Seconds between squeue calls while every kernel's job is steady; one call"
        " serves all kernels of the gateway. (SLURMGATE_POLL_INTERVAL env var)",
    )

    @default("poll_interval")
    def _poll_interval_default(self):
        return _env_number("POLL_INTERVAL", "5", float)

    fast_poll_interval = Float(
        config=True,
        help="Seconds between squeue calls while any kernel's job is starting or ending."
        " (SLURMGATE_FAST_POLL_INTERVAL env var)",
    )

    @default("fast_poll_interval")
    def _fast_poll_interval_default(self):
        return _env_number("FAST_POLL_INTERVAL", "0.25", float)

    signal_lead = Integer(
        config=True,
        help="Seconds before the walltime ends at which the kernel warns the user to save"
        " their work (sbatch --signal=B:USR1@N); 0 turns the warning off. Slurm may send the"
        " signal up to 60 s early. (SLURMGATE_SIGNAL_LEAD env var)",
    )

    @default("signal_lead")
    def _signal_lead_default(self):
        return _env_number("SIGNAL_LEAD", "300")

    allowed_partitions = List(
        Unicode(),
        config=True,
        help="Partitions kernels may use; empty allows every partition the cluster has."
        " (SLURMGATE_ALLOWED_PARTITIONS env var, comma-separated)",
    )

    @default("allowed_partitions")
    def _allowed_partitions_default(self):
        return _env_list("ALLOWED_PARTITIONS", [])

    max_gpus = Integer(
        allow_none=True, config=True,
        help="Most GPUs one kernel may ask for; empty means no gateway limit. (SLURMGATE_MAX_GPUS env var)",
    )

    @default("max_gpus")
    def _max_gpus_default(self):
        return _env_number("MAX_GPUS", "") if _env("MAX_GPUS") else None

    max_cpus = Integer(
        allow_none=True, config=True,
        help="Most CPUs one kernel may ask for; empty means no gateway limit. (SLURMGATE_MAX_CPUS env var)",
    )

    @default("max_cpus")
    def _max_cpus_default(self):
        return _env_number("MAX_CPUS", "") if _env("MAX_CPUS") else None

    max_memory = Unicode(
        config=True,
        help="Most memory one kernel may ask for, in Slurm's units such as 64G; empty means"
        " no gateway limit. (SLURMGATE_MAX_MEMORY env var)",
    )

    @default("max_memory")
    def _max_memory_default(self):
        return _env("MAX_MEMORY")

    max_walltime = Unicode(
        config=True,
        help="Maximum time limit one kernel may request, such as 8:00:00; empty means no"
        " gateway limit. (SLURMGATE_MAX_WALLTIME env var)",
    )

    @default("max_walltime")
    def _max_walltime_default(self):
        return _env("MAX_WALLTIME")

    partition_limits = Dict(
        config=True,
        help="Limits per partition that replace the max_* settings there, such as"
        " {'gpu': {'max_gpus': 2, 'max_walltime': '4:00:00'}}. Keys: max_gpus, max_cpus,"
        " max_memory, max_walltime. Set in the gateway's configuration file; no env var.",
    )

    client_overrides = List(
        Unicode(),
        config=True,
        help="Request fields a client may set per kernel with KERNEL_* variables in the start"
        f" request, within the limits; valid fields are {', '.join(CLIENT_FIELDS)}. Default:"
        f" {', '.join(DEFAULT_CLIENT_FIELDS)}; account, qos and reservation charge or"
        " prioritise jobs and are the admin's to open. KERNEL_LAUNCH_TIMEOUT (bounded by"
        " max_launch_timeout) and KERNEL_WORKING_DIR are always accepted."
        " (SLURMGATE_CLIENT_OVERRIDES env var, comma-separated; empty string allows none)",
    )

    @default("client_overrides")
    def _client_overrides_default(self):
        return _env_list("CLIENT_OVERRIDES", list(DEFAULT_CLIENT_FIELDS))

    max_launch_timeout = Float(
        config=True,
        help="Maximum launch timeout, in seconds, a client may request with KERNEL_LAUNCH_TIMEOUT."
        " (SLURMGATE_MAX_LAUNCH_TIMEOUT env var)",
    )

    @default("max_launch_timeout")
    def _max_launch_timeout_default(self):
        return _env_number("MAX_LAUNCH_TIMEOUT", "3600", float)

    @validate("client_overrides")
    def _validate_client_overrides(self, proposal):
        unknown = set(proposal["value"]) - set(CLIENT_FIELDS)
        if unknown:
            raise TraitError(
                f"client_overrides has unknown field(s) {', '.join(sorted(unknown))};"
                f" valid fields are {', '.join(CLIENT_FIELDS)}"
            )
        return proposal["value"]

    @validate("max_memory", "max_walltime")
    def _validate_maximum_sizes(self, proposal):
        name, value = proposal["trait"].name, proposal["value"]
        if value:
            self._as_limits({name: value})
        return value

    @validate("partition_limits")
    def _validate_partition_limits(self, proposal):
        for partition, settings in proposal["value"].items():
            if not isinstance(settings, dict):
                raise TraitError(f"partition_limits[{partition!r}] must be a dict of limits; got {settings!r}")
            self._as_limits(settings, f"partition {partition!r}")
        return proposal["value"]

    @validate("signal_lead")
    def _validate_signal_lead(self, proposal):
        return _at_least("signal_lead", proposal["value"], 0)

    @staticmethod
    def _as_limits(settings: dict, where: str = "the gateway") -> Limits:
        try:
            return Limits.from_settings(settings, where)
        except RequestError as error:
            raise TraitError(str(error)) from error

    def policy(self) -> Policy:
        """Return the admin policy these settings describe."""
        defaults = self._as_limits({
            "max_gpus": self.max_gpus, "max_cpus": self.max_cpus,
            "max_memory": self.max_memory, "max_walltime": self.max_walltime,
        })
        per_partition = {
            name: self._as_limits(settings, f"partition {name!r}") for name, settings in self.partition_limits.items()
        }
        return Policy(
            allowed_partitions=tuple(self.allowed_partitions),
            default_limits=defaults,
            partition_limits=per_partition,
            client_fields=frozenset(self.client_overrides),
        )

    ssh_tunnel = Bool(
        config=True,
        help="Reach the kernel through one SSH connection per kernel instead of directly:"
        " the kernel binds 127.0.0.1 on the node and the gateway forwards its five ports."
        " (SLURMGATE_SSH_TUNNEL env var: true or false)",
    )

    @default("ssh_tunnel")
    def _ssh_tunnel_default(self):
        return _env("SSH_TUNNEL").lower() in ("1", "true", "yes")

    ssh_node_host = Unicode(
        config=True,
        help="Host name the gateway uses to SSH to the kernel's node; {node} is replaced by"
        " the node name Slurm reports, such as {node}.cluster.example. (SLURMGATE_SSH_NODE_HOST env var)",
    )

    @default("ssh_node_host")
    def _ssh_node_host_default(self):
        return _env("SSH_NODE_HOST", "{node}")

    ssh_port = Integer(
        config=True,
        help="SSH port on the nodes. (SLURMGATE_SSH_PORT env var)",
    )

    @default("ssh_port")
    def _ssh_port_default(self):
        return _env_number("SSH_PORT", "22")

    ssh_user = Unicode(
        config=True,
        help="User for SSH to the nodes and the jump host; empty means the gateway's own user."
        " (SLURMGATE_SSH_USER env var)",
    )

    @default("ssh_user")
    def _ssh_user_default(self):
        return _env("SSH_USER")

    ssh_key_file = Unicode(
        config=True,
        help="Private key file for SSH to the nodes; empty means the SSH agent and the"
        " default keys. (SLURMGATE_SSH_KEY_FILE env var)",
    )

    @default("ssh_key_file")
    def _ssh_key_file_default(self):
        return _env("SSH_KEY_FILE")

    ssh_known_hosts = Unicode(
        config=True,
        help="known_hosts file with the host keys of the nodes and the jump host; unknown or"
        " changed keys are rejected. (SLURMGATE_SSH_KNOWN_HOSTS env var)",
    )

    @default("ssh_known_hosts")
    def _ssh_known_hosts_default(self):
        return _env("SSH_KNOWN_HOSTS", os.path.expanduser("~/.ssh/known_hosts"))

    ssh_jump_host = Unicode(
        config=True,
        help="Jump host (login node) between the gateway and the nodes, as HOST or HOST:PORT;"
        " empty means a direct connection. (SLURMGATE_SSH_JUMP_HOST env var)",
    )

    @default("ssh_jump_host")
    def _ssh_jump_host_default(self):
        return _env("SSH_JUMP_HOST")

    submit_host = Unicode(
        config=True,
        help="Login node on which to run sbatch, squeue and the other Slurm commands over SSH,"
        " as HOST or HOST:PORT; empty runs them on the gateway host. Uses ssh_user,"
        " ssh_key_file and ssh_known_hosts. (SLURMGATE_SUBMIT_HOST env var)",
    )

    @default("submit_host")
    def _submit_host_default(self):
        return _env("SUBMIT_HOST")

    @validate("submit_host", "ssh_jump_host")
    def _validate_host_and_port(self, proposal):
        _host, separator, port = proposal["value"].partition(":")
        if separator and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise TraitError(f"{proposal['trait'].name} {proposal['value']!r} has an invalid port; write HOST or HOST:PORT")
        return proposal["value"]

    def slurm_client(self) -> SlurmClient:
        """Return the Slurm client these settings describe, shared by all kernels that use the same access.

        Sharing keeps one SSH connection per login node and lets one poller
        serve every kernel of the gateway.
        """
        if not self.submit_host:
            key: tuple = ("local",)
        else:
            host, _, port = self.submit_host.partition(":")
            key = ("ssh", host, int(port or 22), self.ssh_user, self.ssh_key_file, self.ssh_known_hosts)
        client = _CLIENTS.get(key)
        if client is None:
            if key[0] == "local":
                client = SlurmClient()
            else:
                connect = {"port": key[2], "username": self.ssh_user or None, "key_filename": self.ssh_key_file or None}
                client = SlurmClient(SSHRunner(key[1], known_hosts=self.ssh_known_hosts or None, **connect))
            _CLIENTS[key] = client
        return client

    def build_tunnel(self, kernel_id: str, connection_info: dict, node: str):
        """Return an unopened tunnel to the kernel on ``node`` as these settings describe."""
        from .tunnel import KernelTunnel, SSHHost

        user = self.ssh_user or None
        jump = None
        if self.ssh_jump_host:
            host, _, port = self.ssh_jump_host.partition(":")
            jump = SSHHost(host, int(port) if port.isdigit() else 22, user)
        target = SSHHost(self.ssh_node_host.replace("{node}", node), self.ssh_port, user)
        return KernelTunnel(
            kernel_id, target, connection_info,
            known_hosts=self.ssh_known_hosts, key_filename=self.ssh_key_file or None, jump_host=jump,
        )

    @validate("gpus")
    def _validate_gpus(self, proposal):
        return _at_least("gpus", proposal["value"], 0)

    @validate("cpus")
    def _validate_cpus(self, proposal):
        return _at_least("cpus", proposal["value"], 1)

    @validate("launch_timeout", "poll_interval", "fast_poll_interval", "max_launch_timeout")
    def _validate_positive_seconds(self, proposal):
        if not 0 < proposal["value"] < float("inf"):
            raise TraitError(f"{proposal['trait'].name} must be a finite number of seconds above 0; got {proposal['value']!r}")
        return proposal["value"]

    @validate("memory")
    def _validate_memory(self, proposal):
        value = proposal["value"]
        if value:
            _as_trait_error(parse_memory_field, value)
        return value

    @validate("walltime")
    def _validate_walltime(self, proposal):
        value = proposal["value"]
        if value:
            _as_trait_error(parse_walltime_field, value)
        return value


def _at_least(name: str, value: int, minimum: int) -> int:
    if value < minimum:
        raise TraitError(f"{name} must be at least {minimum}; got {value!r}")
    return value


def _as_trait_error(parse, value: str) -> None:
    try:
        parse(value)
    except RequestError as error:
        raise TraitError(str(error)) from error
