"""SEPA credit transfer rail: a pain.001.001.03 XML file for the bank, nothing sent by us.

The file is the effect, so it is written exactly once per payout:
- each payment's EndToEndId is derived from the payout's idempotency key, and the file's MsgId from
  the batch and its payouts, so a re-run produces the same identifiers;
- an index (one entry per EndToEndId) says which file already carries a payment: a payout that is
  already in a file is reported "processing" with that file, never written into a second one;
- files are written to a temporary name and renamed (atomic), under a folder lock, so a crash
  leaves either the whole file or none, and two workers cannot write the same payment twice.

A payout stays "processing" until the bank says what happened: `read_bank_report()` (bank_reports.py)
reads a pain.002 status report or a camt.053/054 statement and returns the EndToEndIds booked or
rejected, with the amounts (tasks/payouts/reconcile.py applies them to the payouts).

Amounts are exact: minor units -> Decimal with two places (EUR only). IBAN/BIC checked with
schwifty; names transliterated to the SEPA Latin character set.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

from lxml import etree
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from unidecode import unidecode

from partnerflow.providers.errors import PermanentError, ProviderError
from partnerflow.providers.payout.bank_reports import BankOutcome, read_bank_report  # noqa: F401 (also read here)
from partnerflow.providers.payout.base import PayoutInstruction, PayoutRail, RailResult, RailState
from partnerflow.providers.payout.settings import PayoutRailSettings

NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
# EPC's SEPA character set (Latin basic); anything else is transliterated or dropped.
_NOT_SEPA = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")


@dataclass(frozen=True)
class SepaPayment:
    """One credit transfer line, already validated."""

    end_to_end_id: str
    amount_minor: int
    creditor_name: str
    iban: str
    bic: str | None
    remittance: str


def sepa_text(value: str, max_len: int) -> str:
    text = _NOT_SEPA.sub("", unidecode(value or "")).strip()
    return (text or "n/a")[:max_len]


def end_to_end_id(idempotency_key: str) -> str:
    """The payment's EndToEndId (max 35 SEPA characters), derived from our payout key."""
    plain = re.sub(r"[^A-Za-z0-9-]", "-", idempotency_key)
    if len(plain) <= 35:
        return plain
    return "PF-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def message_id(batch_ref: str, end_to_end_ids: list[str]) -> str:
    """MsgId for a file: the same batch and payouts give the same id (max 35 characters)."""
    digest = hashlib.sha256("\n".join([batch_ref, *sorted(end_to_end_ids)]).encode()).hexdigest()
    return "PF" + digest[:30]


def check_iban(value: str) -> str:
    try:
        return IBAN(value).compact
    except SchwiftyException as exc:
        raise PermanentError(f"invalid IBAN ({exc})") from None


def check_bic(value: str) -> str:
    try:
        return BIC(value).compact
    except SchwiftyException as exc:
        raise PermanentError(f"invalid BIC ({exc})") from None


def format_eur(amount_minor: int) -> str:
    """1234 -> '12.34' (exact; never through a float)."""
    return str(Decimal(int(amount_minor)).scaleb(-2).quantize(Decimal("0.01")))


def make_payment(*, idempotency_key: str, amount_minor: int, currency: str, creditor_name: str,
                 destination: dict, remittance: str) -> SepaPayment:
    """Validate one payout for SEPA; PermanentError names what is wrong."""
    if (currency or "").upper() != "EUR":
        raise PermanentError(f"SEPA credit transfers are in EUR only, not {currency}")
    if int(amount_minor) <= 0:
        raise PermanentError("a SEPA credit transfer needs a positive amount")
    if int(amount_minor) > 99_999_999_999:  # 999,999,999.99 EUR: the scheme's maximum
        raise PermanentError("amount is above the SEPA credit transfer maximum")
    iban = check_iban(str(destination.get("iban") or ""))
    bic = destination.get("bic")
    return SepaPayment(
        end_to_end_id=end_to_end_id(idempotency_key),
        amount_minor=int(amount_minor),
        creditor_name=sepa_text(destination.get("account_holder") or creditor_name, 70),
        iban=iban,
        bic=check_bic(bic) if bic else None,
        remittance=sepa_text(remittance, 140),
    )


