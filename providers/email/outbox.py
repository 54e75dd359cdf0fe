"""The embedded email provider: one RFC 5322 .eml file per message in the outbox folder."""

from __future__ import annotations

import email.policy
import email.utils
import os
from email.message import EmailMessage
from pathlib import Path

from partnerflow.providers.email.base import EmailProvider, OutgoingEmail, SendOutcome
from partnerflow.providers.email.settings import MailSettings


def build_mime(settings: MailSettings, item: OutgoingEmail) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    sender = item.from_email or settings.sender_email
    msg["From"] = email.utils.formataddr((item.from_name or settings.sender_name, sender))
    msg["To"] = item.to
    msg["Subject"] = item.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    domain = sender.rsplit("@", 1)[-1]
    msg["Message-ID"] = f"<{item.idempotency_key.replace(':', '.')}@{domain}>"
    msg["X-Partnerflow-Message-Id"] = str(item.message_id)
    for name, value in item.headers.items():
        msg[name] = value
    msg.set_content(item.text)
    if item.html:
        msg.add_alternative(item.html, subtype="html")
    for filename, content, mime in item.attachments:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def outbox_filename(idempotency_key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in idempotency_key) + ".eml"


class OutboxProvider(EmailProvider):
    name = "outbox"
    idempotent = True  # one file per idempotency key: a repeat overwrites, never duplicates

    def __init__(self, settings: MailSettings):
        self.settings = settings
        self.folder = Path(settings.outbox_dir)

    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        self.folder.mkdir(parents=True, exist_ok=True)
        outcomes = []
        for item in emails:
            path = self.folder / outbox_filename(item.idempotency_key)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(build_mime(self.settings, item).as_bytes())
            os.replace(tmp, path)  # atomic: a reader never sees half a message
            outcomes.append(SendOutcome(item.message_id, provider_message_id=path.name))
        return outcomes

    def lookup(self, idempotency_key: str) -> str | None:
        path = self.folder / outbox_filename(idempotency_key)
        return path.name if path.exists() else None
