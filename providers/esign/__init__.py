"""E-signature providers. `get_esign_provider(settings)` builds the one PARTNERFLOW_ESIGN_PROVIDER names."""

from __future__ import annotations

from partnerflow.providers.errors import PermanentError
from partnerflow.providers.esign.base import SignatureProvider
from partnerflow.providers.esign.registry import PROVIDERS
from partnerflow.providers.esign.settings import EsignSettings


def get_esign_provider(settings: EsignSettings, name: str | None = None) -> SignatureProvider:
    """The configured provider, or `name` (the provider a stored request was sent through)."""
    name = (name or settings.esign_provider).strip().lower()
    if name not in PROVIDERS:
        raise PermanentError(f"unknown e-signature provider {name!r}; known: {', '.join(PROVIDERS)}")
    return PROVIDERS[name].load()(settings)


__all__ = ["EsignSettings", "SignatureProvider", "get_esign_provider"]
