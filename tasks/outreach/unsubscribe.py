"""Unsubscribe links: "<enrollment id>-<keyed hash>", unguessable without the secret key."""

from __future__ import annotations

import functools
import hashlib
import hmac

from partnerflow.secrets import master_key, token_hash
from partnerflow.settings import get_settings


def unsubscribe_token(enrollment_id: int) -> str:
    # Same value as secrets.token_hash(f"unsubscribe:{id}"), with the derived key computed once per key.
    key = _token_key(master_key())
    signature = hmac.new(key, f"unsubscribe:{enrollment_id}".encode(), hashlib.sha256).hexdigest()
    return f"{enrollment_id}-{signature[:32]}"


@functools.lru_cache(maxsize=4)
def _token_key(master: bytes) -> bytes:
    return hmac.new(master, b"token", hashlib.sha256).digest()


def enrollment_for_token(token: str) -> int | None:
    head, _, sig = (token or "").partition("-")
    if not head.isdigit() or not sig:
        return None
    expected = token_hash(f"unsubscribe:{int(head)}")[:32]
    return int(head) if hmac.compare_digest(sig, expected) else None


def unsubscribe_url(enrollment_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/u/{unsubscribe_token(enrollment_id)}"
