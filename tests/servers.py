"""Servers the tests start on loopback: the Streamlit app in a process of its own, and an ASGI
application on a thread of this process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen


def wait_healthy(url: str, alive=lambda: True, seconds: float = 60) -> None:
    """Wait until `url` answers 200 "ok"-ish, while `alive()` holds."""
    deadline = time.monotonic() + seconds
    while True:
        assert alive(), f"the server of {url} exited early"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {seconds:.0f} s"
        time.sleep(0.3)


@contextlib.contextmanager
def streamlit_app(env: dict[str, str], log: Path):
    """A headless Streamlit server of the app, with `env` added to this process's environment; its
    output in `log`."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    command += ["--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(f"{url}/_stcore/health", lambda: process.poll() is None)
            yield Server(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def asgi_app(app, health: str = "/health"):
    """`app` served by uvicorn on a thread, on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn {port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + health, thread.is_alive, seconds=30)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
