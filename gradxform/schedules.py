"""Schedules (placeholder, being written)."""
