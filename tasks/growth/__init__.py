"""The growth stage's tasks."""
