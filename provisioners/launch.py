"""Launch steps shared by the provisioner and the Enterprise Gateway process proxy.

Neither adapter can import the other: the provisioner needs jupyter_client 8,
the process proxy runs next to jupyter_client 6. Both build the job request,
the launch timeout and the job's environment here, and turn failures into
tornado HTTP errors, because Jupyter Server, Kernel Gateway and Enterprise
Gateway all hide the text of any other exception type from the client.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from tornado import web
from traitlets import TraitError

from slurmgate.slurm.policy import apply_client_request
from slurmgate.slurm.request import JobRequest, RequestError, request_from_settings

from .config import SlurmKernelConfig
from .lifecycle import KernelJob, LaunchError, LaunchTimeout

KERNEL_ENV_PREFIX = "KERNEL_"
BAD_REQUEST_REASON = "Invalid Slurm kernel request"
# Bounds on what a start request may pass to the job. Beyond them, sbatch
# would fail on the operating system's limit for its environment (about 2 MiB
# on Linux) with a less helpful message.
MAX_KERNEL_VARIABLES = 200
MAX_VALUE_BYTES = 16384
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)


def bad_request(message: str) -> web.HTTPError:
    """Return the HTTP 400 error for a rejected kernel request."""
    return web.HTTPError(400, message, reason=BAD_REQUEST_REASON)


def http_error(error: LaunchError) -> web.HTTPError:
    """Return the HTTP error for a failed launch: 503 when it timed out in the queue, else 500."""
    if isinstance(error, LaunchTimeout):
        return web.HTTPError(503, str(error), reason="Slurm kernel launch timed out")
    return web.HTTPError(500, str(error), reason="Slurm kernel launch failed")


def job_status(job: KernelJob | None, job_id: str | None, end_reason: str | None) -> dict[str, Any]:
    """Describe a kernel's job for the kernel model's ``slurm`` field, from cached state only.

    ``job`` is the live job, if any; otherwise ``job_id`` and ``end_reason``
    describe the last one.
    """
    if job is not None:
        return job.status()
    status: dict[str, Any] = {"job_id": job_id, "state": "ENDED" if job_id else "NOT_SUBMITTED"}
    if end_reason:
        status["end_reason"] = end_reason
    return status


def checked_environment(kernel_id: str, env: Mapping[str, Any]) -> dict[str, str]:
    """Return the start request's environment as text, or raise HTTP 400 naming the bad entry.

    JSON numbers and booleans become text (``KERNEL_GPUS: 1`` means "1");
    ``null`` drops the variable. Names must be shell variable names, values
    must not contain NUL, and KERNEL_* variables are bounded in number and size.
    """
    checked: dict[str, str] = {}
    kernel_variables = 0
    for name, value in env.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise bad_request(f"kernel {kernel_id}: environment variable {name!r} must be text; got {type(value).__name__}")
        if name.startswith(KERNEL_ENV_PREFIX):
            kernel_variables += 1
            if not _ENV_NAME.match(name):
                raise bad_request(f"kernel {kernel_id}: invalid environment variable name {name[:80]!r}; use letters, digits and _")
            if "\0" in value or len(value.encode()) > MAX_VALUE_BYTES:
                raise bad_request(
                    f"kernel {kernel_id}: {name} must be at most {MAX_VALUE_BYTES} bytes of text without NUL characters"
                )
        checked[name] = value
    if kernel_variables > MAX_KERNEL_VARIABLES:
        raise bad_request(
            f"kernel {kernel_id}: the start request has {kernel_variables} KERNEL_* variables;"
            f" at most {MAX_KERNEL_VARIABLES} are accepted"
        )
    return checked


def build_job_request(
    settings: SlurmKernelConfig,
    kernel_id: str,
    display_name: str,
    env: Mapping[str, str],
    cwd: str | None,
    known_partitions: tuple[str, ...] = (),
) -> JobRequest:
    """Build the job request from the kernelspec, the configuration and the start request.

    The start request's KERNEL_* variables replace the kernelspec's values
    where the policy allows. Raises HTTP 400 naming the kernel, the field,
    the value and the fix when the request is malformed or over a limit.
    Nothing has been submitted then.
    """
    values = {
        "partition": settings.partition,
        "gpus": settings.gpus,
        "gpu_type": settings.gpu_type,
        "cpus": settings.cpus,
        "memory": settings.memory,
        "walltime": settings.walltime,
        "account": settings.account,
        "qos": settings.qos,
        "reservation": settings.reservation,
        "constraint": settings.constraint,
        "output": settings.job_output,
        "working_dir": env.get("KERNEL_WORKING_DIR") or cwd or settings.working_dir,
        "extra_directives": settings.extra_directives,
        "signal_lead_s": settings.signal_lead or None,
    }
    try:
        policy = settings.policy()
        values = apply_client_request(values, env, policy, fixed_by=f"kernelspec {display_name!r}")
        request = request_from_settings(settings.job_name_prefix + kernel_id, values)
        policy.check(request, known_partitions)
        return request
    except (RequestError, TraitError) as error:
        raise bad_request(f"kernel {kernel_id} ({display_name}): {error}") from error


def requested_launch_timeout(settings: SlurmKernelConfig, kernel_id: str, env: Mapping[str, str], default: float) -> float:
    """Return the start request's KERNEL_LAUNCH_TIMEOUT in seconds, or ``default`` when it has none.

    Raises HTTP 400 for a value that is not a positive number or exceeds
    ``max_launch_timeout``.
    """
    value = env.get("KERNEL_LAUNCH_TIMEOUT")
    if not value:
        return default
    try:
        timeout = float(value)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise bad_request(f"kernel {kernel_id}: invalid KERNEL_LAUNCH_TIMEOUT {value!r}; expected seconds, such as 120")
    maximum = settings.max_launch_timeout
    if timeout > maximum:
        raise bad_request(
            f"kernel {kernel_id}: KERNEL_LAUNCH_TIMEOUT {value!r} is over this gateway's limit of"
            f" {maximum:g} s; ask for {maximum:g} or less"
        )
    return timeout


def job_environment(settings: SlurmKernelConfig, env: Mapping[str, str]) -> dict[str, str]:
    """Return the variables the job receives: the passthrough names and every KERNEL_* variable.

    Passthrough names are looked up in the launch environment, then in the
    gateway's own environment, because Kernel Gateway and Enterprise Gateway
    build the launch environment from the start request alone.
    """
    available = {**os.environ, **env}
    passthrough = {name: available[name] for name in settings.env_passthrough if name in available}
    passthrough.update({name: value for name, value in env.items() if name.startswith(KERNEL_ENV_PREFIX)})
    return passthrough
