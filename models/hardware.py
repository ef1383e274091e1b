"""Hardware specs: GPUs, links and clusters, as frozen dataclasses in SI units.

The catalog files under ``data/hardware/`` are read by :mod:`models.catalog`; this module
only defines what a spec holds and checks that a spec is self-consistent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from models.errors import ConfigError, require_choice, require_int, require_number

#: Training precisions. ``fp32`` is full fp32 arithmetic; ``tf32`` keeps fp32 storage with
#: TF32 tensor-core matrix math; ``fp16``/``bf16`` are mixed precision (half-precision
#: activations and matrix math, fp32 master weights); ``fp8`` is fp8 matrix math with
#: 16-bit activations (Transformer Engine).
PRECISIONS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8")

#: Bytes per stored activation element under each training precision.
ACTIVATION_BYTES = MappingProxyType(
    {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 2}
)

TRANSPORTS = ("nvlink", "pcie", "infinity-fabric", "rdma", "tcp")
TOPOLOGIES = ("single-switch", "fat-tree")


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class GPUSpec:
    """One GPU model. FLOP rates are dense (no structured sparsity) peaks."""

    id: str
    name: str
    vendor: str
    architecture: str
    #: Peak FLOP/s of the general-purpose (non-tensor) cores, per precision.
    vector_flops_per_s: Mapping[str, float]
    #: Peak FLOP/s for matrix multiply, per precision: tensor/matrix cores where present,
    #: otherwise the vector rate. Keys are the precisions this GPU can train in.
    matrix_flops_per_s: Mapping[str, float]
    memory_bandwidth_Bps: float
    memory_bytes: float
    source: str
    price_usd_per_hour: float | None = None
    price_source: str | None = None
    price_date: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector_flops_per_s", _frozen(self.vector_flops_per_s))
        object.__setattr__(self, "matrix_flops_per_s", _frozen(self.matrix_flops_per_s))
        where = f"gpu {self.id}"
        for table in ("vector_flops_per_s", "matrix_flops_per_s"):
            for precision, rate in getattr(self, table).items():
                require_choice(f"{where}.{table} precision", precision, PRECISIONS)
                require_number(f"{where}.{table}.{precision}", rate, minimum=0.0,
                               exclusive_minimum=True)
        require_number(f"{where}.memory_bandwidth_Bps", self.memory_bandwidth_Bps, minimum=0.0,
                       exclusive_minimum=True)
        require_number(f"{where}.memory_bytes", self.memory_bytes, minimum=0.0,
                       exclusive_minimum=True)
        if self.price_usd_per_hour is not None:
            require_number(f"{where}.price_usd_per_hour", self.price_usd_per_hour, minimum=0.0,
                           exclusive_minimum=True)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions this GPU can train in, in catalog order."""
        return tuple(p for p in PRECISIONS if p in self.matrix_flops_per_s)

    def check_precision(self, precision: str, field_name: str = "precision") -> str:
        if precision not in self.matrix_flops_per_s:
            raise ConfigError(
                field_name, precision,
                f"a precision that {self.id} supports: {', '.join(self.precisions)}",
            )
        return precision

    def matrix_peak_flops_per_s(self, precision: str) -> float:
        return self.matrix_flops_per_s[self.check_precision(precision)]

    def vector_peak_flops_per_s(self, precision: str) -> float:
        """Non-tensor peak used by elementwise work; mixed precision falls back to fp32."""
        self.check_precision(precision)
        if precision in self.vector_flops_per_s:
            return self.vector_flops_per_s[precision]
        return self.vector_flops_per_s["fp32"]


@dataclass(frozen=True)
class LinkSpec:
    """A link as one GPU or one NIC sees it: bandwidth per direction, one-way latency."""

    id: str
    name: str
    transport: str
    #: Nominal (signalling) bandwidth per direction, bytes/s.
    bandwidth_Bps: float
    #: Software-to-software one-way latency of a small message, seconds.
    latency_s: float
    #: Fraction of the nominal bandwidth a bulk transfer achieves (protocol overheads,
    #: and for TCP the kernel network stack).
    efficiency: float
    source: str

    def __post_init__(self) -> None:
        where = f"link {self.id}"
        require_choice(f"{where}.transport", self.transport, TRANSPORTS)
        require_number(f"{where}.bandwidth_Bps", self.bandwidth_Bps, minimum=0.0,
                       exclusive_minimum=True)
        require_number(f"{where}.latency_s", self.latency_s, minimum=0.0)
        require_number(f"{where}.efficiency", self.efficiency, minimum=0.0, maximum=1.0,
                       exclusive_minimum=True)

    @property
    def achievable_bandwidth_Bps(self) -> float:
        return self.bandwidth_Bps * self.efficiency

    @property
    def is_rdma(self) -> bool:
        return self.transport != "tcp"


@dataclass(frozen=True)
class ClusterSpec:
    """GPUs in nodes; an intra-node link between GPUs of a node and NICs between nodes."""

    gpu: GPUSpec
    nodes: int
    gpus_per_node: int
    intra_link: LinkSpec
    inter_link: LinkSpec | None = None
    nics_per_node: int = 1
    topology: str = "single-switch"
    #: Fat tree only: ratio of leaf downlink to uplink bandwidth (1 = non-blocking).
    oversubscription: float = 1.0
    #: Fat tree only: nodes under one leaf switch; traffic between leaves crosses the
    #: oversubscribed uplinks.
    nodes_per_leaf: int = 16
    extras: Mapping[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        require_int("cluster.nodes", self.nodes, minimum=1)
        require_int("cluster.gpus_per_node", self.gpus_per_node, minimum=1)
        require_int("cluster.nics_per_node", self.nics_per_node, minimum=1)
        require_choice("cluster.topology", self.topology, TOPOLOGIES)
        require_number("cluster.oversubscription", self.oversubscription, minimum=1.0)
        require_int("cluster.nodes_per_leaf", self.nodes_per_leaf, minimum=1)
        if self.nodes > 1 and self.inter_link is None:
            raise ConfigError("cluster.inter_link", None,
                              "a link id (the cluster has more than one node)")

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def node_bandwidth_Bps(self) -> float:
        """Achievable bandwidth per direction out of one node, over all its NICs."""
        if self.inter_link is None:
            return 0.0
        return self.nics_per_node * self.inter_link.achievable_bandwidth_Bps

    @property
    def spans_leaves(self) -> bool:
        return self.topology == "fat-tree" and self.nodes > self.nodes_per_leaf

    @property
    def bisection_node_bandwidth_Bps(self) -> float:
        """Per-node bandwidth for traffic that crosses leaf switches of a fat tree."""
        if self.spans_leaves:
            return self.node_bandwidth_Bps / self.oversubscription
        return self.node_bandwidth_Bps
