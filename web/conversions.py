"""Web routes: conversions."""

from fastapi import APIRouter

router = APIRouter()