def _sub(parent, tag: str, text: str | None = None, **attrs):
    el = etree.SubElement(parent, f"{{{NS}}}{tag}", **attrs)
    if text is not None:
        el.text = text
    return el


def build_pain001(payments: list[SepaPayment], *, msg_id: str, created_at: datetime, debtor_name: str,
                  debtor_iban: str, debtor_bic: str) -> bytes:
    """The pain.001.001.03 document for `payments` (one PmtInf, service level SEPA, charges SLEV)."""
    if not payments:
        raise ValueError("a SEPA file needs at least one payment")
    total = format_eur(sum(p.amount_minor for p in payments))
    count = str(len(payments))
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    root = _sub(doc, "CstmrCdtTrfInitn")
    hdr = _sub(root, "GrpHdr")
    _sub(hdr, "MsgId", msg_id)
    _sub(hdr, "CreDtTm", created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    _sub(hdr, "NbOfTxs", count)
    _sub(hdr, "CtrlSum", total)
    _sub(_sub(hdr, "InitgPty"), "Nm", sepa_text(debtor_name, 70))
    pmt = _sub(root, "PmtInf")
    _sub(pmt, "PmtInfId", msg_id)
    _sub(pmt, "PmtMtd", "TRF")
    _sub(pmt, "BtchBookg", "false")  # one booking per partner, so each shows on the statement
    _sub(pmt, "NbOfTxs", count)
    _sub(pmt, "CtrlSum", total)
    _sub(_sub(_sub(pmt, "PmtTpInf"), "SvcLvl"), "Cd", "SEPA")
    _sub(pmt, "ReqdExctnDt", created_at.astimezone(UTC).date().isoformat())
    _sub(_sub(pmt, "Dbtr"), "Nm", sepa_text(debtor_name, 70))
    _sub(_sub(_sub(pmt, "DbtrAcct"), "Id"), "IBAN", debtor_iban)
    _sub(_sub(_sub(pmt, "DbtrAgt"), "FinInstnId"), "BIC", debtor_bic)
    _sub(pmt, "ChrgBr", "SLEV")
    for p in payments:
        tx = _sub(pmt, "CdtTrfTxInf")
        _sub(_sub(tx, "PmtId"), "EndToEndId", p.end_to_end_id)
        _sub(_sub(tx, "Amt"), "InstdAmt", format_eur(p.amount_minor), Ccy="EUR")
        if p.bic:
            _sub(_sub(_sub(tx, "CdtrAgt"), "FinInstnId"), "BIC", p.bic)
        _sub(_sub(tx, "Cdtr"), "Nm", p.creditor_name)
        _sub(_sub(_sub(tx, "CdtrAcct"), "Id"), "IBAN", p.iban)
        _sub(_sub(tx, "RmtInf"), "Ustrd", p.remittance)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)


_SCHEMA: etree.XMLSchema | None = None


def schema() -> etree.XMLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        source = resources.files("partnerflow.providers.payout").joinpath("schemas/pain.001.001.03.xsd")
        with source.open("rb") as fh:
            _SCHEMA = etree.XMLSchema(etree.parse(fh))
    return _SCHEMA


def validate_pain001(xml: bytes) -> None:
    """Raise ValueError naming the first schema violation."""
    s = schema()
    if not s.validate(etree.fromstring(xml)):
        raise ValueError(f"pain.001 file is not valid against the schema: {s.error_log.last_error}")


@contextmanager
def _folder_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def written_in(folder: Path, e2e: str) -> str | None:
    """The file that already carries this payment, if any.

    An index entry (index/<EndToEndId> -> file name) is written BEFORE its file is renamed into
    place, and only counts once that file exists: a crash in between leaves an entry for a file
    that is not there, which is ignored, so the payment is written (once) on the next run.
    """
    try:
        name = (folder / "index" / e2e).read_text().strip()
    except FileNotFoundError:
        return None
    return name if (folder / name).exists() else None


