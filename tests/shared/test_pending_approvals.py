"""Twenty approvals waiting for a person hold nothing: the runner has no flow process left, and
another deployment still starts and finishes at once (with paused runs it stayed Scheduled)."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import psutil
import pytest
from factories import add_conversions, application, make_partner
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select

from partnerflow.models import Application, Commission, session_scope
from partnerflow.settings import get_settings
from partnerflow.stack import free_port, running_stack
from partnerflow.tasks.shared.approvals import waiting_runs

PENDING = 20


def processes_of(parent_pid: int, flow_run_ids: set[str]) -> list[psutil.Process]:
    """The live processes under `parent_pid` that run one of these flow runs."""
    found = []
    for child in psutil.Process(parent_pid).children(recursive=True):
        try:
            if child.environ().get("PREFECT__FLOW_RUN_ID") in flow_run_ids and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def runs_by_state(flow_name: str) -> dict[str, int]:
    """How many runs of `flow_name` are in each state: what a failure needs to be understood."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return dict(Counter(run.state.name if run.state else "none" for run in runs))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_pending_approvals_leave_other_deployments_running():
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 10_000, "external_id": "order-1"}])
    with running_stack(get_settings(), prefect_port=free_port(), web_port=free_port()) as stack, \
            temporary_settings({PREFECT_API_URL: stack.api_url}):
        for n in range(PENDING):  # affiliates are asked about; partner.applied starts contract-application
            form = application(email=f"owner{n}@site{n}.example", website=f"https://site{n}.example",
                               legal_name=f"Site {n} Media", partner_type="affiliate")
            assert httpx.post(f"{stack.web_url}/api/applications", json=form, timeout=30).status_code == 202
        deadline = time.monotonic() + 420
        while len(waiting_runs("contract-application")) < PENDING and time.monotonic() < deadline:
            time.sleep(1)
        assert len(waiting_runs("contract-application")) == PENDING, runs_by_state("contract-application")

        runner = next(part.process for part in stack.parts if part.name == "the deployment runner")
        waiting = {str(run.id) for run in waiting_runs("contract-application")}
        deadline = time.monotonic() + 60  # a suspended run's process exits right after suspending
        while processes_of(runner.pid, waiting) and time.monotonic() < deadline:
            time.sleep(1)
        assert processes_of(runner.pid, waiting) == []  # no process waits for a person

        run = run_deployment("compute-commissions/compute-commissions", timeout=120)
        assert run.state.is_completed(), run.state
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(run.id).state.is_completed()

    with session_scope() as session:
        assert {a.status for a in session.exec(select(Application)).all()} == {"pending_review"}
        assert [c.amount_minor for c in session.exec(select(Commission)).all()] == [1_000]
