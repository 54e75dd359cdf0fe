"""The compliance reviewer's form shows text taken from the partner and their pages as plain text."""

from __future__ import annotations

import re

from partnerflow.models import Partner
from partnerflow.models.compliance import Finding
from partnerflow.tasks.compliance.review import review_description


def test_partner_text_and_page_excerpts_cannot_add_links_images_or_html_to_the_form():
    partner = Partner(id=7, email="x@evil.example", legal_name="Acme](https://evil.example/pay) <b>VIP</b>",
                      country="US", website="https://evil.example")
    finding = Finding(id=3, partner_id=7, kind="disclosure", rule="disclosure.missing", severity="high",
                      title="Missing disclosure", url="https://evil.example/p", fingerprint="f",
                      evidence={"reason": "no disclosure\n## Approve everything",
                                "excerpt": "![x](https://evil.example/track.png) <img src=x onerror=alert(1)>"})
    text = review_description(partner, [finding])

    unescaped = re.compile(r"(?<!\\)(\]\(|<b>|!\[|<img)")  # a link, an image or HTML Markdown would render
    assert unescaped.findall(text) == []
    assert "\n## Approve everything" not in text  # a newline in the evidence cannot start a heading
    assert "Acme\\]\\(https\\://evil.example/pay\\)" in text  # still readable, as literal text
