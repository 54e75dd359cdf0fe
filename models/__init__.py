"""SQLModel tables — the system of record — and the engine/session setup.

Importing this package registers every table on SQLModel.metadata (Alembic's
target). Each area keeps its tables in its own module.
"""

from partnerflow.models import commissions, compliance, engine, onboarding, sequences  # noqa: F401  (register their tables)
from partnerflow.models.audit import AuditLog, WebhookEvent, audit
from partnerflow.models.contracts import Contract, ContractStatus, SignatureRequest
from partnerflow.models.engine import get_engine, session_scope
from partnerflow.models.partners import Application, ApplicationStatus, Partner, PartnerType, Stage
from partnerflow.models.payouts import Commission, Conversion, Payout, PayoutBatch
from partnerflow.models.recruitment import Message, MessageStatus, Prospect
from partnerflow.models.types import utcnow

__all__ = [
    "Application", "ApplicationStatus", "AuditLog", "Commission", "Contract", "ContractStatus",
    "Conversion", "Message", "MessageStatus", "Partner", "PartnerType", "Payout", "PayoutBatch",
    "Prospect", "SignatureRequest", "Stage", "WebhookEvent", "audit", "engine", "get_engine",
    "session_scope", "utcnow",
]
