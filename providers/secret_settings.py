"""Checks for secret settings: a secret that is set must be worth having.

An empty value (`PARTNERFLOW_STRIPE_WEBHOOK_SECRET=`) would otherwise count as configured,
and an empty HMAC key verifies anyone's signature. Each mistake is one sentence naming the setting.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import SecretStr

S = TypeVar("S", SecretStr, str)

# Secrets we choose ourselves (shared tokens we put in a vendor's callback URL or header).
MIN_CHOSEN_SECRET_LENGTH = 16


def checked_secret(name: str, value: S | None, minimum: int = 1) -> S | None:
    """`value` unchanged when unset or long enough; a ValueError naming PARTNERFLOW_<NAME> otherwise."""
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    setting = f"PARTNERFLOW_{name.upper()}"
    if not text.strip():
        raise ValueError(f"{setting} is set but empty; set a real secret or remove the setting")
    if text != text.strip():
        raise ValueError(f"{setting} starts or ends with white space; remove it")
    if len(text) < minimum:
        raise ValueError(f"{setting} is too short ({len(text)} characters); use at least {minimum}")
    return value
