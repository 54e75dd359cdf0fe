"""Tables: sequences (see the owning area)."""

from __future__ import annotations
