"""Deployments: discovery (manual import from CSV, enrichment and scoring, rescoring)."""

from __future__ import annotations


def deployments() -> list:
    """RunnerDeployments served by `partnerflow up`."""
    from prefect.deployments.runner import EntrypointType

    from partnerflow.flows.discovery import (
        enrich_prospects,
        import_prospects,
        rescore_prospects,
    )

    return [
        import_prospects.to_deployment(
            name="import-prospects",
            description="Import candidate partners from a CSV file on the server (csv_path); "
                        "bad rows are reported by line, a re-import updates.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        enrich_prospects.to_deployment(
            name="enrich-prospects",
            description="Fetch each new prospect's own page (politely), extract contacts and signals, "
                        "and score the fit with reasons.",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        rescore_prospects.to_deployment(
            name="rescore-prospects",
            description="Score prospects again after editing the scoring policy (no page is fetched).",
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]
