"""The approval helper: typed form, an answer without a name is refused, timeout is a safe default."""

from __future__ import annotations

from prefect import flow
from prefect.input import RunInput
from support import run_answering

from partnerflow.tasks.shared.approvals import ask_person


class Decision(RunInput):
    approve: bool = False
    approver: str = ""
    note: str = ""


@flow(name="approval-probe")
def approval_probe(timeout: int = 60) -> dict | None:
    answer = ask_person(Decision, "## Approve the probe?\n\n| a | b |\n|---|---|\n| 1 | 2 |",
                        timeout_seconds=timeout, key="probe")
    return None if answer is None else {"approve": answer.approve, "approver": answer.approver}


def test_answer_without_approver_is_asked_again():
    result = run_answering(approval_probe, {}, [{"approve": True}, {"approve": True, "approver": "Dana"}])
    assert result == {"approve": True, "approver": "Dana"}


def test_nobody_answering_returns_the_safe_default():
    assert approval_probe(timeout=2) is None
