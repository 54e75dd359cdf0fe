"""Secrets at rest: encryption for payout details, hashes for API keys and tokens,
masking for anything shown in logs, UI or artifacts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _stdlib_secrets

from cryptography.fernet import Fernet

from partnerflow.settings import get_settings


def master_key() -> bytes:
    """The installation's secret: PARTNERFLOW_SECRET_KEY, else a key kept in var/secret.key."""
    settings = get_settings()
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.var_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_stdlib_secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def _derived(purpose: str) -> bytes:
    return hmac.new(master_key(), purpose.encode(), hashlib.sha256).digest()


def encrypt(plaintext: str) -> str:
    return Fernet(base64.urlsafe_b64encode(_derived("encrypt"))).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return Fernet(base64.urlsafe_b64encode(_derived("encrypt"))).decrypt(token.encode()).decode()


def new_token(nbytes: int = 32) -> str:
    """An unguessable URL-safe token (signing links, API keys)."""
    return _stdlib_secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Keyed hash for storing tokens and API keys: the database never holds them in clear."""
    return hmac.new(_derived("token"), token.encode(), hashlib.sha256).hexdigest()


def mask(value: str | None, keep: int = 4) -> str:
    """'DE89370400440532013000' -> '••••••••••••••••••3000'."""
    if not value:
        return ""
    visible = value[-keep:] if len(value) > keep else ""
    return "•" * (len(value) - len(visible)) + visible
