"""The site's limits on what one kernel may ask of Slurm, checked before submission.

Slurm enforces its own limits too (partition MaxTime, QoS and association
limits), but only after the job is queued, and its messages name no fix. The
policy here rejects a request before anything is submitted, with a message
that names the field, the value, the limit and what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .request import JobRequest, RequestError, parse_count, parse_memory_field, parse_walltime_field
from .units import format_memory, format_walltime

# Request fields a client may set per kernel, and the KERNEL_* variable of each.
CLIENT_FIELDS = {
    "partition": "KERNEL_PARTITION",
    "gpus": "KERNEL_GPUS",
    "cpus": "KERNEL_CPUS",
    "memory": "KERNEL_MEMORY",
    "walltime": "KERNEL_WALLTIME",
    "account": "KERNEL_ACCOUNT",
    "qos": "KERNEL_QOS",
    "reservation": "KERNEL_RESERVATION",
    "constraint": "KERNEL_CONSTRAINT",
}


@dataclass(frozen=True)
class Limits:
    """Per-kernel maxima; ``None`` means no limit from the gateway."""

    max_gpus: int | None = None
    max_cpus: int | None = None
    max_memory_mb: int | None = None
    max_walltime_s: int | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str) -> "Limits":
        """Build limits from ``max_gpus``, ``max_cpus``, ``max_memory`` and ``max_walltime`` settings."""
        unknown = set(settings) - {"max_gpus", "max_cpus", "max_memory", "max_walltime"}
        if unknown:
            raise RequestError(
                "limits", sorted(unknown),
                f"unknown limit(s) {', '.join(sorted(unknown))} for {where};"
                " valid limits are max_gpus, max_cpus, max_memory and max_walltime",
            )
        values: dict[str, Any] = {}
        if settings.get("max_gpus") not in (None, ""):
            values["max_gpus"] = parse_count("max_gpus", settings["max_gpus"], minimum=0)
        if settings.get("max_cpus") not in (None, ""):
            values["max_cpus"] = parse_count("max_cpus", settings["max_cpus"], minimum=1)
        if settings.get("max_memory") not in (None, ""):
            values["max_memory_mb"] = parse_memory_field(settings["max_memory"])
        if settings.get("max_walltime") not in (None, ""):
            values["max_walltime_s"] = parse_walltime_field(settings["max_walltime"])
        return cls(**values)

    def merged(self, override: "Limits") -> "Limits":
        """Return these limits with ``override``'s set values taking precedence."""
        return Limits(**{name: getattr(override, name) if getattr(override, name) is not None else getattr(self, name)
                         for name in ("max_gpus", "max_cpus", "max_memory_mb", "max_walltime_s")})


@dataclass(frozen=True)
class Policy:
    """The gateway's rules for kernel requests: partitions, per-kernel limits, client overrides.

    ``allowed_partitions`` empty means any partition Slurm has.
    ``partition_limits`` maps a partition to limits that replace
    ``default_limits`` field by field. ``client_fields`` lists the request
    fields a client may set through KERNEL_* variables.
    """

    allowed_partitions: tuple[str, ...] = ()
    default_limits: Limits = field(default_factory=Limits)
    partition_limits: Mapping[str, Limits] = field(default_factory=dict)
    client_fields: frozenset[str] = frozenset(CLIENT_FIELDS)

    def limits_for(self, partition: str | None) -> Limits:
        """Return the limits that apply in ``partition``."""
        specific = self.partition_limits.get(partition or "")
        return self.default_limits.merged(specific) if specific else self.default_limits

    def check(self, request: JobRequest, known_partitions: tuple[str, ...] = ()) -> None:
        """Raise :class:`RequestError` if ``request`` breaks the policy.

        ``known_partitions`` (from ``sinfo``) lets an unknown partition fail
        here instead of in ``sbatch``.
        """
        partition = request.partition
        if partition is not None:
            if self.allowed_partitions and partition not in self.allowed_partitions:
                raise RequestError(
                    "partition", partition,
                    f"partition {partition!r} is not offered by this gateway;"
                    f" use one of {', '.join(self.allowed_partitions)}",
                )
            if known_partitions and partition not in known_partitions:
                raise RequestError(
                    "partition", partition,
                    f"partition {partition!r} does not exist on this cluster;"
                    f" use one of {', '.join(self.allowed_partitions or known_partitions)}",
                )
        limits = self.limits_for(partition)
        checks = [
            ("gpus", request.gpus, limits.max_gpus, "GPUs", str, "max_gpus"),
            ("cpus", request.cpus, limits.max_cpus, "CPUs", str, "max_cpus"),
            ("memory", request.memory_mb, limits.max_memory_mb, "memory", format_memory, "max_memory_mb"),
            ("walltime", request.walltime_s, limits.max_walltime_s, "walltime", format_walltime, "max_walltime_s"),
        ]
        for name, value, maximum, noun, show, limit_name in checks:
            if value is not None and maximum is not None and value > maximum:
                raise RequestError(name, value, self._over_limit(partition, noun, show(value), show(maximum), limit_name, value))

    def _over_limit(self, partition: str | None, noun: str, value: str, maximum: str, limit_name: str, raw: int) -> str:
        where = f"partition {partition!r}" if partition else "this gateway"
        message = f"{where} allows at most {maximum} {noun} per kernel; got {value}. Ask for less"
        alternatives = []
        for name in self.allowed_partitions or tuple(self.partition_limits):
            other_maximum = getattr(self.limits_for(name), limit_name)
            if name != partition and (other_maximum is None or raw <= other_maximum):
                alternatives.append(name)
        if alternatives:
            message += f", or use partition {alternatives[0]!r}"
        return message + "."


def apply_client_request(
    base: Mapping[str, Any], env: Mapping[str, str], policy: Policy, fixed_by: str = "the kernelspec"
) -> dict[str, Any]:
    """Overlay the start request's KERNEL_* values on the kernelspec's settings.

    Raises :class:`RequestError` for a field the policy does not let
    clients set. Empty values are ignored.

    >>> apply_client_request({"gpus": 1}, {"KERNEL_GPUS": "2"}, Policy())["gpus"]
    '2'
    """
    settings = dict(base)
    for name, variable in CLIENT_FIELDS.items():
        value = env.get(variable, "")
        if value == "":
            continue
        if name not in policy.client_fields:
            current = base.get(name)
            fixed = f"; {fixed_by} sets it to {current!r}" if current not in (None, "", 0) else ""
            raise RequestError(
                name, value,
                f"{variable}={value!r} is not accepted: this gateway does not let clients choose"
                f" {name}{fixed}. Remove {variable} from the start request, or ask the gateway's"
                f" admin to add {name!r} to client_overrides",
            )
        settings[name] = value
    return settings
