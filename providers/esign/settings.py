"""E-signature settings: which provider signs, and each provider's own settings."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from partnerflow.providers.esign.registry import PROVIDERS
from partnerflow.providers.secret_settings import MIN_CHOSEN_SECRET_LENGTH, checked_secret
from partnerflow.providers.settings_base import VendorSettings


class EsignSettings(VendorSettings):
    choice = "esign_provider"
    vendors = PROVIDERS

    esign_provider: str = "builtin"
    esign_timeout_seconds: float = 20.0
    # Providers retry callbacks with the original timestamp, so the window spans their retry period.
    esign_webhook_max_age_seconds: int = 24 * 3600
    # After an ambiguous send (timeout), how long a search by our reference may lag before we resend.
    esign_reconcile_after_seconds: int = 15 * 60
    # Ask SaaS providers directly about requests still unsigned this long after sending (lost callbacks).
    esign_poll_after_hours: int = 24
    dropbox_sign_api_key: SecretStr | None = None
    dropbox_sign_api_host: str = "https://api.hellosign.com"
    dropbox_sign_test_mode: bool = False  # test_mode=1: requests are neither legally binding nor billed
    docusign_access_token: SecretStr | None = None
    docusign_account_id: str | None = None
    docusign_api_host: str = "https://demo.docusign.net/restapi"
    docusign_connect_hmac_key: SecretStr | None = None
    documenso_api_key: SecretStr | None = None
    documenso_api_host: str = "https://app.documenso.com"
    documenso_webhook_secret: SecretStr | None = None  # sent back as-is in X-Documenso-Secret
    # The built-in signing page takes these from the installation (the contracting tasks fill them
    # in from the secret key and PARTNERFLOW_PUBLIC_BASE_URL); they are not set by hand.
    signing_link_key: SecretStr | None = None
    signing_base_url: str = ""

    @field_validator("dropbox_sign_api_key", "docusign_access_token", "docusign_connect_hmac_key",
                     "documenso_api_key", "documenso_webhook_secret")
    @classmethod
    def _real_secret(cls, value, info):
        minimum = MIN_CHOSEN_SECRET_LENGTH if info.field_name == "documenso_webhook_secret" else 1
        return checked_secret(info.field_name, value, minimum)

    def for_installation(self, *, link_key: str, public_base_url: str) -> EsignSettings:
        """These settings with what the built-in signing page takes from the installation."""
        return self.model_copy(update={"signing_link_key": SecretStr(link_key), "signing_base_url": public_base_url})

