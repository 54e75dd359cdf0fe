"""Scale-out: a Prefect server on PostgreSQL, the deployment table on a work pool, two process workers.

The test drives 2,000 due outreach emails, 20 applications through a person's approval to their
signature request, and a payout batch of 200 partners. While the batch is being paid, the worker
paying it loses its machine (SIGKILL to the worker and every process it started) with one payout
in flight at the rail; the other worker finishes the batch. Every email, signature request and
payment happened exactly once, and both workers ran flow runs.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from factories import add_conversions, after_lock, application, make_partner
from prefect import flow, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.input import RunInput
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import AwaitingRetry, Crashed
from sqlalchemy import func, insert
from sqlmodel import select
from support import WaitingForPerson, run_deployed

from partnerflow.models import (
    Application,
    Commission,
    Payout,
    PayoutBatch,
    Prospect,
    SignatureRequest,
    get_engine,
    session_scope,
    utcnow,
)
from partnerflow.models.outreach import Enrollment
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.secrets import encrypt
from partnerflow.settings import get_settings, reset_settings
from partnerflow.stack import free_port, running_stack
from partnerflow.tasks.outreach.enrollment import enroll
from partnerflow.tasks.outreach.sequences import load_sequence_files
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared.approvals import answer, ask_person, wait_for_waiting_run, waiting_runs
from partnerflow.tasks.shared.limits import PAYOUT_BATCH
from partnerflow.testing.scale import (
    cpu_seconds,
    held_ledger_transfer,
    kill_worker_machine,
    prefect_database,
    runs_flow_run,
    submitted_flow_runs,
    wait_until,
)
from partnerflow.testing.sendgrid import FakeSendGrid

POOL = "scale-pool"
EMAILS, APPLICANTS, PAYEES = 2_000, 20, 200
SEND_RUNS = 2  # send-due-outreach runs of EMAILS / SEND_RUNS each (one at a time: the deployment's limit)
IN_FLIGHT = 100  # the payout held at the rail when its worker dies: 99 paid before it, 100 after
PERIOD_END = after_lock().isoformat()
BATCH = "run-payout-batch/payout-batch"
SEND = "send-due-outreach/send-due-outreach"


def add_due_outreach(count: int) -> None:
    """`count` prospects enrolled in the recruitment sequence, their first step due now."""
    with get_engine().begin() as conn:
        conn.execute(insert(Prospect), [
            Prospect(email=f"lead{i}@lead{i}.example", name=f"Lee Lead{i}", company=f"Lead {i} Ltd",
                     website=f"https://lead{i}.example", domain=f"lead{i}.example", score=50,
                     source="scale-test").model_dump(exclude={"id"}) for i in range(count)])
    load_sequence_files()
    assert enroll("partner-recruitment")["enrolled"] == count


def add_payable_partners(count: int) -> list[int]:
    """`count` active partners (signed contract, tax form, payout details), each with payable commissions."""
    partners = [make_partner(n, payout_method="ledger", payout_details_encrypted=encrypt(json.dumps(
        {"account": f"ACCT-{n:04d}"}))) for n in range(1, count + 1)]
    add_conversions([{"partner_id": pid, "amount_minor": 20_000 + 100 * n, "external_id": f"order-{n}-{k}"}
                     for n, pid in enumerate(partners) for k in range(2)])
    compute_commissions(now=after_lock())
    return partners


def applicant(i: int) -> dict:
    return application(legal_name=f"Studio {i} Media LLC", contact_name=f"Sam Studio{i}",
                       email=f"sam@studio{i}.example", website=f"https://studio{i}.example/blog")


class Go(RunInput):
    go: bool = False
    approver: str = ""


@flow(name="scale-approval-probe", persist_result=True)
def approval_probe() -> dict | None:
    answer = ask_person(Go, "Go?", timeout_seconds=3600, key="scale-probe", subject=("probe", 1))
    return None if answer is None else {"go": answer.go, "approver": answer.approver}


def test_an_answer_survives_its_run_being_crashed_and_retried():
    """The crash automation may mark a run Crashed after its person answered (a heartbeat that reached
    the server after the run had suspended), and the retry automation schedules it again. Prefect then
    forgets the run's pauses; the re-run must read back the answer, not ask again."""
    waiting = run_deployed(approval_probe)
    assert isinstance(waiting, WaitingForPerson)
    answer(waiting.flow_run_id, {"go": True, "approver": "Dana"})
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(waiting.flow_run_id, Crashed(message="no heartbeat"), force=True)
        client.set_flow_run_state(waiting.flow_run_id, AwaitingRetry(scheduled_time=utcnow()))
        assert client.read_flow_run(waiting.flow_run_id).empirical_policy.pause_keys == set()
    assert run_deployed(approval_probe, flow_run_id=waiting.flow_run_id) == {"go": True, "approver": "Dana"}


