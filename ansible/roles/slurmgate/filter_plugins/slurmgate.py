"""Jinja filters of the slurmgate role: kernelspec content, Slurm units and checks of slurmgate_partitions.

They run on the Ansible controller, which need not have slurmgate installed,
so the few rules they share with slurmgate (name patterns, Slurm's memory and
time formats, the layout of kernel.json) are written out here. The role's tests
compare them with slurmgate's own parsers and with `jupyter slurm-spec install`.
"""

from __future__ import annotations

import json
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # Imported outside Ansible, by the role's tests.
    AnsibleFilterError = ValueError

LAUNCHER_MODULE = "slurmgate.provisioners.launcher"
PROVISIONER_NAME = "slurm-provisioner"
PROCESS_PROXY_CLASS = "slurmgate.provisioners.eg3.SlurmProcessProxy"
# kernel.json layouts, named as the --gateway option of `jupyter slurm-spec install` names them.
KERNELSPEC_LAYOUTS = ("provisioner", "eg3")

# Entry key, kernelspec config key and type, in the order that `jupyter slurm-spec install` writes them.
_RESOURCE_KEYS = (
    ("partition", "partition", str),
    ("gpus", "gpus", int),
    ("gpu_type", "gpu_type", str),
    ("cpus", "cpus", int),
    ("memory", "memory", str),
    ("walltime", "walltime", str),
    ("account", "account", str),
    ("qos", "qos", str),
    ("reservation", "reservation", str),
    ("constraint", "constraint", str),
)
_LIMIT_KEYS = ("max_gpus", "max_cpus", "max_memory", "max_walltime")
KERNEL_IP_CHOICES = ("loopback", "node")

_KERNEL_NAME = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
_GPU_TYPE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.+\-&|,:*\[\]()!]{1,256}$")
_MEMORY = re.compile(r"^(?P<number>\d+)(?P<unit>[KMGT]?)B?$", re.IGNORECASE)
_MEMORY_FACTORS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
_DAYS = re.compile(r"^(?P<days>\d+)-(?P<rest>[\d:]+)$")


def _is_set(value) -> bool:
    return value is not None and value != ""


def memory_mb(value) -> int:
    """Parse a Slurm memory size (a bare number is megabytes) into mebibytes.

    >>> memory_mb("16G"), memory_mb(2048), memory_mb("1500K")
    (16384, 2048, 2)
    """
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    match = _MEMORY.match(text)
    if match is None:
        raise AnsibleFilterError(
            f"invalid memory size {value!r}: use a whole number with an optional"
            " unit K, M, G or T, such as 512M or 16G"
        )
    megabytes = int(match["number"]) * _MEMORY_FACTORS[(match["unit"] or "M").upper()]
    if megabytes <= 0:
        raise AnsibleFilterError(f"invalid memory size {value!r}: ask for at least 1M")
    return int(megabytes) if megabytes == int(megabytes) else int(megabytes) + 1


def walltime_seconds(value) -> int:
    """Parse a Slurm time limit, such as 30 (minutes), 1:30:00 or 2-12, into seconds.

    Only quoted text is accepted: YAML reads an unquoted 1:00:00 as the
    number 3600, which Slurm would take as 3600 minutes.

    >>> walltime_seconds("30"), walltime_seconds("1:30:00"), walltime_seconds("2-12"), walltime_seconds("0:45")
    (1800, 5400, 216000, 45)
    """
    if not isinstance(value, str):
        raise AnsibleFilterError(
            f"invalid time {value!r}: write the time limit as a quoted string, such as '1:00:00';"
            " YAML reads an unquoted 1:00:00 as the number 3600"
        )
    text = value.strip()
    error = AnsibleFilterError(
        f"invalid time {value!r}: use minutes, minutes:seconds, hours:minutes:seconds,"
        " days-hours, days-hours:minutes or days-hours:minutes:seconds"
    )
    match = _DAYS.match(text)
    parts = (match["rest"] if match else text).split(":")
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        raise error
    numbers = [int(part) for part in parts]
    days = 0
    if match:
        # After a day count, the fields are hours[:minutes[:seconds]].
        days = int(match["days"])
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 1:
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total < 1:
        raise AnsibleFilterError(f"invalid time {value!r}: a kernel needs a time limit of at least 1 second")
    return total


