"""Enriching prospects from their own pages, and scoring them again from what is stored.

A chunk of prospects is fetched concurrently and politely; a page that fails is recorded on
its prospect without stopping the chunk.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from sqlmodel import Session, select

from partnerflow.models import Partner, Prospect, session_scope, utcnow
from partnerflow.models.discovery import ProspectStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.discovery import enrich, scoring
from partnerflow.tasks.shared.identity import normalise_domain, normalise_email
from partnerflow.tasks.shared.webfetch import fetch_pages


def enrich_batch(prospect_ids: list[int]) -> list[dict[str, Any]]:
    """Fetch, extract and score these prospects; one summary row per prospect. Bad pages are recorded."""
    settings = get_settings()
    policy = scoring.load_policy()
    with session_scope() as session:
        prospects = session.exec(select(Prospect).where(Prospect.id.in_(prospect_ids))).all()
    with_site = [p for p in prospects if p.website]
    results = fetch_pages(
        [p.website for p in with_site],
        concurrency=settings.discovery.discovery_fetch_concurrency,
        per_domain_delay=settings.discovery.discovery_fetch_delay_seconds,
        timeout=settings.discovery.discovery_fetch_timeout_seconds,
        max_bytes=settings.discovery.discovery_fetch_max_bytes,
        respect_robots=settings.discovery.discovery_respect_robots,
        allow_private=settings.discovery.discovery_allow_private_addresses,
        process=_read_page,  # each page is read while the others download
    ) if with_site else []
    fetched = {p.id: part for p, (_result, part) in zip(with_site, results, strict=True)}

    rows: list[dict[str, Any]] = []
    now = utcnow()
    with session_scope() as session:
        taken = _taken_emails(session)
        for prospect in session.exec(select(Prospect).where(Prospect.id.in_(prospect_ids))).all():
            page: dict[str, Any] = {"fetched_at": now.isoformat()}
            part = fetched.get(prospect.id)
            if part is None:
                page["skipped"] = "no website"
            else:
                page.update(part)
            found = _own_email(prospect, page.get("emails") or [], taken)
            if found:
                prospect.email = found
                taken.add(found)
                page["email_from_page"] = found
            prospect.score, prospect.score_reasons = scoring.score(_facts(prospect), page, policy)
            prospect.enrichment = page
            prospect.enriched_at = now
            prospect.updated_at = now
            session.add(prospect)
            rows.append({"id": prospect.id, "name": prospect.name or prospect.company, "domain": prospect.domain
                         or normalise_domain(prospect.website), "score": prospect.score,
                         "error": page.get("error") or page.get("skipped"), "title": page.get("title", ""),
                         "reasons": prospect.score_reasons})
    return rows


def _read_page(result) -> dict[str, Any]:
    """What a fetched page tells about its prospect (the fetch's outcome, then what was extracted)."""
    page: dict[str, Any] = {"url": result.url, "final_url": result.final_url, "status_code": result.status_code,
                            "error": result.error, "elapsed_ms": result.elapsed_ms, "encoding": result.encoding,
                            "notes": result.notes}
    if result.ok:
        try:
            page.update(enrich.extract(result.text or "", result.final_url or result.url))
        except Exception as exc:  # one odd page must not cost the chunk its results
            page["error"] = f"extract_error:{type(exc).__name__}"
    return page


def _facts(prospect: Prospect) -> dict[str, Any]:
    """What the scoring policy reads from the prospect itself (beside its page)."""
    return {"topics": prospect.topics, "audience_size": prospect.audience_size, "email": prospect.email}


def _taken_emails(session: Session) -> set[str]:
    """Addresses already used by a prospect or partner: a page's address must not be given twice."""
    taken = set(session.exec(select(Prospect.email).where(Prospect.email.is_not(None))).all())
    taken |= {normalise_email(e) for e in session.exec(select(Partner.email)).all()}
    return taken


def _own_email(prospect: Prospect, emails: list[str], taken: set[str]) -> str | None:
    """For a prospect without an address: the first one on its page at its own domain, if still free."""
    if prospect.email or not prospect.domain:
        return None
    for email in emails:
        if email.rsplit("@", 1)[1] == prospect.domain and email not in taken:
            return email
    return None


def prospects_to_enrich(prospect_ids: list[int] | None, limit: int) -> list[int]:
    """The given ids (existing ones), or new prospects never enriched, oldest first."""
    with session_scope() as session:
        query = select(Prospect.id).order_by(Prospect.id)
        if prospect_ids is not None:
            query = query.where(Prospect.id.in_(prospect_ids))
        else:
            query = query.where(Prospect.enriched_at.is_(None), Prospect.status == ProspectStatus.NEW)
        return list(session.exec(query.limit(limit)).all())


def rescore(prospect_ids: list[int] | None = None, chunk: int = 1000) -> dict[str, int]:
    """Score prospects again from what is stored (after a policy edit); no page is fetched."""
    policy = scoring.load_policy()
    changed = seen = 0
    last_id = 0
    while True:
        with session_scope() as session:
            query = select(Prospect).where(Prospect.id > last_id).order_by(Prospect.id).limit(chunk)
            if prospect_ids is not None:
                query = query.where(Prospect.id.in_(prospect_ids))
            batch = session.exec(query).all()
            for prospect in batch:
                new = scoring.score(_facts(prospect), prospect.enrichment or {}, policy)
                if new != (prospect.score, prospect.score_reasons):
                    prospect.score, prospect.score_reasons = new
                    session.add(prospect)
                    changed += 1
        if not batch:
            return {"prospects": seen, "changed": changed}
        seen += len(batch)
        last_id = batch[-1].id


@task(name="enrich-prospects-chunk", retries=1, retry_delay_seconds=10)
def enrich_chunk(prospect_ids: list[int]) -> list[dict[str, Any]]:
    return enrich_batch(prospect_ids)


@task(name="rescore-prospects")
def rescore_task(prospect_ids: list[int] | None) -> dict[str, int]:
    return rescore(prospect_ids)
