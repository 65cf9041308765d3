"""An unmodified JupyterLab page in Debian's Chromium runs a cell on a Slurm kernel through a gateway."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import nbformat
import pytest

from gateways import start_jupyterlab

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
PROBE = "import os\nprint('ran in Slurm job', os.environ['SLURM_JOB_ID'])"


def kernel_channels(sockets: list[dict]) -> list[dict]:
    """Return the records of kernel channel WebSockets among all the page opened."""
    return [record for record in sockets if "/api/kernels/" in record["url"] and "/channels" in record["url"]]


@pytest.fixture
def lab(any_gateway, tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(PROBE)],
        metadata={"kernelspec": {"name": "slurm-cpu", "display_name": "Python 3 (Slurm cpu)", "language": "python"}},
    )
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    # Enterprise Gateway rejects kernels for root, the user the tests run as.
    process = start_jupyterlab(any_gateway.gateway, tmp_path, tmp_path / "lab.log", env={"KERNEL_USERNAME": "slurmgate-test"})
    yield process
    for model in process.gateway.request("GET", "/api/sessions"):
        process.gateway.request("DELETE", f"/api/sessions/{model['id']}")
    process.stop()


def test_cell_runs_on_first_try(lab, tmp_path):
    from playwright import sync_api as playwright_api

    sockets: list[dict] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            page = context.new_page()

            def watch(socket):
                record = {"url": socket.url, "frames": 0, "error": None}
                socket.on("framereceived", lambda _frame: record.update(frames=record["frames"] + 1))
                socket.on("socketerror", lambda error: record.update(error=error))
                sockets.append(record)

            page.on("websocket", watch)
            page.goto(f"{lab.gateway.url}/lab/tree/probe.ipynb?token={lab.gateway.token}")
            page.wait_for_function(
                "() => document.querySelector('.jp-Notebook .jp-Cell .cm-content') !== null", timeout=60000)
            # Typing before the kernel's WebSocket carries a frame can lose the keystrokes.
            for _ in range(450):
                if any(record["frames"] for record in kernel_channels(sockets)):
                    break
                page.wait_for_timeout(200)
            assert any(record["frames"] for record in kernel_channels(sockets)), f"no kernel WebSocket carried a frame: {sockets}"
            page.click(".jp-Notebook .jp-Cell .cm-content")
            page.keyboard.press("Shift+Enter")
            output = page.wait_for_selector(".jp-OutputArea-output:has-text('ran in Slurm job')", timeout=60000)
            assert "ran in Slurm job" in output.inner_text()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
    channels = kernel_channels(sockets)
    assert len(channels) == 1, f"expected one kernel WebSocket, the first handshake must succeed: {channels}"
    assert channels[0]["error"] is None


def test_queue_wait_longer_than_default_timeout(any_gateway, block_gpus, tmp_path):
    """A kernel that queues longer than the gateway client's default 42 s request timeout still starts."""
    if any_gateway.kind != "eg3":
        pytest.skip("only Enterprise Gateway holds the start request open while the job queues")
    blockers = block_gpus()
    lab = start_jupyterlab(any_gateway.gateway, tmp_path, tmp_path / "lab.log", env={"KERNEL_USERNAME": "slurmgate-test"})
    release = threading.Timer(50.0, lambda: subprocess.run(["scancel", blockers[0]], check=False))
    release.start()
    try:
        started = time.monotonic()
        model = lab.gateway.start_kernel("slurm-gpu", timeout=330)
        waited = time.monotonic() - started
        assert waited > 42, f"the kernel started after {waited:.0f} s, before the GPU blocker was released"
        channels = lab.gateway.connect(model["id"])
        try:
            assert channels.execute("print('after the long wait')").stdout == "after the long wait\n"
        finally:
            channels.close()
        lab.gateway.shutdown(model["id"])
    finally:
        release.cancel()
        lab.stop()
