"""The partner portal end to end in headless Chromium on a phone-sized screen, as a partner uses it: sign in
by the emailed link, read why part of the balance waits (pending) or is held (tax form), download the signed
contract, change the payout method (confirmed by mail, then held for the cooling-off period) and sign out.

The web app is served for real on a local port; mails are read from the outbox folder.
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta

import docx
import pytest
from browser import require_chromium
from factories import add_conversions, make_partner
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import insert
from support import link, mail_text, mails

from partnerflow.models import Commission, Contract, ContractStatus, Partner, session_scope, utcnow
from partnerflow.models.onboarding import Onboarding
from partnerflow.models.payouts import CommissionStatus
from partnerflow.secrets import decrypt, encrypt, mask, token_hash
from partnerflow.settings import get_settings
from partnerflow.tasks.compliance.blockers import payout_blockers

OLD_IBAN = "DE89370400440532013000"
WAIT_MS = 30_000  # the machine running the suite is often busy


def a_partner_with_a_pending_and_a_held_commission(now: datetime) -> tuple[int, int, bytes]:
    """(partner id, contract id, the signed .docx's bytes): paid by SEPA in euro, contract signed (on disk),
    tax form missing, so this month's sale is pending and last month's payable commission is held."""
    details = {"method": "sepa", "account_holder": "Pat One", "iban": OLD_IBAN, "bic": ""}
    me = make_partner(1, ready=False, currency="EUR", payout_method="sepa",
                      payout_details_encrypted=encrypt(json.dumps(details)),
                      payout_details_masked=f"IBAN {mask(OLD_IBAN)}")
    make_partner(2)  # another partner's data is in the same tables
    document = docx.Document()
    document.add_paragraph("Partner agreement between Acme and Partner 1. Signed by Pat One.")
    buffer = io.BytesIO()
    document.save(buffer)
    signed = buffer.getvalue()
    folder = get_settings().documents_dir / "signed"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "contract-p1.docx").write_bytes(signed)
    with session_scope() as session:
        contract = Contract(partner_id=me, template_name="t", template_sha256="0" * 64, document_path="d",
                            document_sha256="a" * 64, signed_path="signed/contract-p1.docx",
                            signed_sha256="b" * 64, status=ContractStatus.SIGNED, signed_at=now)
        session.add(contract)
        session.flush()
        contract_id = contract.id
        # Onboarding gave the payout details (a change in the portal needs it); the tax form is still owed.
        session.add(Onboarding(partner_id=me, token_hash=token_hash("onboarding-token-of-partner-1"),
                               tax_form_kind="W-9", expires_at=now - timedelta(days=30),
                               completed_at=now - timedelta(days=50)))
    fresh, old = add_conversions([
        {"partner_id": me, "amount_minor": 12000, "currency": "EUR", "occurred_at": now, "external_id": "ORD-NEW"},
        {"partner_id": me, "amount_minor": 30000, "currency": "EUR", "occurred_at": now - timedelta(days=40),
         "external_id": "ORD-OLD"}])
    with session_scope() as session:
        session.execute(insert(Commission), [
            {"conversion_id": fresh, "partner_id": me, "amount_minor": 1200, "currency": "EUR", "rule": "10% of sale",
             "period": f"{now:%Y-%m}", "status": CommissionStatus.PENDING, "payable_at": now + timedelta(days=30)},
            {"conversion_id": old, "partner_id": me, "amount_minor": 3000, "currency": "EUR", "rule": "10% of sale",
             "period": f"{now - timedelta(days=40):%Y-%m}", "status": CommissionStatus.PAYABLE,
             "payable_at": now - timedelta(days=10)}])
    return me, contract_id, signed


@pytest.mark.slow
def test_a_partner_uses_the_portal_in_a_browser_from_sign_in_to_sign_out(web_url, configure, outbox):
    configure(portal_payout_cooling_off_hours=72)
    chromium = require_chromium()
    now = utcnow()
    me, contract_id, signed = a_partner_with_a_pending_and_a_held_commission(now)
    payable_from = f"{now + timedelta(days=30):%Y-%m-%d}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                          accept_downloads=True)
            context.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            page = context.new_page()

            # Signed out, the portal sends the visitor to the sign-in page; the link comes by mail.
            page.goto(f"{web_url}/portal")
            expect(page).to_have_url(f"{web_url}/portal/sign-in")
            page.get_by_label("Email address").fill("P1@example.com")
            page.get_by_role("button", name="Send me a sign-in link").click()
            expect(page.locator("body")).to_contain_text("a sign-in link is on its way")
            page.goto(web_url + _mailed_link(outbox, "/portal/sign-in/"))
            assert [m["To"] for m in mails(outbox)] == ["p1@example.com"]
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{web_url}/portal")
            body, nav = page.locator("body"), page.get_by_role("navigation", name="Portal")
            expect(body).to_contain_text("Signed in as Pat 1")

            # The balance: the pending commission with the date it becomes payable, the held one with why.
            pending = page.locator("section.balance-pending")
            expect(pending).to_contain_text("12.00 EUR")
            expect(pending).to_contain_text(f"payable from {payable_from}")
            held = page.locator("section.balance-held")
            expect(held).to_contain_text("30.00 EUR")
            expect(held).to_contain_text("Held: missing tax form.")
            expect(body).to_contain_text("Your next payout is held.")
            nav.get_by_role("link", name="Payouts", exact=True).click()
            expect(body).to_contain_text("Your payout is held until this is resolved")
            expect(body).to_contain_text("missing tax form")

            # The signed contract downloads as the partner's own .docx.
            nav.get_by_role("link", name="Documents", exact=True).click()
            with page.expect_download() as waiting:
                page.get_by_role("link", name="signed contract").click()
            download = waiting.value
            assert download.suggested_filename.endswith(".docx")
            assert download.path().read_bytes() == signed
            assert "Signed by Pat One" in docx.Document(str(download.path())).paragraphs[0].text
            assert f"/portal/documents/{contract_id}/signed" in download.url

            # A new payout method: nothing changes until the mailed link is confirmed, then payouts wait.
            nav.get_by_role("link", name="Profile", exact=True).click()
            page.get_by_role("link", name="Change payout method, details or currency").click()
            page.get_by_label("Method").select_option("paypal")
            page.get_by_label("PayPal email").fill("pat.pay@example.com")
            page.get_by_role("button", name="Send me a confirmation link").click()
            expect(body).to_contain_text("We sent a link to p1@example.com")
            assert _partner(me).payout_method == "sepa"
            page.goto(web_url + _mailed_link(outbox, "/portal/payout-details/confirm/"))
            assert _partner(me).payout_method == "sepa"  # opening the link changes nothing
            page.get_by_role("button", name="Confirm the new payout details").click()
            expect(body).to_contain_text("Done: payouts go to")
            expect(body).to_contain_text("payouts to the new details are held until")
            confirmed_at = utcnow()
            partner = _partner(me)
            assert partner.payout_method == "paypal"
            assert json.loads(decrypt(partner.payout_details_encrypted))["paypal_email"] == "pat.pay@example.com"
            with session_scope() as session:
                [reason] = payout_blockers(session, [me])[me]  # the payout batch holds the partner
            assert "cooling-off" in reason and f"{confirmed_at + timedelta(hours=72):%Y-%m-%d}" in reason
            assert [m["To"] for m in mails(outbox)].count("partners-team@acme.example") == 1

            # Signing out ends the session: the portal asks to sign in again.
            page.goto(f"{web_url}/portal")
            nav.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(f"{web_url}/portal/sign-in")
            page.goto(f"{web_url}/portal")
            expect(page).to_have_url(f"{web_url}/portal/sign-in")
            expect(page.get_by_role("button", name="Send me a sign-in link")).to_be_visible()
        finally:
            expect.set_options(timeout=None)  # a global of Playwright's: back to its default for other tests
            browser.close()


def _mailed_link(outbox, path_prefix: str) -> str:
    """The link's path once its mail is in the outbox (the sign-in mail is sent after the page is answered)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not any(path_prefix in mail_text(m) for m in mails(outbox)):
        assert time.monotonic() < deadline, f"no mail with a {path_prefix} link in the outbox"
        time.sleep(0.1)
    return link(outbox, path_prefix)


def _partner(partner_id: int) -> Partner:
    with session_scope() as session:
        return session.get(Partner, partner_id)
