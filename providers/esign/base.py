"""The e-signature interface: every method a caller uses, and the values passed across it.

A vendor talks to its signing service and nothing else. Our side of signing (the request
row written before the call, sending at most once, storing callbacks once, the signing mail,
contract updates) lives in partnerflow.tasks.contracting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from partnerflow.providers.errors import RetryableError


@dataclass(frozen=True)
class Envelope:
    """What we ask a vendor to send for signature."""

    reference: str  # our opaque id, stored at the vendor (metadata / custom field) and found by it
    title: str
    message: str
    document: bytes
    filename: str
    signer_name: str
    signer_email: str


@dataclass(frozen=True)
class SigningLink:
    """Where the signer signs, for a vendor whose link we mail ourselves (the built-in page)."""

    token: str  # the unguessable part; the database keeps only its keyed hash
    url: str


@dataclass(frozen=True)
class Inbound:
    """A callback as it arrived: raw body, headers, and the fields of a form body."""

    body: bytes
    headers: Mapping[str, str]
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Callback:
    """A verified callback."""

    event_id: str  # identifies one event, so a redelivery is stored once
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    test: bool = False  # a set-up ping: answered, not stored


@dataclass(frozen=True)
class Target:
    """The request a callback is about and what it tells us."""

    provider_request_id: str
    reference: str | None  # ours, for a request whose id we never recorded (the send's answer was lost)
    details: dict[str, Any]
    final: bool = True  # False: a later event follows once the signed document can be downloaded


class WebhookRejected(Exception):
    """A callback we refuse; `status` is the HTTP status to answer, `reason` is safe to show."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NotReady(RetryableError):
    """The signed document exists but cannot be downloaded yet."""


class NotConfirmed(RetryableError):
    """A callback says "signed" but the vendor's API does not (yet): never acted on, the vendor retries."""


class SignatureProvider(Protocol):
    name: str
    # The exact body the vendor wants in reply to a callback (None: a JSON answer will do).
    callback_reply: str | None
    # The media types its callbacks arrive as; anything else is refused (415) before it is read.
    callback_media_types: tuple[str, ...]

    def send(self, envelope: Envelope) -> str:
        """Create the request at the vendor; return its id. Errors say whether it may have happened."""
        ...

    def find(self, reference: str) -> str | None:
        """The vendor's id of the request carrying our reference (after a send with an unknown outcome)."""
        ...

    def void(self, provider_request_id: str, reason: str) -> None:
        """Cancel an unsigned request."""
        ...

    def is_signed(self, provider_request_id: str) -> bool:
        ...

    def is_declined(self, provider_request_id: str) -> bool:
        """Whether the signer declined at the vendor (a callback saying so is believed only then)."""
        ...

    def download(self, provider_request_id: str) -> bytes:
        """The signed document (with the vendor's audit trail)."""
        ...

    def signing_link(self, reference: str) -> SigningLink | None:
        """The link we mail the signer; None when the vendor mails the signer itself."""
        ...

    def parse_callback(self, inbound: Inbound) -> Callback:
        """Verify one callback (signature, shape); raises WebhookRejected."""
        ...

    def completion(self, payload: dict[str, Any]) -> Target | None:
        """The request a stored callback completes, if it says the document was signed."""
        ...

    def declined(self, payload: dict[str, Any]) -> Target | None:
        """The request a stored callback closes, if it says the signer declined."""
        ...
