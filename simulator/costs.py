"""Every duration the engine plays out, taken from the cost models of :mod:`models`.

:class:`Costs` is the engine's only door to ``models/``: per-layer compute times
(:func:`models.compute.layer_times`), gradient buckets built from them, and the
collective, parameter-server and gossip costs of :mod:`models.collectives`. It holds no
formula of its own beyond sums and prefix sums of the per-layer table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from models import collectives
from models.compute import LAYER_TIME_COLUMNS, compute_constants, layer_times
from models.errors import ConfigError, require_int, require_number
from models.frameworks import DEFAULT_FRAMEWORK
from models.hardware import ClusterSpec
from models.workloads import Workload
from models.workloads import workload as workload_by_id

#: Scenario names of the all-reduce algorithms and the names :mod:`models.collectives`
#: gives them.
COLLECTIVES = {
    "auto": "auto",
    "ring": "ring",
    "tree": "tree",
    "rhd": "recursive_halving_doubling",
    "hierarchical": "hierarchical",
    "nvls": "nvls",
}

#: PyTorch DDP's ``bucket_cap_mb`` counts mebibytes.
BYTES_PER_MB = 2**20


@dataclass(frozen=True)
class Bucket:
    """Gradients all-reduced together: ``layers`` (forward indices) in backward order."""

    size_bytes: float
    #: From the start of the iteration, nominal compute: when the backward pass has
    #: produced the last of this bucket's gradients.
    ready_s: float
    layers: tuple[int, ...]


def _readonly(values: Any) -> np.ndarray:
    array = np.array(values, dtype=float)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Costs:
    """Nominal per-iteration costs of one workload on one cluster.

    Build with :meth:`from_models`; :meth:`from_layer_times` takes a table with the
    columns of :data:`models.compute.LAYER_TIME_COLUMNS` directly (measured profiles,
    closed-form test cases).
    """

    workload_id: str
    cluster: ClusterSpec
    batch_per_gpu: int
    precision: str
    layer_names: tuple[str, ...]
    forward_s: np.ndarray = field(repr=False, compare=False)
    backward_s: np.ndarray = field(repr=False, compare=False)
    update_s: np.ndarray = field(repr=False, compare=False)
    gradient_bytes: np.ndarray = field(repr=False, compare=False)
    #: The framework's host time per step, already inside the first layer's forward
    #: (:func:`models.compute.layer_times`); recorded so that results can say it.
    host_overhead_s: float = 0.0

    # ----------------------------------------------------------------------------------
    # construction

    @classmethod
    def from_models(cls, workload: Workload | str, cluster: ClusterSpec, batch_per_gpu: int,
                    precision: str, calibration: Any = "auto",
                    framework: str = DEFAULT_FRAMEWORK) -> Costs:
        """Per-layer times from :func:`models.compute.layer_times` for ``cluster.gpu``
        under ``framework`` (:data:`models.frameworks.FRAMEWORKS`)."""
        if isinstance(workload, str):
            workload = workload_by_id(workload)
        if not isinstance(workload, Workload):
            raise ConfigError("workload", workload, "a models.workloads.Workload or its id")
        if not isinstance(cluster, ClusterSpec):
            raise ConfigError("cluster", cluster, "a models.hardware.ClusterSpec")
        require_int("workload.batch_per_gpu", batch_per_gpu, minimum=1)
        cluster.gpu.check_precision(precision, "workload.precision")
        constants = compute_constants(cluster.gpu, calibration)
        table = layer_times(workload, cluster.gpu, batch_per_gpu, precision, constants,
                            framework=framework)
        costs = cls.from_layer_times(table, cluster, batch_per_gpu, precision,
                                     workload_id=workload.id)
        return replace(costs,
                       host_overhead_s=constants.iteration_overhead_s.get(framework, 0.0))

    @classmethod
    def from_layer_times(cls, table: pd.DataFrame, cluster: ClusterSpec, batch_per_gpu: int,
                         precision: str = "fp32", workload_id: str = "custom") -> Costs:
        missing = [c for c in LAYER_TIME_COLUMNS if c not in table]
        if missing:
            raise ConfigError("layer_times", list(table.columns),
                              f"columns {', '.join(LAYER_TIME_COLUMNS)} (missing {missing})")
        if len(table) == 0:
            raise ConfigError("layer_times", 0, "at least one layer")
        require_int("workload.batch_per_gpu", batch_per_gpu, minimum=1)
        numeric = table[["forward_s", "backward_input_s", "backward_weight_s", "update_s",
                         "gradient_bytes"]].to_numpy(dtype=float)
        if not np.all(np.isfinite(numeric)) or np.any(numeric < 0):
            raise ConfigError("layer_times", "negative or non-finite entries",
                              "finite non-negative times and sizes")
        return cls(
            workload_id=workload_id,
            cluster=cluster,
            batch_per_gpu=batch_per_gpu,
            precision=precision,
            layer_names=tuple(str(name) for name in table["name"]),
            forward_s=_readonly(numeric[:, 0]),
            backward_s=_readonly(numeric[:, 1] + numeric[:, 2]),
            update_s=_readonly(numeric[:, 3]),
            gradient_bytes=_readonly(numeric[:, 4]),
        )

    # ----------------------------------------------------------------------------------
    # compute

    @property
    def workers(self) -> int:
        return self.cluster.world_size

    @property
    def forward_total_s(self) -> float:
        return float(self.forward_s.sum())

    @property
    def backward_total_s(self) -> float:
        return float(self.backward_s.sum())

    @property
    def gradient_compute_s(self) -> float:
        """Forward plus backward: the part of an iteration that yields a gradient."""
        return self.forward_total_s + self.backward_total_s

    @property
    def update_total_s(self) -> float:
        """Optimizer update over all parameters on one GPU."""
        return float(self.update_s.sum())

    @property
    def iteration_compute_s(self) -> float:
        """Forward, backward and update on one GPU (with the framework's host time per
        step), no communication."""
        return self.gradient_compute_s + self.update_total_s

    @property
    def model_bytes(self) -> float:
        """Bytes of one full gradient (and of the fp32 parameters a worker pulls)."""
        return float(self.gradient_bytes.sum())

    @property
    def single_gpu_throughput_samples_per_s(self) -> float:
        """One GPU alone, compute only: the reference of scaling efficiency."""
        return self.batch_per_gpu / self.iteration_compute_s

    def buckets(self, bucket_mb: float) -> tuple[Bucket, ...]:
        """Gradient buckets as PyTorch DDP forms them: layers in reverse order, a bucket
        closed once it holds at least ``bucket_mb`` MiB. A bucket is ready when the
        backward pass has finished the last (lowest-index) layer in it; the last bucket
        is ready when the backward pass ends."""
        require_number("algorithm.bucket_mb", bucket_mb, minimum=0.0, exclusive_minimum=True)
        cap = bucket_mb * BYTES_PER_MB
        # Backward runs from the last layer down; prefix[i] is when layer i is done.
        done_s = self.forward_total_s + np.cumsum(self.backward_s[::-1])[::-1]
        buckets: list[Bucket] = []
        members: list[int] = []
        size = 0.0
        for index in range(len(self.layer_names) - 1, -1, -1):
            if self.gradient_bytes[index] <= 0:
                continue
            members.append(index)
            size += float(self.gradient_bytes[index])
            if size >= cap:
                buckets.append(Bucket(size, float(done_s[index]), tuple(members)))
                members, size = [], 0.0
        if members:
            buckets.append(Bucket(size, float(done_s[members[-1]]), tuple(members)))
        if buckets:
            last = buckets[-1]
            buckets[-1] = Bucket(last.size_bytes, self.gradient_compute_s, last.layers)
        return tuple(buckets)

    # ----------------------------------------------------------------------------------
    # communication (models.collectives)

    def allreduce_time_s(self, size_bytes: float, collective: str = "auto") -> float:
        if collective not in COLLECTIVES:
            raise ConfigError("algorithm.collective", collective,
                              "one of " + ", ".join(COLLECTIVES))
        try:
            return collectives.allreduce_time_s(size_bytes, self.cluster,
                                                COLLECTIVES[collective])
        except ConfigError as error:
            if error.field != "algorithm":
                raise
            raise ConfigError("algorithm.collective", collective, error.valid) from None

    def ps_push_time_s(self, size_bytes: float, servers: int, dedicated: bool) -> float:
        """All workers push at once (closed form, no flow-level contention)."""
        return collectives.ps_push_time_s(size_bytes, self.cluster, servers,
                                          dedicated_servers=dedicated)

    def ps_pull_time_s(self, size_bytes: float, servers: int, dedicated: bool) -> float:
        return collectives.ps_pull_time_s(size_bytes, self.cluster, servers,
                                          dedicated_servers=dedicated)

    def gossip_exchange_time_s(self, size_bytes: float) -> float:
        return collectives.gossip_exchange_time_s(size_bytes, self.cluster)

    def describe(self) -> dict[str, Any]:
        """What the result's meta records about the costs."""
        cluster = self.cluster
        return {
            "workload": self.workload_id,
            "batch_per_gpu": self.batch_per_gpu,
            "precision": self.precision,
            "gpu": cluster.gpu.id,
            "nodes": cluster.nodes,
            "gpus_per_node": cluster.gpus_per_node,
            "intra_link": cluster.intra_link.id,
            "inter_link": None if cluster.inter_link is None else cluster.inter_link.id,
            "nics_per_node": cluster.nics_per_node,
            "topology": cluster.topology,
            "oversubscription": cluster.oversubscription,
            "nodes_per_leaf": cluster.nodes_per_leaf,
            "iteration_compute_s": self.iteration_compute_s,
            "host_overhead_s": self.host_overhead_s,
            "model_bytes": self.model_bytes,
        }
