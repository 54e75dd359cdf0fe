"""Partners' promotional pages: registering them, and the task that checks them for disclosure and
brand rules (fetching them politely, analysing one chunk while the next downloads)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

from prefect import task
from sqlmodel import select

from partnerflow.models import Partner, session_scope
from partnerflow.models.compliance import FindingKind, PageResult, PartnerPage, Severity
from partnerflow.models.types import utcnow
from partnerflow.settings import get_settings
from partnerflow.tasks.compliance import findings as store
from partnerflow.tasks.compliance.brand_rules import check_brand_rules, compile_rules
from partnerflow.tasks.compliance.disclosure import check_disclosure, page_text
from partnerflow.tasks.compliance.findings import Detected, RecordOutcome
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.shared.webfetch import fetch_pages

PAGE_KINDS = (FindingKind.DISCLOSURE, FindingKind.BRAND_RULE, FindingKind.COULD_NOT_CHECK)
WRONG_ENCODING = "wrong_encoding"
UNREADABLE = "we could not read this page from the public internet"


def register_pages(partner_id: int, urls: list[str]) -> int:
    """Add these http(s) URLs for the partner (re-activating known ones); returns how many were new."""
    added = 0
    with session_scope() as session:
        for url in urls:
            url = url.strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            row = session.exec(select(PartnerPage).where(PartnerPage.partner_id == partner_id,
                                                         PartnerPage.url == url)).first()
            if row:
                row.active = True
                session.add(row)
                continue
            session.add(PartnerPage(partner_id=partner_id, url=url))
            added += 1
    return added


def fetch_and_analyse(pages: list, analyse, **fetch_options) -> list[tuple]:
    """[(page, FetchResult, analyse(page, result))] in page order, each page analysed as soon as it is read
    while the others download (one fetcher: one robots.txt read per host, politeness kept across all pages)."""
    by_url: dict[str, list] = {}
    for page in pages:
        by_url.setdefault(page.url, []).append(page)
    urls = list(by_url)  # a URL two partners registered is fetched once and analysed for each

    def analyse_all(result) -> list:
        return [analyse(page, result) for page in by_url[result.url]]

    fetched = dict(zip(urls, fetch_pages(urls, process=analyse_all, **fetch_options), strict=True))
    seen: dict[str, int] = {}
    out = []
    for page in pages:
        result, found = fetched[page.url]
        n = seen[page.url] = seen.get(page.url, -1) + 1
        out.append((page, result, found[n]))
    return out


def analyse_page(result, partner: Partner, policy: dict, rules: list[dict]) -> list[Detected]:
    """Findings for one fetched page; a page we could not read gives a could_not_check finding."""
    sev = policy.get("could_not_check", {}).get("severity", Severity.MEDIUM)

    def cannot(reason: str, detail: str, fetch_error: str | None = None) -> Detected:
        evidence = {"reason": reason, "final_url": result.final_url, "status_code": result.status_code}
        if fetch_error:
            evidence["fetch_error"] = fetch_error  # for the team; never in the partner's mail
        return Detected(partner.id, FindingKind.COULD_NOT_CHECK, "could_not_check", sev,
                        "Could not check the page", evidence, url=result.url, detail=detail)

    if not result.ok or result.text is None:
        # The partner is told only that the page could not be read: the fetcher's reason (refused address,
        # connection refused, timeout) would tell whoever chose the URL what our network looks like.
        error = result.error or "no content"
        return [cannot(UNREADABLE, error, error)]
    try:
        page = page_text(result.text, tracking_code=partner.tracking_code, coupon_code=partner.coupon_code,
                         tracking_param=policy["disclosure"].get("tracking_param", "ref"))
    except ValueError as exc:
        return [cannot(str(exc), "unparseable")]
    found = check_disclosure(page, partner_id=partner.id, url=result.url, policy=policy)
    found += check_brand_rules(page, partner_id=partner.id, partner_type=partner.partner_type,
                               coupon_code=partner.coupon_code, url=result.url, rules=rules)
    mismatch = [n for n in (result.notes or []) if n.startswith(("charset_mismatch", "unknown_charset"))]
    if mismatch:  # read with a guessed encoding: checked, but never called compliant on a guess
        found.append(cannot(f"{WRONG_ENCODING} ({', '.join(mismatch)}; read as {result.encoding})", WRONG_ENCODING))
    return found


@task
def check_pages(partner_ids: list[int]) -> dict:
    """Fetch every registered page of these partners once, check disclosure and brand rules, record findings."""
    settings = get_settings().compliance
    policy = load_policy()
    rules = compile_rules(policy)
    with session_scope() as session:
        partners = {p.id: p for p in session.exec(select(Partner).where(Partner.id.in_(partner_ids))).all()}
        pages = session.exec(select(PartnerPage).where(PartnerPage.partner_id.in_(partner_ids),
                                                       PartnerPage.active == True)).all()  # noqa: E712
    analysed = fetch_and_analyse(
        pages, lambda page, result: analyse_page(result, partners[page.partner_id], policy, rules),
        concurrency=settings.compliance_fetch_concurrency, per_domain_delay=settings.compliance_per_domain_delay,
        timeout=settings.compliance_fetch_timeout_seconds, max_bytes=settings.compliance_fetch_max_bytes,
        respect_robots=settings.compliance_respect_robots, allow_private=settings.compliance_allow_private_addresses)
    out = RecordOutcome()
    stats = Counter()
    now = utcnow()
    with session_scope() as session:
        for page, result, found in analysed:
            store.record(session, found, policy, out)
            readable = result.ok and not any(d.detail == WRONG_ENCODING for d in found)
            # A page we read resolves whatever is no longer on it; an unreadable page resolves nothing
            # but an older "could not check" for another reason (same slot, updated above).
            if readable:
                store.resolve_missing(session, page.partner_id, kinds=PAGE_KINDS, url=page.url,
                                      seen={d.fingerprint for d in found},
                                      reason=f"no longer found on the page ({now:%Y-%m-%d})", out=out)
            row = session.get(PartnerPage, page.id)
            row.last_checked_at = now
            row.last_result = (PageResult.OK if readable
                               else f"{PageResult.COULD_NOT_CHECK}:{result.error or WRONG_ENCODING}")
            session.add(row)
            stats["pages"] += 1
            stats["pages_read" if readable else "could_not_check"] += 1
    return {**out.as_dict(), "pages": stats["pages"], "pages_read": stats["pages_read"],
            "could_not_check": stats["could_not_check"]}
