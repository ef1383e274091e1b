"""Named, independent random streams derived from one scenario seed.

A stream is keyed by a stable name (crc32, never Python's salted ``hash()``), so adding
a worker or a component leaves the draws of every other stream unchanged.
"""

from __future__ import annotations

import zlib

import numpy as np

from models.errors import require_int


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator for component ``name`` under scenario ``seed``."""
    require_int("seed", seed, minimum=0)
    if not isinstance(name, str) or not name:
        raise ValueError(f"stream name: {name!r} is not valid; expected a non-empty string")
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))
