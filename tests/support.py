"""Helpers for tests: run a flow that pauses for a person while answering it, read the outbox."""

from __future__ import annotations

import email
import re
import threading
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

from partnerflow.tasks.shared.approvals import answer, wait_for_paused_run


def run_answering(flow: Callable, kwargs: dict[str, Any], answers: list[dict[str, Any]], *,
                  flow_name: str | None = None, timeout: float = 90) -> Any:
    """Run `flow(**kwargs)` in this thread while another thread answers each pause in turn with `answers`.

    Returns what the flow returned; re-raises what it raised.
    """
    name = flow_name or getattr(flow, "name", None)
    errors: list[BaseException] = []

    def responder() -> None:
        seen: set = set()
        try:
            for values in answers:
                run = wait_for_paused_run(name, timeout=timeout, exclude=seen)
                seen.add(run.id)
                # A resumed run can pause again under the same id (asked again): allow it after this answer.
                answer(run.id, values)
                seen.discard(run.id)
                _wait_until_not_paused(run.id, timeout)
        except BaseException as exc:  # surfaced after the flow returns
            errors.append(exc)

    thread = threading.Thread(target=responder, daemon=True)
    thread.start()
    result = flow(**kwargs)
    thread.join(timeout)
    if errors:
        raise errors[0]
    return result


def _wait_until_not_paused(flow_run_id, timeout: float) -> None:
    import time

    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if not state or not state.is_paused():
                return
            time.sleep(0.2)


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
