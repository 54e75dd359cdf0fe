"""SEPA rail: a pain.001.001.03 file valid against the schema, written once per payout, exact amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from partnerflow.providers.errors import PermanentError, ProviderError
from partnerflow.providers.payout import get_payout_rail
from partnerflow.providers.payout.base import PayoutInstruction
from partnerflow.providers.payout.sepa import (
    NS,
    SepaRail,
    end_to_end_id,
    format_eur,
    read_bank_report,
    validate_pain001,
)
from partnerflow.settings import ConfigError, get_settings

DE_IBAN = "DE89 3704 0044 0532 0130 00"
FR_IBAN = "FR1420041010050500013M02606"


@pytest.fixture
def sepa(configure, tmp_path):
    configure(payout_rail="sepa", sepa_output_dir=tmp_path / "sepa", sepa_debtor_name="Acme Analytics Ltd",
              sepa_debtor_iban="DE02120300000000202051", sepa_debtor_bic="BYLADEM1001")
    return get_payout_rail(get_settings().payouts)


def instruction(payout_id: int, amount_minor: int, *, iban: str = DE_IBAN, bic: str | None = "COBADEFFXXX",
                name: str = "Partner", currency: str = "EUR") -> PayoutInstruction:
    destination = {"iban": iban}
    if bic:
        destination["bic"] = bic
    return PayoutInstruction(payout_id=payout_id, idempotency_key=f"payout:{payout_id}", partner_id=payout_id,
                             partner_name=name, partner_email=f"p{payout_id}@example.com",
                             amount_minor=amount_minor, currency=currency, destination=destination)


def files() -> list:
    return sorted(sepa_dir().glob("pain001-*.xml"))


def sepa_dir():
    return get_settings().payouts.sepa_output_dir


def text(doc, path: str) -> list[str]:
    return [el.text for el in doc.iterfind(path, {"p": NS})]


def test_batch_is_one_schema_valid_file_with_exact_amounts(sepa):
    assert isinstance(sepa, SepaRail)
    results = sepa.pay_batch([
        instruction(1, 1234, name="Zoë Müller-Łukasiewicz & Søn"),
        instruction(2, 10, iban=FR_IBAN, bic=None),
        instruction(3, 99_999_999_999),
    ])
    assert [r.status for r in results] == ["processing"] * 3
    [path] = files()
    xml = path.read_bytes()
    validate_pain001(xml)  # the shipped ISO 20022 XSD
    doc = etree.fromstring(xml)
    assert text(doc, ".//p:InstdAmt") == ["12.34", "0.10", "999999999.99"]
    assert text(doc, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum") == ["1000000012.43"]
    assert text(doc, "p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs") == ["3"]
    assert text(doc, ".//p:EndToEndId") == ["payout-1", "payout-2", "payout-3"]
    assert text(doc, ".//p:CdtTrfTxInf/p:Cdtr/p:Nm")[0] == "Zoe Muller-Lukasiewicz  Son"  # SEPA character set
    assert text(doc, ".//p:CdtrAcct/p:Id/p:IBAN")[:2] == ["DE89370400440532013000", FR_IBAN]
    assert text(doc, ".//p:DbtrAcct/p:Id/p:IBAN") == ["DE02120300000000202051"]
    assert all(r.provider_ref.startswith(path.name) for r in results)


def test_rerun_writes_no_second_payment(sepa):
    first = sepa.pay_batch([instruction(1, 500), instruction(2, 700)])
    again = sepa.pay_batch([instruction(1, 500), instruction(2, 700)])
    assert again == first and len(files()) == 1
    # A later run that also carries a new payout writes only the new one, in a new file.
    later = sepa.pay_batch([instruction(1, 500), instruction(3, 900)])
    assert later[0] == first[0]
    assert len(files()) == 2
    all_ids = [e for f in files() for e in text(etree.parse(str(f)).getroot(), ".//p:EndToEndId")]
    assert sorted(all_ids) == ["payout-1", "payout-2", "payout-3"]  # each payout in exactly one file
    assert sepa.lookup("payout:3").provider_ref == later[1].provider_ref
    assert sepa.lookup("payout:4") is None
    assert sepa.pay(instruction(2, 700)) == first[1]  # the one-payout form is idempotent too


def test_bad_bank_details_reject_only_that_payout(sepa):
    results = sepa.pay_batch([
        instruction(1, 100, iban="DE89370400440532013001"),  # checksum wrong
        instruction(2, 100, bic="NOTABIC"),
        instruction(3, 100, currency="USD"),
        instruction(4, 0),
        instruction(5, 250),
    ])
    assert all(isinstance(r, PermanentError) for r in results[:4])
    assert "IBAN" in results[0].reason and "BIC" in results[1].reason and "EUR" in results[2].reason
    assert results[4].status == "processing"
    [path] = files()
    assert text(etree.parse(str(path)).getroot(), ".//p:EndToEndId") == ["payout-5"]
    with pytest.raises(PermanentError, match="IBAN"):
        sepa.pay(instruction(6, 100, iban="XX00"))


def test_all_invalid_writes_no_file(sepa):
    results = sepa.pay_batch([instruction(1, 100, iban="nonsense")])
    assert isinstance(results[0], ProviderError) and files() == []


def test_missing_debtor_account_is_a_clear_error(configure):
    configure(payout_rail="sepa", sepa_debtor_iban=None, sepa_debtor_bic=None)
    with pytest.raises(ConfigError, match="PARTNERFLOW_PAYOUT_RAIL=sepa needs PARTNERFLOW_SEPA_DEBTOR_IBAN"):
        get_settings().payouts  # noqa: B018 (reading the settings is what fails)


def test_schema_rejects_a_broken_file(sepa):
    sepa.pay(instruction(1, 100))
    [path] = files()
    broken = path.read_bytes().replace(b"<PmtMtd>TRF</PmtMtd>", b"<PmtMtd>XYZ</PmtMtd>")
    with pytest.raises(ValueError, match="not valid"):
        validate_pain001(broken)


@given(st.integers(min_value=1, max_value=99_999_999_999))
def test_amounts_are_exact(amount_minor):
    assert Decimal(format_eur(amount_minor)) * 100 == amount_minor


def test_long_keys_give_short_stable_end_to_end_ids():
    key = "payout:" + "9" * 60
    assert end_to_end_id(key) == end_to_end_id(key) and len(end_to_end_id(key)) <= 35


PAIN002 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
<GrpHdr><MsgId>STS1</MsgId><CreDtTm>2026-11-24T09:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>PF1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.03</OrgnlMsgNmId></OrgnlGrpInfAndSts>
<OrgnlPmtInfAndSts><OrgnlPmtInfId>PF1</OrgnlPmtInfId>
<TxInfAndSts><StsId>B1</StsId><OrgnlEndToEndId>payout-1</OrgnlEndToEndId><TxSts>ACSC</TxSts></TxInfAndSts>
<TxInfAndSts><OrgnlEndToEndId>payout-2</OrgnlEndToEndId><TxSts>RJCT</TxSts>
<StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Closed account</AddtlInf></StsRsnInf></TxInfAndSts>
<TxInfAndSts><OrgnlEndToEndId>payout-3</OrgnlEndToEndId><TxSts>PDNG</TxSts></TxInfAndSts>
</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"""

