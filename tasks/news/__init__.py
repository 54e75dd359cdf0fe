"""The news stage's tasks."""
