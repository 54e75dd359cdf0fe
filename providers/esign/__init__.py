"""E-signature providers: builtin (our signing page), dropbox_sign, docusign, documenso."""

from __future__ import annotations

from partnerflow.providers.esign.base import SignatureProvider


def get_esign_provider(name: str | None = None) -> SignatureProvider:
    """The provider named by PARTNERFLOW_ESIGN_PROVIDER (or `name`); SaaS modules import lazily."""
    from partnerflow.settings import ESIGN_PROVIDERS, ConfigError, get_settings

    name = (name or get_settings().esign_provider).strip().lower()
    if name == "builtin":
        from partnerflow.providers.esign.builtin import BuiltinSigning

        return BuiltinSigning()
    if name == "dropbox_sign":
        from partnerflow.providers.esign.dropbox_sign import DropboxSignProvider

        return DropboxSignProvider()
    if name == "docusign":
        from partnerflow.providers.esign.docusign import DocuSignProvider

        return DocuSignProvider()
    if name == "documenso":
        from partnerflow.providers.esign.documenso import DocumensoProvider

        return DocumensoProvider()
    raise ConfigError(f"PARTNERFLOW_ESIGN_PROVIDER={name!r} is not a known choice; use one of: {', '.join(ESIGN_PROVIDERS)}.")


__all__ = ["SignatureProvider", "get_esign_provider"]
