"""Start a JupyterLab server for a test: on 127.0.0.1, a random port and token, private runtime dirs, no browser."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

# Quiet, offline JupyterLab: no news feed, no update check, never a browser window of its own.
QUIET = ["--no-browser", "--ip=127.0.0.1", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_lab(command: Sequence[str], cwd: Path, scratch: Path) -> Iterator[tuple[str, str]]:
    """Run ``command`` (a ``jupyter lab ...`` command line) plus the quiet flags; yield (base_url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "COURSE_PROFILE": "quick",
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "JUPYTER_CONFIG_DIR": str(scratch / "config"),
           "JUPYTER_DATA_DIR": str(scratch / "data"), "IPYTHONDIR": str(scratch / "ipython")}
    log = scratch / "server.log"
    server = subprocess.Popen([*command, *QUIET, f"--port={port}", f"--IdentityProvider.token={token}"],
                              cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def lab_command(root_dir: Path) -> list[str]:
    """``jupyter lab`` from this Python's environment, serving ``root_dir`` (as root if need be)."""
    return [sys.executable, "-m", "jupyter", "lab", "--allow-root", f"--ServerApp.root_dir={root_dir}"]
