"""Discovery: import candidate partners from CSV, enrich them from their own pages, score them.

Both flows publish an artifact a person reads in the Prefect UI. Enrichment runs one task per
chunk of prospects (not one per prospect); inside a chunk pages are fetched concurrently and
politely, and a page that fails is recorded on its prospect without stopping the run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from partnerflow.settings import get_settings
from partnerflow.tasks.discovery import imports as discovery

_SHOWN = 200  # rows listed in an artifact; the counts always cover everything


@task(name="import-prospects-file")
def _import(csv_path: str, source: str | None) -> dict[str, Any]:
    return discovery.import_file(csv_path, source)


@task(name="enrich-prospects-chunk", retries=1, retry_delay_seconds=10)
def _enrich(prospect_ids: list[int]) -> list[dict[str, Any]]:
    return discovery.enrich_batch(prospect_ids)


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
            lines += [f"| {r['line']} | {_cell(r['reason'])} |" for r in rows[:_SHOWN]]
            if len(rows) > _SHOWN:
                lines.append(f"| … | {len(rows) - _SHOWN} more |")
    return "\n".join(lines)


@flow(name="import-prospects")
def import_prospects(csv_path: str, source: str | None = None) -> dict[str, Any]:
    """Import candidates from a CSV file; bad rows are reported by line, re-imports update."""
    report = _import(csv_path, source)
    create_markdown_artifact(import_markdown(report), key="prospects-import",
                             description="Prospects imported from CSV")
    get_run_logger().info("imported %s rows: %s created, %s updated, %s rejected", report["rows"],
                          report["created"], report["updated"], len(report["errors"]))
    return report


def enrich_markdown(rows: list[dict[str, Any]]) -> str:
    failed = [r for r in rows if r["error"] and r["error"] != "no website"]
    skipped = [r for r in rows if r["error"] == "no website"]
    lines = ["# Prospect enrichment", "", "| | count |", "|---|---|",
             f"| prospects | {len(rows)} |", f"| pages read | {len(rows) - len(failed) - len(skipped)} |",
             f"| pages failed | {len(failed)} |", f"| no website | {len(skipped)} |"]
    if failed:
        lines += ["", "## Failed pages", "", "| prospect | domain | reason |", "|---|---|---|"]
        lines += [f"| #{r['id']} {_cell(r['name'])} | {r['domain']} | {r['error']} |" for r in failed[:_SHOWN]]
    top = sorted(rows, key=lambda r: (-r["score"], r["id"]))[:20]
    if top:
        lines += ["", "## Top candidates", "", "| score | prospect | domain | why |", "|---|---|---|---|"]
        lines += [f"| {r['score']} | #{r['id']} {_cell(r['name'])} | {r['domain']} | "
                  f"{_cell('; '.join(r['reasons']))} |" for r in top]
    return "\n".join(lines)


@flow(name="enrich-prospects")
def enrich_prospects(prospect_ids: list[int] | None = None, limit: int = 500) -> dict[str, Any]:
    """Fetch each prospect's own page, extract contacts and signals, and score the fit.

    Without ids: the oldest `limit` new prospects that were never enriched.
    """
    ids = discovery.prospects_to_enrich(prospect_ids, limit)
    size = max(1, get_settings().discovery.discovery_enrich_chunk_size)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), size):
        rows.extend(_enrich(ids[start:start + size]))
    create_markdown_artifact(enrich_markdown(rows), key="prospects-enrichment",
                             description="Prospect enrichment: failures and top candidates")
    top = sorted(rows, key=lambda r: (-r["score"], r["id"]))[:20]
    create_table_artifact([{"score": r["score"], "prospect": r["id"], "name": r["name"], "domain": r["domain"],
                            "why": "; ".join(r["reasons"])} for r in top],
                          key="prospects-top", description="Top candidates by fit score")
    failures = [{"id": r["id"], "domain": r["domain"], "error": r["error"]} for r in rows
                if r["error"] and r["error"] != "no website"]
    no_site = sum(1 for r in rows if r["error"] == "no website")
    return {"enriched": len(rows) - len(failures) - no_site, "failed": len(failures), "no_website": no_site,
            "failures": failures,
            "top": [{"id": r["id"], "score": r["score"], "domain": r["domain"]} for r in top]}


@task(name="rescore-prospects")
def _rescore(prospect_ids: list[int] | None) -> dict[str, int]:
    return discovery.rescore(prospect_ids)


@flow(name="rescore-prospects")
def rescore_prospects(prospect_ids: list[int] | None = None) -> dict[str, int]:
    """Score prospects again with the current scoring policy, from their stored enrichment."""
    stats = _rescore(prospect_ids)
    create_markdown_artifact(f"# Prospects rescored\n\n{stats['prospects']} scored, {stats['changed']} changed.",
                             key="prospects-rescore")
    return stats
