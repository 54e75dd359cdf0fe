"""Prefect deployments built from the one table in deployments/table.py.

`all_deployments()` gives the RunnerDeployments `partnerflow up` serves; the same list can be
deployed to a work pool.
"""

from __future__ import annotations

import importlib

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from partnerflow.deployments.table import DEPLOYMENTS, Deployment


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
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def all_deployments(stage: str | None = None) -> list[RunnerDeployment]:
    """Every deployment in the table (or one stage's)."""
    return [build(spec) for spec in DEPLOYMENTS if stage is None or spec.stage == stage]
