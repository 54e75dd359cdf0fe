"""Onboarding: activation, codes unique under concurrency, tax/payout form stored encrypted, welcome once,
activation monitoring with frozen time, funnel."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import time_machine
from factories import approved_partner
from fastapi.testclient import TestClient
from sqlmodel import select
from support import link, mail_text, mails
from typer.testing import CliRunner

from partnerflow.flows.onboarding import monitor_activation, onboard_partner
from partnerflow.models import (
    AuditLog,
    Conversion,
    Message,
    Partner,
    Stage,
    session_scope,
    utcnow,
)
from partnerflow.models.onboarding import Onboarding
from partnerflow.secrets import decrypt
from partnerflow.tasks.compliance.blockers import payout_blockers
from partnerflow.tasks.contracting.documents import generate_contract
from partnerflow.tasks.contracting.signing import complete_signature, request_signature
from partnerflow.tasks.onboarding import activation as ob
from partnerflow.tasks.onboarding.details import (
    LinkUsed,
    confirm_payout_details,
    reopen_onboarding,
    submit_onboarding,
)
from partnerflow.web.app import create_app


def _signed_contract(**overrides) -> tuple[int, int]:
    partner_id = approved_partner(**overrides)
    contract = generate_contract(partner_id)
    row = request_signature(contract.id)
    assert complete_signature(row.id, signed_document=b"%PDF-1.4 signed", filename="signed.pdf",
                              evidence={"signer_name": "Nora Wind"}, actor="test")
    return partner_id, contract.id


def test_onboard_partner_activates_provisions_and_welcomes_once(outbox):
    partner_id, contract_id = _signed_contract()
    result = onboard_partner(contract_id)
    assert result["activated"] is True
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        assert partner.stage == Stage.ACTIVE and partner.activated_at
        assert partner.tracking_code.startswith("northwindmed-") and partner.coupon_code.startswith("NORTHWIN")
        assert partner.tax_form_kind == "W-9" and partner.tax_form_status == "requested"
    welcome = [m for m in mails(outbox) if m["Subject"].startswith("Welcome")]
    assert len(welcome) == 1
    assert partner.tracking_code in mail_text(welcome[0]) and partner.coupon_code in mail_text(welcome[0])
    # Re-run (e.g. the event delivered twice): same codes, no second welcome.
    again = onboard_partner(contract_id)
    assert again["activated"] is False and again["tracking_code"] == partner.tracking_code
    assert len([m for m in mails(outbox) if m["Subject"].startswith("Welcome")]) == 1


def test_unsigned_contract_is_not_onboarded():
    partner_id = approved_partner()
    contract = generate_contract(partner_id)
    assert onboard_partner(contract.id)["skipped"]
    with session_scope() as session:
        assert session.get(Partner, partner_id).stage == Stage.APPLIED


def test_codes_are_unique_under_concurrency(monkeypatch):
    # Same name for everyone and a 3-letter suffix alphabet: collisions are certain and must be retried.
    ids = [approved_partner(legal_name="Same Name", email=f"p{i}@same{i}.example", website=f"same{i}.example")
           for i in range(12)]
    monkeypatch.setattr(ob, "_ALPHABET", "abc")
    barrier = threading.Barrier(len(ids))
    errors = []

    def work(pid):
        try:
            barrier.wait()
            ob.provision_codes(pid)
            ob.provision_codes(pid)  # idempotent
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pid,)) for pid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope() as session:
        partners = session.exec(select(Partner)).all()
    tracking = [p.tracking_code for p in partners]
    coupons = [p.coupon_code for p in partners]
    assert all(tracking) and all(coupons)
    assert len(set(tracking)) == len(ids) and len(set(coupons)) == len(ids)


def test_tax_and_payout_details_are_stored_encrypted_and_shown_masked(outbox):
    partner_id, contract_id = _signed_contract(country="DE", email="anna@beispiel.example", website="beispiel.example")
    onboard_partner(contract_id)
    path = link(outbox, "/onboarding/")
    client = TestClient(create_app())
    form = client.get(path)
    assert form.status_code == 200 and "W-8BEN" in form.text
    iban = "DE89370400440532013000"
    bad = client.post(path, data={"tax_name": "Anna", "tax_address": "Berlin", "citizenship": "DE", "tin": "12345",
                                  "certify": "yes", "payout_method": "sepa", "account_holder": "Anna",
                                  "iban": "DE00 1234"})
    assert bad.status_code == 422 and "not a valid IBAN" in bad.text and "DE00 1234" not in bad.text
    ok = client.post(path, data={"tax_name": "Anna Beispiel", "tax_address": "Hauptstr. 1, Berlin", "citizenship": "de",
                                 "tin": "DE123456789", "certify": "yes", "payout_method": "sepa",
                                 "account_holder": "Anna Beispiel", "iban": "DE89 3704 0044 0532 0130 00"})
    assert ok.status_code == 200 and iban not in ok.text and "3000" in ok.text
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        row = session.exec(select(Onboarding)).one()
        assert partner.tax_form_status == "received" and partner.payout_method == "sepa"
        assert iban not in partner.payout_details_encrypted and partner.payout_details_masked.endswith("3000")
        assert iban not in partner.payout_details_masked
        assert json.loads(decrypt(partner.payout_details_encrypted))["iban"] == iban
        assert "DE123456789" not in row.tax_form_encrypted
        assert json.loads(decrypt(row.tax_form_encrypted))["tin"] == "DE123456789"
        logged = session.exec(select(AuditLog).where(AuditLog.action == "onboarding.details_received")).one()
        assert iban not in json.dumps(logged.details) and "DE123456789" not in json.dumps(logged.details)
    assert client.get("/onboarding/forged-token").status_code == 404
    checklist = ob.checklist_markdown(partner_id)
    assert iban not in checklist and "✅ | Payout details" in checklist


def test_dormant_and_active_transitions_with_frozen_time(configure, outbox):
    configure(activation_nudge_days=7, activation_dormant_days=30)
    start = utcnow()
    with time_machine.travel(start, tick=False):
        partner_id, contract_id = _signed_contract()
        onboard_partner(contract_id)

    def stage():
        with session_scope() as session:
            return session.get(Partner, partner_id).stage

    with time_machine.travel(start + timedelta(days=3), tick=False):
        assert monitor_activation()["nudged"] == 0
    with time_machine.travel(start + timedelta(days=8), tick=False):
        assert monitor_activation()["nudged"] == 1
        assert monitor_activation()["nudged"] == 0  # once per quiet spell
    assert stage() == Stage.ACTIVE
    with time_machine.travel(start + timedelta(days=31), tick=False):
        result = monitor_activation()
        assert result["dormant"] == 1 and stage() == Stage.DORMANT
        assert result["funnel"] == {"applied": 1, "approved": 0, "signed": 1, "active": 0}
    with time_machine.travel(start + timedelta(days=40), tick=False):
        assert monitor_activation()["reactivated"] == 0  # still quiet
        with session_scope() as session:
            session.add(Conversion(**_conversion(partner_id, utcnow())))
        assert monitor_activation()["reactivated"] == 1 and stage() == Stage.ACTIVE
    with session_scope() as session:
        nudges = session.exec(select(Message).where(Message.kind == "activation_nudge")).all()
        assert len(nudges) == 1
        actions = [a.action for a in session.exec(select(AuditLog).where(AuditLog.subject_type == "partner"))]
        assert "partner.dormant" in actions and "partner.reactivated" in actions


def _conversion(partner_id: int, when) -> dict:
    fields = Conversion.model_fields
    values = {"partner_id": partner_id, "occurred_at": when}
    # Fill the other required columns with plausible values (the payout area owns this table).
    for name, info in fields.items():
        if name in values or name == "id" or not info.is_required():
            continue
        annotation = str(info.annotation)
        values[name] = 1000 if "int" in annotation else "USD" if name == "currency" else f"test-{name}-{partner_id}"
    return values


@pytest.mark.parametrize("country,kind", [("US", "W-9"), ("DE", "W-8BEN"), ("PR", "W-9"), ("GB", "W-8BEN")])
def test_tax_form_by_country(country, kind):
    assert ob.tax_form_kind(country) == kind


def test_tracking_link_redirects_and_counts_as_activity(configure):
    configure(partner_landing_url="https://shop.example/start?utm_source=partners")
    partner_id, contract_id = _signed_contract()
    code = onboard_partner(contract_id)["tracking_code"]
    client = TestClient(create_app())
    response = client.get(f"/r/{code}", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"https://shop.example/start?utm_source=partners&ref={code}&pf_click=")
    with session_scope() as session:
        assert session.get(Partner, partner_id).last_activity_at is not None
    assert client.get("/r/unknown-code", follow_redirects=False).status_code == 302


SEPA_FORM = {"tax_name": "Anna Beispiel", "tax_address": "Hauptstr. 1, Berlin", "citizenship": "de",
             "tin": "DE123456789", "certify": "yes", "payout_method": "sepa", "account_holder": "Anna Beispiel",
             "iban": "DE89 3704 0044 0532 0130 00"}
PAYPAL_FORM = {**SEPA_FORM, "payout_method": "paypal", "paypal_email": "thief@elsewhere.example"}


def _onboarded(outbox) -> tuple[int, str, TestClient]:
    partner_id, contract_id = _signed_contract(country="DE", email="anna@beispiel.example", website="beispiel.example")
    onboard_partner(contract_id)
    path = link(outbox, "/onboarding/")
    client = TestClient(create_app())
    assert client.post(path, data=SEPA_FORM).status_code == 200
    return partner_id, path, client


def _blockers(partner_id: int) -> list[str]:
    with session_scope() as session:
        return payout_blockers(session, [partner_id]).get(partner_id, [])


def _details(partner_id: int) -> dict:
    with session_scope() as session:
        return json.loads(decrypt(session.get(Partner, partner_id).payout_details_encrypted))


def test_the_onboarding_link_works_once_for_payout_details(outbox):
    partner_id, path, client = _onboarded(outbox)
    page = client.get(path)
    again = client.post(path, data=PAYPAL_FORM)
    assert page.status_code == again.status_code == 410 and "already been used" in again.text
    assert "<form" not in page.text
    assert _details(partner_id)["method"] == "sepa" and _blockers(partner_id) == []  # a first entry is not held
    saved = [m for m in mails(outbox) if m["To"] == "anna@beispiel.example" and "were saved" in m["Subject"]]
    assert len(saved) == 1  # the partner hears of every save, so none is silent


def test_two_submissions_racing_on_one_link_save_once(outbox):
    partner_id, contract_id = _signed_contract(country="DE", email="anna@beispiel.example", website="beispiel.example")
    onboard_partner(contract_id)
    token = link(outbox, "/onboarding/").rsplit("/", 1)[1]
    barrier, outcomes = threading.Barrier(2), []

    def submit(form):
        barrier.wait()
        try:
            submit_onboarding(token, form)
            outcomes.append(form["payout_method"])
        except LinkUsed:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(f,)) for f in (SEPA_FORM, PAYPAL_FORM)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2 and outcomes.count("refused") == 1
    assert _details(partner_id)["method"] == next(o for o in outcomes if o != "refused")


def test_changed_payout_details_hold_payouts_until_a_person_confirms(outbox):
    partner_id, path, client = _onboarded(outbox)
    reopen_onboarding(partner_id, actor="team:olga")
    changed = client.post(path, data=PAYPAL_FORM)
    assert changed.status_code == 200 and _details(partner_id)["paypal_email"] == "thief@elsewhere.example"
    assert client.post(path, data=SEPA_FORM).status_code == 410  # single-use again
    [held] = _blockers(partner_id)
    assert "payout details changed" in held
    to_partner = [m for m in mails(outbox) if m["To"] == "anna@beispiel.example" and "were saved" in m["Subject"]]
    to_team = [m for m in mails(outbox) if m["To"] == "partners-team@acme.example" and "held" in m["Subject"]]
    assert len(to_partner) == 2 and "on hold" in mail_text(to_partner[-1]) and len(to_team) == 1
    assert "thief@elsewhere.example" not in mail_text(to_team[0])  # masked, as everywhere
    with pytest.raises(ValueError):
        confirm_payout_details(partner_id, actor=" ")
    from partnerflow.cli import app, onboarding  # noqa: F401  (adds the payout-details commands)

    confirmed = CliRunner().invoke(app, ["payout-details", "confirm", "--partner", str(partner_id), "--by", "Olga"])
    assert confirmed.exit_code == 0 and "no longer held" in confirmed.output
    assert _blockers(partner_id) == [] and confirm_payout_details(partner_id, actor="team:olga") is False
    with session_scope() as session:
        actions = [a.action for a in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]
    assert actions[-4:] == ["onboarding.link_reopened", "onboarding.details_received",
                            "onboarding.payout_details_changed", "onboarding.payout_details_confirmed"]