def indexed_in(folder: Path, e2e: str) -> str | None:
    """The file the index names for this payment, whether or not the file is still in the folder (the team
    archives files; the index stays). None: writing it never began (the index entry comes first)."""
    try:
        return (folder / "index" / e2e).read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_file(settings: PayoutRailSettings, batch_ref: str, payments: list[SepaPayment], *,
               now: datetime | None = None) -> dict[str, str]:
    """Write the payments not yet in any file into one new file in `settings.sepa_output_dir`;
    return EndToEndId -> file name for all.

    Re-running with the same payments writes nothing and returns the same file names.
    """
    if not (settings.sepa_debtor_iban and settings.sepa_debtor_bic):
        raise PermanentError("PARTNERFLOW_SEPA_DEBTOR_IBAN and PARTNERFLOW_SEPA_DEBTOR_BIC must be set for SEPA")
    debtor_iban = check_iban(settings.sepa_debtor_iban)
    debtor_bic = check_bic(settings.sepa_debtor_bic)
    folder = output_dir(settings)
    with _folder_lock(folder):
        existing = {p.end_to_end_id: written_in(folder, p.end_to_end_id) for p in payments}
        new = [p for p in payments if existing[p.end_to_end_id] is None]
        if new:
            msg_id = message_id(batch_ref, [p.end_to_end_id for p in new])
            xml = build_pain001(new, msg_id=msg_id, created_at=now or datetime.now(UTC),
                                debtor_name=settings.sepa_debtor_name, debtor_iban=debtor_iban,
                                debtor_bic=debtor_bic)
            validate_pain001(xml)
            name = f"pain001-{msg_id}.xml"
            (folder / "index").mkdir(exist_ok=True)
            for p in new:  # index first, file last: see written_in()
                _write_atomically(folder / "index" / p.end_to_end_id, name.encode())
                existing[p.end_to_end_id] = name
            _write_atomically(folder / name, xml)
    return {p.end_to_end_id: existing[p.end_to_end_id] for p in payments}


# --- the rail -----------------------------------------------------------------------------------

def output_dir(settings: PayoutRailSettings) -> Path:
    """The folder the bank files go to (the top-level settings default it to var/sepa)."""
    if settings.sepa_output_dir is None:
        raise PermanentError("PARTNERFLOW_SEPA_OUTPUT_DIR must be set for SEPA")
    return settings.sepa_output_dir


class SepaRail(PayoutRail):
    """Writes the bank file; payouts stay "processing" until a bank report says paid or failed.

    `pay_batch()` puts a whole batch in one file (what a bank expects); `pay()` is the one-payout
    form of the same thing. Both are idempotent: a payout already in a file is never written again.
    """

    name = "sepa"
    pays_in_batches = True

    def __init__(self, settings: PayoutRailSettings):
        self.settings = settings

    @staticmethod
    def _payment(instruction: PayoutInstruction) -> SepaPayment:
        return make_payment(idempotency_key=instruction.idempotency_key, amount_minor=instruction.amount_minor,
                            currency=instruction.currency, creditor_name=instruction.partner_name,
                            destination=instruction.destination,
                            remittance=instruction.description or f"Partner commission {instruction.idempotency_key}")

    def pay_batch(self, instructions: list[PayoutInstruction]) -> list[RailResult | ProviderError]:
        """One file for all valid payouts; per payout a RailResult, or the PermanentError that rejects it."""
        outcomes: list[RailResult | ProviderError] = []
        good: list[SepaPayment] = []
        for instruction in instructions:
            try:
                payment = self._payment(instruction)
            except PermanentError as exc:
                outcomes.append(exc)
                continue
            good.append(payment)
            outcomes.append(payment)  # replaced below by its result
        files = write_file(self.settings, "", good) if good else {}
        return [o if isinstance(o, ProviderError) else RailResult(status=RailState.PROCESSING,
                                                                  provider_ref=f"{files[o.end_to_end_id]}#{o.end_to_end_id}")
                for o in outcomes]

    def pay(self, instruction: PayoutInstruction) -> RailResult:
        result = self.pay_batch([instruction])[0]
        if isinstance(result, ProviderError):
            raise result
        return result

    def lookup(self, idempotency_key: str, provider_ref: str | None = None) -> RailResult | None:
        e2e = end_to_end_id(idempotency_key)
        name = written_in(output_dir(self.settings), e2e)
        return RailResult(status=RailState.PROCESSING, provider_ref=f"{name}#{e2e}") if name else None

    def indexed_file(self, idempotency_key: str) -> str | None:
        """The file this payment was being written to, even if archived since; None if writing never began."""
        return indexed_in(output_dir(self.settings), end_to_end_id(idempotency_key))