CAMT054 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>N1</MsgId><CreDtTm>2026-11-24T09:00:00</CreDtTm></GrpHdr><Ntfctn><Id>1</Id>
<Ntry><Amt Ccy="EUR">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts><AcctSvcrRef>REF9</AcctSvcrRef>
<NtryDtls><TxDtls><Refs><EndToEndId>payout-4</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="EUR">7.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd><Sts>BOOK</Sts>
<NtryDtls><TxDtls><Refs><EndToEndId>payout-5</EndToEndId></Refs><RtrInf><Rsn><Cd>AC01</Cd></Rsn></RtrInf>
</TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="EUR">9.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>PDNG</Sts>
<NtryDtls><TxDtls><Refs><EndToEndId>payout-6</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"""


def test_bank_reports_are_read():
    status = {o.end_to_end_id: (o.status, o.reason) for o in read_bank_report(PAIN002)}
    assert status == {"payout-1": ("paid", ""), "payout-2": ("failed", "bank rejected: AC04 Closed account")}
    camt = {o.end_to_end_id: (o.status, o.reason, o.bank_ref) for o in read_bank_report(CAMT054)}
    assert camt == {"payout-4": ("paid", "", "REF9"), "payout-5": ("failed", "bank returned: AC01", "")}
    with pytest.raises(ValueError, match="not a pain.002"):
        read_bank_report(b"<Document><Other/></Document>")
    with pytest.raises(ValueError, match="not an XML"):
        read_bank_report(b"IBAN;amount\n")


def test_the_payout_batch_flow_writes_the_bank_file_and_the_bank_report_settles_it(sepa, outbox, tmp_path,
                                                                                   configure):
    configure(payout_approval_above_minor=10**12)  # the team lets policy approve every batch
    import json

    from factories import add_conversions, after_lock, make_partner
    from sqlmodel import select

    from partnerflow.flows.payouts import run_payout_batch
    from partnerflow.models import Payout, session_scope
    from partnerflow.secrets import encrypt
    from partnerflow.tasks.payouts.commissions import compute_commissions
    from partnerflow.tasks.payouts.reconcile import import_bank_report

    EUR_TERMS = {"kind": "percentage", "rate": "0.10", "lock_days": 30, "currency": "EUR"}
    good = make_partner(1, payout_method="sepa", currency="EUR", terms=EUR_TERMS,
                        payout_details_encrypted=encrypt(json.dumps({"iban": DE_IBAN, "bic": "COBADEFFXXX"})))
    rejected = make_partner(2, payout_method="sepa", currency="EUR", terms=EUR_TERMS,
                            payout_details_encrypted=encrypt(json.dumps({"iban": FR_IBAN})))
    bad_iban = make_partner(3, payout_method="sepa", currency="EUR", terms=EUR_TERMS,
                            payout_details_encrypted=encrypt(json.dumps({"iban": "DE00123"})))
    add_conversions([{"partner_id": p, "amount_minor": 100000, "currency": "EUR", "external_id": f"e{p}"}
                     for p in (good, rejected, bad_iban)])
    compute_commissions(now=after_lock())
    result = run_payout_batch(period_end=after_lock().isoformat())
    with session_scope() as session:
        status = {p.partner_id: (p.status, p.idempotency_key) for p in session.exec(select(Payout)).all()}
    assert status[good][0] == status[rejected][0] == "processing"
    assert status[bad_iban][0] == "failed"  # a wrong IBAN never reaches the bank
    ids = sorted(e for f in files() for e in text(etree.parse(str(f)).getroot(), ".//p:EndToEndId"))
    assert ids == sorted(end_to_end_id(status[p][1]) for p in (good, rejected))
    for f in files():
        validate_pain001(f.read_bytes())
    again = run_payout_batch(period_end=after_lock().isoformat())
    assert again["batch_id"] == result["batch_id"]
    assert sorted(e for f in files() for e in text(etree.parse(str(f)).getroot(), ".//p:EndToEndId")) == ids

    report = PAIN002.replace(b"payout-1", end_to_end_id(status[good][1]).encode()) \
                    .replace(b"payout-2", end_to_end_id(status[rejected][1]).encode())
    (tmp_path / "status.xml").write_bytes(report)
    assert import_bank_report(tmp_path / "status.xml") == {"paid": 1, "failed": 1}  # PDNG says nothing yet
    with session_scope() as session:
        final = {p.partner_id: (p.status, p.error) for p in session.exec(select(Payout)).all()}
    assert final[good] == ("paid", None)
    assert final[rejected][0] == "failed" and "AC04" in final[rejected][1]
    assert import_bank_report(tmp_path / "status.xml") == {"unchanged": 2}  # importing twice changes nothing


def test_reconcile_flow_and_cli_apply_a_bank_report(sepa, tmp_path):
    import json

    from factories import make_payout, partner_with_payout_details, payout_row
    from typer.testing import CliRunner

    import partnerflow.cli.payouts_reconcile  # noqa: F401  (registers the commands)
    from partnerflow.cli import app
    from partnerflow.flows.payouts_reconcile import reconcile_payout_rails

    first = make_payout(partner_with_payout_details(1, method="sepa"), rail="sepa", status="processing")
    # 5.00 EUR: what the camt statement below books for it (a statement line is checked against the payout)
    second = make_payout(partner_with_payout_details(2, method="sepa"), rail="sepa", status="processing",
                         amount_minor=500)
    e2e = {pid: end_to_end_id(payout_row(pid).idempotency_key) for pid in (first, second)}
    (tmp_path / "a.xml").write_bytes(PAIN002.replace(b"payout-1", e2e[first].encode()))
    (tmp_path / "b.xml").write_bytes(CAMT054.replace(b"payout-4", e2e[second].encode()))

    result = reconcile_payout_rails(bank_report=str(tmp_path / "a.xml"))
    assert result == {"paypal": {}, "sepa": {"paid": 1, "unknown": 1}}
    assert payout_row(first).status == "paid"

    out = CliRunner().invoke(app, ["bank-report", str(tmp_path / "b.xml")])
    assert out.exit_code == 0 and json.loads(out.stdout) == {"paid": 1, "unknown": 1}
    assert payout_row(second).status == "paid" and payout_row(second).provider_ref == "REF9"
    bad = CliRunner().invoke(app, ["bank-report", str(tmp_path / "missing.xml")])
    assert bad.exit_code == 1 and "cannot read" in bad.output


def test_an_index_entry_left_by_a_crash_before_its_file_does_not_block_the_payment(sepa):
    index = sepa_dir() / "index"
    index.mkdir(parents=True)
    (index / "payout-1").write_text("pain001-PFnever-written.xml")  # died before the rename
    result = sepa.pay(instruction(1, 100))
    assert result.provider_ref.startswith("pain001-PF") and "never" not in result.provider_ref
    [path] = files()
    assert text(etree.parse(str(path)).getroot(), ".//p:EndToEndId") == ["payout-1"]
    assert sepa.pay(instruction(1, 100)) == result and len(files()) == 1


def test_the_batch_engine_puts_a_claimed_chunk_in_one_bank_file(configure, tmp_path):
    """The engine hands SEPA every fresh payout of a chunk at once: one file for the bank, not one per payout."""
    import json

    from factories import add_conversions, after_lock, make_partner

    from partnerflow.secrets import encrypt
    from partnerflow.tasks.payouts import batches as engine
    from partnerflow.tasks.payouts.commissions import compute_commissions
    from partnerflow.tasks.payouts.execution import execute_batch

    configure(payout_rail="sepa", sepa_debtor_iban="DE02120300000000202051", sepa_debtor_bic="BYLADEM1001",
              sepa_output_dir=tmp_path / "sepa")
    partners = [make_partner(i, payout_method="sepa", currency="EUR",
                             terms={"kind": "percentage", "rate": "0.10", "lock_days": 30, "currency": "EUR"},
                             payout_details_encrypted=encrypt(json.dumps({"iban": "DE89370400440532013000"})))
                for i in range(1, 5)]
    add_conversions([{"partner_id": p, "amount_minor": 100000, "currency": "EUR", "external_id": f"c{p}"}
                     for p in partners])
    compute_commissions(now=after_lock())
    batch_id = engine.build_batch(after_lock())
    engine.decide_batch(batch_id, approve=True, actor="test")
    execute_batch(batch_id)
    files = list((tmp_path / "sepa").glob("pain001-*.xml"))
    assert len(files) == 1
    assert files[0].read_text().count("<CdtTrfTxInf>") == 4
