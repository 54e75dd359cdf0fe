"""What the bank sends back about our SEPA credit transfers: pain.002 status reports, camt.053/054 statements.

Only facts the report states are returned; an entry that is not a booked debit of ours (or a return of
one) says nothing about our payment and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from lxml import etree

from partnerflow.providers.payout.base import RailState


@dataclass(frozen=True)
class BankOutcome:
    end_to_end_id: str
    status: RailState  # PAID or FAILED
    reason: str = ""
    bank_ref: str = ""
    # What the bank says it moved, when the report says (minor units, ISO code); checked against the payout.
    amount_minor: int | None = None
    currency: str | None = None
    amount_required: bool = False  # a statement line (camt) always has one: without it, nothing is proven


def _local(el) -> str:
    return etree.QName(el).localname


def _first(el, *path: str):
    """The first descendant reached by local names `path` (namespace-agnostic), or None."""
    expr = "./" + "/".join(f"/*[local-name()='{p}']" for p in path)
    found = el.xpath(expr)
    return found[0] if found else None


def _first_text(el, *path: str) -> str:
    """Text of the first descendant reached by local names `path` (namespace-agnostic)."""
    found = _first(el, *path)
    return (found.text or "").strip() if found is not None else ""


def _amount(el) -> tuple[int | None, str | None]:
    """(minor units, currency) of an `<Amt Ccy="EUR">12.34</Amt>`-style element; (None, None) if absent.

    A figure that is not a plain decimal with at most two places is not read as an amount at all: the
    outcome then has no amount, and the payout it names is checked by a person (reconcile)."""
    if el is None:
        return None, None
    try:
        value = Decimal((el.text or "").strip())
    except ArithmeticError:
        return None, None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        return None, None
    return int(value.scaleb(2)), (el.get("Ccy") or "").upper() or None


def _tx_amount(tx, entry, single: bool) -> tuple[int | None, str | None]:
    """The transaction's own amount (camt .02: AmtDtls/TxAmt/Amt; .08: Amt), else the entry's when the
    entry carries this one transaction only."""
    for path in (("AmtDtls", "TxAmt", "Amt"), ("AmtDtls", "InstdAmt", "Amt")):
        found = _first(tx, *path)
        if found is not None:
            return _amount(found)
    own = [c for c in tx if _local(c) == "Amt"]
    if own:
        return _amount(own[0])
    return _amount(next((c for c in entry if _local(c) == "Amt"), None)) if single else (None, None)


def read_bank_report(data: bytes) -> list[BankOutcome]:
    """Outcomes from a pain.002 payment status report or a camt.053/camt.054 statement.

    pain.002: ACSC (settled) -> paid, RJCT -> failed with the reason code; other statuses (ACCP,
    PDNG, ...) say nothing final and are skipped. camt: a booked DEBIT entry (money left our account)
    carrying our EndToEndId -> paid, with its amount; a returned/reversed one (RvslInd true, or a
    credit with return information) -> failed. A credit that is not a return is not an outcome of our
    outgoing payment and is skipped, never read as paid.
    """
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not an XML bank report: {exc}") from None
    kind = _local(root[0]) if len(root) else _local(root)
    outcomes: list[BankOutcome] = []
    if kind == "CstmrPmtStsRpt":
        for tx in root.xpath(".//*[local-name()='TxInfAndSts']"):
            e2e = _first_text(tx, "OrgnlEndToEndId")
            status = _first_text(tx, "TxSts")
            if not e2e:
                continue
            if status == "ACSC":
                amount, currency = _amount(_first(tx, "OrgnlTxRef", "Amt", "InstdAmt"))
                outcomes.append(BankOutcome(e2e, RailState.PAID, bank_ref=_first_text(tx, "StsId"),
                                            amount_minor=amount, currency=currency))
            elif status == "RJCT":
                reason = _first_text(tx, "StsRsnInf", "Rsn", "Cd") or "rejected"
                extra = _first_text(tx, "StsRsnInf", "AddtlInf")
                outcomes.append(BankOutcome(e2e, RailState.FAILED, reason=f"bank rejected: {reason} {extra}".strip()))
    elif kind in ("BkToCstmrStmt", "BkToCstmrDbtCdtNtfctn"):
        for entry in root.xpath(".//*[local-name()='Ntry']"):
            outcomes.extend(_camt_entry(entry))
    else:
        raise ValueError(f"not a pain.002 or camt.053/054 report (root element {kind})")
    return outcomes


def _camt_entry(entry) -> list[BankOutcome]:
    status = _first_text(entry, "Sts") or _first_text(entry, "Sts", "Cd")  # camt .02 and .08 forms
    if status not in ("BOOK", ""):
        return []
    reversal = _first_text(entry, "RvslInd").lower() == "true"
    entry_side = next((c.text or "" for c in entry if _local(c) == "CdtDbtInd"), "").strip()
    txs = entry.xpath(".//*[local-name()='TxDtls']")
    outcomes = []
    for tx in txs:
        e2e = _first_text(tx, "Refs", "EndToEndId")
        if not e2e or e2e == "NOTPROVIDED":
            continue
        side = next((c.text or "" for c in tx if _local(c) == "CdtDbtInd"), "").strip() or entry_side
        returned = _first(tx, "RtrInf") is not None
        if reversal or (side == "CRDT" and returned):
            reason = _first_text(tx, "RtrInf", "Rsn", "Cd") or "returned"
            outcomes.append(BankOutcome(e2e, RailState.FAILED, reason=f"bank returned: {reason}"))
        elif side == "DBIT":
            amount, currency = _tx_amount(tx, entry, single=len(txs) == 1)
            outcomes.append(BankOutcome(e2e, RailState.PAID, bank_ref=_first_text(entry, "AcctSvcrRef"),
                                        amount_minor=amount, currency=currency, amount_required=True))
    return outcomes
