"""The one list of e-signature vendors: setting value -> implementation, the settings it needs,
the name people know it by, and whether it signs on its own site (callbacks, polling).

Settings choices, get_esign_provider, the /webhooks/{vendor} route, the signature sweeps'
polling and the reminder wording all read this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from partnerflow.providers.registry import Vendor


@dataclass(frozen=True)
class EsignVendor(Vendor):
    title: str = ""
    remote: bool = True  # signed at the vendor: it calls back, we poll it, it mails the signer

    @staticmethod
    def slug(name: str) -> str:
        """The vendor's part of its callback URL: /webhooks/dropbox-sign."""
        return name.replace("_", "-")


PROVIDERS: dict[str, EsignVendor] = {
    "builtin": EsignVendor("partnerflow.providers.esign.builtin:BuiltinSigning", title="our signing page",
                           remote=False),
    "dropbox_sign": EsignVendor("partnerflow.providers.esign.dropbox_sign:DropboxSignProvider",
                                requires=("dropbox_sign_api_key",), title="Dropbox Sign"),
    "docusign": EsignVendor("partnerflow.providers.esign.docusign:DocuSignProvider",
                            requires=("docusign_access_token", "docusign_account_id", "docusign_connect_hmac_key"),
                            title="DocuSign"),
    "documenso": EsignVendor("partnerflow.providers.esign.documenso:DocumensoProvider",
                             requires=("documenso_api_key", "documenso_webhook_secret"), title="Documenso"),
}

REMOTE = tuple(name for name, vendor in PROVIDERS.items() if vendor.remote)


def by_slug(slug: str) -> str | None:
    """The vendor name for a callback URL's slug, if it is a vendor that calls back."""
    return next((name for name in REMOTE if EsignVendor.slug(name) == slug), None)


def title(name: str) -> str:
    vendor = PROVIDERS.get(name)
    return vendor.title if vendor else name
