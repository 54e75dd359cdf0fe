"""The reports stage's tasks."""
