"""Workloads: per-layer tables computed from the architecture.

FLOP convention: one multiply-add is 2 FLOP. Counts are per sample; ``layer_table``
scales them to a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Layers bound by matrix-multiply throughput.
MATRIX_KINDS = ("conv", "linear", "matmul")
#: Layers bound by memory bandwidth.
MEMORY_KINDS = ("embedding", "norm", "activation", "pool", "softmax", "elementwise")
LAYER_KINDS = MATRIX_KINDS + MEMORY_KINDS


@dataclass(frozen=True)
class Layer:
    """One layer's forward pass for one sample."""

    name: str
    kind: str
    params: int
    forward_flops: float
    input_elements: int
    output_elements: int
    #: Matrix layers: the GEMM it lowers to, (m, n, k) with m counted per sample
    #: (conv: output pixels; transformer linear: tokens), so a batch runs (B*m, n, k).
    gemm: tuple[int, int, int] | None = None

    @property
    def is_matrix(self) -> bool:
        return self.kind in MATRIX_KINDS


@dataclass(frozen=True)
class Workload:
    id: str
    name: str
    task: str
    layers: tuple[Layer, ...]
    sample_shape: tuple[int, ...]
    dataset: str
    dataset_samples: int
    source: str

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def forward_flops_per_sample(self) -> float:
        return sum(layer.forward_flops for layer in self.layers)
