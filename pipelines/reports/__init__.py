"""Evidently reports: feature drift, live classification quality, and where they are stored."""
