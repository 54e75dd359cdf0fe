"""Text from outside (an applicant's name, a partner's page) shown in a Markdown approval form.

The Prefect UI renders the description as Markdown: an applicant could otherwise add links, images
(fetched by the reviewer's browser), headings, fake table rows or HTML to the page a person decides on.
"""

from __future__ import annotations

import re

# Inline specials only: the text never starts a line, so block markers (#, -, +, 1.) cannot take effect.
# ":" breaks bare-URL autolinks; "<", ">" and "&" keep HTML and entities out.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|<>~&:])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def md_text(value: object, limit: int = 300) -> str:
    """`value` as literal text on one line: every Markdown and HTML character escaped, at most `limit` chars."""
    text = _LINE_BREAKS.sub(" ", "" if value is None else str(value))
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > limit:
        text = text[:limit] + "…"
    return _SPECIAL.sub(r"\\\1", text)
