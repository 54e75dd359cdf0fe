"""How each flow is deployed: schedules, event triggers, parameters.

Every area module exposes `deployments()`; `partnerflow up` serves them all.
Entrypoints are module paths (partnerflow.flows.x:y), so a served run imports the
installed package rather than a file path relative to wherever `up` was started.
"""

from __future__ import annotations

from partnerflow.deployments import (
    compliance,
    contracting,
    discovery,
    outreach,
    payouts,
)
from partnerflow.deployments import contracting_sweeps as signatures
from partnerflow.deployments import payouts_reconcile as payout_rails


def all_deployments() -> list:
    found = []
    for module in (discovery, outreach, contracting, signatures, payouts, payout_rails, compliance):
        found.extend(module.deployments())
    return found
