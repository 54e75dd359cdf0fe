"""Helpers for tests that run flows which pause for a person."""

from __future__ import annotations

import threading
from collections.abc import Callable
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
