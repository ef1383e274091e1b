"""Catalog listings as DataFrames, for the CLI and notebooks."""

from __future__ import annotations

import pandas as pd

from models import catalog
from models.errors import require_choice

CATALOGS = ("gpus", "links", "workloads", "frameworks")


def catalog_table(what: str) -> pd.DataFrame:
    require_choice("catalog", what, CATALOGS)
    if what == "gpus":
        return pd.DataFrame([
            {
                "id": g.id,
                "name": g.name,
                "precisions": " ".join(g.precisions),
                "fp32_TFLOPs": g.vector_flops_per_s.get("fp32", float("nan")) / 1e12,
                "best_matrix_TFLOPs": max(g.matrix_flops_per_s.values()) / 1e12,
                "mem_GBps": g.memory_bandwidth_Bps / 1e9,
                "mem_GB": g.memory_bytes / 1e9,
                "usd_per_hour": g.price_usd_per_hour,
                "price_date": g.price_date,
            }
            for g in catalog.gpus().values()
        ])
    if what == "links":
        return pd.DataFrame([
            {
                "id": link.id,
                "name": link.name,
                "transport": link.transport,
                "GBps_per_direction": link.bandwidth_Bps / 1e9,
                "latency_us": link.latency_s * 1e6,
                "efficiency": link.efficiency,
            }
            for link in catalog.links().values()
        ])
    if what == "frameworks":
        from models.compute import iteration_overheads_s
        from models.frameworks import FRAMEWORKS

        overheads_s = iteration_overheads_s()
        return pd.DataFrame([
            {
                "id": f.id,
                "name": f.name,
                "fusion": " ".join([*(f"{p}:{level}" for p, level
                                      in sorted(f.fusion_by_precision.items())),
                                    ("otherwise:" if f.fusion_by_precision else "")
                                    + f.default_fusion]),
                "channels_last": " ".join(f.channels_last_precisions),
                "iteration_overhead_ms": overheads_s.get(f.id, 0.0) * 1e3,
                "source": f.source,
            }
            for f in FRAMEWORKS.values()
        ])
    from models.workloads import workloads

    return pd.DataFrame([
        {
            "id": w.id,
            "name": w.name,
            "task": w.task,
            "params_M": w.params / 1e6,
            "fwd_GFLOP_per_sample": w.forward_flops_per_sample / 1e9,
            "dataset": w.dataset,
            "samples": w.dataset_samples,
        }
        for w in workloads().values()
    ])
