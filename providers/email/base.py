"""The email capability: one interface, several providers chosen by PARTNERFLOW_EMAIL_PROVIDER."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from partnerflow.providers.errors import ProviderError


@dataclass
class OutgoingEmail:
    message_id: int  # our Message row id; providers pass it back (e.g. SendGrid custom_args)
    idempotency_key: str
    to: str
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)  # (filename, content, mime type)
    from_email: str | None = None  # default: settings.sender_email
    from_name: str | None = None  # default: settings.sender_name


@dataclass
class SendOutcome:
    message_id: int
    provider_message_id: str | None = None
    error: ProviderError | None = None  # None means accepted


class EmailProvider(ABC):
    """What every email provider does; built from MailSettings by `get_email_provider`."""

    name: str  # the setting value that chooses it, recorded on each Message it sent
    # True when sending the same idempotency key twice cannot deliver twice (the outbox
    # overwrites one file per key), so a send interrupted mid-way may simply be repeated.
    idempotent: bool = False

    @abstractmethod
    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        """Send; return one outcome per email, in order.

        Per-message errors go in the outcomes. For the whole batch: RetryableError when nothing was
        sent and a later try may work (AmbiguousError when it may have been accepted), PermanentError
        when nothing can be sent with these settings (e.g. a refused login).
        """

    def lookup(self, idempotency_key: str) -> str | None:
        """The provider's id for a message it already accepted under this key; None when it cannot tell.

        Used to settle a send whose answer never came. SMTP cannot be asked; SendGrid answers
        through its event webhook instead (a `processed` event confirms the message).
        """
        return None
