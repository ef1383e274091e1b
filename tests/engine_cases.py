"""Small costs and clusters with round numbers, shared by the engine tests."""

from __future__ import annotations

import math

import pandas as pd

from models import catalog
from models.compute import LAYER_TIME_COLUMNS
from models.hardware import ClusterSpec, LinkSpec
from simulator.costs import Costs


def layer_table(layers: int = 4, forward_s: float = 0.01, backward_s: float = 0.02,
                update_s: float = 0.001, gradient_bytes: float = 10 * 2**20) -> pd.DataFrame:
    rows = [{"name": f"layer{i}", "kind": "linear", "forward_s": forward_s,
             "backward_input_s": backward_s / 2, "backward_weight_s": backward_s / 2,
             "update_s": update_s, "gradient_bytes": gradient_bytes} for i in range(layers)]
    return pd.DataFrame(rows, columns=list(LAYER_TIME_COLUMNS))


def cluster(nodes: int = 2, gpus_per_node: int = 4, gpu: str = "v100-sxm2") -> ClusterSpec:
    inter = "ib-ndr" if nodes > 1 else None
    intra = "nvlink2" if gpu in ("v100-sxm2", "p100-sxm2") else "nvlink4"
    return catalog.cluster(gpu, nodes, gpus_per_node, intra, inter)


def costs(nodes: int = 2, gpus_per_node: int = 4, **layers) -> Costs:
    return Costs.from_layer_times(layer_table(**layers), cluster(nodes, gpus_per_node),
                                  batch_per_gpu=32)


def ideal_link(name: str = "ideal", bandwidth_Bps: float = 1e15, latency_s: float = 0.0
               ) -> LinkSpec:
    """A link fast enough to take communication out of a queueing test."""
    return LinkSpec(id=name, name=name, transport="nvlink", bandwidth_Bps=bandwidth_Bps,
                    latency_s=latency_s, efficiency=1.0, source="test")


def harmonic(n: int) -> float:
    return math.fsum(1.0 / k for k in range(1, n + 1))


class ScriptedFailures:
    """A straggler model whose only event is one failure of one worker."""

    def __init__(self, worker: int, at_s: float, restart_s: float):
        self.worker, self.at_s, self.restart_s = worker, at_s, restart_s

    def clock(self, worker: int, seed: int):
        return _ScriptedClock(self.at_s if worker == self.worker else math.inf,
                              self.restart_s)


class _ScriptedClock:
    def __init__(self, at_s: float, restart_s: float):
        self.at_s, self.restart_s = at_s, restart_s

    def compute_time_s(self, start_s: float, base_s: float) -> float:
        return base_s

    def next_failure_s(self, after_s: float) -> float:
        return self.at_s if after_s <= self.at_s else math.inf
