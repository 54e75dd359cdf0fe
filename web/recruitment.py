"""Web routes: recruitment."""

from fastapi import APIRouter

router = APIRouter()
