"""Web routes: webhooks."""

from fastapi import APIRouter

router = APIRouter()
