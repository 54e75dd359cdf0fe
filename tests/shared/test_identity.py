"""Normalised identities: the same person or site written differently must compare equal."""

import pytest

from partnerflow.tasks.shared.identity import normalise_domain, normalise_email


@pytest.mark.parametrize(
    "given, expected",
    [
        ("https://www.Example.com:443/shop?x=1", "example.com"),
        ("HTTP://WWW.EXAMPLE.COM", "example.com"),
        ("example.com/blog/post", "example.com"),
        ("jane@www.example.com", "example.com"),
        ("mailto:jane@example.com", "example.com"),
        ("http://user:pw@blog.example.co.uk:8080/", "blog.example.co.uk"),
        ("https://Bücher.de", "xn--bcher-kva.de"),
        ("", ""),
        ("   ", ""),
        (None, ""),
        ("not a url at all", ""),
    ],
)
def test_normalise_domain(given, expected):
    assert normalise_domain(given) == expected


@pytest.mark.parametrize(
    "given, expected",
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("Jane Doe <jane@EXAMPLE.com>", "jane@example.com"),
        ("mailto:hello@bücher.de?subject=hi", "hello@xn--bcher-kva.de"),
        ("no-at-sign.example.com", None),
        ("jane@localhost", None),
        ("two words@example.com", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_email(given, expected):
    assert normalise_email(given) == expected


def test_dedup_domain_ignores_shared_platforms_and_free_mailboxes():
    from partnerflow.tasks.shared.identity import dedup_domain

    assert dedup_domain("https://www.instagram.com/jane", "jane@gmail.com") == ""
    assert dedup_domain("https://www.instagram.com/jane", "jane@janebakes.com") == "janebakes.com"
    assert dedup_domain("https://janebakes.com/about", "jane@gmail.com") == "janebakes.com"
    assert dedup_domain("", "Jane@Studio.Example") == "studio.example"
