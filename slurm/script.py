"""Rendering of the batch script that runs one kernel.

The script never contains a secret. Keys reach the job through the
environment of the ``sbatch`` process, named in ``--export`` without their
values, so they appear in no file, command line or ``scontrol`` output that
other users could read.
"""

from __future__ import annotations

import re
import shlex
from typing import Mapping, Sequence

from .request import JobRequest

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_job_script(
    request: JobRequest,
    command: Sequence[str],
    *,
    environment: Mapping[str, str] | None = None,
    prologue: Sequence[str] = (),
) -> str:
    """Render a bash batch script that runs ``command`` under ``request``.

    ``environment`` contains non-secret variables that the script exports.
    ``prologue`` lines come from the site's configuration (for example
    ``module load cuda``) and run before the kernel, unquoted. Every other
    value is shell-quoted. The script changes to the working directory
    itself as well, because Slurm falls back to /tmp when ``--chdir`` does
    not exist, and a kernel in the wrong directory is worse than a failed
    job. The kernel replaces the shell with ``exec`` so that signals sent to
    the batch step reach it.

    >>> print(render_job_script(JobRequest("jupyter-kernel-1", partition="gpu", working_dir="/home/a b"),
    ...                         ["python3", "-m", "launcher"]))
    #!/bin/bash
    #SBATCH --job-name=jupyter-kernel-1
    #SBATCH --partition=gpu
    #SBATCH --cpus-per-task=1
    #SBATCH --chdir='/home/a b'
    <BLANKLINE>
    cd -- '/home/a b' || exit 1
    exec python3 -m launcher
    <BLANKLINE>
    """
    if not command:
        raise ValueError("the kernel command is empty; the kernelspec's argv must name a program")
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {_quote_option(option)}" for option in request.sbatch_options()]
    lines.append("")
    lines += list(prologue)
    for name, value in (environment or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    if request.working_dir:
        lines.append(f"cd -- {shlex.quote(request.working_dir)} || exit 1")
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


def _quote_option(option: str) -> str:
    """Quote the value of a ``--name=value`` option; Slurm parses #SBATCH lines like a shell.

    >>> _quote_option("--output=/home/a b/%j.log")
    "--output='/home/a b/%j.log'"
    >>> _quote_option("--exclusive")
    '--exclusive'
    """
    name, separator, value = option.partition("=")
    if not separator:
        return shlex.quote(option)
    return f"{name}={shlex.quote(value)}"
