"""Web routes: applications."""

from fastapi import APIRouter

router = APIRouter()
