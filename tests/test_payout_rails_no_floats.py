"""The payout rails and their reconciliation carry amounts: no float may appear in them either."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_no_floats import float_uses

ROOT = Path(__file__).resolve().parent.parent
RAIL_MODULES = ["providers/payout/sepa.py", "providers/payout/stripe.py", "providers/payout/paypal.py",
                "tasks/payout_rails.py", "web/payout_webhooks.py"]


@pytest.mark.parametrize("path", RAIL_MODULES)
def test_no_float_in_the_rails(path):
    assert float_uses((ROOT / path).read_text()) == []
