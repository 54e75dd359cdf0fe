"""SQLModel tables — the system of record — and the engine/session setup.

Importing this package registers every table on SQLModel.metadata (Alembic's
target). Each stage keeps its tables in the module of its name; partners, mail
and audit are shared by every stage.
"""

import partnerflow.models.growth  # noqa: F401  (registers its tables)
from partnerflow.models import approvals, compliance, discovery, engine, events, onboarding, outreach, portal, tracking  # noqa: F401  (register their tables)
from partnerflow.models.audit import AuditLog, WebhookEvent, audit
from partnerflow.models.contracting import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    SignatureRequest,
)
from partnerflow.models.discovery import Prospect, ProspectStatus
from partnerflow.models.engine import get_engine, session_scope
from partnerflow.models.mail import Message, MessageStatus, Suppression
from partnerflow.models.news import Broadcast  # noqa: F401  (registers the news tables)
from partnerflow.models.partners import Partner, PartnerType, Stage
from partnerflow.models.payouts import Commission, Conversion, Payout, PayoutBatch
from partnerflow.models.types import utcnow

__all__ = [
    "Application", "ApplicationStatus", "AuditLog", "Commission", "Contract", "ContractStatus",
    "Conversion", "Message", "MessageStatus", "Partner", "PartnerType", "Payout", "PayoutBatch",
    "Prospect", "ProspectStatus", "SignatureRequest", "Stage", "Suppression", "WebhookEvent", "audit", "engine",
    "get_engine", "session_scope", "utcnow",
]
