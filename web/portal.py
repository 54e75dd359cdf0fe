"""Web routes: the partner portal's pages for the signed-in partner — home with chart, commissions (and CSV),
payouts, links, documents, profile.

Every route depends on `signed_in` and reads only that partner's rows; an id in the path that is not
theirs is 404, like one that does not exist. Query strings are checked and a wrong one is answered
with the page and a sentence saying what to change (400), never a stack trace.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse

from partnerflow.models import Partner, session_scope
from partnerflow.tasks.portal import chart, statements, statements_links, statements_payouts
from partnerflow.tasks.shared.money import exponent
from partnerflow.web.pages import render
from partnerflow.web.portal_access import SignedIn

router = APIRouter()
PRIVATE = {"Cache-Control": "private, no-store"}  # a partner's figures never sit in a shared cache
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ["commission_id", "date", "kind", "reference", "product", "sale_amount", "sale_currency",
               "commission", "currency", "status", "month", "payable_on", "payout_id", "rule"]


def _page(template: str, visitor, current: str, status: int = 200, **context) -> HTMLResponse:
    with session_scope() as session:
        partner = session.get(Partner, visitor.partner_id)
        name = partner.contact_name or partner.legal_name
    response = render(f"portal/pages/{template}", status, partner_name=name, csrf_token=visitor.csrf_token,
                      current=current, **context)
    response.headers.update(PRIVATE)
    return response


def _page_number(text: str | None) -> int:
    text = (text or "1").strip()
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise ValueError("Page must be a whole number from 1.")
    return int(text)


def _partner(partner_id: int) -> Partner:
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        session.expunge(partner)
        return partner


@router.get("/portal", response_class=HTMLResponse)
def home(visitor: SignedIn) -> HTMLResponse:
    this_month, last_month = statements.current_periods()
    months = {m.period: m for m in statements.month_figures(visitor.partner_id, [last_month, this_month])}
    lines, upcoming = statements_payouts.balance_with_holds(visitor.partner_id)
    return _page("home.html", visitor, "home", title="Your partner account",
                 months=[months[this_month], months[last_month]], month_names=["This month", "Last month"],
                 lines=lines, upcoming=upcoming)


@router.get("/portal/chart.png")
def chart_image(visitor: SignedIn) -> Response:
    png = chart.chart_png(chart.weekly_series(visitor.partner_id))
    # Drawing takes a few hundred ms: the partner's own browser may keep it a while, no shared cache ever.
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/portal/commissions", response_class=HTMLResponse)
def commissions(visitor: SignedIn, status: str | None = None, period: str | None = None,
                page: str | None = None) -> HTMLResponse:
    values = {"status": (status or "")[:20], "period": (period or "")[:20]}
    try:
        status_, period_ = statements.check_filters(status, period)
        number = _page_number(page)
    except ValueError as exc:
        return _page("commissions.html", visitor, "commissions", 400, title="Commissions", error=str(exc),
                     rows=[], total=0, page=1, pages=1, values=values, statuses=statements.STATUSES, query="")
    rows, total = statements.commission_page(visitor.partner_id, status=status_, period=period_, page=number)
    pages = max(1, -(-total // statements.PAGE_SIZE))
    query = urlencode({k: v for k, v in (("status", status_), ("period", period_)) if v})
    return _page("commissions.html", visitor, "commissions", title="Commissions", error="", rows=rows, total=total,
                 page=number, pages=pages, values=values, statuses=statements.STATUSES, query=query)


def neutralise(value):
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def _csv_rows(partner_id: int, status: str | None, period: str | None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for n, r in enumerate(statements.iter_commissions(partner_id, status=status, period=period), 1):
        writer.writerow([neutralise(v) for v in (
            r.id, r.occurred_at.date().isoformat(), r.kind, r.reference, r.product or "",
            _major(r.sale_minor, r.sale_currency), r.sale_currency, _major(r.amount_minor, r.currency), r.currency,
            r.status, r.period, r.payable_at.date().isoformat() if r.payable_at else "", r.payout_id or "", r.rule)])
        if n % 500 == 0:
            yield flush()
    yield flush()


@router.get("/portal/commissions.csv")
def commissions_csv(visitor: SignedIn, status: str | None = None, period: str | None = None) -> Response:
    try:
        status_, period_ = statements.check_filters(status, period)
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400, headers=PRIVATE)
    name = "-".join(["commissions", *(v for v in (period_, status_) if v)]) + ".csv"
    return StreamingResponse(_csv_rows(visitor.partner_id, status_, period_), media_type="text/csv; charset=utf-8",
                             headers={**PRIVATE, "Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/portal/payouts", response_class=HTMLResponse)
def payouts(visitor: SignedIn, page: str | None = None) -> HTMLResponse:
    try:
        number = _page_number(page)
    except ValueError as exc:
        number, error = 1, str(exc)
    else:
        error = ""
    entries, total = statements_payouts.payout_history(visitor.partner_id, number)
    pages = max(1, -(-total // statements_payouts.PAYOUTS_PER_PAGE))
    return _page("payouts.html", visitor, "payouts", 400 if error else 200, title="Payouts", error=error,
                 payouts=entries, page=number, pages=pages,
                 upcoming=statements_payouts.upcoming_payout(visitor.partner_id))


@router.get("/portal/links", response_class=HTMLResponse)
def links(visitor: SignedIn, url: str | None = None) -> HTMLResponse:
    partner = _partner(visitor.partner_id)
    code = partner.tracking_code
    built, error = None, ""
    if url is not None and code:
        built = statements_links.deep_link(code, url)
        if built is None:
            hosts = ", ".join(statements_links.allowed_hosts()) or "none"
            error = f"That address is not on the program's domains ({hosts}); use a full https:// address there."
    return _page("links.html", visitor, "links", 400 if error else 200, title="Your links",
                 tracking_link=statements_links.tracking_url(code) if code else None, coupon=partner.coupon_code,
                 url=(url or "")[:2048], built=built, error=error, allowed=statements_links.allowed_hosts(),
                 landings=statements_links.clicks_by_landing(visitor.partner_id))


@router.get("/portal/documents", response_class=HTMLResponse)
def documents(visitor: SignedIn) -> HTMLResponse:
    return _page("documents.html", visitor, "documents", title="Documents",
                 docs=statements_links.documents(visitor.partner_id))


@router.get("/portal/documents/{contract_id}/signed")
def signed_contract(contract_id: int, visitor: SignedIn) -> FileResponse:
    path = statements_links.signed_contract_file(visitor.partner_id, contract_id)
    if path is None:
        raise HTTPException(status_code=404, detail="No signed contract with that number.")
    return FileResponse(path, filename=f"contract-{contract_id}-signed{path.suffix}", headers=PRIVATE,
                        media_type="application/octet-stream")


@router.get("/portal/documents/{contract_id}/certificate.txt")
def signature_certificate(contract_id: int, visitor: SignedIn) -> PlainTextResponse:
    cert = statements_links.certificate(visitor.partner_id, contract_id)
    if cert is None:
        raise HTTPException(status_code=404, detail="No signed contract with that number.")
    return PlainTextResponse(statements_links.certificate_text(cert), headers={
        **PRIVATE, "Content-Disposition": f'attachment; filename="contract-{contract_id}-certificate.txt"'})


@router.get("/portal/profile", response_class=HTMLResponse)
def profile(visitor: SignedIn) -> HTMLResponse:
    return _page("profile.html", visitor, "profile", title="Profile", partner=_partner(visitor.partner_id))
