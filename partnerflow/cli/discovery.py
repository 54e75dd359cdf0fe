"""CLI commands: discovery."""

from __future__ import annotations

from partnerflow.cli import app  # noqa: F401
