"""Helpers for the tests of the Ansible role: finding the Ansible tools, a fast test venv, running playbooks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = ROOT / "ansible"
ANSIBLE_BIN_VARIABLE = "SLURMGATE_ANSIBLE_BIN"

# Files of the checkout that a pip install does not need, or that another
# process may be writing while the tests copy the tree.
_SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "slurm-*.out",
)
_RECAP = re.compile(r"^localhost\s+:\s+(?P<counts>.*)$", re.MULTILINE)


def find_ansible_tool(name: str) -> Path:
    """Return the path of an Ansible command from $SLURMGATE_ANSIBLE_BIN, else from PATH. Fail the test when neither has it."""
    directory = os.environ.get(ANSIBLE_BIN_VARIABLE)
    candidate = Path(directory) / name if directory else None
    if candidate is None:
        found = shutil.which(name)
        candidate = Path(found) if found else None
    if candidate is None or not os.access(candidate, os.X_OK):
        where = f"{ANSIBLE_BIN_VARIABLE}={directory}" if directory else f"PATH (and {ANSIBLE_BIN_VARIABLE} is not set)"
        pytest.fail(
            f"{name} not found in {where}. Install ansible-core and ansible-lint into a venv,"
            f" such as 'python3 -m venv VENV && VENV/bin/pip install ansible-core ansible-lint',"
            f" and set {ANSIBLE_BIN_VARIABLE}=VENV/bin"
        )
    return candidate


def _purelib(python: str | Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def make_test_venv(venv: Path, base_python: str | Path | None = None) -> None:
    """Create a venv that can import the packages of ``base_python``'s environment (default: the test environment), but not its slurmgate.

    A plain directory line in a .pth file adds that environment's
    site-packages to sys.path without running that directory's own .pth
    files. So slurmgate's editable install stays invisible and the role has
    to install slurmgate itself, while the Jupyter packages it needs are
    already there. This keeps the install to seconds. The venv is otherwise
    real, with its own pip.
    """
    base_python = str(base_python or sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    base_purelib = sysconfig.get_paths()["purelib"] if base_python == sys.executable else _purelib(base_python)
    (Path(_purelib(venv / "bin" / "python")) / "_slurmgate_test_base.pth").write_text(base_purelib + "\n")


def copy_source(destination: Path) -> Path:
    """Copy the checkout, so that pip builds in the copy instead of writing build files into the work tree."""
    shutil.copytree(ROOT, destination, ignore=_SOURCE_IGNORE)
    return destination


@dataclass
class PlaybookRun:
    """The outcome of one ansible-playbook run."""

    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        """Return the PLAY RECAP counters of localhost, such as {'ok': 20, 'changed': 0, ...}."""
        match = _RECAP.search(self.output)
        assert match, f"no PLAY RECAP line for localhost in the output:\n{self.output}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match["counts"])}


def ansible_environment(work: Path) -> dict[str, str]:
    """Return the environment for Ansible commands: the shipped ansible.cfg, state under ``work``."""
    bin_dir = str(find_ansible_tool("ansible-playbook").parent)
    environment = dict(os.environ)
    environment.update({
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "ANSIBLE_REMOTE_TMP": str(work / "ansible-remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": bin_dir + os.pathsep + environment.get("PATH", ""),
    })
    return environment


def run_playbook(playbook: Path, extra_vars: dict, work: Path, *options: str) -> PlaybookRun:
    """Run ``playbook`` against localhost over the local connection.

    The extra variables travel in a file, so that the auth token never
    appears on a command line.
    """
    work.mkdir(parents=True, exist_ok=True)
    vars_file = work / "extra-vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    vars_file.chmod(0o600)
    command = [
        str(find_ansible_tool("ansible-playbook")), "-i", "localhost,", "-c", "local",
        "-e", f"@{vars_file}", str(playbook), *options,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ANSIBLE_DIR, env=ansible_environment(work), timeout=600,
    )
    return PlaybookRun(result.returncode, result.stdout + result.stderr)
