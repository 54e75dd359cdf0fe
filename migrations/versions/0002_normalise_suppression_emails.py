"""normalise suppression addresses: IDNA domain, as tasks.shared.identity does

Suppressed addresses used to be stored only stripped and lowercased, while every lookup now
goes through identity.normalise_email, which also writes the domain in its IDNA (punycode)
form. Without this migration "jane@bücher.de" stored before would no longer match the
"jane@xn--bcher-kva.de" a lookup asks for, and the address could be mailed again.

Two stored spellings of one address become one row: the earliest (by `at`, then id) is kept;
when any of them was a hard bounce, the kept row says so, because a bounce blocks mail of
every kind while other reasons block only commercial mail.

The normalisation is written out here on purpose rather than imported: a migration must
keep doing what it did when it was written, whatever the application code becomes later.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import re

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_EMAIL_RE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")
_BOUNCE = "bounce"

suppression = sa.table(
    "suppression",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("reason", sa.String),
    sa.column("at"),  # as the driver gives it: text on SQLite, a timestamp on PostgreSQL; both sort
)


def _idna(host: str) -> str:
    host = host.strip().strip(".").lower()
    if not host or host.isascii():
        return host
    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii"))
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def _normalise(value: str | None) -> str | None:
    if not value:
        return None
    text = str(value).strip()
    match = re.search(r"<([^<>]+)>", text)
    if match:
        text = match.group(1).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].split("?", 1)[0]
    text = text.strip().strip(".")
    if not _EMAIL_RE.match(text):
        return None
    local, _, domain = text.rpartition("@")
    domain = _idna(domain)
    if not domain or "." not in domain:
        return None
    return f"{local.lower()}@{domain}"


def email_key(value: str | None) -> str:
    """The stored form: the normalised address, or the value stripped and lowercased."""
    return _normalise(value) or (value or "").strip().lower()


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(suppression.c.id, suppression.c.email, suppression.c.reason,
                                  suppression.c.at)).all()
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(email_key(row.email), []).append(row)
    for address, spellings in groups.items():
        spellings.sort(key=lambda r: (r.at is None, r.at, r.id))
        kept, merged = spellings[0], spellings[1:]
        if merged:
            bind.execute(sa.delete(suppression).where(suppression.c.id.in_([r.id for r in merged])))
        values = {}
        if kept.email != address:
            values["email"] = address
        if kept.reason != _BOUNCE and any(r.reason == _BOUNCE for r in merged):
            values["reason"] = _BOUNCE
        if values:
            bind.execute(sa.update(suppression).where(suppression.c.id == kept.id).values(**values))


def downgrade() -> None:
    """Nothing to undo: the normalised addresses are valid under the old rule too."""
