"""The job request model: the resources one kernel requests from Slurm, checked before submission."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from .units import format_memory, format_walltime, parse_memory, parse_walltime

# Slurm allows more characters in these names, but none of the sites we know
# use others, and rejecting quotes, spaces and separators keeps the job script
# and the command line unambiguous.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$", re.ASCII)
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.+\-&|,:*\[\]()!]{1,256}$", re.ASCII)
_GPU_TYPE = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$", re.ASCII)
_UNSAFE_PATH_CHARACTERS = set("\n\r\0'\"")
# Upper bounds that no real node reaches, so that huge numbers fail here
# with a clear message instead of in sbatch.
MAX_COUNT = 100_000
MAX_MEMORY_MB = 1 << 40
# Options that slurmgate sets itself; an extra directive must not override them.
_RESERVED_OPTIONS = {
    "--job-name", "-J", "--partition", "-p", "--gres", "--gpus", "-G", "--cpus-per-task", "-c", "--mem",
    "--time", "-t", "--account", "-A", "--qos", "-q", "--reservation", "--constraint", "-C", "--output",
    "-o", "--chdir", "-D", "--signal", "--export", "--get-user-env", "--uid", "--gid",
}


class RequestError(ValueError):
    """A job request is malformed or outside what the site allows.

    ``field`` is the request field at fault and ``value`` the rejected value,
    so that callers can show both next to the message.
    """

    def __init__(self, field_name: str, value: Any, message: str):
        super().__init__(message)
        self.field = field_name
        self.value = value


@dataclass(frozen=True)
class JobRequest:
    """The resources and placement of one kernel's batch job.

    ``memory_mb`` and ``walltime_s`` are ``None`` when the partition's
    default applies. ``extra_directives`` are whole ``sbatch`` options, such
    as ``--exclusive`` or ``--nodelist=gpu01``, taken from the kernelspec.
    """

    job_name: str
    partition: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    cpus: int = 1
    memory_mb: int | None = None
    walltime_s: int | None = None
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    constraint: str | None = None
    working_dir: str | None = None
    output: str | None = None
    signal_lead_s: int | None = None
    extra_directives: tuple[str, ...] = field(default=())

    def validate(self) -> None:
        """Raise :class:`RequestError` for the first malformed field."""
        _check_name("job_name", self.job_name)
        for name in ("partition", "account", "qos", "reservation"):
            value = getattr(self, name)
            if value is not None:
                _check_name(name, value)
        if self.gpu_type is not None and not _GPU_TYPE.match(self.gpu_type):
            raise RequestError(
                "gpu_type", self.gpu_type,
                f"invalid GPU type {self.gpu_type!r}: use the gres type name the"
                " cluster defines, such as a100, with letters, digits and . _ + - only",
            )
        if self.constraint is not None and not _CONSTRAINT.match(self.constraint):
            raise RequestError(
                "constraint", self.constraint,
                f"invalid constraint {self.constraint!r}: use node feature names"
                " joined with & | , as sbatch --constraint expects, without spaces",
            )
        _check_count("gpus", self.gpus, minimum=0)
        _check_count("cpus", self.cpus, minimum=1)
        if self.memory_mb is not None:
            _check_count("memory", self.memory_mb, minimum=1, maximum=MAX_MEMORY_MB)
        if self.walltime_s is not None:
            _check_count("walltime", self.walltime_s, minimum=1, maximum=365 * 86400)
        if self.signal_lead_s is not None:
            _check_count("signal_lead", self.signal_lead_s, minimum=1)
        for name in ("working_dir", "output"):
            if getattr(self, name) is not None:
                _check_path(name, getattr(self, name))
        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise RequestError(
                "working_dir", self.working_dir,
                f"invalid working dir {self.working_dir!r}: use an absolute path, such as /home/alice/notebooks",
            )
        for directive in self.extra_directives:
            _check_directive(directive)

    def sbatch_options(self) -> list[str]:
        """Return the ``sbatch`` options for this request, one string each.

        >>> JobRequest("k", partition="gpu", gpus=1, memory_mb=16384).sbatch_options()
        ['--job-name=k', '--partition=gpu', '--gres=gpu:1', '--cpus-per-task=1', '--mem=16G']
        """
        options = [f"--job-name={self.job_name}"]
        if self.partition:
            options.append(f"--partition={self.partition}")
        if self.gpus:
            gres = f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"
            options.append(f"--gres={gres}")
        options.append(f"--cpus-per-task={self.cpus}")
        if self.memory_mb is not None:
            options.append(f"--mem={format_memory(self.memory_mb)}")
        if self.walltime_s is not None:
            options.append(f"--time={format_walltime(self.walltime_s)}")
        for name in ("account", "qos", "reservation", "constraint", "output"):
            value = getattr(self, name)
            if value:
                options.append(f"--{name}={value}")
        if self.working_dir:
            options.append(f"--chdir={self.working_dir}")
        if self.signal_lead_s is not None:
            # B: signals only the batch shell, which is the kernel's launcher.
            options.append(f"--signal=B:USR1@{self.signal_lead_s}")
        options.extend(self.extra_directives)
        return options

    def with_fields(self, **changes: Any) -> "JobRequest":
        """Return a copy with some fields changed."""
        return replace(self, **changes)


REQUEST_FIELDS = tuple(f.name for f in fields(JobRequest))


def _check_name(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise RequestError(
            field_name, value,
            f"invalid {field_name.replace('_', ' ')} {value!r}: use letters, digits"
            " and . _ + - only, starting with a letter, digit or underscore",
        )


def _check_directive(directive: str) -> None:
    if not directive.startswith("-") or "\n" in directive or "\r" in directive:
        raise RequestError(
            "extra_directives", directive,
            f"invalid extra #SBATCH directive {directive!r}: write one sbatch"
            " option per entry, starting with '-', such as '--exclusive'",
        )
    option = re.split(r"[=\s]", directive, maxsplit=1)[0]
    if option in _RESERVED_OPTIONS or (option[:2] in _RESERVED_OPTIONS and not option.startswith("--")):
        raise RequestError(
            "extra_directives", directive,
            f"extra #SBATCH directive {directive!r} sets {option}, which slurmgate sets itself;"
            " use the kernel's own setting for it (partition, gpus, cpus, memory, walltime...) instead",
        )


def _check_count(field_name: str, value: Any, minimum: int, maximum: int = MAX_COUNT) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise RequestError(
            field_name, value,
            f"invalid {field_name} {value!r}: expected a whole number from {minimum} to {maximum}",
        )


def _check_path(field_name: str, value: str) -> None:
    if not value or _UNSAFE_PATH_CHARACTERS & set(value):
        raise RequestError(
            field_name, value,
            f"invalid {field_name.replace('_', ' ')} {value!r}: it must not be empty or contain"
            " quotes, line breaks or NUL characters",
        )


def parse_count(field_name: str, value: Any, minimum: int = 0) -> int:
    """Parse a whole number given as int or text, naming the field on error.

    >>> parse_count("gpus", "2")
    2
    >>> parse_count("gpus", "two")
    Traceback (most recent call last):
      ...
    slurmgate.slurm.request.RequestError: invalid gpus 'two': expected a whole number from 0 to 100000
    """
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", value):
        number: Any = int(value)
    else:
        number = value
    _check_count(field_name, number, minimum)
    return number


def parse_memory_field(value: Any) -> int:
    """Parse the memory field, raising :class:`RequestError` on bad input."""
    try:
        megabytes = parse_memory(value)
    except ValueError as error:
        raise RequestError("memory", value, str(error)) from error
    if megabytes < 1:
        raise RequestError("memory", value, f"invalid memory {value!r}: ask for at least 1M")
    if megabytes > MAX_MEMORY_MB:
        raise RequestError("memory", value, f"invalid memory {value!r}: more than any node has")
    return megabytes


def parse_walltime_field(value: Any) -> int:
    """Parse the walltime field, raising :class:`RequestError` on bad input.

    A kernel always needs a finite walltime, so ``UNLIMITED`` is rejected.
    """
    try:
        seconds = parse_walltime(value)
    except ValueError as error:
        raise RequestError("walltime", value, str(error)) from error
    if seconds is None or seconds < 1:
        raise RequestError(
            "walltime", value,
            f"invalid walltime {value!r}: a kernel needs a finite time limit, such as 1:00:00",
        )
    return seconds


def request_from_settings(job_name: str, settings: Mapping[str, Any]) -> JobRequest:
    """Build and validate a request from text or typed settings.

    ``settings`` uses the field names of :class:`JobRequest`, with ``memory``
    and ``walltime`` in Slurm's own formats. Empty strings and ``None`` leave
    a field at its default.

    >>> request_from_settings("k", {"partition": "gpu", "gpus": "1", "walltime": "30"}).walltime_s
    1800
    """
    values: dict[str, Any] = {"job_name": job_name}
    for name, value in settings.items():
        if value is None or value == "":
            continue
        if name in ("gpus", "signal_lead_s"):
            values[name] = parse_count(name, value, minimum=0 if name == "gpus" else 1)
        elif name == "cpus":
            values[name] = parse_count(name, value, minimum=1)
        elif name == "memory":
            values["memory_mb"] = parse_memory_field(value)
        elif name == "walltime":
            values["walltime_s"] = parse_walltime_field(value)
        elif name == "extra_directives":
            values[name] = tuple(value)
        elif name in REQUEST_FIELDS and name not in ("memory_mb", "walltime_s"):
            values[name] = value
        else:
            raise RequestError(
                name, value,
                f"unknown request field {name!r}; valid fields are"
                f" {', '.join(sorted(_SETTING_NAMES))}",
            )
    request = JobRequest(**values)
    request.validate()
    return request


_SETTING_NAMES = (set(REQUEST_FIELDS) - {"memory_mb", "walltime_s", "job_name"}) | {"memory", "walltime"}
