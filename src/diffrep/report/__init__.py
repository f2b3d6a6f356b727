"""Shared plotting and report helpers (matplotlib, Agg backend: files only, no display needed)."""
