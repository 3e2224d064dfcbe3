"""Ingestion: the archive over HTTP(S) or files → verified ``raw/`` → validated ``curated/``."""
