"""The Markdown a person reads in the Prefect UI after each outreach flow."""

from __future__ import annotations

from typing import Any


def _counts(result: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in result.items() if k != "errors")
    return f"| | count |\n|---|---|\n{rows}"


def sequences_markdown(result: dict[str, dict[str, Any]]) -> str:
    lines = ["| sequence | version | changed |", "|---|---|---|"]
    lines += [f"| {name} | {info['version']} | {'yes' if info['changed'] else 'no'} |" for name, info in result.items()]
    return "# Sequences loaded\n\n" + "\n".join(lines)


def enrollment_markdown(sequence: str, result: dict[str, int]) -> str:
    return f"# Enrolled into `{sequence}`\n\n{_counts(result)}"


def send_markdown(result: dict[str, Any]) -> str:
    errors = "".join(f"\n- {e}" for e in result["errors"])
    return f"# Outreach send run\n\n{_counts(result)}\n" + (f"\n## Provider errors{errors}\n" if errors else "")
