"""Sequence files: load templates/outreach/sequences/<name>/sequence.yaml into versioned rows, and render steps.

A version holds its steps' template sources, so editing the files and reloading makes a
new version while running enrollments keep rendering the version they were enrolled with.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml
from prefect import task
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import session_scope
from partnerflow.models.outreach import Sequence
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.mail import TemplateError

PARTS = ("subject.txt", "body.txt", "body.html")
# Every commercial mail must carry these (CAN-SPAM / RFC 8058); a step without them is refused at load.
REQUIRED_FIELDS = ("unsubscribe_url", "postal_address")


class SequenceError(Exception):
    """A sequence file is malformed; the message names the file and the problem."""


def default_root() -> Path:
    return Path(str(resources.files("partnerflow.templates") / "outreach" / "sequences"))


_text_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html_env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True, keep_trailing_newline=True)


def _sample_context() -> dict[str, Any]:
    prospect = {"id": 0, "name": "Sam Example", "first_name": "Sam", "email": "sam@example.com", "company": "Example",
                "website": "https://example.com", "domain": "example.com", "country": "", "score": 0, "topics": []}
    return base_context(prospect, unsubscribe_url="https://example.invalid/u/sample")


def prospect_context(p: Any) -> dict[str, Any]:
    """What templates see as `prospect`, from a Prospect row (or a row with the same columns)."""
    name = (p.name or "").strip()
    return {"id": p.id, "name": name, "first_name": name.split()[0] if name else "", "email": p.email,
            "company": p.company or "", "website": p.website or "", "domain": p.domain or "",
            "country": p.country or "", "score": p.score or 0, "topics": list(p.topics or [])}


def base_context(prospect: dict[str, Any], *, unsubscribe_url: str, sender_name: str | None = None,
                 sender_email: str | None = None) -> dict[str, Any]:
    settings = get_settings()
    base = settings.public_base_url.rstrip("/")
    return {
        "prospect": prospect,
        "company_name": settings.company_name,
        "sender_name": sender_name or settings.mail.sender_name,
        "sender_email": sender_email or settings.mail.sender_email,
        "postal_address": settings.mail.postal_address,
        "public_base_url": base,
        "apply_url": f"{base}/apply",
        "unsubscribe_url": unsubscribe_url,
    }


def read_sequence_dir(folder: Path) -> dict[str, Any]:
    """Parse and validate one sequence folder into its stored definition."""
    spec_path = folder / "sequence.yaml"
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SequenceError(f"{spec_path}: not valid YAML ({exc})") from None
    steps_in = spec.get("steps") if isinstance(spec, dict) else None
    if not isinstance(steps_in, list) or not steps_in:
        raise SequenceError(f"{spec_path}: needs a non-empty list `steps`")
    steps = []
    for number, step in enumerate(steps_in, start=1):
        if not isinstance(step, dict) or not step.get("template"):
            raise SequenceError(f"{spec_path}: step {number} needs `template`")
        try:
            delay = float(step.get("delay_days", 0))
        except (TypeError, ValueError):
            raise SequenceError(f"{spec_path}: step {number} has a delay_days that is not a number") from None
        if delay < 0:
            raise SequenceError(f"{spec_path}: step {number} has a negative delay_days")
        sources = {}
        for part in PARTS:
            path = folder / step["template"] / part
            if not path.exists():
                raise SequenceError(f"{path} does not exist (every step needs {', '.join(PARTS)})")
            sources[part] = path.read_text(encoding="utf-8")
        condition = step.get("condition")
        if condition is not None:
            try:
                _text_env.compile_expression(str(condition))
            except jinja2.TemplateSyntaxError as exc:
                raise SequenceError(f"{spec_path}: step {number} condition: {exc.message}") from None
            condition = str(condition)
        steps.append({"template": step["template"], "delay_days": delay, "condition": condition,
                      "sources": sources})
    sender = spec.get("sender") or {}
    definition = {"name": folder.name, "description": spec.get("description", ""), "steps": steps,
                  "sender": {"name": sender.get("name"), "email": sender.get("email")}}
    # Fail at load, before anything is sent: syntax errors, unknown merge fields, missing footer.
    sample = _sample_context()
    for index, step in enumerate(steps):
        for part in ("body.txt", "body.html"):
            if not all(field in step["sources"][part] for field in REQUIRED_FIELDS):
                raise SequenceError(f"{folder.name}/{step['template']}/{part} must show "
                                    f"{{{{ unsubscribe_url }}}} and {{{{ postal_address }}}} (commercial mail)")
        render_step(definition, index, sample)
    return definition


def definition_hash(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _compiled(digest: str, index: int, part: str, source: str) -> jinja2.Template:
    env = _html_env if part.endswith(".html") else _text_env
    return env.from_string(source)


@dataclass
class RenderedStep:
    subject: str
    text: str
    html: str


def render_step(definition: dict[str, Any], index: int, context: dict[str, Any]) -> RenderedStep:
    """Render one step; a missing merge field raises TemplateError naming the template and field."""
    step = definition["steps"][index]
    digest = definition.get("_hash") or definition_hash(definition)
    out = {}
    for part in PARTS:
        name = f"sequences/{definition['name']}/{step['template']}/{part}"
        try:
            out[part] = _compiled(digest, index, part, step["sources"][part]).render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from None
    return RenderedStep(subject=" ".join(out["subject.txt"].split()), text=out["body.txt"], html=out["body.html"])


@functools.lru_cache(maxsize=256)
def _condition(source: str):
    return _text_env.compile_expression(source)


def step_applies(definition: dict[str, Any], index: int, prospect: dict[str, Any]) -> bool:
    condition = definition["steps"][index].get("condition")
    if not condition:
        return True
    try:
        return bool(_condition(condition)(prospect=prospect))
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"sequence {definition['name']} step {index + 1} condition: {exc.message}") from None


def step_delay(definition: dict[str, Any], index: int) -> timedelta:
    return timedelta(days=definition["steps"][index]["delay_days"])


def latest_version(session: Session, name: str) -> Sequence | None:
    return session.exec(select(Sequence).where(Sequence.name == name).order_by(Sequence.version.desc())).first()


def load_sequence_files(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Load every sequence folder under `root`; returns {name: {version, changed}}. Raises SequenceError."""
    root = Path(root) if root else default_root()
    folders = sorted(p.parent for p in root.glob("*/sequence.yaml"))
    definitions = [read_sequence_dir(folder) for folder in folders]  # all valid before any is stored
    result: dict[str, dict[str, Any]] = {}
    for definition in definitions:
        digest = definition_hash(definition)
        for _attempt in range(3):
            with session_scope() as session:
                current = latest_version(session, definition["name"])
                if current and current.definition_hash == digest:
                    result[definition["name"]] = {"version": current.version, "changed": False}
                    break
                version = (current.version + 1) if current else 1
                session.add(Sequence(name=definition["name"], version=version, definition_hash=digest,
                                     definition=definition))
                try:
                    session.commit()
                except IntegrityError:  # a concurrent load stored this version first: look again
                    session.rollback()
                    continue
                result[definition["name"]] = {"version": version, "changed": True}
                break
    return result


@task(name="load-sequence-files")
def load_sequences_task(root: str | None) -> dict[str, dict[str, Any]]:
    return load_sequence_files(Path(root) if root else None)
