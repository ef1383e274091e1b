"""Staleness factors of synthetic schedules on the emulation problem.

Run: ``.venv/bin/python benchmarks/staleness_factors.py``. Softmax regression on the
default Gaussian mixture (10 classes, 20 features), batch 8 per worker, learning rate
0.3, target held-out accuracy 0.65 (long full-batch training reaches about 0.675),
mean over 5 seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import emulation as em  # noqa: E402

SEEDS = tuple(range(5))
BATCH, LR, TARGET = 8, 0.3, 0.65


def main() -> None:
    schedules = {
        "sync SGD, 8 workers": (em.synchronous_log(1000), 8),
        "async PS, 8 workers, fresh reads (staleness 0)": (em.push_log(3000, 8, 0), 8),
        "async PS, 4 workers round robin (staleness 3)": (em.push_log(3000, 4), 4),
        "async PS, 8 workers round robin (staleness 7)": (em.push_log(3000, 8), 8),
        "async PS, 16 workers round robin (staleness 15)": (em.push_log(4000, 16), 16),
        "local SGD, 8 workers, average every 8 steps": (em.local_sgd_log(8, 200, 8), 8),
    }
    for name, (log, workers) in schedules.items():
        factor = em.staleness_factor(log, workers, BATCH, LR, SEEDS, TARGET)
        print(f"{name:<50} staleness factor {factor:6.3f}")


if __name__ == "__main__":
    main()
