"""Asking a person: a suspended run holds no process, a nameless answer is asked again, and nobody
answering in time gets the safe default from the sweep (Prefect's expiry runs none of our code)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect import flow, get_client
from prefect.input import RunInput
from prefect.states import Crashed
from sqlmodel import select
from support import WaitingForPerson, run_deployed

from partnerflow.models import AuditLog, session_scope, utcnow
from partnerflow.models.approvals import ApprovalRequest, ApprovalStatus
from partnerflow.status import collect_status
from partnerflow.tasks.shared.approvals import NotDeployedError, ask_again_after_crash, ask_person, expire_overdue


class Decision(RunInput):
    approve: bool = False
    approver: str = ""
    note: str = ""


@flow(name="approval-probe", persist_result=True)
def approval_probe(timeout: int = 60, subject_id: int = 1) -> dict | None:
    answer = ask_person(Decision, "## Approve the probe?\n\n| a | b |\n|---|---|\n| 1 | 2 |",
                        timeout_seconds=timeout, key=f"probe-{subject_id}", subject=("probe", subject_id))
    return None if answer is None else {"approve": answer.approve, "approver": answer.approver}


def _request(key: str) -> ApprovalRequest:
    with session_scope() as session:
        return session.exec(select(ApprovalRequest).where(ApprovalRequest.key == key)).one()


def test_answer_without_approver_is_asked_again():
    result = run_deployed(approval_probe, {}, [{"approve": True}, {"approve": True, "approver": "Dana"}])
    assert result == {"approve": True, "approver": "Dana"}
    row = _request("probe-1")
    assert row.status == ApprovalStatus.ANSWERED and row.answered_by == "Dana"


def test_a_waiting_run_is_suspended_and_holds_no_process():
    waiting = run_deployed(approval_probe, {"subject_id": 2})
    assert isinstance(waiting, WaitingForPerson)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(waiting.flow_run_id).state
    # Suspended (not Paused): the process has exited, and an answer reschedules the run.
    assert state.name == "Suspended" and state.state_details.pause_reschedule
    assert _request("probe-2").status == ApprovalStatus.WAITING
    assert [a["subject"] for a in collect_status()["approvals_waiting"]] == ["probe 2"]
    assert run_deployed(approval_probe, answers=[{"approve": False, "approver": "Lee"}],
                        flow_run_id=waiting.flow_run_id) == {"approve": False, "approver": "Lee"}
    assert collect_status()["approvals_waiting"] == []


def test_a_flow_that_asks_a_person_refuses_to_run_outside_a_deployment():
    with pytest.raises(NotDeployedError, match="must run as a deployment"):
        approval_probe(subject_id=3)


def test_nobody_answering_gets_the_safe_default_once_and_the_form_is_withdrawn():
    waiting = run_deployed(approval_probe, {"timeout": 3600, "subject_id": 4})
    applied: list = []
    handlers = {"probe": lambda subject_id, details: applied.append(subject_id)}

    assert expire_overdue(handlers) == []  # not overdue yet
    later = utcnow() + timedelta(hours=2)
    assert expire_overdue(handlers, now=later) == ["probe-4"]
    assert expire_overdue(handlers, now=later) == []  # a second sweep applies nothing twice
    assert applied == ["4"]
    assert _request("probe-4").status == ApprovalStatus.EXPIRED
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(waiting.flow_run_id).state.is_cancelled()
    with session_scope() as session:
        audits = session.exec(select(AuditLog).where(AuditLog.action == "approval.expired")).all()
    assert [(a.subject_type, a.subject_id) for a in audits] == [("probe", "4")]


def test_a_run_that_crashed_while_waiting_asks_again_and_then_takes_the_answer():
    waiting = run_deployed(approval_probe, {"subject_id": 5})
    answered = run_deployed(approval_probe, {"subject_id": 6}, [{"approve": True, "approver": "Kim"}])
    assert answered == {"approve": True, "approver": "Kim"}
    with get_client(sync_client=True) as client:  # what the crash automation does after a lost heartbeat
        client.set_flow_run_state(waiting.flow_run_id, Crashed(message="no heartbeat"), force=True)

    assert ask_again_after_crash() == ["probe-5"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(waiting.flow_run_id).state.name == "AwaitingRetry"
    assert ask_again_after_crash() == []  # scheduled again once, not twice
    assert run_deployed(approval_probe, answers=[{"approve": True, "approver": "Ana"}],
                        flow_run_id=waiting.flow_run_id) == {"approve": True, "approver": "Ana"}
    assert _request("probe-5").answered_by == "Ana"


def test_a_run_that_keeps_crashing_while_waiting_is_left_for_a_person():
    waiting = run_deployed(approval_probe, {"subject_id": 7})
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(waiting.flow_run_id, Crashed(message="no heartbeat"), force=True)
    assert ask_again_after_crash(max_run_count=1) == []
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(waiting.flow_run_id).state.is_crashed()


def test_status_on_the_command_line_lists_the_questions_waiting_for_a_person():
    from typer.testing import CliRunner

    from partnerflow.cli import _register, app

    _register()
    run_deployed(approval_probe, {"subject_id": 8})
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "Approvals waiting  1 (answer them in the Prefect UI):" in result.output
    assert "probe 8" in result.output


def test_every_question_the_stages_ask_has_a_safe_default_in_the_sweep():
    import ast
    from pathlib import Path

    from partnerflow.flows.approvals import SAFE_DEFAULTS

    root = Path(__file__).resolve().parents[2]
    asked = set()
    for path in [*root.glob("flows/*.py"), *root.glob("tasks/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ask_person":
                subject = next(k.value for k in node.keywords if k.arg == "subject")
                asked.add((subject.elts[0].value, path.name))
    assert {name for name, _ in asked} >= {"application", "payout_batch", "partner_findings"}
    assert [(name, where) for name, where in sorted(asked) if name not in SAFE_DEFAULTS] == []
