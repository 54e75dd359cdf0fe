"""The reports' money path stays free of floats (only the chart module draws with them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONEY = sorted(p.name for p in (ROOT / "tasks" / "reports").glob("*.py") if p.name != "charts.py")


def floats_in(source: str) -> list[int]:
    """Lines with a float literal or a float() call."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if (isinstance(node, ast.Constant) and isinstance(node.value, float))
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float")]


def test_the_scan_finds_floats():
    assert floats_in("a = 0.5\nb = float('1')\nc = 1\n") == [1, 2]


def test_the_reports_money_path_is_found():
    assert {"fx.py", "figures.py", "aggregates.py", "exports.py", "summary.py", "weekly.py"} <= set(MONEY)


@pytest.mark.parametrize("name", MONEY)
def test_no_float_in_the_reports(name):
    assert floats_in((ROOT / "tasks" / "reports" / name).read_text()) == []
