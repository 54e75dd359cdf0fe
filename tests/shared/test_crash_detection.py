"""A run whose process died does not stay Running: it is marked Crashed, and retried when safe.

The slow test kills a run the way a machine restart does: the runner and the run's process both get
SIGKILL, so nobody is left to report anything. Only the Prefect server's crash automation can see
that the heartbeats stopped. A payout batch killed by its own fault point (its runner reports the
crash) shows that a run that is not safe to re-run is only marked Crashed. An application waiting
for a person (suspended: no process, no heartbeats) shows that waiting is not mistaken for dying.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from datetime import timedelta
from uuid import UUID

import httpx
import psutil
import pytest
from factories import add_conversions, after_lock, application, make_partner
from prefect import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select

from partnerflow.automations import CRASH_SILENT_RUNS, RETRY_CRASHED_RUNS, ensure_automations
from partnerflow.deployments import HEARTBEAT_SECONDS, RETRY_ON_CRASH_TAG, all_deployments, deploy_to_pool
from partnerflow.models import Prospect, session_scope
from partnerflow.settings import get_settings
from partnerflow.stack import free_port, running_stack
from partnerflow.tasks.contracting.applications import submit_application
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.faults import KILL_AT, TEST_SWITCH

# The shortest window a test can afford: a bit more than one heartbeat (30 s, Prefect's minimum).
TEST_WINDOW = timedelta(seconds=HEARTBEAT_SECONDS + 10)


def _trigger_ids(ids: dict[str, UUID]) -> dict[str, str]:
    """Each automation's trigger id as the server stores it; it changes whenever the automation is rewritten."""
    api = PREFECT_API_URL.value()
    return {name: httpx.get(f"{api}/automations/{automation_id}").json()["trigger"]["id"]
            for name, automation_id in ids.items()}


def test_ensure_automations_on_every_start_keeps_one_of_each_and_leaves_them_alone():
    with get_client(sync_client=True) as client:
        try:
            first = ensure_automations()
            triggers = _trigger_ids(first)
            assert ensure_automations() == first
            assert _trigger_ids(first) == triggers  # untouched, so the windows it is timing survive a restart
            names = [a.name for a in client.read_automations()]
            assert sorted(names) == sorted([CRASH_SILENT_RUNS, RETRY_CRASHED_RUNS])

            assert ensure_automations(window=TEST_WINDOW) == first  # a new window changes it in place
            assert client.read_automation(first[CRASH_SILENT_RUNS]).trigger.within == TEST_WINDOW

            client.pause_automation(first[RETRY_CRASHED_RUNS])  # a person switched retries off in the UI
            ensure_automations(window=TEST_WINDOW)
            assert client.read_automation(first[RETRY_CRASHED_RUNS]).enabled is False
        finally:
            for automation in client.read_automations():
                client.delete_automation(automation.id)


def test_payout_batches_are_not_retried_after_a_crash_and_workers_beat_every_30_s():
    deployments = {d.name: d for d in all_deployments()}
    assert RETRY_ON_CRASH_TAG in deployments["import-prospects"].tags
    assert RETRY_ON_CRASH_TAG in deployments["compute-commissions"].tags
    assert RETRY_ON_CRASH_TAG not in deployments["payout-batch"].tags
    assert RETRY_ON_CRASH_TAG not in deployments["payout-batch-monthly"].tags

    # A worker started without the setting would beat only every 180 s, one late beat from looking dead.
    ids = deploy_to_pool("crash-test-pool", stage="payouts")
    with get_client(sync_client=True) as client:
        try:
            on_pool = [client.read_deployment(i) for i in ids]
            assert {d.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] for d in on_pool} == {"30"}
            assert {d.name for d in on_pool if RETRY_ON_CRASH_TAG not in d.tags} == {
                "payout-batch", "payout-batch-monthly"}
        finally:
            for deployment_id in ids:
                client.delete_deployment(deployment_id)
            client.delete_work_pool("crash-test-pool")


