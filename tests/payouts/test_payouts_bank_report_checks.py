"""A bank statement makes a SEPA payout paid only for a booked debit of exactly its amount and currency."""

from __future__ import annotations

from factories import make_payout, partner_with_payout_details, payout_row
from sqlmodel import select

from partnerflow.models import Commission, session_scope
from partnerflow.providers.payout.bank_reports import read_bank_report
from partnerflow.providers.payout.sepa import end_to_end_id
from partnerflow.tasks.payouts.reconcile import import_bank_report


def _camt(*entries: str) -> bytes:
    return ("""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<GrpHdr><MsgId>S1</MsgId><CreDtTm>2026-11-24T09:00:00</CreDtTm></GrpHdr><Stmt><Id>1</Id>"""
            + "".join(entries) + "</Stmt></BkToCstmrStmt></Document>").encode()


def _entry(e2e: str, amount: str, side: str = "DBIT", currency: str = "EUR", tx_extra: str = "") -> str:
    return (f'<Ntry><Amt Ccy="{currency}">{amount}</Amt><CdtDbtInd>{side}</CdtDbtInd><Sts>BOOK</Sts>'
            f"<AcctSvcrRef>R-{e2e}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>"
            f"{tx_extra}</TxDtls></NtryDtls></Ntry>")


def _processing_payout(n: int, amount_minor: int = 5000) -> tuple[int, str]:
    payout_id = make_payout(partner_with_payout_details(n, method="sepa"), rail="sepa", status="processing",
                            amount_minor=amount_minor)
    return payout_id, end_to_end_id(payout_row(payout_id).idempotency_key)


def _apply(tmp_path, report: bytes) -> dict[str, int]:
    path = tmp_path / "statement.xml"
    path.write_bytes(report)
    return import_bank_report(path)


def test_a_booked_debit_of_the_exact_amount_is_paid(tmp_path):
    payout_id, e2e = _processing_payout(1)
    assert _apply(tmp_path, _camt(_entry(e2e, "50.00"))) == {"paid": 1}
    assert payout_row(payout_id).status == "paid" and payout_row(payout_id).provider_ref == f"R-{e2e}"


def test_a_credit_carrying_our_reference_is_not_our_payment_paid(tmp_path):
    payout_id, e2e = _processing_payout(1)
    assert _apply(tmp_path, _camt(_entry(e2e, "50.00", side="CRDT"))) == {}
    assert payout_row(payout_id).status == "processing"


def test_a_return_credited_back_fails_the_payout(tmp_path):
    payout_id, e2e = _processing_payout(1)
    returned = _entry(e2e, "50.00", side="CRDT", tx_extra="<RtrInf><Rsn><Cd>AC04</Cd></Rsn></RtrInf>")
    assert _apply(tmp_path, _camt(returned)) == {"failed": 1}
    assert payout_row(payout_id).status == "failed" and "AC04" in payout_row(payout_id).error


def test_another_amount_or_currency_needs_review_and_keeps_the_commissions(tmp_path, outbox):
    short, short_e2e = _processing_payout(1)
    dollars, dollars_e2e = _processing_payout(2)
    report = _camt(_entry(short_e2e, "5.00"), _entry(dollars_e2e, "50.00", currency="USD"))
    assert _apply(tmp_path, report) == {"needs_review": 2}
    for payout_id in (short, dollars):
        payout = payout_row(payout_id)
        assert payout.status == "needs_review" and "the bank booked" in payout.error
        with session_scope() as s:
            assert s.exec(select(Commission.payout_id).where(Commission.partner_id == payout.partner_id)).all() \
                == [payout_id]
    assert "5.00 EUR" in payout_row(short).error and "50.00 USD" in payout_row(dollars).error
    assert len(list(outbox.glob("*.eml"))) == 2  # the team is asked, once per payout


def test_a_statement_line_without_a_readable_amount_of_its_own_proves_nothing(tmp_path):
    first, first_e2e = _processing_payout(1)
    second, second_e2e = _processing_payout(2)
    # One booked entry for two transactions, no amount per transaction: whose 100.00 is whose is not said.
    both = ('<Ntry><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts><NtryDtls>'
            f"<TxDtls><Refs><EndToEndId>{first_e2e}</EndToEndId></Refs></TxDtls>"
            f"<TxDtls><Refs><EndToEndId>{second_e2e}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>")
    assert _apply(tmp_path, _camt(both)) == {"needs_review": 2}
    assert payout_row(first).status == payout_row(second).status == "needs_review"


def test_camt_version_8_transaction_amount_and_side_are_read():
    tx = '<Amt Ccy="EUR">12.34</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
    entry = ('<Ntry><Amt Ccy="EUR">99.99</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><NtryDtls>'
             f"<TxDtls><Refs><EndToEndId>a</EndToEndId></Refs>{tx}</TxDtls>"
             '<TxDtls><Refs><EndToEndId>b</EndToEndId></Refs><AmtDtls><TxAmt><Amt Ccy="EUR">87.65</Amt></TxAmt>'
             "</AmtDtls></TxDtls></NtryDtls></Ntry>")
    found = {o.end_to_end_id: (o.status, o.amount_minor, o.currency) for o in read_bank_report(_camt(entry))}
    assert found == {"a": ("paid", 1234, "EUR"), "b": ("paid", 8765, "EUR")}