def kernelspec(entry: dict, python: str, layout: str = "provisioner") -> dict:
    """Build kernel.json for one slurmgate_partitions entry, as `jupyter slurm-spec install --gateway LAYOUT` does.

    The 'provisioner' layout names slurmgate's kernel provisioner (jupyter_client 8:
    Kernel Gateway 3, Jupyter Server 2). The 'eg3' layout names its process proxy
    for Enterprise Gateway 3, which reads the same settings from there.

    >>> spec = kernelspec({"name": "slurm-gpu", "partition": "gpu", "gpus": 1, "prologue": ["module load cuda"]}, "/opt/sg/bin/python")
    >>> spec["display_name"], spec["metadata"]["kernel_provisioner"]["config"]
    ('Python 3 (Slurm gpu)', {'partition': 'gpu', 'gpus': 1, 'script_prologue': ['module load cuda']})
    >>> kernelspec({"name": "slurm-cpu", "partition": "cpu"}, "/opt/sg/bin/python", "eg3")["metadata"]["process_proxy"]
    {'class_name': 'slurmgate.provisioners.eg3.SlurmProcessProxy', 'config': {'partition': 'cpu'}}
    """
    if layout not in KERNELSPEC_LAYOUTS:
        raise AnsibleFilterError(f"invalid kernelspec layout {layout!r}: use {' or '.join(KERNELSPEC_LAYOUTS)}")
    config = {}
    for key, setting, kind in _RESOURCE_KEYS:
        if _is_set(entry.get(key)):
            config[setting] = kind(entry[key])
    if entry.get("extra_directives"):
        config["extra_directives"] = [str(directive) for directive in entry["extra_directives"]]
    if entry.get("prologue"):
        config["script_prologue"] = [str(line) for line in entry["prologue"]]
    if entry.get("kernel_ip"):
        config["kernel_ip"] = str(entry["kernel_ip"])
    if entry.get("launch_timeout") is not None:
        config["launch_timeout"] = float(entry["launch_timeout"])
    if entry.get("job_output"):
        config["job_output"] = str(entry["job_output"])
    display_name = entry.get("display_name") or f"Python 3 (Slurm {entry.get('partition') or 'default partition'})"
    if layout == "eg3":
        metadata = {"process_proxy": {"class_name": PROCESS_PROXY_CLASS, "config": config}, "debugger": False}
    else:
        metadata = {"kernel_provisioner": {"provisioner_name": PROVISIONER_NAME, "config": config}, "debugger": False}
    return {
        "argv": [str(python), "-m", LAUNCHER_MODULE],
        "display_name": str(display_name),
        "language": "python",
        "interrupt_mode": "message",
        "metadata": metadata,
    }


def kernelspec_json(entry: dict, python: str, layout: str = "provisioner") -> str:
    """Return kernel.json's text byte for byte as `jupyter slurm-spec install --gateway LAYOUT` writes it."""
    return json.dumps(kernelspec(entry, python, layout), indent=2) + "\n"


def partition_limits(entries: list) -> dict:
    """Collect the max_* values of the entries by Slurm partition.

    >>> partition_limits([{"name": "g", "partition": "gpu", "max_gpus": 2, "max_walltime": "4:00:00"}, {"name": "c", "partition": "cpu"}])
    {'gpu': {'max_gpus': 2, 'max_walltime': '4:00:00'}}
    """
    limits: dict = {}
    for entry in entries:
        values = {key: _plain(entry[key]) for key in _LIMIT_KEYS if _is_set(entry.get(key))}
        if values:
            limits.setdefault(str(entry["partition"]), {}).update(values)
    return limits


