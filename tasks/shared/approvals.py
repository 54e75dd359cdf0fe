"""Approvals: asking a person in the Prefect UI without holding a process, and answering a form.

`ask_person()` records the question (an ApprovalRequest row) and suspends the current flow run
with a typed RunInput form under a Markdown description. A suspended run holds no process and
no runner or worker slot; answering the form reschedules it, and whichever runner or worker is
alive runs the flow again from the start. Tasks before the question come back from their
persisted results, and the question itself returns the stored answer. Only a deployed,
top-level flow run can be suspended (Prefect's rule), so flows that ask run as deployments.

An answer without the person's name is refused and the form is asked again. Nobody answering
in time never approves: Prefect fails the expired run without running our code, so the sweep
`expire_overdue()` applies each stage's safe default to overdue questions from our own table.

`answer()` submits a form as a person does in the UI; `partnerflow demo` and the tests use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.events.worker import EventsWorker
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run, suspend_flow_run
from prefect.input import RunInput, keyset_from_paused_state, read_flow_run_input
from prefect.states import AwaitingRetry, Cancelled, Suspended
from sqlalchemy import update
from sqlmodel import select

from partnerflow.models import audit, session_scope, utcnow
from partnerflow.models.approvals import ApprovalRequest, ApprovalStatus
from partnerflow.models.audit import current_flow_run_id

T = TypeVar("T", bound=RunInput)


class NotDeployedError(RuntimeError):
    """A flow that asks a person was run outside a deployment."""


def ask_person(form: type[T], description: str, *, timeout_seconds: int, key: str, subject: tuple[str, Any],
               details: dict[str, Any] | None = None, approver_field: str = "approver", max_asks: int = 5,
               **defaults) -> T | None:
    """Suspend for `form` until a person answers; return the answer (None after `max_asks` nameless answers).

    `subject` is (subject_type, id): what the stage's timeout handler is called with when nobody answers.
    """
    request = _record_question(key, subject, details or {}, timeout_seconds)
    logger = get_run_logger()
    note = ""
    for attempt in range(1, max_asks + 1):
        remaining = max(1, int((request.expires_at - utcnow()).total_seconds()))
        asking = form.with_initial_data(description=note + description, **defaults)
        # Prefect forgets a run's pauses when the run leaves a terminal state (crashed, then retried):
        # an answer already given under this key is read back instead of asking again.
        given = read_flow_run_input(keyset_from_paused_state(Suspended(pause_key=f"{key}-{attempt}"))["response"])
        if not given:
            _send_pending_events()
        try:
            answer = asking(**given) if given else suspend_flow_run(
                wait_for_input=asking, timeout=remaining, key=f"{key}-{attempt}")
        except RuntimeError as exc:
            if "without a deployment" in str(exc) or "subflows" in str(exc):
                raise NotDeployedError(
                    f"{key}: a flow that asks a person must run as a deployment (run_deployment, "
                    f"`prefect deployment run` or the UI), not be called in-process: {exc}") from None
            raise
        person = (getattr(answer, approver_field, None) or "").strip()
        if person:
            _record_answer(key, person)
            return answer
        logger.warning("Answer to %s had no %s; asking again.", key, approver_field)
        note = f"> **Your previous answer was not accepted: `{approver_field}` must name the person deciding.**\n\n"
    return None


def _send_pending_events(timeout: float = 5) -> None:
    """Deliver the events this process has queued (heartbeats) before the run suspends.

    A heartbeat that reached the server after the Suspended state would start a new window of the
    crash automation, and the waiting run would be marked Crashed when that window ends.
    """
    EventsWorker.drain_all(timeout=timeout, at_exit=False)


def _record_question(key: str, subject: tuple[str, Any], details: dict[str, Any], timeout: int) -> ApprovalRequest:
    """The question's row, created on the first ask; a re-executed run finds the same one."""
    with session_scope() as session:
        row = session.exec(select(ApprovalRequest).where(ApprovalRequest.key == key)).first()
        if row is None:
            now = utcnow()
            row = ApprovalRequest(key=key, subject_type=subject[0], subject_id=str(subject[1]), details=details,
                                  flow_run_id=current_flow_run_id(), asked_at=now,
                                  expires_at=now + timedelta(seconds=timeout))
            session.add(row)
            session.flush()
        session.expunge(row)
    return row


