"""Hostile input never crashes discovery: arbitrary bytes, markup and identities."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partnerflow.tasks.discovery.csvfile import ImportFileError, parse_file
from partnerflow.tasks.discovery.enrich import extract
from partnerflow.tasks.discovery.imports import dedupe_in_file
from partnerflow.tasks.shared.identity import (
    dedup_domain,
    normalise_domain,
    normalise_email,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_either_parse_or_give_one_clear_file_error(raw):
    try:
        parsed = parse_file(raw)
    except ImportFileError as exc:
        assert str(exc)
        return
    dedupe_in_file(parsed)
    lines = [e["line"] for e in parsed.errors]
    assert lines == sorted(lines) and all(isinstance(line, int) and line >= 2 for line in lines)


@FAST
@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=6), max_size=15),
       st.sampled_from([",", ";", "\t", "|"]))
def test_any_rows_under_a_known_header(rows, delimiter):
    lines = [delimiter.join(["Email", "Website", "Name"])] + [delimiter.join(r) for r in rows]
    parsed = parse_file("\n".join(lines).encode("utf-8"))
    for candidate in parsed.candidates:
        assert candidate.email or candidate.website


@FAST
@given(st.text(max_size=3000))
def test_extract_never_raises_on_arbitrary_markup(html):
    info = extract("<html><body>" + html, "https://site.example/")
    assert isinstance(info["emails"], list) and isinstance(info["has_disclosure"], bool)


@FAST
@given(st.text(max_size=200))
def test_identities_never_raise(text):
    domain = normalise_domain(text)
    assert domain == domain.lower() and " " not in domain
    email = normalise_email(text)
    assert email is None or (email.count("@") == 1 and email == email.strip())
    dedup_domain(text, text)