def _plain(value):
    """Return an int or str, so that repr() writes a plain Python literal."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else str(value)


def python_literal(value) -> str:
    """Write a value built from dicts, lists, strings and numbers as a Python literal.

    >>> python_literal({"gpu": {"max_gpus": 2}})
    "{'gpu': {'max_gpus': 2}}"
    """
    return repr(json.loads(json.dumps(value)))


def partition_errors(entries: list) -> list:
    """Return one message for each problem in slurmgate_partitions, or an empty list when there is none.

    >>> partition_errors([{"name": "slurm-gpu", "partition": "gpu", "gpus": 4, "max_gpus": 2}])
    ["slurmgate_partitions entry 'slurm-gpu' (partition 'gpu'): gpus 4 is more than max_gpus 2; lower gpus or raise max_gpus"]
    """
    if not isinstance(entries, list):
        return [f"slurmgate_partitions must be a list of dicts; got {type(entries).__name__}"]
    errors = []
    seen: dict = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(f"slurmgate_partitions item {position} must be a dict; got {entry!r}")
            continue
        name = str(entry.get("name", ""))
        where = f"slurmgate_partitions entry {name!r} (partition {entry.get('partition')!r})"
        if name.lower() in seen:
            errors.append(f"{where}: the kernelspec name {name.lower()!r} is used twice; give each entry its own name")
        seen[name.lower()] = entry
        messages = _name_errors(entry) + _option_errors(entry) + _resource_errors(entry)
        errors.extend(f"{where}: {message}" for message in messages)
    errors.extend(_limit_conflicts(entries))
    return errors


def _name_errors(entry: dict) -> list:
    """Check the kernelspec name and the Slurm names (partition, account, QoS, reservation, GPU type, features)."""
    errors = []
    if not _KERNEL_NAME.match(str(entry.get("name", ""))):
        errors.append(
            f"invalid kernelspec name {entry.get('name')!r}: use letters, digits, '.', '_' and '-' only,"
            " as Jupyter requires for kernelspec directories"
        )
    if not _is_set(entry.get("partition")):
        errors.append("partition is missing: name the Slurm partition the kernels run in")
    for key in ("partition", "account", "qos", "reservation"):
        value = entry.get(key)
        if _is_set(value) and not _SLURM_NAME.match(str(value)):
            errors.append(f"invalid {key} {value!r}: use letters, digits and . _ + - only, starting with a letter, digit or underscore")
    if _is_set(entry.get("gpu_type")) and not _GPU_TYPE.match(str(entry["gpu_type"])):
        errors.append(
            f"invalid gpu_type {entry['gpu_type']!r}: use the gres type name the cluster defines,"
            " such as a100, with letters, digits and . _ + - only"
        )
    if _is_set(entry.get("constraint")) and not _CONSTRAINT.match(str(entry["constraint"])):
        errors.append(
            f"invalid constraint {entry['constraint']!r}: use node feature names joined with & | ,"
            " as sbatch --constraint expects, without spaces"
        )
    return errors


def _option_errors(entry: dict) -> list:
    """Check the sbatch directives, prologue, kernel_ip, launch_timeout and job_output."""
    errors = []
    for key in ("extra_directives", "prologue"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
            errors.append(f"{key} must be a list of strings; got {value!r}")
    for directive in entry.get("extra_directives") or []:
        if not str(directive).startswith("-") or "\n" in str(directive):
            errors.append(
                f"invalid extra #SBATCH directive {directive!r}: write one sbatch option per entry,"
                " starting with '-', such as '--exclusive'"
            )
    if entry.get("kernel_ip") and entry["kernel_ip"] not in KERNEL_IP_CHOICES:
        errors.append(f"invalid kernel_ip {entry['kernel_ip']!r}: use {' or '.join(KERNEL_IP_CHOICES)}")
    if _is_set(entry.get("launch_timeout")) and not _positive_number(entry["launch_timeout"]):
        errors.append(f"invalid launch_timeout {entry['launch_timeout']!r}: expected seconds, more than 0")
    if entry.get("job_output") and set(str(entry["job_output"])) & set("\n\r\0'\""):
        errors.append(f"invalid job_output {entry['job_output']!r}: it must not contain quotes or line breaks")
    return errors


def _positive_number(value) -> bool:
    try:
        return not isinstance(value, bool) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _count(entry: dict, key: str, minimum: int):
    """Return the entry's whole number at ``key``, or None when unset. Raise AnsibleFilterError when invalid."""
    value = entry.get(key)
    if not _is_set(value):
        return None
    if isinstance(value, bool) or not re.fullmatch(r"\d{1,9}", str(value).strip()) or int(value) < minimum:
        raise AnsibleFilterError(f"invalid number {value!r}: expected a whole number of at least {minimum}")
    return int(value)


def _resource_errors(entry: dict) -> list:
    """Check gpus, cpus, memory and walltime, and that none exceeds its max_* value."""
    parsers = {
        "gpus": lambda key: _count(entry, key, 0),
        "cpus": lambda key: _count(entry, key, 1),
        "memory": lambda key: memory_mb(entry[key]) if _is_set(entry.get(key)) else None,
        "walltime": lambda key: walltime_seconds(entry[key]) if _is_set(entry.get(key)) else None,
    }
    errors = []
    for key, parse in parsers.items():
        values = {}
        for name in (key, "max_" + key):
            try:
                values[name] = parse(name)
            except AnsibleFilterError as error:
                errors.append(f"{name}: {error}")
        value, maximum = values.get(key), values.get("max_" + key)
        if value is not None and maximum is not None and value > maximum:
            errors.append(f"{key} {entry[key]} is more than max_{key} {entry['max_' + key]}; lower {key} or raise max_{key}")
    return errors


def _limit_conflicts(entries: list) -> list:
    """Report entries on one Slurm partition that set different max_* values."""
    errors = []
    first: dict = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in _LIMIT_KEYS:
            if not _is_set(entry.get(key)):
                continue
            slot = (str(entry.get("partition")), key)
            other = first.setdefault(slot, entry)
            if str(other[key]) != str(entry[key]):
                errors.append(
                    f"slurmgate_partitions entries {other.get('name')!r} and {entry.get('name')!r} set"
                    f" {key} {other[key]} and {entry[key]} for partition {slot[0]!r}; the gateway"
                    " keeps one value per partition, so set the same value in both"
                )
    return errors


class FilterModule:
    """Filters of the slurmgate role."""

    def filters(self):
        return {
            "slurmgate_kernelspec": kernelspec,
            "slurmgate_kernelspec_json": kernelspec_json,
            "slurmgate_partition_errors": partition_errors,
            "slurmgate_partition_limits": partition_limits,
            "slurmgate_python_literal": python_literal,
            "slurmgate_memory_mb": memory_mb,
            "slurmgate_walltime_seconds": walltime_seconds,
        }
