"""The one list of e-signature providers: setting value -> implementation and the settings it needs."""

from __future__ import annotations

from partnerflow.providers.registry import Vendor

PROVIDERS: dict[str, Vendor] = {
    "builtin": Vendor("partnerflow.providers.esign.builtin:BuiltinSigning"),
    "dropbox_sign": Vendor("partnerflow.providers.esign.dropbox_sign:DropboxSignProvider",
                           requires=("dropbox_sign_api_key",)),
    "docusign": Vendor("partnerflow.providers.esign.docusign:DocuSignProvider",
                       requires=("docusign_access_token", "docusign_account_id", "docusign_connect_hmac_key")),
    "documenso": Vendor("partnerflow.providers.esign.documenso:DocumensoProvider",
                        requires=("documenso_api_key", "documenso_webhook_secret")),
}
