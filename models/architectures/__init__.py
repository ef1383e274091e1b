"""Builders of per-layer workload descriptions, one module per model family."""
