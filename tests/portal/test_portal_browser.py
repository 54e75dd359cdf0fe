"""The portal on a phone: headless Chromium at 390x844, signed in by the session cookie, visits every page
and checks that none scrolls sideways.

With SCREENSHOT_DIR set, the home page's full-page screenshot is written there as portal.png (the one
in docs/ was made this way: `SCREENSHOT_DIR=docs pytest -m slow tests/portal/test_portal_browser.py`).
The variable has no PARTNERFLOW_ prefix because the suite clears those at start.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from browser import require_chromium
from factories import add_conversions, make_partner
from playwright.sync_api import sync_playwright
from sqlalchemy import insert

from partnerflow.models import Commission, Partner, Payout, PayoutBatch, session_scope, utcnow
from partnerflow.models.payouts import CommissionStatus, PayoutBatchStatus, PayoutStatus
from partnerflow.models.tracking import Click
from partnerflow.tasks.portal.sessions import COOKIE_NAME, COOKIE_PATH, start_session

PAGES = ["/portal", "/portal/commissions", "/portal/payouts", "/portal/links?url=https://acme.example/pricing",
         "/portal/documents", "/portal/profile"]


def a_busy_partner() -> int:
    """Twelve weeks of clicks and sales: paid, payable, pending and refunded commissions, and one held reason."""
    now = utcnow()
    me = make_partner(1, threshold=5000)
    make_partner(2)  # another partner's sales are in the same tables
    with session_scope() as session:
        partner = session.get(Partner, me)
        partner.legal_name, partner.contact_name = "Northwind Media LLC", "Nora Wind"
        partner.payout_method, partner.payout_details_masked = "paypal", "PayPal n•••@northwind.example"
        partner.tracking_code, partner.coupon_code = "NORTHWIND", "NORA10"
        partner.tax_form_status = "requested"  # the payable balance is held for it, as the batch would
        batch = PayoutBatch(status=PayoutBatchStatus.PAID, period_end=now - timedelta(days=30))
        session.add(batch)
        session.flush()
        payout = Payout(batch_id=batch.id, partner_id=me, amount_minor=0, currency="USD", rail="ledger",
                        idempotency_key=f"payout:b:{batch.id}:{me}", status=PayoutStatus.PAID,
                        paid_at=now - timedelta(days=30))
        session.add(payout)
        session.flush()
        payout_id = payout.id
        clicks = []
        for week in range(12):
            for n in range(8 + week * 3 + (week % 3) * 4):
                at = now - timedelta(days=7 * (11 - week), hours=n)
                target = "https://acme.example/pricing" if n % 3 else "https://acme.example/"
                click_id = f"w{week:02d}n{n:03d}".ljust(16, "x")
                clicks.append({"click_id": click_id, "partner_id": me, "tracking_code": "NORTHWIND",
                               "clicked_at": at, "is_bot": n % 7 == 0,
                               "landing_url": f"{target}?ref=NORTHWIND&pf_click={click_id}"})
        session.execute(insert(Click), clicks)
    sales = []
    for week in range(12):
        for n in range(1 + week // 3):
            at = now - timedelta(days=7 * (11 - week), hours=3 * n)
            sales.append({"partner_id": me, "amount_minor": 4900 + 2500 * n + 1000 * (week % 4),
                          "occurred_at": at, "external_id": f"ORD-{week:02d}{n}", "product": "Pro plan"})
    ids = add_conversions(sales)
    rows = []
    for sale, conversion_id in zip(sales, ids, strict=True):
        age = now - sale["occurred_at"]
        status, attached = ((CommissionStatus.PAID, payout_id) if age > timedelta(days=60)
                            else (CommissionStatus.PAYABLE, None) if age > timedelta(days=30)
                            else (CommissionStatus.PENDING, None))
        rows.append({"conversion_id": conversion_id, "partner_id": me, "amount_minor": sale["amount_minor"] // 10,
                     "currency": "USD", "rule": "10% of sale", "period": f"{sale['occurred_at']:%Y-%m}",
                     "status": status, "payable_at": sale["occurred_at"] + timedelta(days=30), "payout_id": attached})
    add_conversions([{"partner_id": me, "kind": "refund", "amount_minor": sales[-1]["amount_minor"],
                      "reverses_id": ids[-1], "occurred_at": now, "external_id": "REFUND-1"}])
    rows[-1]["status"], rows[-1]["rule"] = CommissionStatus.CANCELLED, "10% of sale (cancelled by refund)"
    with session_scope() as session:
        session.execute(insert(Commission), rows)
        paid = sum(r["amount_minor"] for r in rows if r["payout_id"])
        session.get(Payout, payout_id).amount_minor = paid
    return me


@pytest.mark.slow
def test_no_portal_page_scrolls_sideways_on_a_phone(web_url):
    chromium = require_chromium()
    partner_id = a_busy_partner()
    cookie, _csrf = start_session(partner_id)
    screenshots = os.environ.get("SCREENSHOT_DIR")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                          is_mobile=True, has_touch=True)
            context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": f"{web_url}{COOKIE_PATH}"}])
            page = context.new_page()
            too_wide = {}
            for path in PAGES:
                answer = page.goto(f"{web_url}{path}")
                assert answer.status == 200, f"{path}: {answer.status}"
                assert page.url == f"{web_url}{path}", f"{path} went to {page.url} (not signed in?)"
                page.wait_for_load_state("load")
                widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                # On a mobile viewport a too-wide page widens the layout viewport itself: check both.
                if widths[0] > widths[1] or widths[1] != 390:
                    too_wide[path] = widths
                if path == "/portal":
                    assert page.locator("text=Nora Wind").count() and page.locator("img[src='/portal/chart.png']")\
                        .evaluate("img => img.complete && img.naturalWidth > 0")
                    if screenshots:
                        Path(screenshots).mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(Path(screenshots) / "portal.png"), full_page=True)
            assert too_wide == {}, f"pages wider than the phone (scrollWidth, innerWidth): {too_wide}"
        finally:
            browser.close()
