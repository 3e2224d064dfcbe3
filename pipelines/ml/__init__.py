"""Curated bars → dataset → model → MLflow registry → Bento (through the packaging adapter)."""
