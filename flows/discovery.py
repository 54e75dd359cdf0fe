"""Discovery: import candidate partners from CSV, enrich them from their own pages, score them.

Each flow publishes an artifact a person reads in the Prefect UI. Enrichment runs one task per
chunk of prospects (not one per prospect); inside a chunk pages are fetched concurrently and
politely, and a page that fails is recorded on its prospect without stopping the run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from partnerflow.settings import get_settings
from partnerflow.tasks.discovery.enrichment import enrich_chunk, prospects_to_enrich, rescore_task
from partnerflow.tasks.discovery.imports import import_file_task
from partnerflow.tasks.discovery.reports import (
    enrich_markdown,
    enrich_summary,
    import_markdown,
    rescore_markdown,
    top_table,
)


@flow(name="import-prospects")
def import_prospects(csv_path: str, source: str | None = None) -> dict[str, Any]:
    """Import candidates from a CSV file; bad rows are reported by line, re-imports update."""
    report = import_file_task(csv_path, source)
    create_markdown_artifact(import_markdown(report), key="prospects-import",
                             description="Prospects imported from CSV")
    get_run_logger().info("imported %s rows: %s created, %s updated, %s rejected", report["rows"],
                          report["created"], report["updated"], len(report["errors"]))
    return report


@flow(name="enrich-prospects")
def enrich_prospects(prospect_ids: list[int] | None = None, limit: int = 500) -> dict[str, Any]:
    """Fetch each prospect's own page, extract contacts and signals, and score the fit.

    Without ids: the oldest `limit` new prospects that were never enriched.
    """
    ids = prospects_to_enrich(prospect_ids, limit)
    size = max(1, get_settings().discovery.discovery_enrich_chunk_size)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), size):
        rows.extend(enrich_chunk(ids[start:start + size]))
    create_markdown_artifact(enrich_markdown(rows), key="prospects-enrichment",
                             description="Prospect enrichment: failures and top candidates")
    create_table_artifact(top_table(rows), key="prospects-top", description="Top candidates by fit score")
    return enrich_summary(rows)


@flow(name="rescore-prospects")
def rescore_prospects(prospect_ids: list[int] | None = None) -> dict[str, int]:
    """Score prospects again with the current scoring policy, from their stored enrichment."""
    stats = rescore_task(prospect_ids)
    create_markdown_artifact(rescore_markdown(stats), key="prospects-rescore")
    return stats
