"""What a person reads in the Prefect UI after each discovery flow, and the enrichment summary."""

from __future__ import annotations

from typing import Any

SHOWN = 200  # rows listed in an artifact; the counts always cover everything
TOP = 20
NO_WEBSITE = "no website"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def import_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Prospects imported from `{report['file']}`", "",
             f"Read as {report['encoding']}, delimiter `{report['delimiter']!s}`"
             .replace("`\t`", "tab"), "",
             "| | count |", "|---|---|",
             f"| rows read | {report['rows']} |", f"| new prospects | {report['created']} |",
             f"| updated | {report['updated']} |", f"| unchanged | {report['unchanged']} |",
             f"| skipped (already partners) | {len(report['skipped'])} |",
             f"| rejected rows | {len(report['errors'])} |"]
    mapped = [f"`{h}` → {f}" for h, f in report["columns"].items() if f]
    kept = [f"`{h}`" for h, f in report["columns"].items() if not f]
    lines += ["", "Columns: " + ", ".join(mapped) + (f"; kept as extra: {', '.join(kept)}" if kept else "")]
    for title, rows in (("Rejected rows", report["errors"]), ("Skipped", report["skipped"]),
                        ("Warnings", report["warnings"])):
        if rows:
            lines += ["", f"## {title}", "", "| line | reason |", "|---|---|"]
            lines += [f"| {r['line']} | {_cell(r['reason'])} |" for r in rows[:SHOWN]]
            if len(rows) > SHOWN:
                lines.append(f"| … | {len(rows) - SHOWN} more |")
    return "\n".join(lines)


def _failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["error"] and r["error"] != NO_WEBSITE]


def _top(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["score"], r["id"]))[:TOP]


def enrich_markdown(rows: list[dict[str, Any]]) -> str:
    failed = _failed(rows)
    skipped = [r for r in rows if r["error"] == NO_WEBSITE]
    lines = ["# Prospect enrichment", "", "| | count |", "|---|---|",
             f"| prospects | {len(rows)} |", f"| pages read | {len(rows) - len(failed) - len(skipped)} |",
             f"| pages failed | {len(failed)} |", f"| no website | {len(skipped)} |"]
    if failed:
        lines += ["", "## Failed pages", "", "| prospect | domain | reason |", "|---|---|---|"]
        lines += [f"| #{r['id']} {_cell(r['name'])} | {r['domain']} | {r['error']} |" for r in failed[:SHOWN]]
    top = _top(rows)
    if top:
        lines += ["", "## Top candidates", "", "| score | prospect | domain | why |", "|---|---|---|---|"]
        lines += [f"| {r['score']} | #{r['id']} {_cell(r['name'])} | {r['domain']} | "
                  f"{_cell('; '.join(r['reasons']))} |" for r in top]
    return "\n".join(lines)


def top_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best candidates as table rows for the Prefect UI."""
    return [{"score": r["score"], "prospect": r["id"], "name": r["name"], "domain": r["domain"],
             "why": "; ".join(r["reasons"])} for r in _top(rows)]


def enrich_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The enrichment flow's result: counts, each failure, and the best candidates."""
    failures = [{"id": r["id"], "domain": r["domain"], "error": r["error"]} for r in _failed(rows)]
    no_site = sum(1 for r in rows if r["error"] == NO_WEBSITE)
    return {"enriched": len(rows) - len(failures) - no_site, "failed": len(failures), "no_website": no_site,
            "failures": failures,
            "top": [{"id": r["id"], "score": r["score"], "domain": r["domain"]} for r in _top(rows)]}


def rescore_markdown(stats: dict[str, int]) -> str:
    return f"# Prospects rescored\n\n{stats['prospects']} scored, {stats['changed']} changed."
