"""No float anywhere in the money path: an AST scan of the modules that touch amounts and rates.

Flags float literals (1.5, 1e3), float(...) calls, and the math module (floating point functions).
`isinstance(x, float)` — used to REFUSE floats — is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every module of the payouts stage, the payout rails, and the shared money and terms.
MONEY_PATH = sorted(
    str(path.relative_to(ROOT))
    for pattern in ("flows/payouts*.py", "tasks/payouts/*.py", "web/payouts*.py", "models/payouts.py",
                    "providers/payout/*.py", "tasks/shared/money.py", "tasks/shared/terms.py")
    for path in ROOT.glob(pattern)
    if path.name not in ("http.py", "settings.py")  # timeouts and retry timing in seconds, no amounts
)


def float_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            found.append(f"line {node.lineno}: float literal {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
            found.append(f"line {node.lineno}: float() call")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if "math" in names:
                found.append(f"line {node.lineno}: imports math")
    return found


def test_the_money_path_is_found():
    assert len(MONEY_PATH) >= 15


def test_the_scanner_catches_floats():
    assert len(float_uses("x = 0.1\ny = float('2')\nimport math\nz = isinstance(y, float)\n")) == 3


@pytest.mark.parametrize("path", MONEY_PATH)
def test_no_float_in_money_path(path):
    assert float_uses((ROOT / path).read_text()) == []