def answered(flow_run_id, values: dict, workers) -> bool:
    """Answer a waiting run's form as a person does, once the run's process has ended; False if not yet.

    A run shows as Suspended a moment before its form is saved (Prefect refuses an answer until then),
    and a worker that is offered the resumed run while it still runs the run's previous process dies
    (Prefect 3.8.8: "this borrower is already holding one of this CapacityLimiter's tokens").
    """
    if any(runs_flow_run(worker, flow_run_id) for worker in workers):
        return False
    try:
        answer(flow_run_id, values)
    except RuntimeError as exc:
        if "schema not found" not in str(exc):
            raise
        return False
    return True


def count(model, *where) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def final_states(client, ids) -> dict:
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))
    return {run.id: run.state.type.value for run in runs if run.state.is_final()}


def describe(client, ids) -> str:
    """The runs' names, states and messages: what a failed assertion shows."""
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))
    return "; ".join(f"{r.name} {r.state.name}: {r.state.message}" for r in runs)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_share_the_work_and_losing_one_mid_batch_does_nothing_twice(monkeypatch, on_postgres):
    if not on_postgres:
        pytest.skip("the scale-out test runs on PostgreSQL (PARTNERFLOW_DATABASE_URL)")
    started = time.monotonic()
    database_url = get_settings().resolved_database_url
    with FakeSendGrid() as sendgrid, prefect_database(database_url) as prefect_db:
        for name, value in {
            "PARTNERFLOW_EMAIL_PROVIDER": "sendgrid", "PARTNERFLOW_SENDGRID_API_KEY": "SG.scale",
            "PARTNERFLOW_SENDGRID_API_HOST": sendgrid.url, "PARTNERFLOW_DAILY_SEND_CAP": str(EMAILS * 2),
            "PARTNERFLOW_OUTREACH_BATCH_SIZE": "250",
            "PARTNERFLOW_PAYOUT_APPROVAL_ABOVE_MINOR": "0",  # every batch waits for a person
            "PARTNERFLOW_PAYOUT_CLAIM_LEASE_SECONDS": "3",  # a dead worker's payouts are recovered soon
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            # The workers log each flow run they submit (and flow runs log at INFO; task runs stay quiet).
            "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
        }.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        add_due_outreach(EMAILS)
        payees = add_payable_partners(PAYEES)
        timings = {"setup": time.monotonic()}

        with running_stack(get_settings(), prefect_port=free_port(), web_port=free_port(),
                           serve_deployments=False) as stack:
            deployed = subprocess.run([sys.executable, "-m", "partnerflow.cli", "deploy", "--pool", POOL],
                                      env=stack.env, capture_output=True, text=True, timeout=180)
            assert deployed.returncode == 0, deployed.stderr
            with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
                # Only the test's own runs: the cron schedules are switched off.
                for deployment in client.read_deployments():
                    for schedule in deployment.schedules:
                        client.update_deployment_schedule(deployment.id, schedule.id, active=False)
                workers = [stack.start(f"worker {n}", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                                        POOL, "--name", f"worker-{n}", "--limit", "4"],
                                       f"worker-{n}.log") for n in (1, 2)]
                timings["stack"] = time.monotonic()

                # 1. Outreach and applications at once.
                sends = [run_deployment(SEND, parameters={"limit": EMAILS // SEND_RUNS}, timeout=0).id
                         for _ in range(SEND_RUNS)]
                for i in range(APPLICANTS):
                    response = httpx.post(f"{stack.web_url}/api/applications", json=applicant(i), timeout=30)
                    assert response.status_code == 202, response.text
                reviewed: set = set()

                def review() -> bool:  # a person approves each application in the Prefect UI's form
                    reviewed.update(run.id for run in waiting_runs("contract-application") if run.id not in reviewed
                                    and answered(run.id, {"decision": "approve", "reviewer": "Dana Reviewer"}, workers))
                    return len(reviewed) == APPLICANTS

                wait_until("a form for every application", review, timeout=300, poll=1)
                first = sends + list(reviewed)
                wait_until("the send runs and the approved applications",
                           lambda: len(final_states(client, first)) == len(first), timeout=300, poll=1,
                           explain=lambda: describe(client, first))
                assert set(final_states(client, first).values()) == {"COMPLETED"}, describe(client, first)
                timings["first stages"] = time.monotonic()

                # 2. The payout batch, approved by a person, is paid; the worker paying it loses its machine
                #    while one payout is in flight at the rail (its ledger record held open).
                #    Started only now, so it waits seconds for its answer, not minutes (a suspended run can be
                #    marked Crashed by the crash automation when a heartbeat reaches the server after it).
                batch_run = run_deployment(BATCH, parameters={"period_end": PERIOD_END}, timeout=0).id
                wait_for_waiting_run(flow_run_id=batch_run, timeout=120)
                with session_scope() as session:
                    keys = session.exec(select(Payout.idempotency_key).order_by(Payout.id)).all()
                assert len(keys) == PAYEES
                with held_ledger_transfer(database_url, keys[IN_FLIGHT - 1]):
                    wait_until("the batch's form", lambda: answered(
                        batch_run, {"decision": "approve", "approver": "Fran Finance"}, workers), timeout=60)
                    wait_until("the batch to pay up to the held payout",
                               lambda: count(LedgerTransfer) == IN_FLIGHT - 1, timeout=180)
                    victim = wait_until("the worker paying the batch", lambda: next(
                        (w for w in workers if runs_flow_run(w, batch_run)), None), timeout=10)
                    time.sleep(0.5)
                    assert count(LedgerTransfer) == IN_FLIGHT - 1  # blocked at the held payout, not past it
                    cpu = {w.pid: cpu_seconds(w) for w in workers}
                    assert kill_worker_machine(victim)  # the batch's own process died with its worker
                survivor = next(w for w in workers if w is not victim)
                paid_before_the_crash = count(LedgerTransfer)
                timings["kill"] = time.monotonic()

                # 3. Recovery, as the team does it. The dead run is marked Crashed (the crash automation does
                #    this 60-95 s after its last heartbeat; payout batches are not retried by themselves). A
                #    person frees the payout-batch slot the dead run held (its lease would keep it 5 minutes)
                #    and presses Retry: the same run continues the same batch on the worker that is left.
                client.set_flow_run_state(batch_run, Crashed(message="its worker's machine was lost"), force=True)
                with contextlib.suppress(ObjectNotFound):  # the limit exists once `partnerflow deploy` made it
                    client.update_global_concurrency_limit(PAYOUT_BATCH, GlobalConcurrencyLimitUpdate(active_slots=0))
                wait_until("the dead worker's payout claims to run out",  # PARTNERFLOW_PAYOUT_CLAIM_LEASE_SECONDS
                           lambda: time.monotonic() - timings["kill"] > 3, timeout=10)
                client.set_flow_run_state(batch_run, AwaitingRetry(scheduled_time=utcnow()))
                wait_until("the retried batch", lambda: final_states(client, [batch_run]), timeout=300,
                           explain=lambda: describe(client, [batch_run]))
                assert final_states(client, [batch_run]) == {batch_run: "COMPLETED"}, describe(client, [batch_run])
                assert survivor.poll() is None
                timings["recovered"] = time.monotonic()
                cpu[survivor.pid] = cpu_seconds(survivor)
                cpu["server"] = cpu_seconds(stack.parts[0].process)
                runs_of = {w.pid: submitted_flow_runs(stack.logs / f"worker-{n}.log") for n, w in enumerate(workers, 1)}

    # Both workers ran flow runs; the survivor finished the batch the victim had started paying.
    assert all(runs_of.values()), runs_of
    assert str(batch_run) in runs_of[victim.pid] and str(batch_run) in runs_of[survivor.pid]
    assert 0 < paid_before_the_crash < PAYEES

    # Every email exactly once at the provider: outreach, signing requests, remittances.
    sent = Counter(m["custom_args"]["pf_key"] for m in sendgrid.messages())
    assert [key for key, n in sent.items() if n > 1] == []
    kinds = Counter(key.split(":")[0] for key in sent)
    assert kinds["outreach"] == EMAILS and kinds["sign"] == APPLICANTS and kinds["remittance"] == PAYEES, kinds
    assert count(Enrollment, Enrollment.current_step == 1) == EMAILS

    # Every application approved by the person, one signature request each, sent once.
    with session_scope() as session:
        apps = session.exec(select(Application)).all()
        requests = session.exec(select(SignatureRequest)).all()
    assert {(a.status, a.decided_by) for a in apps} == {("approved", "reviewer:Dana Reviewer")}
    assert len(apps) == len(requests) == APPLICANTS and {r.status for r in requests} == {"sent"}
    assert sorted(r.signer_email for r in requests) == sorted(applicant(i)["email"] for i in range(APPLICANTS))

    # Every payout paid exactly once: one ledger transfer per payout key, of the payout's amount.
    with session_scope() as session:
        batch = session.exec(select(PayoutBatch)).one()
        payouts = session.exec(select(Payout)).all()
        transfers = session.exec(select(LedgerTransfer)).all()
        commissions = session.exec(select(Commission)).all()
    assert batch.status == "paid" and batch.approved_by == "Fran Finance"
    assert sorted(p.partner_id for p in payouts) == sorted(payees) and {p.status for p in payouts} == {"paid"}
    assert sorted((t.idempotency_key, t.amount_minor) for t in transfers) == sorted(
        (p.idempotency_key, p.amount_minor) for p in payouts)
    # No commission in two payouts: each payout is exactly the sum of the commissions attached to it.
    attached: Counter = Counter()
    for c in commissions:
        assert c.payout_id is not None and c.status == "paid"
        attached[c.payout_id] += c.amount_minor
    assert attached == {p.id: p.amount_minor for p in payouts}

    marks = [("setup", started), *timings.items()]
    print("\nscale-out timings: " + ", ".join(f"{name} {at - before:.0f} s" for (_, before), (name, at)
                                            in zip(marks, marks[1:], strict=False))
          + f", total {time.monotonic() - started:.0f} s; CPU: Prefect server {cpu.pop('server'):.0f} s, workers "
          f"and their flow runs {sum(cpu.values()):.0f} s, "
          f"this test {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.0f} s")

