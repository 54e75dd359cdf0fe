"""The deployment table on a Prefect process work pool, run by a worker instead of `serve`.

A real `prefect server start`, `partnerflow deploy --pool`, and a `prefect worker start` process
that runs a flow against this test's own database.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from factories import add_conversions, make_partner
from prefect import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select

from partnerflow.deployments.table import DEPLOYMENTS
from partnerflow.models import Commission, session_scope
from partnerflow.settings import get_settings
from partnerflow.stack import free_port, running_stack

POOL = "team-pool"


@pytest.mark.slow
def test_deploy_to_a_work_pool_and_a_worker_runs_it_against_our_database():
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 10_000, "external_id": "order-1"}])
    settings = get_settings()
    with running_stack(settings, prefect_port=free_port(), web_port=free_port(), serve_deployments=False) as stack:
        deployed = subprocess.run([sys.executable, "-m", "partnerflow.cli", "deploy", "--pool", POOL],
                                  env=stack.env, capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stderr
        assert f"{len(DEPLOYMENTS)} deployments on work pool '{POOL}'" in deployed.stdout

        stack.start("a worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                                 "--limit", "2"], "worker.log")
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            with get_client(sync_client=True) as client:
                on_pool = [d for d in client.read_deployments() if d.work_pool_name == POOL]
            assert len(on_pool) == len(DEPLOYMENTS)
            runs = [run_deployment("compute-commissions/compute-commissions", timeout=240) for _ in range(2)]

    assert [run.state.type.value for run in runs] == ["COMPLETED", "COMPLETED"]
    assert all(run.work_pool_name == POOL for run in runs)
    with session_scope() as session:
        commissions = session.exec(select(Commission).where(Commission.partner_id == partner)).all()
    assert [c.amount_minor for c in commissions] == [1_000]  # 10 % of the sale, once despite two runs
