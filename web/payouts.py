"""Web routes: conversion intake. `POST /api/conversions` with the source's key in `X-API-Key`.

Body: one conversion object, or {"conversions": [...]}. Re-sending a conversion changes nothing.
Besides the sale itself a conversion may carry `click_id` (the pf_click value the landing page received),
`clicked_at` and `customer_email` (stored only as keyed hashes): see tasks/payouts/conversions.py.
Answers 401 for a missing or unknown key, 422 when nothing in the body was acceptable, else 200
with the report (created, duplicates, unattributed, errors by index).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.tasks.payouts.conversions import ingest, source_for_key

router = APIRouter()

MAX_RECORDS = 5000


@router.post("/api/conversions")
async def post_conversions(request: Request, x_api_key: str | None = Header(default=None)) -> Any:
    source = await run_in_threadpool(source_for_key, x_api_key)
    if source is None:
        raise HTTPException(status_code=401, detail="missing or unknown X-API-Key")
    try:
        # A bare JSON number with a decimal point arrives as a float; the intake refuses it by name.
        body = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise HTTPException(status_code=400, detail="the body is not JSON") from None
    records = body.get("conversions") if isinstance(body, dict) and "conversions" in body else [body]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise HTTPException(status_code=400, detail="send one conversion object or {\"conversions\": [objects]}")
    if len(records) > MAX_RECORDS:
        raise HTTPException(status_code=413, detail=f"at most {MAX_RECORDS} conversions per request")
    report = await run_in_threadpool(ingest, list(enumerate(records)), source)
    result = report.as_dict()
    result["errors"] = [{"index": e["line"], "error": e["error"]} for e in result["errors"]]
    status = 422 if report.errors and not (report.created or report.duplicates) else 200
    return JSONResponse(result, status_code=status)