def _flow_process(flow_run_id: UUID, timeout: float = 30) -> psutil.Process:
    """The process executing this flow run (the runner starts it with PREFECT__FLOW_RUN_ID set)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["environ"]):
            if (proc.info["environ"] or {}).get("PREFECT__FLOW_RUN_ID") == str(flow_run_id):
                return proc
        time.sleep(0.2)
    pytest.fail(f"no process runs flow run {flow_run_id}")


def _wait_for(flow_run_id: UUID, done, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if done(run):
                return run
            time.sleep(0.3)
        states = [s.name for s in client.read_flow_run_states(flow_run_id)]
    pytest.fail(f"flow run {flow_run_id} not {what} within {timeout:.0f} s; states: {states}")


def _history(flow_run_id: UUID) -> list[tuple[str, str]]:
    with get_client(sync_client=True) as client:
        return [(s.name, s.message or "") for s in client.read_flow_run_states(flow_run_id)]


def _feed_reader(fifo, data: bytes, timeout: float = 60) -> None:
    """Write `data` into the named pipe once a reader has it open (opening it earlier would not block)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                raise
            time.sleep(0.2)
            continue
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
        return
    pytest.fail(f"nobody opened {fifo} within {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 90 s on a quiet machine; the waits below are generous for a loaded one
def test_a_run_killed_with_its_runner_is_crashed_then_retried_and_a_payout_batch_only_crashed(
        tmp_path, monkeypatch):
    # Payout batch: one partner with a payable commission; its run dies just before the payout rail is called.
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 100_000, "external_id": "order-1"}])
    compute_commissions(now=after_lock())
    # An application the approval policy leaves to a person: its run suspends until someone answers.
    app, _ = submit_application(application())
    monkeypatch.setenv(TEST_SWITCH, "1")
    monkeypatch.setenv(KILL_AT, "payouts.before_call")
    monkeypatch.setenv("PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR", str(10**9))  # the team lets policy approve it
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # this stack's automations stay its own
    # Import: the CSV is a named pipe, so the run waits inside its work until the test writes to it.
    fifo = tmp_path / "prospects.csv"
    os.mkfifo(fifo)

    window = int(TEST_WINDOW.total_seconds())
    with running_stack(get_settings(), prefect_port=free_port(), web_port=free_port()) as stack, \
            temporary_settings({PREFECT_API_URL: stack.api_url}):
        ensure_automations(window=TEST_WINDOW)
        payout = run_deployment("run-payout-batch/payout-batch", timeout=0, parameters={
            "period_end": after_lock().isoformat()})
        importing = run_deployment("import-prospects/import-prospects", timeout=0,
                                   parameters={"csv_path": str(fifo)})
        waiting = run_deployment("contract-application/contract-application", timeout=0,
                                 parameters={"application_id": app.id})
        _wait_for(payout.id, lambda r: r.state.is_crashed(), 120, "Crashed")
        _wait_for(importing.id, lambda r: r.state.is_running(), 120, "Running")
        flow_process = _flow_process(importing.id)
        suspended = _wait_for(waiting.id, lambda r: r.state.is_paused(), 120, "Suspended")

        # The machine dies: the runner first, so it cannot report the crash, then the run's process.
        [runner] = [part.process for part in stack.parts if part.name == "the deployment runner"]
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        killed_at = time.time()
        flow_process.send_signal(signal.SIGKILL)
        with contextlib.suppress(psutil.TimeoutExpired):
            flow_process.wait(timeout=10)
        assert not flow_process.is_running()
        # ...and comes back: a new runner, which will take the run once it is scheduled again.
        stack.start("the deployment runner", [sys.executable, "-m", "partnerflow.runner"], "runner-after-kill.log")

        retried = _wait_for(importing.id, lambda r: r.run_count == 2 and r.state.is_running(),
                            TEST_WINDOW.total_seconds() + 150, "running again")
        _feed_reader(fifo, b"email,name,website\nann@example.org,Ann Example,https://ann.example.org\n")
        done = _wait_for(importing.id, lambda r: r.state.is_final(), 120, "finished")
        with get_client(sync_client=True) as client:
            crashed = next(s for s in client.read_flow_run_states(importing.id) if s.is_crashed())
            payout_run = client.read_flow_run(payout.id)
        payout_history = _history(payout.id)
        importing_history = _history(importing.id)
        # Give the waiting run a whole window after its last heartbeat, then it must still be waiting.
        time.sleep(max(0.0, suspended.state.timestamp.timestamp() + window + 10 - time.time()))
        with get_client(sync_client=True) as client:
            still_waiting = client.read_flow_run(waiting.id)
        waiting_history = _history(waiting.id)

    detected_after = crashed.timestamp.timestamp() - killed_at
    print(f"\ncrash detected {detected_after:.1f} s after SIGKILL (window {window} s, heartbeat "
          f"{HEARTBEAT_SECONDS} s); retried run {done.state.name} {done.state.timestamp.timestamp() - killed_at:.1f} s "
          "after SIGKILL")
    assert f"No heartbeat for {window} s" in crashed.message
    assert 0 < detected_after <= window + 30  # the window from the last beat, plus the server's evaluation
    assert retried.run_count == 2
    assert done.state.is_completed(), importing_history
    names = [name for name, _ in importing_history]
    assert names[names.index("Crashed") + 1] == "AwaitingRetry"
    with session_scope() as session:
        assert session.exec(select(Prospect.email)).all() == ["ann@example.org"]
    assert still_waiting.state.name == "Suspended" and "Crashed" not in [n for n, _ in waiting_history], \
        waiting_history

    # The payout batch crashed too (its runner saw the process die), and nobody scheduled it again.
    assert payout_run.state.is_crashed() and payout_run.run_count == 1
    assert "AwaitingRetry" not in [name for name, _ in payout_history]
