"""`partnerflow up` as an operator meets it: it refuses a taken port, and it never leaves orphans.

Each test runs the real command in a subprocess with its own data folder; the processes of that
stack are found by the PARTNERFLOW_VAR_DIR in their environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from partnerflow.stack import free_port


def stack_processes(var_dir: Path) -> dict[int, str]:
    """pid -> command line of every live process started for the stack in `var_dir`."""
    found = {}
    for proc in psutil.process_iter(["environ", "cmdline", "status"]):
        info = proc.info
        if (info["environ"] or {}).get("PARTNERFLOW_VAR_DIR") == str(var_dir) \
                and info["status"] != psutil.STATUS_ZOMBIE:  # a zombie is already dead, waiting to be reaped
            found[proc.pid] = " ".join(info["cmdline"] or [])
    return found


def start_up(tmp_path: Path, prefect_port: int, **extra: str) -> tuple[subprocess.Popen, Path]:
    var_dir = (tmp_path / "var").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARTNERFLOW_", "PREFECT_"))}
    env.update({"PARTNERFLOW_VAR_DIR": str(var_dir), "PARTNERFLOW_WEB_PORT": str(free_port()),
                "PARTNERFLOW_SECRET_KEY": "stack-test-key-not-for-production-use",
                "PREFECT_HOME": str(tmp_path / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", **extra})
    proc = subprocess.Popen([sys.executable, "-m", "partnerflow.cli", "up", "--prefect-port", str(prefect_port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    return proc, var_dir


def wait_until_serving(proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if "Press Ctrl-C to stop." in line:
            return
        if time.monotonic() > deadline:
            break
    proc.kill()
    pytest.fail(f"`partnerflow up` did not start: {proc.stderr.read()}")


def wait_until_gone(var_dir: Path, timeout: float = 30) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := stack_processes(var_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_up_refuses_a_port_that_is_taken(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc, var_dir = start_up(tmp_path, port)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"port {port} (Prefect server) is already taken by pid {os.getpid()}" in err
    assert "Traceback" not in err
    assert wait_until_gone(var_dir) == {}


@pytest.mark.slow
def test_sigterm_stops_every_process_it_started(tmp_path):
    proc, var_dir = start_up(tmp_path, free_port())
    wait_until_serving(proc)
    started = stack_processes(var_dir)
    assert any("prefect server start" in c for c in started.values())
    assert any("uvicorn" in c for c in started.values())
    assert any("partnerflow.runner" in c for c in started.values())
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert wait_until_gone(var_dir) == {}


@pytest.mark.slow
def test_a_component_that_dies_stops_the_rest_and_is_named(tmp_path):
    proc, var_dir = start_up(tmp_path, free_port())
    wait_until_serving(proc)
    [web] = [pid for pid, cmd in stack_processes(var_dir).items() if "uvicorn" in cmd]
    os.kill(web, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    assert f"the web app stopped (exit code -9); see {var_dir / 'logs' / 'web.log'}" in err
    assert wait_until_gone(var_dir) == {}


def test_up_refuses_to_run_with_the_test_fault_switch(tmp_path):
    proc, var_dir = start_up(tmp_path, free_port(), PARTNERFLOW_TEST_FAULTS="1")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "PARTNERFLOW_TEST_FAULTS is a test switch" in err
    assert wait_until_gone(var_dir) == {}
