"""Registering partners' promotional pages (checked for disclosure and brand rules)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import select

from partnerflow.models import session_scope
from partnerflow.models.compliance import PartnerPage


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


def fetch_and_analyse(pages: list, analyse, *, chunk_size: int = 200, **fetch_options) -> list[tuple]:
    """[(page, FetchResult, analyse(page, result))] in page order, analysing one chunk while the next downloads.

    Pages are grouped by host so one host's pages share a chunk (one robots.txt read, politeness kept
    within the fetcher); the next chunk's downloads overlap this chunk's parsing.
    """
    from concurrent.futures import ThreadPoolExecutor

    from partnerflow.tasks.shared.webfetch import fetch_pages

    order = sorted(range(len(pages)), key=lambda i: (urlsplit(pages[i].url).netloc, i))
    chunks: list[list[int]] = []
    for i in order:
        host = urlsplit(pages[i].url).netloc
        if chunks and (len(chunks[-1]) < chunk_size or urlsplit(pages[chunks[-1][-1]].url).netloc == host):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    out: dict[int, tuple] = {}
    if not chunks:
        return []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch_pages, [pages[i].url for i in chunks[0]], **fetch_options)
        for n, chunk in enumerate(chunks):
            results = pending.result()
            if n + 1 < len(chunks):
                pending = pool.submit(fetch_pages, [pages[i].url for i in chunks[n + 1]], **fetch_options)
            for i, result in zip(chunk, results):
                out[i] = (pages[i], result, analyse(pages[i], result))
    return [out[i] for i in range(len(pages))]
