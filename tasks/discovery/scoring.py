"""A transparent fit score: every point comes with a reason a person can read and disagree with.

The policy (templates/discovery/scoring_policy.yaml, or PARTNERFLOW_DISCOVERY_SCORING_POLICY) lists the
wanted topics with their keywords and points, audience tiers, and points for enrichment signals.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from unidecode import unidecode

from partnerflow.settings import ConfigError, get_settings


@dataclass
class Topic:
    name: str
    points: int
    keywords: list[str]
    pattern: re.Pattern = field(repr=False, default=None)  # type: ignore[assignment]
    # The folded keywords: a page holding none of them cannot match, and `in` is far cheaper than the regex.
    needles: tuple[str, ...] = field(repr=False, default=())

    def findall(self, haystack: str) -> list[str]:
        if self.needles and not any(needle in haystack for needle in self.needles):
            return []
        return self.pattern.findall(haystack)


@dataclass
class ScoringPolicy:
    topics: list[Topic]
    max_topic_points: int
    audience: list[tuple[int, int]]  # (min, points), highest min first
    signals: dict[str, Any]


def _fold(text: str) -> str:
    """Lowercase ASCII, so "Visualisierung" and "visualización" match plain keywords."""
    return unidecode(text or "").lower()


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"scoring policy: {where} must be a whole number, got {value!r}.")
    return value


def parse_policy(data: dict[str, Any]) -> ScoringPolicy:
    if not isinstance(data, dict):
        raise ConfigError("scoring policy: the file must be a YAML mapping.")
    topics = []
    for name, spec in (data.get("topics") or {}).items():
        if not isinstance(spec, dict) or not spec.get("keywords"):
            raise ConfigError(f"scoring policy: topic {name!r} needs points and a list of keywords.")
        keywords = [str(k) for k in spec["keywords"]]
        words = "|".join(re.escape(_fold(k)) for k in sorted(keywords, key=len, reverse=True))
        # Whole words only; a plural ("KPIs", "dashboards") counts as its keyword.
        pattern = re.compile(rf"(?<![a-z0-9])({words})(?:e?s)?(?![a-z0-9])")
        topics.append(Topic(str(name), _int(spec.get("points"), f"topics.{name}.points"), keywords, pattern,
                            tuple(_fold(k) for k in keywords)))
    audience = sorted(((_int(t.get("min"), "audience.min"), _int(t.get("points"), "audience.points"))
                       for t in data.get("audience") or []), reverse=True)
    signals = dict(data.get("signals") or {})
    for key, value in signals.items():
        if key != "language":
            _int(value, f"signals.{key}")
    return ScoringPolicy(topics, _int(data.get("max_topic_points", 100), "max_topic_points"), audience, signals)


@functools.lru_cache(maxsize=8)
def _load(path: str) -> ScoringPolicy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"PARTNERFLOW_DISCOVERY_SCORING_POLICY: cannot read {path} ({exc.strerror}).") from None
    try:
        return parse_policy(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"scoring policy {path} is not valid YAML ({exc}).") from None


def load_policy() -> ScoringPolicy:
    path = get_settings().discovery.discovery_scoring_policy
    if path is None:
        path = Path(str(resources.files("partnerflow.templates") / "discovery" / "scoring_policy.yaml"))
    return _load(str(path))


def score(prospect: dict[str, Any], enrichment: dict[str, Any] | None,
          policy: ScoringPolicy | None = None) -> tuple[int, list[str]]:
    """(score 0-100, reasons). `prospect` has topics, audience_size, email; `enrichment` the page signals."""
    policy = policy or load_policy()
    page = enrichment or {}
    signals = policy.signals
    reasons: list[str] = []
    total = 0

    haystack = _fold(" ".join([" ; ".join(prospect.get("topics") or []), page.get("title") or "",
                               page.get("description") or "", page.get("text") or ""]))
    topic_points = 0
    for topic in policy.topics:
        found = sorted(set(topic.findall(haystack)))
        if found:
            points = min(topic.points, policy.max_topic_points - topic_points)
            if points <= 0:
                reasons.append(f"+0 topic {topic.name} ({', '.join(found[:3])}; topic cap reached)")
                continue
            topic_points += points
            reasons.append(f"+{points} topic {topic.name} ({', '.join(found[:3])})")
    total += topic_points

    audience = prospect.get("audience_size")
    if audience:
        for minimum, points in policy.audience:
            if audience >= minimum:
                total += points
                reasons.append(f"+{points} audience {audience:,} (at least {minimum:,})")
                break

    def add(key: str, label: str, times: int = 1) -> None:
        nonlocal total
        points = int(signals.get(key, 0)) * times
        if points:
            total += points
            reasons.append(f"{points:+d} {label}")

    if prospect.get("email") or page.get("emails"):
        add("contact_email", "contact email known")
    if page.get("contact_links"):
        add("contact_page", "contact page found")
    profiles = page.get("social") or {}
    if profiles:
        each = int(signals.get("social_profile", 0))
        points = min(each * len(profiles), int(signals.get("max_social_points", each * len(profiles))))
        if points:
            total += points
            reasons.append(f"+{points} social profiles ({', '.join(sorted(profiles))})")
    if page.get("has_affiliate_links"):
        add("affiliate_links", "page already carries affiliate links")
    if page.get("has_disclosure"):
        add("affiliate_disclosure", "page has an affiliate/sponsorship disclosure")
    language = signals.get("language")
    if isinstance(language, dict) and page.get("language") in (language.get("languages") or []):
        points = int(language.get("points", 0))
        if points:
            total += points
            reasons.append(f"+{points} language {page['language']}")
    if page.get("error"):
        add("page_unreachable", f"page unreachable ({page['error']})")

    clamped = max(0, min(100, total))
    if clamped != total:
        reasons.append(f"score {total} clamped to {clamped}")
    return clamped, reasons
