"""Answering approval forms through Prefect's API, as a person does in the UI.

Used by `partnerflow demo` and the tests; a person normally clicks the form in the UI.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run


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
