"""Unsubscribe links: "<enrollment id>-<keyed hash>", unguessable without the secret key.

Links are made with the newest key and accepted under every listed key, so a mail sent before a
key rotation still unsubscribes while its key is listed (PARTNERFLOW_PREVIOUS_SECRET_KEYS).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from partnerflow.secrets import keys
from partnerflow.settings import get_settings


def unsubscribe_token(enrollment_id: int) -> str:
    return f"{enrollment_id}-{_signature(keys()[0].secret, enrollment_id)}"


def _signature(master: bytes, enrollment_id: int) -> str:
    # Same value as secrets.token_hash(f"unsubscribe:{id}")[:32] under that key.
    return hmac.new(_token_key(master), f"unsubscribe:{enrollment_id}".encode(), hashlib.sha256).hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _token_key(master: bytes) -> bytes:
    return hmac.new(master, b"token", hashlib.sha256).digest()


def enrollment_for_token(token: str) -> int | None:
    head, _, sig = (token or "").partition("-")
    if not head.isascii() or not head.isdigit() or not sig:
        return None
    given = sig.encode()  # bytes: a non-ASCII token is a mismatch, never a crash
    for key in keys():
        if hmac.compare_digest(given, _signature(key.secret, int(head)).encode()):
            return int(head)
    return None


def unsubscribe_url(enrollment_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/u/{unsubscribe_token(enrollment_id)}"
