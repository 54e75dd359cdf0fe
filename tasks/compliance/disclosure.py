"""Disclosure check: where our tracking links or codes appear on a partner's page, is there a clear
disclosure before or near the first one, and not only in the footer?

Pure functions over fetched HTML; the page-check task (pages.py) fetches the pages and records findings.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from partnerflow.models.compliance import FindingKind, Severity
from partnerflow.tasks.compliance.findings import Detected

LINK = "\u2063L\u2063"  # an invisible marker put in the text where a tracking link sits
FOOTER_START, FOOTER_END = "\u2063F\u2063", "\u2063f\u2063"
# A footer by tag, role, id or class. Elements with none of those attributes are ruled out first (cheap),
# so the string tests run on few elements: a third of the time of testing every element.
FOOTERS = ("//footer | //*[@id or @class or @role][@role='contentinfo' or contains(@id, 'footer')"
           " or contains(@class, 'footer') or @id='colophon' or contains(@class, 'colophon')]")


@dataclass
class PageText:
    """A page as linear text with the offsets of tracking links and of the footer."""

    text: str  # whitespace-collapsed, lower-case, markers removed
    display: str  # the same text with original case, for excerpts
    link_offsets: list[int] = field(default_factory=list)
    footer_spans: list[tuple[int, int]] = field(default_factory=list)
    lang: str = ""

    def in_footer(self, offset: int) -> bool:
        return any(a <= offset < b for a, b in self.footer_spans)

    def excerpt(self, offset: int, width: int = 160) -> str:
        start = max(0, offset - width // 2)
        return ("…" if start else "") + self.display[start:offset + width // 2].strip() + "…"


def find_word(text: str, word: str) -> list[int]:
    """Offsets where `word` occurs in `text` not glued to other letters or digits (no regex: codes vary per page)."""
    hits, start, n = [], 0, len(word)
    if not word:
        return hits
    while True:
        i = text.find(word, start)
        if i < 0:
            return hits
        before = text[i - 1] if i else " "
        after = text[i + n] if i + n < len(text) else " "
        if not before.isalnum() and not after.isalnum():
            hits.append(i)
        start = i + 1


def _is_tracking_href(href: str, tracking_code: str | None, param: str) -> bool:
    if not tracking_code or not href:
        return False
    code = tracking_code.lower()
    href = href.lower()
    if code not in href:
        return False
    try:
        query = parse_qs(urlsplit(href).query)
    except ValueError:
        query = {}
    if any(v == code for v in query.get(param.lower(), [])):
        return True
    return bool(find_word(href, code))


def _drop_keeping_tail(el) -> None:
    """Remove `el` and what it holds, keeping the text that follows it (lxml.html's drop_tree)."""
    parent, previous = el.getparent(), el.getprevious()
    if el.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def page_text(html: str, *, tracking_code: str | None = None, coupon_code: str | None = None,
              tracking_param: str = "ref") -> PageText:
    """Parse `html` into linear text, marking tracking links and footers. Raises ValueError if unparseable."""
    try:
        # lxml's plain HTML tree, not lxml.html's: no Python class lookup for each element (a third faster).
        root = etree.fromstring(html, etree.HTMLParser())
    except (etree.ParserError, ValueError) as exc:
        raise ValueError(f"unparseable HTML: {exc}") from None
    if root is None:
        raise ValueError("unparseable HTML: Document is empty")
    lang = (root.get("lang") or "").split("-")[0].lower()
    for bad in root.xpath("//script|//style|//noscript|//template|//comment()"):
        if bad.getparent() is not None:
            _drop_keeping_tail(bad)
    for a in root.iter("a"):
        if _is_tracking_href(a.get("href") or "", tracking_code, tracking_param):
            a.text = f" {LINK} " + (a.text or "")
    footers = root.xpath(FOOTERS)
    for el in footers:
        el.text = f" {FOOTER_START} " + (el.text or "")
        marker = etree.SubElement(el, "span")
        marker.text = f" {FOOTER_END} "
    body = root.find("body")
    raw = " ".join(" ".join((root if body is None else body).itertext()).split())
    display_parts: list[str] = []
    links: list[int] = []
    footers: list[tuple[int, int]] = []
    depth, start, pos = 0, 0, 0
    for piece in re.split(f"({LINK}|{FOOTER_START}|{FOOTER_END})", raw):
        if piece == LINK:
            links.append(pos)
        elif piece == FOOTER_START:
            if depth == 0:
                start = pos
            depth += 1
        elif piece == FOOTER_END:
            depth = max(0, depth - 1)
            if depth == 0:
                footers.append((start, pos))
        else:
            display_parts.append(piece)
            pos += len(piece)
    display = "".join(display_parts)
    text = display.lower()
    if coupon_code:  # a coupon code shown in the text counts as a tracking reference
        links.extend(find_word(text, coupon_code.lower()))
    return PageText(text=text, display=display, link_offsets=sorted(links), footer_spans=footers, lang=lang)


@dataclass(frozen=True)
class PhraseHit:
    """Where a phrase was found: the part of `re.Match` the checks use."""

    begin: int
    stop: int
    found: str

    def start(self) -> int:
        return self.begin

    def end(self) -> int:
        return self.stop

    def group(self, _index: int = 0) -> str:
        return self.found


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"  # what `\w` matches


class PhraseMatcher:
    """Whole-word, case-insensitive phrases ("#ad" does not match "#adventure" or "bad") over lower-case text.

    Each phrase is looked for with `str.find` and its neighbours checked by hand: most pages contain
    none of the phrases, and one fast substring scan per phrase is far cheaper than a regex alternation
    with look-behinds tried at every position. Hits are what that regex's `finditer` gives: left to right,
    the longest phrase at a position, never overlapping.
    """

    def __init__(self, phrases: list[str]):
        self.phrases = sorted({p.strip().lower() for p in phrases if p and p.strip()}, key=len, reverse=True)

    def _candidates(self, text: str) -> list[tuple[int, int]]:
        found = []
        for phrase in self.phrases:
            n = len(phrase)
            i = text.find(phrase)
            while i >= 0:
                before = text[i - 1] if i else " "
                after = text[i + n] if i + n < len(text) else " "
                if not (_word_char(before) or before == "#") and not _word_char(after):
                    found.append((i, -n))
                i = text.find(phrase, i + 1)
        found.sort()
        return found

    def finditer(self, text: str) -> list[PhraseHit]:
        hits: list[PhraseHit] = []
        reached = 0
        for start, minus_length in self._candidates(text):
            if start >= reached:
                reached = start - minus_length
                hits.append(PhraseHit(start, reached, text[start:reached]))
        return hits

    def search(self, text: str) -> PhraseHit | None:
        candidates = self._candidates(text)
        if not candidates:
            return None
        start, minus_length = candidates[0]
        return PhraseHit(start, start - minus_length, text[start:start - minus_length])


@functools.lru_cache(maxsize=64)
def _matcher(phrases: tuple[str, ...]) -> PhraseMatcher:
    return PhraseMatcher(list(phrases))


def phrase_regex(phrases: list[str]) -> PhraseMatcher | None:
    """A matcher for `phrases` (cached), or None when there are none."""
    matcher = _matcher(tuple(phrases))
    return matcher if matcher.phrases else None


def disclosure_phrases(policy: dict, lang: str) -> list[str]:
    phrases = policy["disclosure"].get("phrases", {})
    if lang and lang in phrases:
        return list(phrases.get("en", [])) + list(phrases[lang])
    return [p for values in phrases.values() for p in values]  # unknown language: any of them


def check_disclosure(page: PageText, *, partner_id: int, url: str, policy: dict) -> list[Detected]:
    """Findings for one page; [] when no tracking link/code is on it or the disclosure is clear."""
    if not page.link_offsets:
        return []
    conf = policy["disclosure"]
    near = int(conf.get("near_chars", 300))
    first = page.link_offsets[0]
    pattern = phrase_regex(disclosure_phrases(policy, page.lang))
    hits = list(pattern.finditer(page.text)) if pattern else []
    evidence = {"links_found": len(page.link_offsets), "first_link_excerpt": page.excerpt(first),
                "language": page.lang or "unknown"}

    def problem(name: str, default: Severity, title: str, **more) -> list[Detected]:
        severity = conf.get("severity", {}).get(name, default)
        return [Detected(partner_id, FindingKind.DISCLOSURE, f"disclosure.{name}", severity, title,
                         {**evidence, **more}, url=url)]

    if not hits:
        return problem("missing", Severity.HIGH, "Tracking link without any disclosure",
                       reason="no disclosure phrase anywhere on the page")
    body_hits = [m for m in hits if not page.in_footer(m.start())]
    if not body_hits:
        m = hits[0]
        return problem("footer_only", Severity.MEDIUM, "Disclosure only in the page footer",
                       disclosure=m.group(0), disclosure_excerpt=page.excerpt(m.start()),
                       reason="the only disclosure is in the footer, far from the link")
    if not any(m.start() <= first + near for m in body_hits):
        m = body_hits[0]
        return problem("late", Severity.MEDIUM, "Disclosure far after the first tracking link",
                       disclosure=m.group(0), disclosure_excerpt=page.excerpt(m.start()),
                       chars_after_first_link=m.start() - first,
                       reason=f"first disclosure comes {m.start() - first} characters after the first link "
                              f"(allowed: {near})")
    return []
