"""The currency a partner is paid in is their choice on the onboarding form, checked there: SEPA is euro only."""

from __future__ import annotations

import pytest
from factories import approved_partner
from fastapi.testclient import TestClient
from support import link

from partnerflow.flows.onboarding import onboard_partner
from partnerflow.models import Partner, session_scope
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.signing import complete_signature, request_signature
from partnerflow.web.app import create_app

TAX = {"tax_name": "Anna Beispiel", "tax_address": "Hauptstr. 1, Berlin", "citizenship": "DE", "tin": "DE123456789",
       "certify": "yes"}
SEPA = {**TAX, "payout_method": "sepa", "account_holder": "Anna Beispiel", "iban": "DE89 3704 0044 0532 0130 00"}
PAYPAL = {**TAX, "payout_method": "paypal", "paypal_email": "anna@beispiel.example"}


@pytest.fixture
def onboarding(outbox) -> tuple[int, str, TestClient]:
    partner_id = approved_partner(country="DE", email="anna@beispiel.example", website="beispiel.example")
    contract = generate_contract(partner_id)
    assert complete_signature(request_signature(contract.id).id, signed_document=b"%PDF-1.4 signed",
                              filename="signed.pdf", evidence={"signer_name": "Anna"}, actor="test")
    onboard_partner(contract.id)
    return partner_id, link(outbox, "/onboarding/"), TestClient(create_app())


def _currency(partner_id: int) -> str:
    with session_scope() as session:
        return session.get(Partner, partner_id).payout_currency


def test_the_form_asks_for_a_currency_and_stores_the_one_chosen(onboarding):
    partner_id, path, client = onboarding
    assert "name='payout_currency'" in client.get(path).text
    assert client.post(path, data={**PAYPAL, "payout_currency": "gbp"}).status_code == 200
    assert _currency(partner_id) == "GBP"


@pytest.mark.parametrize(("form", "message"), [
    ({**SEPA, "payout_currency": "USD"}, "SEPA transfers are paid in EUR only."),
    ({**PAYPAL, "payout_currency": "XYZ"}, "three-letter ISO code"),
])
def test_a_currency_that_cannot_be_paid_is_refused_with_a_sentence_and_nothing_is_saved(onboarding, form, message):
    partner_id, path, client = onboarding
    before = _currency(partner_id)
    refused = client.post(path, data=form)
    assert refused.status_code == 422 and message in refused.text
    assert _currency(partner_id) == before
    assert client.post(path, data={**form, "payout_currency": "EUR"}).status_code == 200  # the link still works


def test_a_sepa_partner_who_names_no_currency_is_paid_in_euro(onboarding):
    partner_id, path, client = onboarding
    assert client.post(path, data=SEPA).status_code == 200
    assert _currency(partner_id) == "EUR"
