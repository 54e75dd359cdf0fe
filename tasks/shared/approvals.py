"""Asking a person in the Prefect UI.

`ask_person()` pauses the current flow run with a typed RunInput form under a Markdown
description. `with_initial_data` makes every field optional, so an answer without the
person's name is refused and the form is asked again. On timeout it returns None and
the caller applies its safe default (never an approval).
"""

from __future__ import annotations

from typing import TypeVar

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
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
