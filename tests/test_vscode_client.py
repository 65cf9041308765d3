"""The client library VS Code's Jupyter extension uses (@jupyterlab/services) against a real gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest


pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

CLIENT_DIR = Path(__file__).resolve().parent.parent / "examples" / "vscode_client"


def run_client(url: str, token: str, kernel: str, code: str) -> dict:
    """Run the Node client and return the JSON line it prints."""
    node = shutil.which("node")
    assert node, "Node.js is missing; install it with the system's package manager"
    assert (CLIENT_DIR / "node_modules" / "@jupyterlab" / "services").exists(), (
        f"@jupyterlab/services is not installed; run 'npm ci' in {CLIENT_DIR} (make test does)"
    )
    result = subprocess.run([node, "run_cell.mjs", url, token, kernel, code], cwd=CLIENT_DIR,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"the client failed: {result.stderr[-2000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the client printed no result: {result.stdout[-2000:]}"
    return json.loads(lines[-1])


def test_services_client_runs_cell(any_gateway):
    result = run_client(any_gateway.gateway.url, any_gateway.gateway.token, "slurm-cpu",
                        "import os; print(os.environ['SLURM_JOB_PARTITION'], os.environ['SLURM_JOB_ID'])")
    assert "slurm-cpu" in result["kernelspecs"]
    assert result["status"] == "ok"
    partition, job_id = result["stdout"].split()
    assert partition == "cpu"
    assert job_id.isdigit()
