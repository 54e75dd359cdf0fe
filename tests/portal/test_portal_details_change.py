"""Changing payout details in the partner portal: nothing changes until the partner confirms through the
link sent to the address on file; then the team is told, payouts wait for the cooling-off period, and the
audit log has each changed field, masked. The first-time onboarding link works once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from factories import T0, make_partner
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import SQLModel, select
from support import link, mail_text, mails

from partnerflow.models import AuditLog, Partner, session_scope, utcnow
from partnerflow.models.engine import get_engine
from partnerflow.models.onboarding import Onboarding
from partnerflow.models.portal import PayoutDetailsChange
from partnerflow.secrets import decrypt, encrypt, mask, token_hash
from partnerflow.tasks.compliance.blockers import payout_blockers
from partnerflow.tasks.onboarding.details import (
    LinkUsed,
    confirm_payout_details,
    payout_details_holds,
    submit_onboarding,
)
from partnerflow.web.app import create_app

OLD_IBAN = "DE89370400440532013000"
NEW_IBAN = "FR1420041010050500013M02606"
ONBOARDING_TOKEN = "onboarding-token-for-tests-0123456789abcdef"
NEW_SEPA = {"payout_method": "sepa", "account_holder": "Pat One", "iban": "FR14 2004 1010 0505 0001 3M02 606",
            "bic": "", "payout_currency": ""}
TAX = {"tax_name": "Pat One", "tax_address": "1 Main St", "tin": "123456789", "certify": "yes"}


@pytest.fixture
def sepa_partner() -> int:
    """An onboarded partner paid by SEPA to OLD_IBAN in euro."""
    details = {"method": "sepa", "account_holder": "Pat One", "iban": OLD_IBAN, "bic": ""}
    partner_id = make_partner(1, currency="EUR", payout_method="sepa",
                              payout_details_encrypted=encrypt(json.dumps(details)),
                              payout_details_masked=f"IBAN {mask(OLD_IBAN)}")
    with session_scope() as session:
        session.add(Onboarding(partner_id=partner_id, token_hash=token_hash(ONBOARDING_TOKEN), tax_form_kind="W-9",
                               expires_at=T0 + timedelta(days=30), completed_at=T0))
    return partner_id


def _partner(partner_id: int) -> Partner:
    with session_scope() as session:
        return session.get(Partner, partner_id)


def _details(partner_id: int) -> dict:
    return json.loads(decrypt(_partner(partner_id).payout_details_encrypted))


def _ask(client, data: dict):
    return client.post("/portal/payout-details", data={**data, "csrf_token": client.csrf_token})


def _confirm(path: str):
    """Open the mailed link on another device (no session) and press its button."""
    with TestClient(create_app(), follow_redirects=False) as device:
        page = device.get(path)
        if page.status_code != 200:
            return page
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        return device.post(path, data={"csrf_token": token})


def _audit(action: str) -> list[AuditLog]:
    with session_scope() as session:
        return list(session.exec(select(AuditLog).where(AuditLog.action == action)).all())


def test_a_change_waits_for_the_partner_then_holds_payouts_and_tells_the_team(
        configure, sepa_partner, portal_client, outbox):
    configure(portal_payout_cooling_off_hours=72)
    client = portal_client(sepa_partner)
    assert "IBAN " + mask(OLD_IBAN) in client.get("/portal/payout-details").text
    asked = _ask(client, NEW_SEPA)
    assert asked.status_code == 200 and "p1@example.com" in asked.text
    assert _details(sepa_partner)["iban"] == OLD_IBAN  # nothing changed yet
    with session_scope() as session:
        assert payout_blockers(session, [sepa_partner]) == {}
    [confirmation] = mails(outbox)
    assert confirmation["To"] == "p1@example.com" and NEW_IBAN not in mail_text(confirmation)
    path = link(outbox, "/portal/payout-details/confirm/")
    assert _details(sepa_partner)["iban"] == OLD_IBAN  # opening the page changes nothing either
    done = _confirm(path)
    assert done.status_code == 200 and "held until" in done.text
    assert _details(sepa_partner)["iban"] == NEW_IBAN
    confirmed_at = utcnow()
    with session_scope() as session:
        [reason] = payout_blockers(session, [sepa_partner])[sepa_partner]  # the payout batch holds them
    assert "cooling-off" in reason and f"{confirmed_at + timedelta(hours=72):%Y-%m-%d}" in reason
    team = [m for m in mails(outbox) if m["To"] == "partners-team@acme.example"]
    assert len(team) == 1 and mask(NEW_IBAN) in mail_text(team[0]) and mask(OLD_IBAN) in mail_text(team[0])
    with time_machine.travel(confirmed_at + timedelta(hours=71)), session_scope() as session:
        assert sepa_partner in payout_blockers(session, [sepa_partner])
    with time_machine.travel(confirmed_at + timedelta(hours=73)), session_scope() as session:
        assert payout_blockers(session, [sepa_partner]) == {}  # released by itself, no person needed
    assert _confirm(path).status_code == 410  # the link works once


def test_the_audit_log_names_each_changed_field_masked_and_no_clear_iban_is_stored(
        sepa_partner, portal_client, outbox):
    _ask(portal_client(sepa_partner), {**NEW_SEPA, "payout_currency": "EUR", "bic": "BNPAFRPP"})
    _confirm(link(outbox, "/portal/payout-details/confirm/"))
    [entry] = _audit("onboarding.payout_details_changed")
    fields = entry.details["fields"]
    assert fields["iban"] == {"from": mask(OLD_IBAN), "to": mask(NEW_IBAN)}
    assert fields["bic"] == {"from": "", "to": mask("BNPAFRPP")}
    assert set(fields) == {"iban", "bic"} and entry.details["via"] == "portal" and entry.details["payouts_held"]
    everything = []
    with get_engine().connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            everything += [str(value) for row in conn.execute(text(f'SELECT * FROM "{table.name}"')) for value in row]
    everything += [m.as_string() for m in mails(outbox)]
    for iban in (OLD_IBAN, NEW_IBAN, NEW_SEPA["iban"]):
        assert not [value for value in everything if iban in value]


def test_a_method_and_currency_change_is_recorded_field_by_field(sepa_partner, portal_client, outbox):
    _ask(portal_client(sepa_partner), {"payout_method": "paypal", "paypal_email": "Pat.Pay@Example.com",
                                       "payout_currency": "usd"})
    _confirm(link(outbox, "/portal/payout-details/confirm/"))
    partner = _partner(sepa_partner)
    assert (partner.payout_method, partner.payout_currency) == ("paypal", "USD")
    fields = _audit("onboarding.payout_details_changed")[0].details["fields"]
    assert fields["method"] == {"from": "sepa", "to": "paypal"} and fields["currency"] == {"from": "EUR", "to": "USD"}
    assert fields["iban"] == {"from": mask(OLD_IBAN), "to": ""}
    assert fields["paypal_email"]["to"] == mask("pat.pay@example.com", keep=6)


def test_a_wrong_form_changes_nothing_and_never_echoes_secrets(sepa_partner, portal_client, outbox):
    client = portal_client(sepa_partner)
    wrong = _ask(client, {**NEW_SEPA, "iban": "FR14 0000 BAD", "payout_currency": "USD"})
    assert wrong.status_code == 422 and "not a valid IBAN" in wrong.text and "EUR only" in wrong.text
    assert "FR14 0000 BAD" not in wrong.text and 'value="Pat One"' in wrong.text
    assert client.post("/portal/payout-details", data=NEW_SEPA).status_code == 403  # no CSRF token
    with session_scope() as session:
        assert session.exec(select(PayoutDetailsChange)).all() == []
    assert mails(outbox) == []


def test_a_newer_request_replaces_the_waiting_one_and_links_expire(configure, sepa_partner, portal_client, outbox):
    configure(portal_details_link_minutes=30)
    client = portal_client(sepa_partner)
    _ask(client, {**NEW_SEPA, "account_holder": "First Try"})
    first = link(outbox, "/portal/payout-details/confirm/")
    (outbox / "seen").mkdir()
    for eml in outbox.glob("*.eml"):
        eml.rename(outbox / "seen" / eml.name)
    _ask(client, NEW_SEPA)
    second = link(outbox, "/portal/payout-details/confirm/")
    assert "is waiting for you" in client.get("/portal/payout-details").text
    assert _confirm(first).status_code == 410
    with time_machine.travel(utcnow() + timedelta(minutes=31)):
        assert _confirm(second).status_code == 410
    assert _details(sepa_partner)["iban"] == OLD_IBAN
    assert _confirm("/portal/payout-details/confirm/no-such-link").status_code == 404


def test_a_hold_a_person_must_lift_is_not_shortened_by_a_portal_change(configure, sepa_partner, portal_client, outbox):
    configure(portal_payout_cooling_off_hours=1)
    with session_scope() as session:
        row = session.exec(select(Onboarding).where(Onboarding.partner_id == sepa_partner)).one()
        row.payout_hold_since = T0  # changed on the onboarding form, not yet confirmed by the team
        session.add(row)
    _ask(portal_client(sepa_partner), NEW_SEPA)
    _confirm(link(outbox, "/portal/payout-details/confirm/"))
    with time_machine.travel(utcnow() + timedelta(hours=2)), session_scope() as session:
        assert "a person confirms" in payout_details_holds(session, [sepa_partner])[sepa_partner][0]
    assert confirm_payout_details(sepa_partner, actor="Tess Team")
    with session_scope() as session:
        assert payout_details_holds(session, [sepa_partner]) == {}


def test_without_a_cooling_off_period_nothing_is_held(configure, sepa_partner, portal_client, outbox):
    configure(portal_payout_cooling_off_hours=0)
    _ask(portal_client(sepa_partner), NEW_SEPA)
    assert "held until" not in _confirm(link(outbox, "/portal/payout-details/confirm/")).text
    with session_scope() as session:
        assert payout_blockers(session, [sepa_partner]) == {}
    [team] = [m for m in mails(outbox) if m["To"] == "partners-team@acme.example"]
    assert "No cooling-off period is set" in mail_text(team)


def test_the_first_time_onboarding_link_works_once(outbox):
    partner_id = make_partner(2, ready=False)
    with session_scope() as session:
        session.add(Onboarding(partner_id=partner_id, token_hash=token_hash(ONBOARDING_TOKEN), tax_form_kind="W-9",
                               expires_at=utcnow() + timedelta(days=30)))
    form = {**TAX, **NEW_SEPA}
    submit_onboarding(ONBOARDING_TOKEN, form)
    assert _details(partner_id)["iban"] == NEW_IBAN
    with pytest.raises(LinkUsed):
        submit_onboarding(ONBOARDING_TOKEN, {**form, "iban": OLD_IBAN})
    with TestClient(create_app()) as client:
        again = client.post(f"/onboarding/{ONBOARDING_TOKEN}", data={**form, "iban": OLD_IBAN})
    assert again.status_code == 410 and _details(partner_id)["iban"] == NEW_IBAN
