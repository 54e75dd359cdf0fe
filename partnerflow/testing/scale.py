"""Scale-out test helpers: a Prefect server database on PostgreSQL, which worker runs a flow run,
a ledger transfer held mid-call, and losing a worker the way a machine is lost.

A Prefect process worker starts each flow run in a session of its own (Prefect 3.8.8 isolates
the run's process group on POSIX), so SIGKILL to the worker's process group alone leaves its
flow runs alive. `kill_worker_machine()` also kills every process the worker started.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import sqlalchemy as sa

from partnerflow import dbtools

_SUBMITTING = re.compile(r"submitting flow run '([0-9a-f-]{36})'")


@contextlib.contextmanager
def prefect_database(server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server `server_url` names, for a Prefect server; yields
    its PREFECT_API_DATABASE_CONNECTION_URL (asyncpg) and drops it afterwards."""
    name = f"pf_prefect_{uuid.uuid4().hex[:10]}"
    url = dbtools.create_database(server_url, name)
    try:
        yield sa.make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    finally:
        dbtools.drop_database(server_url, name)


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def runs_flow_run(worker: subprocess.Popen, flow_run_id: object) -> bool:
    """Whether a process started by `worker` is executing flow run `flow_run_id` right now."""
    for child in _descendants(worker.pid):
        with contextlib.suppress(psutil.Error):
            if child.environ().get("PREFECT__FLOW_RUN_ID") == str(flow_run_id):
                return True
    return False


def kill_worker_machine(worker: subprocess.Popen) -> list[int]:
    """SIGKILL the worker's process group and every process it started (their own sessions too),
    as if its machine died; returns the pids killed besides the worker's."""
    children = _descendants(worker.pid)
    groups = {worker.pid}
    for child in children:
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            groups.add(os.getpgid(child.pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    worker.wait(timeout=10)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    if alive:
        raise RuntimeError(f"processes of the killed worker still run: {[p.pid for p in alive]}")
    return [child.pid for child in children]


def cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time (user + system) of a running process and of the children it has waited for; 0 once gone."""
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(proc.pid).cpu_times()
        return times.user + times.system + times.children_user + times.children_system
    return 0.0


def submitted_flow_runs(worker_log: Path) -> set[str]:
    """The flow run ids a `prefect worker start` process submitted, read from its log (INFO level)."""
    if not worker_log.exists():
        return set()
    return set(_SUBMITTING.findall(worker_log.read_text(errors="replace")))


@contextlib.contextmanager
def held_ledger_transfer(database_url: str, idempotency_key: str) -> Iterator[None]:
    """Hold the ledger rail's record of `idempotency_key` in an open transaction (PostgreSQL): a
    worker paying that payout blocks inside the rail call until the block ends; nothing is kept."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("INSERT INTO ledger_transfer (idempotency_key, payout_id, partner_id, amount_minor, "
                                 "currency, created_at) VALUES (:key, 0, 0, 0, 'XXX', now())"),
                         {"key": idempotency_key})
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def wait_until(what: str, check, timeout: float, poll: float = 0.2, explain=None):
    """Poll `check()` until it returns something truthy and return it; on timeout raise TimeoutError
    naming `what` (and what `explain()` says about it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(poll)
