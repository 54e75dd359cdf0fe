"""Approvals: asking a person in the Prefect UI, and answering a form through the API.

`ask_person()` pauses the current flow run with a typed RunInput form under a Markdown
description. `with_initial_data` makes every field optional, so an answer without the
person's name is refused and the form is asked again. On timeout it returns None and
the caller applies its safe default (never an approval).

`answer()` submits a form as a person does in the UI; `partnerflow demo` and the tests use it.
"""

from __future__ import annotations

import time
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
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

T = TypeVar("T", bound=RunInput)


def ask_person(form: type[T], description: str, *, timeout_seconds: int, key: str,
               approver_field: str = "approver", max_asks: int = 5, **defaults) -> T | None:
    """Pause for `form`; return the answer, or None when nobody answered in time."""
    logger = get_run_logger()
    note = ""
    for attempt in range(1, max_asks + 1):
        try:
            answer = pause_flow_run(
                wait_for_input=form.with_initial_data(description=note + description, **defaults),
                timeout=timeout_seconds,
                poll_interval=1,
                key=f"{key}-{attempt}",
            )
        except FlowPauseTimeout:
            logger.warning("Nobody answered %s within %s s; applying the safe default.", key, timeout_seconds)
            return None
        if (getattr(answer, approver_field, None) or "").strip():
            return answer
        logger.warning("Answer to %s had no %s; asking again.", key, approver_field)
        note = f"> **Your previous answer was not accepted: `{approver_field}` must name the person deciding.**\n\n"
    return None


def paused_runs(flow_name: str | None = None) -> list:
    """Flow runs waiting for a person, oldest first."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])) if flow_name else None,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
        )


def wait_for_paused_run(flow_name: str | None = None, *, timeout: float = 60, exclude: set[UUID] | None = None,
                        flow_run_id: UUID | None = None):
    """Block until a run of `flow_name` (or the given run) is paused for input; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in paused_runs(flow_name):
            if (flow_run_id is None or run.id == flow_run_id) and run.id not in (exclude or set()):
                return run
        time.sleep(0.25)
    raise TimeoutError(f"no paused run of {flow_name or flow_run_id} within {timeout} s")


def answer(flow_run_id: UUID, values: dict[str, Any]) -> None:
    """Submit the form of a paused run with `values` (what the UI's form sends)."""
    resume_flow_run(flow_run_id, run_input=values)
