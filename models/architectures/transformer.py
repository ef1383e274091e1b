"""Transformer workloads."""

BUILDERS: dict = {}
