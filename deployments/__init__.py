"""Prefect deployments built from the one table in deployments/table.py.

`all_deployments()` gives the RunnerDeployments `partnerflow up` serves; `deploy_to_pool()` puts
the same list on a Prefect process work pool, where any number of `prefect worker start --pool`
processes, on this or other machines, run them.

Every run sends a heartbeat every HEARTBEAT_SECONDS (set in the stack's environment and in each
deployment's job variables, so a worker started without it beats as often); runs of deployments
whose row says retry_on_crash carry RETRY_ON_CRASH_TAG. The crash automations match both
(partnerflow/automations.py).
"""

from __future__ import annotations

import importlib

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import EntrypointType, RunnerDeployment, deploy
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound

from partnerflow.deployments.table import DEPLOYMENTS, Deployment

# Prefect's minimum (30 s); its default (180 s) would let a dead run look alive for minutes.
HEARTBEAT_SECONDS = 30
HEARTBEAT_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
RETRY_ON_CRASH_TAG = "retry-on-crash"


def flow_of(spec: Deployment):
    module, _, name = spec.flow.partition(":")
    return getattr(importlib.import_module(f"partnerflow.flows.{module}"), name)


def build(spec: Deployment) -> RunnerDeployment:
    triggers = []
    if spec.on_event:
        triggers.append(DeploymentEventTrigger(
            name=f"on-{spec.on_event.event.replace('.', '-')}", expect={spec.on_event.event},
            match={"prefect.resource.id": spec.on_event.resource}, parameters=spec.on_event.parameters))
    return flow_of(spec).to_deployment(
        name=spec.name, description=spec.description, cron=spec.cron, triggers=triggers or None,
        parameters=spec.parameters or None, concurrency_limit=spec.concurrency_limit,
        tags=[RETRY_ON_CRASH_TAG] if spec.retry_on_crash else None,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def all_deployments(stage: str | None = None) -> list[RunnerDeployment]:
    """Every deployment in the table (or one stage's)."""
    return [build(spec) for spec in DEPLOYMENTS if stage is None or spec.stage == stage]


def deploy_to_pool(pool: str, stage: str | None = None) -> list:
    """Create the process work pool `pool` if it is missing, then deploy the table to it (no image:
    workers run the installed package). Returns the deployment ids."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployments = all_deployments(stage)
    for deployment in deployments:
        # A worker's own environment may lack the setting (served runs get it from the stack's).
        deployment.job_variables = {"env": HEARTBEAT_ENV}
    return deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False)
