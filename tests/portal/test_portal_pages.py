"""The portal's pages for a signed-in partner: each renders their own figures and never another partner's,
the commission CSV is safe to open in a spreadsheet, documents download only for their owner."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from factories import add_conversions, make_partner
from sqlalchemy import insert

from partnerflow.models import Commission, Contract, ContractStatus, Partner, SignatureRequest, session_scope, utcnow
from partnerflow.models.contracting import SignatureStatus
from partnerflow.models.payouts import CommissionStatus, Payout, PayoutBatch, PayoutBatchStatus, PayoutStatus
from partnerflow.models.tracking import Click
from partnerflow.settings import get_settings

OTHER_MARK = "Zebra-Secret-Product"  # appears only in the other partner's data


def add_commission(partner_id: int, conversion_id: int, amount: int, status: str, **values) -> int:
    now = utcnow()
    with session_scope() as session:
        return session.execute(insert(Commission).values(
            conversion_id=conversion_id, partner_id=partner_id, amount_minor=amount,
            currency=values.pop("currency", "USD"),
            rule=values.pop("rule", "10% of sale"), period=values.pop("period", f"{now:%Y-%m}"), status=status,
            payable_at=values.pop("payable_at", now + timedelta(days=20)), **values).returning(Commission.id)
        ).scalar_one()


@pytest.fixture
def world():
    """Partner 1 (signed in) with sales this month, a paid payout, a click; partner 2 with sales of its own."""
    now = utcnow()
    last_month = now.replace(day=1, hour=12) - timedelta(days=1)
    me, other = make_partner(1), make_partner(2)
    mine = add_conversions([
        {"partner_id": me, "amount_minor": 12345, "occurred_at": now, "external_id": "ORD-1001", "product": "Pro plan"},
        {"partner_id": me, "amount_minor": 5000, "occurred_at": now, "external_id": "ORD-1002",
         "product": '=HYPERLINK("http://evil.example","click")'},
        {"partner_id": me, "amount_minor": 7000, "occurred_at": last_month, "external_id": "ORD-0900",
         "product": "Team plan"}])
    theirs = add_conversions([{"partner_id": other, "amount_minor": 777700, "occurred_at": now,
                               "external_id": "ORD-OTHER-9", "product": OTHER_MARK}])
    with session_scope() as session:
        batch = PayoutBatch(status=PayoutBatchStatus.PAID, period_end=now)
        session.add(batch)
        session.flush()
        payout = Payout(batch_id=batch.id, partner_id=me, amount_minor=700, currency="USD", rail="ledger",
                        idempotency_key=f"payout:t:{batch.id}:{me}", status=PayoutStatus.PAID, paid_at=now)
        session.add(payout)
        session.flush()
        payout_id = payout.id
        session.execute(insert(Click).values(click_id="clickid-me-00001", partner_id=me, tracking_code="P1",
                                             clicked_at=now, is_bot=False,
                                             landing_url="https://acme.example/?ref=P1&pf_click=clickid-me-00001"))
    add_commission(me, mine[0], 1234, CommissionStatus.PENDING)
    add_commission(me, mine[1], -500, CommissionStatus.PAYABLE, rule="-refund: deducts from commission")
    add_commission(me, mine[2], 700, CommissionStatus.PAID, payout_id=payout_id, period=f"{last_month:%Y-%m}")
    add_commission(other, theirs[0], 77770, CommissionStatus.PAYABLE, rule=OTHER_MARK)
    return {"me": me, "other": other, "payout_id": payout_id}


def test_home_shows_this_and_last_month_and_the_balance(world, portal_client):
    client = portal_client(world["me"])
    page = client.get("/portal")
    assert page.status_code == 200, page.text
    text = page.text
    assert "173.45 USD" in text and "12.34 USD" in text  # this month's revenue and pending commission
    assert "70.00 USD" in text  # last month's revenue
    assert "Pending" in text and "payable from" in text and "Paid" in text and "7.00 USD" in text
    assert "777,700.00" not in text and "Partner 2" not in text and OTHER_MARK not in text
    assert f'value="{client.csrf_token}"' in text  # the sign-out form
    assert page.headers["cache-control"] == "private, no-store"
    image = client.get("/portal/chart.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"].startswith("private")
    assert image.content.startswith(b"\x89PNG")


def test_home_shows_a_held_balance_with_the_batchs_reasons(portal_client):
    me = make_partner(3, ready=False)
    (sale,) = add_conversions([{"partner_id": me, "amount_minor": 90000, "occurred_at": utcnow()}])
    add_commission(me, sale, 9000, CommissionStatus.PAYABLE)
    text = portal_client(me).get("/portal").text
    assert "Held: unsigned contract; missing tax form." in text
    assert "Your next payout is held." in text


def test_pages_need_a_session(anonymous_client):
    for path in ("/portal", "/portal/chart.png", "/portal/commissions", "/portal/commissions.csv",
                 "/portal/payouts", "/portal/links", "/portal/documents", "/portal/profile"):
        answer = anonymous_client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/sign-in", path


def test_commissions_list_and_filters(world, portal_client):
    client = portal_client(world["me"])
    text = client.get("/portal/commissions").text
    assert "ORD-1001" in text and "ORD-0900" in text and "ORD-OTHER-9" not in text and OTHER_MARK not in text
    assert "=HYPERLINK(&#34;http://evil.example&#34;,&#34;click&#34;)" in text  # escaped text, never markup
    pending = client.get("/portal/commissions", params={"status": "pending"}).text
    assert "ORD-1001" in pending and "ORD-1002" not in pending and "ORD-0900" not in pending
    last_month = f"{utcnow().replace(day=1) - timedelta(days=1):%Y-%m}"
    only = client.get("/portal/commissions", params={"period": last_month}).text
    assert "ORD-0900" in only and "ORD-1001" not in only
    assert f'href="/portal/commissions.csv?period={last_month}"' in only


@pytest.mark.parametrize("params", [{"status": "everything"}, {"period": "<script>x</script>"}, {"page": "-1"},
                                    {"page": "1e9"}])
def test_bad_filters_get_the_page_with_a_sentence(world, portal_client, params):
    answer = portal_client(world["me"]).get("/portal/commissions", params=params)
    assert answer.status_code == 400 and 'class="error"' in answer.text
    assert "<script>x" not in answer.text


def read_csv(answer) -> list[list[str]]:
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    return list(csv.reader(io.StringIO(answer.text)))


def test_csv_export_neutralises_formulas_and_honours_filters(world, portal_client):
    client = portal_client(world["me"])
    rows = read_csv(client.get("/portal/commissions.csv"))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["commission_id", "date", "kind", "reference"] and "commission" in header
    assert len(body) == 3 and OTHER_MARK not in client.get("/portal/commissions.csv").text
    by_ref = {r[header.index("reference")]: dict(zip(header, r, strict=True)) for r in body}
    assert by_ref["ORD-1002"]["product"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert by_ref["ORD-1002"]["rule"] == "'-refund: deducts from commission"
    assert by_ref["ORD-1002"]["commission"] == "-5.00"  # a number stays a number
    assert by_ref["ORD-1001"]["commission"] == "12.34" and by_ref["ORD-1001"]["sale_amount"] == "123.45"
    assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for row in body for cell in row)
    paid = read_csv(client.get("/portal/commissions.csv", params={"status": "paid"}))
    assert [r[header.index("reference")] for r in paid[1:]] == ["ORD-0900"]
    assert client.get("/portal/commissions.csv", params={"period": "2026-1"}).status_code == 400


def test_payouts_show_history_line_items_and_why_the_next_is_held(world, portal_client):
    text = portal_client(world["me"]).get("/portal/payouts").text
    assert f"Payout {world['payout_id']}" in text and "7.00 USD" in text and "paid" in text
    assert "ORD-0900" in text and "Team plan" in text  # its line item
    assert "ORD-OTHER-9" not in text
    held = make_partner(3, ready=False)
    text = portal_client(held).get("/portal/payouts").text
    assert "Your payout is held until this is resolved" in text and "missing tax form" in text


def test_links_show_the_tracking_link_coupon_clicks_and_build_deep_links(world, portal_client, configure):
    configure(partner_landing_domains="acme.example,shop.acme.example")
    client = portal_client(world["me"])
    text = client.get("/portal/links").text
    base = get_settings().public_base_url.rstrip("/")
    assert f"{base}/r/P1" in text and "C1" in text
    assert "https://acme.example/" in text  # clicks per landing page
    built = client.get("/portal/links", params={"url": "https://shop.acme.example/item?id=7"})
    assert built.status_code == 200
    assert f"{base}/r/P1?to=https%3A%2F%2Fshop.acme.example%2Fitem%3Fid%3D7" in built.text
    refused = client.get("/portal/links", params={"url": "https://evil.example/acme.example"})
    assert refused.status_code == 400 and "not on the program" in refused.text and "/r/P1?to=" not in refused.text


def test_documents_download_only_the_partners_own_contract(world, portal_client):
    documents = get_settings().documents_dir
    (documents / "signed").mkdir(parents=True, exist_ok=True)
    ids = {}
    now = utcnow()
    with session_scope() as session:
        for who in ("me", "other"):
            relative = f"signed/contract-{who}.docx"
            (documents / relative).write_bytes(f"signed contract of {who}".encode())
            contract = Contract(partner_id=world[who], template_name="t", template_sha256="0" * 64,
                                document_path="d", document_sha256="a" * 64, signed_path=relative,
                                signed_sha256="b" * 64, status=ContractStatus.SIGNED, signed_at=now)
            session.add(contract)
            session.flush()
            session.add(SignatureRequest(contract_id=contract.id, idempotency_key=f"contract:{contract.id}:sign",
                                         provider="builtin", signer_name="Pat", signer_email="p@example.com",
                                         status=SignatureStatus.SIGNED, signed_at=now, signed_name="Pat One",
                                         signed_ip="203.0.113.9"))
            ids[who] = contract.id
        session.get(Partner, world["me"]).tax_form_kind = "W-9"
    client = portal_client(world["me"])
    text = client.get("/portal/documents").text
    assert f"/portal/documents/{ids['me']}/signed" in text and f"/portal/documents/{ids['other']}/" not in text
    assert "W-9: received" in text
    download = client.get(f"/portal/documents/{ids['me']}/signed")
    assert download.status_code == 200 and download.content == b"signed contract of me"
    assert "attachment" in download.headers["content-disposition"]
    certificate = client.get(f"/portal/documents/{ids['me']}/certificate.txt")
    assert certificate.status_code == 200 and "Name typed: Pat One" in certificate.text
    for path in (f"/portal/documents/{ids['other']}/signed", f"/portal/documents/{ids['other']}/certificate.txt",
                 "/portal/documents/999999/signed"):
        answer = client.get(path)
        assert answer.status_code == 404 and "signed contract of other" not in answer.text, path


def test_a_stored_path_outside_the_documents_folder_is_never_served(world, portal_client, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("not a contract")
    with session_scope() as session:
        contract = Contract(partner_id=world["me"], template_name="t", template_sha256="0", document_path="d",
                            document_sha256="a", signed_path=str(secret), status=ContractStatus.SIGNED)
        session.add(contract)
        session.flush()
        contract_id = contract.id
    assert portal_client(world["me"]).get(f"/portal/documents/{contract_id}/signed").status_code == 404


def test_profile_shows_method_masked_details_and_currency(portal_client):
    me = make_partner(4, currency="EUR", payout_method="sepa", payout_details_masked="IBAN DE•••• 3000")
    text = portal_client(me).get("/portal/profile").text
    assert "sepa" in text and "IBAN DE•••• 3000" in text and "EUR" in text
    assert 'href="/portal/payout-details"' in text


def test_balances_in_two_currencies_are_shown_apart(portal_client):
    me = make_partner(5, currency="EUR")
    eur, usd = add_conversions([
        {"partner_id": me, "amount_minor": 12000, "currency": "EUR", "occurred_at": utcnow(), "external_id": "e"},
        {"partner_id": me, "amount_minor": 8000, "currency": "USD", "occurred_at": utcnow(), "external_id": "u"}])
    add_commission(me, eur, 1200, CommissionStatus.PENDING, currency="EUR")
    add_commission(me, usd, 800, CommissionStatus.PENDING)
    text = portal_client(me).get("/portal").text
    assert "120.00 EUR" in text and "80.00 USD" in text  # revenue, per currency
    assert "12.00 EUR" in text and "8.00 USD" in text  # pending balance, per currency


def test_a_built_deep_link_leads_to_the_page_through_the_tracking_link(world, portal_client):
    client = portal_client(world["me"])
    page = client.get("/portal/links", params={"url": "https://acme.example/pricing"}).text
    built = page.split('id="deep-link">', 1)[1].split("<", 1)[0].replace("&amp;", "&")
    path = built.removeprefix(get_settings().public_base_url.rstrip("/"))
    answer = client.get(path)
    assert answer.status_code == 302 and answer.headers["location"].startswith("https://acme.example/pricing?ref=P1")
