"""The saturating efficiency curve shared by the compute model and the calibration fit.

Achieved throughput on a kernel of ``work`` units (FLOP for a GEMM, bytes for a copy)
rises with size and saturates: ``efficiency = peak_fraction * work / (work + half_work)``.
``half_work`` is the size at which half the asymptotic efficiency is reached; it folds
together launch latency, tail effects and under-filled SMs on small problems.
"""

from __future__ import annotations

import numpy as np


def saturating_efficiency(work, peak_fraction: float, half_work: float):
    """Fraction of peak achieved on a kernel of ``work`` units (scalar or array)."""
    work = np.asarray(work, dtype=float)
    result = peak_fraction * work / (work + half_work)
    return float(result) if result.ndim == 0 else result
