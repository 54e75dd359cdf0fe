"""Web routes: signing."""

from fastapi import APIRouter

router = APIRouter()
