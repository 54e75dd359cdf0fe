"""The e-sign callback routes come from the vendor registry: one per vendor that calls back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from partnerflow.providers.esign import registry
from partnerflow.providers.esign.base import SigningLink
from partnerflow.tasks.contracting.sending import esign_provider
from partnerflow.web.app import create_app


def test_every_vendor_that_calls_back_has_its_route_and_the_builtin_page_has_none():
    paths = {path for path, methods in create_app().openapi()["paths"].items() if "post" in methods}
    assert {"/webhooks/dropbox-sign", "/webhooks/docusign", "/webhooks/documenso"} <= paths
    assert {f"/webhooks/{registry.EsignVendor.slug(name)}" for name in registry.REMOTE} <= paths
    assert "/webhooks/builtin" not in paths
    assert registry.by_slug("dropbox-sign") == "dropbox_sign" and registry.by_slug("builtin") is None


def test_a_vendor_that_is_not_configured_answers_404_with_its_name(configure):
    configure(dropbox_sign_api_key=None, docusign_access_token=None, docusign_account_id=None,
              documenso_api_key=None)
    client = TestClient(create_app())
    for slug, title in (("dropbox-sign", "Dropbox Sign"), ("docusign", "DocuSign"), ("documenso", "Documenso")):
        response = client.post(f"/webhooks/{slug}", content=b"{}", headers={"content-type": "application/json"})
        assert response.status_code == 404 and response.text == f"{title} is not configured"


def test_only_the_builtin_page_mails_its_own_link(configure):
    configure(public_base_url="https://partners.example")
    link = esign_provider("builtin").signing_link("pfabc")
    assert isinstance(link, SigningLink) and link.url == f"https://partners.example/sign/{link.token}"
    assert esign_provider("builtin").signing_link("pfabc") == link  # derived: a re-sent mail carries the same link
    assert esign_provider("builtin").signing_link("pfother") != link
