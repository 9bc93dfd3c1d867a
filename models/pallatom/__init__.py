"""Pallatom: sparse windowed atom transformers and their losses."""
