"""The e-signature provider interface.

A provider sends one of our SignatureRequest rows (created, with its idempotency key, before
the call) and returns the provider's request id. Sending the same row again must not create a
second request at the provider. Completion arrives later (signing page, verified webhook) and
goes through `partnerflow.tasks.contracting.signing.complete_signature`.
"""

from __future__ import annotations

from typing import Protocol


class SignatureProvider(Protocol):
    name: str

    def send(self, signature_request_id: int, *, document: bytes, filename: str, title: str,
             message: str = "") -> str:
        """Send the request for this row at most once; return the provider's request id."""
        ...

    def void(self, provider_request_id: str, reason: str) -> None:
        """Cancel an unsigned request at the provider."""
        ...