def _record_answer(key: str, person: str) -> None:
    with session_scope() as session:
        session.execute(update(ApprovalRequest).where(ApprovalRequest.key == key,
                                                      ApprovalRequest.status == ApprovalStatus.WAITING)
                        .values(status=ApprovalStatus.ANSWERED, answered_by=person, closed_at=utcnow()))


TimeoutHandler = Callable[[str, dict[str, Any]], None]  # (subject_id, details) -> applies the safe default


def expire_overdue(handlers: dict[str, TimeoutHandler], now=None) -> list[str]:
    """Apply the safe default to every question nobody answered in time; return their keys.

    Each question is claimed (waiting -> expired) before its handler runs, so two sweeps never
    apply a default twice; its suspended run, if Prefect has not failed it yet, is cancelled so
    the form disappears from the UI.
    """
    now = now or utcnow()
    with session_scope() as session:
        overdue = session.exec(select(ApprovalRequest).where(ApprovalRequest.status == ApprovalStatus.WAITING,
                                                             ApprovalRequest.expires_at <= now)).all()
        session.expunge_all()
    expired = []
    for row in overdue:
        with session_scope() as session:
            claimed = session.execute(update(ApprovalRequest).where(
                ApprovalRequest.id == row.id, ApprovalRequest.status == ApprovalStatus.WAITING)
                .values(status=ApprovalStatus.EXPIRED, closed_at=now)).rowcount == 1
            if claimed:
                audit(session, actor="policy", action="approval.expired", subject_type=row.subject_type,
                      subject_id=row.subject_id, details={"key": row.key, "asked_at": row.asked_at.isoformat()})
        if not claimed:
            continue
        handlers[row.subject_type](row.subject_id, row.details)
        _cancel_if_suspended(row.flow_run_id, "Nobody answered in time; the safe default was applied.")
        expired.append(row.key)
    return expired


def ask_again_after_crash(max_run_count: int = 5) -> list[str]:
    """Schedule again every run that crashed while its question was still unanswered; their keys.

    A crashed run shows no form, so the question could only expire. Nothing after the question has
    run yet, so running the flow again is safe for every stage, payout batches included: it asks
    the same question again (or reads back an answer given just before the crash). A run that
    crashed `max_run_count` times is left for a person to look at.
    """
    with session_scope() as session:
        waiting = session.exec(select(ApprovalRequest).where(ApprovalRequest.status == ApprovalStatus.WAITING,
                                                             ApprovalRequest.flow_run_id.is_not(None))).all()
        session.expunge_all()
    asked_again = []
    with get_client(sync_client=True) as client:
        for row in waiting:
            try:
                run = client.read_flow_run(UUID(row.flow_run_id))
            except ObjectNotFound:
                continue
            if run.state and run.state.is_crashed() and run.run_count < max_run_count:
                client.set_flow_run_state(run.id, AwaitingRetry(
                    message="Crashed while waiting for a person: asking again."), force=True)
                asked_again.append(row.key)
    return asked_again


def _cancel_if_suspended(flow_run_id: str | None, message: str) -> None:
    if not flow_run_id:
        return
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return
        if run.state and run.state.is_paused():
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)


def waiting_runs(flow_name: str | None = None) -> list:
    """Flow runs waiting for a person (suspended or paused), oldest first."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])) if flow_name else None,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
        )


def wait_for_waiting_run(flow_name: str | None = None, *, timeout: float = 60, exclude: set[UUID] | None = None,
                         flow_run_id: UUID | None = None):
    """Block until a run of `flow_name` (or the given run) waits for a person; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in waiting_runs(flow_name):
            if (flow_run_id is None or run.id == flow_run_id) and run.id not in (exclude or set()):
                return run
        time.sleep(0.25)
    raise TimeoutError(f"no run of {flow_name or flow_run_id} waiting for a person within {timeout} s")


def answer(flow_run_id: UUID, values: dict[str, Any]) -> None:
    """Submit the form of a waiting run with `values` (what the UI's form sends)."""
    resume_flow_run(flow_run_id, run_input=values)
