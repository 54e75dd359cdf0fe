"""Helpers for tests: run a deployed flow that asks a person, answering its forms; read the outbox."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow

from partnerflow.tasks.shared.approvals import answer

_DEPLOYMENTS: dict[str, Any] = {}


@dataclass(frozen=True)
class WaitingForPerson:
    """What `run_deployed` returns when the run is suspended and no answer is left."""

    flow_run_id: UUID


def deployment_of(flow) -> UUID:
    """The test deployment of `flow` on the session's Prefect server (created once)."""
    if flow.name not in _DEPLOYMENTS:
        _DEPLOYMENTS[flow.name] = flow.to_deployment(name="tests").apply()
    return _DEPLOYMENTS[flow.name]


def run_deployed(flow, parameters: dict[str, Any] | None = None, answers: list[dict[str, Any]] = (), *,
                 flow_run_id: UUID | None = None) -> Any:
    """Start a run of `flow`'s deployment and execute it in this process, as a runner would.

    Each time the run suspends for a person the next of `answers` is submitted through Prefect's
    API and the run is executed again from the start, as a runner does once the form is answered.
    Returns what the flow returned, or WaitingForPerson when it suspends with no answer left.
    Pass `flow_run_id` to continue a run started earlier.
    """
    answers = list(answers)
    with get_client(sync_client=True) as client:
        if flow_run_id is None:
            flow_run_id = client.create_flow_run_from_deployment(deployment_of(flow), parameters=parameters or {}).id
    while True:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        try:
            return run_flow(flow, flow_run=run)
        except Pause:
            if not answers:
                return WaitingForPerson(flow_run_id)
            answer(flow_run_id, answers.pop(0))


def mails(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def mail_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link(outbox: Path, path_prefix: str) -> str:
    """The one link starting with `path_prefix` (e.g. "/sign/") in the outbox; its path part."""
    found = set()
    for message in mails(outbox):
        pattern = r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[A-Za-z0-9_\-]+)"
        found |= set(re.findall(pattern, mail_text(message)))
    assert len(found) == 1, found
    return found.pop()
