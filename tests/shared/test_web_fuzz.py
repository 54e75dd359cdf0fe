"""Fuzzing the web app: schemathesis against its OpenAPI schema, and hand-written Hypothesis cases for the
form and webhook routes (whose bodies the schema does not describe). No route may answer 500, and none
may change our tables without the right credentials. Bounded examples: the whole file runs well under 60 s.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from factories import approved_partner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import SQLModel

from partnerflow.models import Partner, session_scope
from partnerflow.web.app import create_app

# Secrets configured, so that every webhook gets as far as checking a signature.
SECRETS = {"stripe_webhook_secret": "whsec_" + "s" * 40, "sendgrid_inbound_token": "t" * 40,
           "dropbox_sign_api_key": "d" * 40, "docusign_connect_hmac_key": "h" * 40,
           "documenso_webhook_secret": "w" * 40, "web_apply_limit_per_ip": "1000/minute"}
# Public by design: an application may be created by anyone (and is audited and announced).
PUBLIC_TABLES = {"partner", "application", "audit_log", "event_outbox"}
FAST = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))  # per schema operation
HAND = settings(FAST, max_examples=60)

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


def _table_counts() -> dict[str, int]:
    with session_scope() as session:
        return {t.name: session.execute(select(func.count()).select_from(t)).scalar_one()
                for t in SQLModel.metadata.sorted_tables if t.name not in PUBLIC_TABLES}


@pytest.fixture
def guarded(configure):
    """A partner with payout details already in place; yields a check that nothing changed."""
    configure(**SECRETS)
    partner_id = approved_partner(email="kept@partner.example", website="https://partner.example")
    before = _table_counts()

    def unchanged() -> None:
        assert _table_counts() == before
        with session_scope() as session:
            partner = session.get(Partner, partner_id)
            assert partner.payout_details_encrypted is None and partner.stage == "applied"

    return unchanged


@schema.parametrize()
@FAST
def test_no_route_answers_500_to_schema_fuzzing(case, guarded):
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
    if case.path not in ("/apply", "/api/applications"):
        guarded()


WEBHOOKS = ["/webhooks/stripe", "/webhooks/sendgrid/events", "/webhooks/sendgrid/inbound", "/webhooks/dropbox-sign",
            "/webhooks/docusign", "/webhooks/documenso", "/api/conversions"]
TOKEN_FORMS = ["/onboarding/{t}", "/sign/{t}", "/u/{t}"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                 "text/plain", "application/json; charset=latin-1", ""]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=12)
bodies = st.one_of(st.binary(max_size=600), json_values.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(st.sampled_from(["email", "legal_name", "event", "signature", "token", "id",
                                                    "payout_method", "iban", "signer_name", "consent", "to", "from",
                                                    "homepage", "website", "country"]),
                                   st.text(max_size=30), max_size=8).map(lambda d: json.dumps(d).encode()))
signature_headers = st.dictionaries(
    st.sampled_from(["stripe-signature", "x-twilio-email-event-webhook-signature",
                     "x-twilio-email-event-webhook-timestamp", "x-docusign-signature-1", "x-documenso-secret",
                     "x-api-key", "x-hellosign-signature"]),
    header_text, max_size=3)


def _latin1(headers: dict[str, str]) -> dict[str, bytes]:
    return {k: v.encode("latin-1") for k, v in headers.items()}


@HAND
@given(path=st.sampled_from(WEBHOOKS), body=bodies, content_type=st.sampled_from(CONTENT_TYPES),
       headers=signature_headers)
def test_webhooks_refuse_forgeries_without_500_or_changes(guarded, path, body, content_type, headers):
    client = TestClient(create_app())
    response = client.post(path, content=body, headers={**_latin1(headers), "content-type": content_type})
    assert response.status_code < 500, (path, body[:80], response.status_code, response.text[:300])
    assert response.status_code >= 400  # nothing forged is accepted
    guarded()


@HAND
@given(path=st.sampled_from(TOKEN_FORMS), token=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                                                      exclude_characters="/?#%"), min_size=1,
                                                      max_size=60),
       form=st.dictionaries(st.text(max_size=15), st.text(max_size=40), max_size=8),
       method=st.sampled_from(["GET", "POST"]))
def test_token_pages_with_forged_tokens_change_nothing(guarded, path, token, form, method):
    client = TestClient(create_app())
    url = path.format(t=token)
    response = client.request(method, url, data=form if method == "POST" else None)
    assert response.status_code < 500, (url, response.status_code, response.text[:300])
    assert response.headers["cache-control"] == "no-store" and response.headers["x-frame-options"] == "DENY"
    guarded()


@HAND
@given(form=st.dictionaries(st.sampled_from(["legal_name", "contact_name", "email", "country", "website", "channels",
                                             "partner_type", "promotional_methods", "tax_status", "agreed_to_terms",
                                             "homepage"]) | st.text(max_size=10),
                            st.text(max_size=60) | st.sampled_from(["yes", "blog", "US", "a@b.example"]), max_size=11),
       as_json=st.booleans())
def test_the_application_form_never_answers_500(guarded, form, as_json):
    client = TestClient(create_app())
    response = (client.post("/api/applications", json=form) if as_json else client.post("/apply", data=form))
    assert response.status_code in (200, 202, 400, 422, 429), (form, response.status_code, response.text[:300])
    if as_json:
        assert "id" not in response.json() and "partner_id" not in response.json()
