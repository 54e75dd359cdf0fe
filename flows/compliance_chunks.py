"""The page check split into one flow run per chunk of partners, so the workers of a work pool share it.

- `check_pages_chunk(partner_ids)`: fetch and check these partners' pages (disclosure, brand rules),
  record findings, apply the policy's automatic actions and send serious ones to a person's review.
- `check_pages_fanout(chunk_size)`: one run of the `check-pages-chunk` deployment per chunk of active
  partners; waits for them all, then records the run's totals and report like `check-compliance` does.

The fan-out run waits in a process of its own: give the pool room for it beside the chunks (a worker
`--limit` of 2 or more, or a second worker), or it waits for a slot it holds itself.
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run

from partnerflow.flows.compliance import act_on_new_findings
from partnerflow.tasks.compliance import runs
from partnerflow.tasks.compliance.pages import check_pages
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.compliance.report import compliance_report

CHUNK_DEPLOYMENT = "check-pages-chunk/check-pages-chunk"
POLL_SECONDS = 5.0  # each look reads every chunk run; chunk runs take tens of seconds or more


@flow(name="check-pages-chunk", persist_result=True)  # the fan-out reads the result from another process
def check_pages_chunk(partner_ids: list[int]) -> dict:
    """Check these partners' pages and act on what is new; returns the page counts and finding ids."""
    part = check_pages(partner_ids)
    auto, review = act_on_new_findings(part["opened"], load_policy())
    return {**part, "auto": auto, "review": review}


@task(retries=3, retry_delay_seconds=10)
def start_chunk(partner_ids: list[int], key: str) -> UUID:
    """Start one chunk run. The key makes a retry after a lost answer find that run, not start a second."""
    return run_deployment(CHUNK_DEPLOYMENT, parameters={"partner_ids": partner_ids}, timeout=0,
                          idempotency_key=key).id


def wait_for_runs(flow_run_ids: list[UUID], timeout: float) -> list:
    """The flow runs once every one of them is in a final state (in the given order)."""
    deadline = time.monotonic() + timeout
    found: dict = {}
    with get_client(sync_client=True) as client:
        while True:
            try:
                found = {r.id: r for r in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)), limit=len(flow_run_ids))}
            except PrefectHTTPStatusError as exc:  # a busy server: the chunks run on regardless
                get_run_logger().warning("Could not read the chunk runs (%s); asking again.", exc.response.status_code)
            if len(found) == len(flow_run_ids) and all(r.state and r.state.is_final() for r in found.values()):
                return [found[i] for i in flow_run_ids]
            if time.monotonic() > deadline:
                raise TimeoutError(f"chunk runs still unfinished after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)


def merge_chunk(totals: dict, part: dict) -> None:
    runs.add(totals, {k: v for k, v in part.items() if k not in ("auto", "review")})
    for action, ids in part["auto"].items():
        totals["auto"].setdefault(action, []).extend(ids)
    totals["review"] += part["review"]


@flow(name="check-pages-fanout")
def check_pages_fanout(chunk_size: int = 100, timeout_seconds: int = 6 * 3600) -> dict:
    """Check every active partner's pages, one `check-pages-chunk` run per `chunk_size` partners."""
    run, previous = runs.start_run(None)
    ids = runs.partners_to_check(None)
    chunks = [ids[i:i + chunk_size] for i in range(0, len(ids), chunk_size)]
    started = [start_chunk(chunk, f"{flow_run.id}-{n}") for n, chunk in enumerate(chunks)]
    totals = runs.check_totals(len(ids)) | {"auto": {}, "review": [],
                                            "sanctions": "not part of this run (pages only)"}
    failed = []
    for chunk_run in wait_for_runs(started, timeout_seconds):
        if chunk_run.state.is_completed():
            merge_chunk(totals, chunk_run.state.result())
        else:
            failed.append(f"{chunk_run.name} ({chunk_run.state.name})")
    run = runs.finish_run(run.id, totals)
    create_markdown_artifact(compliance_report(run, totals, previous), key="compliance-report",
                             description=f"Compliance report (pages, {len(chunks)} chunk runs)")
    if failed:
        # Recorded above for the chunks that finished; the run fails so the unchecked partners are noticed.
        raise RuntimeError(f"{len(failed)} of {len(chunks)} chunk runs did not complete: {', '.join(failed)}")
    keys = ("partners", "pages", "pages_read", "could_not_check", "opened", "resolved", "auto", "review")
    return {**{k: totals[k] for k in keys}, "chunks": len(chunks), "run_id": run.id}
