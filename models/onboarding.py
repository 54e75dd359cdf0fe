"""Tables: onboarding (see the owning area)."""

from __future__ import annotations
