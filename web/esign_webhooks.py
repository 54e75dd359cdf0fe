"""Web routes: esign_webhooks."""

from fastapi import APIRouter

router = APIRouter()
