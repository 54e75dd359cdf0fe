"""Serve every deployment from one process (started by `partnerflow up`)."""

from __future__ import annotations

from prefect import serve

from partnerflow.deployments import all_deployments


def main() -> None:
    deployments = all_deployments()
    if not deployments:
        raise SystemExit("no deployments to serve")
    serve(*deployments, limit=8)


if __name__ == "__main__":
    main()
