"""The embedded stack: a local Prefect server (with its UI and scheduler), the web app, and a
runner serving every deployment. Each part is a child process so it gets a clean environment.

The ephemeral Prefect server runs no scheduler and no event triggers, so `up` and `demo`
always start a real `prefect server start`. Once it answers, `prepare_server` puts on it what runs
rely on (the crash automations, the limits every worker shares) before any run starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from prefect.settings import PREFECT_API_URL, temporary_settings

from partnerflow import dbtools
from partnerflow.automations import ensure_automations
from partnerflow.deployments import HEARTBEAT_ENV
from partnerflow.deployments.table import DEPLOYMENTS
from partnerflow.models.engine import check_database
from partnerflow.settings import Settings, check_settings, get_settings
from partnerflow.tasks.shared import faults
from partnerflow.tasks.shared.limits import ensure_limits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Part:
    """One process of the stack: what it is, and where its output goes."""

    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class Stack:
    prefect_url: str  # the UI; the API is prefect_url + "/api"
    web_url: str
    env: dict[str, str]
    logs: Path
    parts: list[Part] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.prefect_url + "/api"

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [part.process for part in self.parts]

    def start(self, name: str, cmd: list[str], log_name: str) -> subprocess.Popen:
        part = Part(name, _spawn(cmd, self.env, self.logs / log_name), self.logs / log_name)
        self.parts.append(part)
        return part.process


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
        # Every run beats this often; the crash automation's window is ten beats.
        **HEARTBEAT_ENV,
    })
    return env


class StackError(RuntimeError):
    """The stack cannot start or a part of it stopped; the message is one sentence."""


def _wait_http(url: str, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise StackError(f"{what} did not answer at {url} within {timeout:.0f} s; see {log}")


def listener_of(port: int) -> str | None:
    """Who listens on TCP `port` on this machine ("pid 123: prefect server start ..."), or None."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid}: {' '.join(psutil.Process(conn.pid).cmdline())[:120]}"
                return f"pid {conn.pid}"
    return "another process"  # its owner is not ours to inspect


def check_ports(ports: dict[int, str]) -> None:
    """Refuse to start on a taken port, naming the port, its purpose and who holds it."""
    for port, purpose in ports.items():
        holder = listener_of(port)
        if holder:
            raise StackError(f"port {port} ({purpose}) is already taken by {holder}; stop it or choose another port.")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        # Its own session, so stopping the stack can signal the child and everything it started.
        return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_processes(processes: list[subprocess.Popen], grace: float = 20) -> None:
    """Stop each process and every process it started: SIGTERM, then SIGKILL after `grace` seconds."""
    for proc in reversed(processes):
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in reversed(processes):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        # The leader may have exited while its children (flow runs) linger: the group goes too.
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_stack(settings: Settings, *, prefect_port: int = 4200, web_port: int | None = None,
                  serve_deployments: bool = True) -> Iterator[Stack]:
    """Start the Prefect server, the web app and the deployment runner; stop them all on exit."""
    web_port = web_port or settings.web.web_port
    check_ports({prefect_port: "Prefect server", web_port: "web app"})
    env = stack_env(settings, prefect_port=prefect_port, web_port=web_port)
    logs = settings.var_dir.resolve() / "logs"
    stack = Stack(prefect_url=f"http://127.0.0.1:{prefect_port}", web_url=f"http://127.0.0.1:{web_port}",
                  env=env, logs=logs)
    python = sys.executable
    try:
        server = stack.start("the Prefect server", [python, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                                    "--port", str(prefect_port)], "prefect-server.log")
        _wait_http(stack.api_url + "/health", 120, "the Prefect server", server, logs / "prefect-server.log")
        prepare_server(stack.api_url, settings)
        web = stack.start("the web app", [python, "-m", "uvicorn", "partnerflow.web.app:app", "--host",
                                          settings.web.web_host, "--port", str(web_port), "--log-level", "warning"],
                          "web.log")
        _wait_http(stack.web_url + "/healthz", 60, "the web app", web, logs / "web.log")
        if serve_deployments:
            runner = stack.start("the deployment runner", [python, "-m", "partnerflow.runner"], "runner.log")
            _wait_for_deployments(stack, runner)
        yield stack
    finally:
        stop_processes(stack.processes)


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP (systemd, Docker, a closed terminal) into the same clean stop as Ctrl-C."""
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def supervise(stack: Stack, poll: float = 1.0) -> None:
    """Block until a part of the stack stops; raise StackError naming it and its log."""
    while True:
        for part in stack.parts:
            if part.process.poll() is not None:
                raise StackError(f"{part.name} stopped (exit code {part.process.returncode}); see {part.log}")
        time.sleep(poll)


def _wait_for_deployments(stack: Stack, runner: subprocess.Popen, timeout: float = 90) -> None:
    """The runner registers every deployment before it starts polling; wait until they all exist."""
    expected = len(DEPLOYMENTS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            log = stack.logs / "runner.log"
            raise StackError(f"the deployment runner exited with code {runner.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            found = httpx.post(stack.api_url + "/deployments/count", json={}, timeout=5).json()
            if found >= expected:
                return
        time.sleep(0.5)
    raise StackError(f"deployments were not registered within {timeout:.0f} s; see {stack.logs / 'runner.log'}")


def prepare_server(api_url: str | None = None, settings: Settings | None = None) -> None:
    """Put on the Prefect server (at `api_url`, else PREFECT_API_URL) what runs rely on: the automations
    that mark dead runs Crashed and retry those safe to re-run, and the limits every worker shares.
    Idempotent: `up` and `deploy` call it every time."""
    with temporary_settings({PREFECT_API_URL: api_url} if api_url else {}):
        try:
            ensure_automations()
            ensure_limits(settings)
        except httpx.HTTPError as exc:
            raise StackError(f"the Prefect server did not accept the crash automations and shared limits: {exc}") \
                from None


def prepare() -> None:
    """Fail early with one sentence on bad settings; bring the schema up to date."""
    if os.environ.get(faults.TEST_SWITCH):
        raise StackError(f"{faults.TEST_SWITCH} is a test switch that lets tests kill processes at chosen points; "
                         "unset it before running the stack.")
    check_settings(get_settings())
    check_database()
    dbtools.upgrade()
