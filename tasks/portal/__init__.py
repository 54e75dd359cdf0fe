"""The portal stage's tasks."""
