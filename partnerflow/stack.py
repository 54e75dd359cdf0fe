"""The embedded stack: a local Prefect server (with its UI and scheduler), the web app, and a
runner serving every deployment. Each part is a child process so it gets a clean environment.

The ephemeral Prefect server runs no scheduler and no event triggers, so `up` and `demo`
always start a real `prefect server start`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from partnerflow import dbtools
from partnerflow.deployments.table import DEPLOYMENTS
from partnerflow.models.engine import check_database
from partnerflow.settings import Settings, check_settings, get_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    prefect_url: str  # the UI; the API is prefect_url + "/api"
    web_url: str
    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.prefect_url + "/api"


def stack_env(settings: Settings, *, prefect_port: int, web_port: int) -> dict[str, str]:
    var_dir = settings.var_dir.resolve()
    env = dict(os.environ)
    env.update({
        "PARTNERFLOW_VAR_DIR": str(var_dir),
        "PARTNERFLOW_WEB_PORT": str(web_port),
        "PARTNERFLOW_PUBLIC_BASE_URL": os.environ.get("PARTNERFLOW_PUBLIC_BASE_URL", f"http://127.0.0.1:{web_port}"),
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(var_dir / "prefect")),
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Served deployments pick up new runs within ~1.6 s instead of ~10 s.
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{prefect_port}/api",
    })
    return env


def _wait_http(url: str, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s; see {log}")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


@contextlib.contextmanager
def running_stack(settings: Settings, *, prefect_port: int = 4200, web_port: int | None = None,
                  serve_deployments: bool = True) -> Iterator[Stack]:
    """Start the Prefect server, the web app and the deployment runner; stop them on exit."""
    web_port = web_port or settings.web.web_port
    env = stack_env(settings, prefect_port=prefect_port, web_port=web_port)
    logs = settings.var_dir.resolve() / "logs"
    stack = Stack(prefect_url=f"http://127.0.0.1:{prefect_port}", web_url=f"http://127.0.0.1:{web_port}",
                  env=env, logs=logs)
    python = sys.executable
    try:
        server = _spawn([python, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                         "--port", str(prefect_port)], env, logs / "prefect-server.log")
        stack.processes.append(server)
        _wait_http(stack.api_url + "/health", 120, "the Prefect server", server, logs / "prefect-server.log")

        web = _spawn([python, "-m", "uvicorn", "partnerflow.web.app:app", "--host", settings.web.web_host,
                      "--port", str(web_port), "--log-level", "warning"], env, logs / "web.log")
        stack.processes.append(web)
        _wait_http(stack.web_url + "/healthz", 60, "the web app", web, logs / "web.log")

        if serve_deployments:
            runner = _spawn([python, "-m", "partnerflow.runner"], env, logs / "runner.log")
            stack.processes.append(runner)
            _wait_for_deployments(stack, runner)
        yield stack
    finally:
        for proc in reversed(stack.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(stack.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_deployments(stack: Stack, runner: subprocess.Popen, timeout: float = 90) -> None:
    """The runner registers every deployment before it starts polling; wait until they all exist."""
    expected = len(DEPLOYMENTS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise RuntimeError(f"the deployment runner exited with code {runner.returncode}; see {stack.logs / 'runner.log'}")
        with contextlib.suppress(httpx.HTTPError):
            found = httpx.post(stack.api_url + "/deployments/count", json={}, timeout=5).json()
            if found >= expected:
                return
        time.sleep(0.5)
    raise RuntimeError(f"deployments were not registered within {timeout:.0f} s; see {stack.logs / 'runner.log'}")


def prepare() -> None:
    """Fail early with one sentence on bad settings; bring the schema up to date."""
    check_settings(get_settings())
    check_database()
    dbtools.upgrade()
