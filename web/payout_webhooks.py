"""Web routes: payout_webhooks."""

from fastapi import APIRouter

router = APIRouter()
